using System.Text;
using System.Text.Json;
using Gateway.Configuration;
using Gateway.Forwarding;
using Gateway.Requests;
using Gateway.Routing;
using Gateway.Tenants;
using Gateway.Tests.Infrastructure;
using Gateway.Usage;
using Microsoft.AspNetCore.Http;

namespace Gateway.Tests.Isolation;

/// <summary>
/// The moment ownership is recorded, checked byte by byte on real recorded OpenAI bodies. A network delivers a body in
/// arbitrary pieces (TCP segments, TLS records, decompression), so for every way of cutting it the recorded id must be
/// the whole id, and it must be recorded before the client can have it: for JSON before the id's closing quote is
/// released, for SSE before the end of the <c>response.created</c> event is released. The end-to-end tests cannot
/// choose where the upstream's body is cut; this drives <see cref="ObservedUpstreamStream"/>, the class that orders
/// recording and release, directly.
/// </summary>
public sealed class OwnershipRecordingTests
{
    private static readonly TokenCounter Tokens = new();

    public static TheoryData<int> ChunkSizes => [1, 2, 3, 5, 7, 13, 31, 64, 257, 1 << 20];

    [Theory]
    [MemberData(nameof(ChunkSizes))]
    public async Task JsonResponseWithConversation_AnyChunking_RecordsWholeIdsBeforeTheirClosingQuoteIsReleased(int chunkSize)
    {
        // A real answer of POST /v1/responses with "conversation" (openai-dotnet ResponseUsingConversations, entry 1).
        var body = RecordedBody("ResponsesTests/ResponseUsingConversations.json", 1);
        const string responseId = "resp_0903dc172c433d83006a3f193a95148197a63e0918e859de99";
        const string conversationId = "conv_6a3f193a23f08197a8aaeee38622750f0903dc172c433d83";

        var run = await RunAsync(body, BodyFormat.Json, ApiRouteTable.ResponsesCreate, chunkSize);

        Assert.Equal([responseId], run.RecordedObjectIds);
        Assert.Equal([conversationId], run.RecordedConversationIds);
        Assert.True(run.FirstRecorded(responseId) < EndOfQuoted(body, responseId),
            $"the response id was recorded only after {run.FirstRecorded(responseId)} bytes had been released");
        Assert.True(run.FirstRecorded(conversationId) < EndOfQuoted(body, conversationId),
            $"the conversation id was recorded only after {run.FirstRecorded(conversationId)} bytes had been released");
        Assert.Equal(body, run.Released); // observation never alters the bytes
    }

    [Theory]
    [MemberData(nameof(ChunkSizes))]
    public async Task JsonConversationCreate_AnyChunking_RecordsWholeIdBeforeItsClosingQuoteIsReleased(int chunkSize)
    {
        var body = RecordedBody("ResponsesTests/ResponseUsingConversations.json", 0);
        const string conversationId = "conv_6a3f193a23f08197a8aaeee38622750f0903dc172c433d83";

        var run = await RunAsync(body, BodyFormat.Json, ApiRouteTable.ConversationsCreate, chunkSize);

        Assert.Equal([conversationId], run.RecordedObjectIds);
        Assert.True(run.FirstRecorded(conversationId) < EndOfQuoted(body, conversationId));
    }

    [Theory]
    [MemberData(nameof(ChunkSizes))]
    public async Task SseBackgroundStream_AnyChunking_RecordsWholeIdBeforeResponseCreatedIsComplete(int chunkSize)
    {
        // A real background stream (openai-dotnet CanStreamBackgroundResponses, entry 0): response.created comes first.
        var body = RecordedBody("ResponsesTests/CanStreamBackgroundResponses.json", 0);
        const string responseId = "resp_0a5004ef5dc3564c0069845a9c82c481938b9b7c975a6f56b1";

        var run = await RunAsync(body, BodyFormat.Sse, ApiRouteTable.ResponsesCreate, chunkSize);

        Assert.Equal([responseId], run.RecordedObjectIds);
        Assert.True(run.FirstRecorded(responseId) < EndOfFirstEvent(body),
            $"the id was recorded only after {run.FirstRecorded(responseId)} bytes had been released; response.created ends at {EndOfFirstEvent(body)}");
    }

    [Theory]
    [MemberData(nameof(ChunkSizes))]
    public async Task SseStreamWithConversation_AnyChunking_RecordsBothIdsBeforeResponseCreatedIsComplete(int chunkSize)
    {
        // response.created and response.completed around the recorded response that names its conversation.
        var completed = Encoding.UTF8.GetString(RecordedBody("ResponsesTests/ResponseUsingConversations.json", 1));
        var inProgress = completed.Replace("\"status\":\"completed\"", "\"status\":\"in_progress\"", StringComparison.Ordinal);
        Assert.NotEqual(completed, inProgress);
        var sse = $"event: response.created\ndata: {{\"type\":\"response.created\",\"sequence_number\":0,\"response\":{inProgress}}}\n\n"
            + $"event: response.completed\ndata: {{\"type\":\"response.completed\",\"sequence_number\":1,\"response\":{completed}}}\n\n";
        var body = Encoding.UTF8.GetBytes(sse);

        var run = await RunAsync(body, BodyFormat.Sse, ApiRouteTable.ResponsesCreate, chunkSize);

        Assert.Equal(["resp_0903dc172c433d83006a3f193a95148197a63e0918e859de99"], run.RecordedObjectIds);
        Assert.Equal(["conv_6a3f193a23f08197a8aaeee38622750f0903dc172c433d83"], run.RecordedConversationIds);
        Assert.True(run.FirstRecorded("resp_0903dc172c433d83006a3f193a95148197a63e0918e859de99") < EndOfFirstEvent(body));
        Assert.True(run.FirstRecorded("conv_6a3f193a23f08197a8aaeee38622750f0903dc172c433d83") < EndOfFirstEvent(body));
    }

    [Theory]
    [MemberData(nameof(ChunkSizes))]
    public async Task SseConversationNamedOnlyByTheTerminalEvent_RecordedBeforeThatEventIsComplete(int chunkSize)
    {
        const string conversationId = "conv_6a3f193a23f08197a8aaeee38622750f0903dc172c433d83";
        var completed = Encoding.UTF8.GetString(RecordedBody("ResponsesTests/ResponseUsingConversations.json", 1));
        var withoutConversation = completed.Replace($"\"conversation\":{{\"id\":\"{conversationId}\"}},", "", StringComparison.Ordinal);
        Assert.NotEqual(completed, withoutConversation);
        var created = $"event: response.created\ndata: {{\"type\":\"response.created\",\"sequence_number\":0,\"response\":{withoutConversation}}}\n\n";
        var body = Encoding.UTF8.GetBytes(created
            + $"event: response.completed\ndata: {{\"type\":\"response.completed\",\"sequence_number\":1,\"response\":{completed}}}\n\n");

        var run = await RunAsync(body, BodyFormat.Sse, ApiRouteTable.ResponsesCreate, chunkSize);

        Assert.Equal([conversationId], run.RecordedConversationIds);
        Assert.True(run.FirstRecorded(conversationId) < body.Length, "recorded only after the terminal event was released");
    }

    private static byte[] RecordedBody(string file, int entry)
    {
        var exchange = Recordings.All().Single(e => e.File == file && e.Index == entry);
        return exchange.IsStream
            ? Encoding.UTF8.GetBytes(string.Concat(exchange.ResponseBody.EnumerateArray().Select(s => s.GetString())))
            : JsonSerializer.SerializeToUtf8Bytes(exchange.ResponseBody); // compact, as the API sends it
    }

    /// <summary>Bytes a client needs before it has the whole quoted id (up to and including the closing quote).</summary>
    private static int EndOfQuoted(byte[] body, string id)
    {
        var at = body.AsSpan().IndexOf(Encoding.UTF8.GetBytes($"\"{id}\""));
        Assert.True(at >= 0);
        return at + id.Length + 2;
    }

    private static int EndOfFirstEvent(byte[] body)
    {
        var at = body.AsSpan().IndexOf("\n\n"u8);
        Assert.True(at >= 0);
        return at + 2;
    }

    private static async Task<Run> RunAsync(byte[] body, BodyFormat format, ApiRoute route, int chunkSize)
    {
        using var observer = new UsageObserver(Tokens);
        observer.Begin(format, route.Usage, new ObservedUsage());

        var released = new MemoryStream();
        var run = new Run();
        var request = new AuthenticatedRequest(new DefaultHttpContext(), "gw-test", 0, new Tenant("t", new TenantOptions())) { Route = route };
        var call = new UpstreamCall(request, null, TimeProvider.System, usage =>
        {
            // What the real callback (IsolationGuard.RecordCreatedAsync) would write, and how much the client had by then.
            run.Record(usage.ObjectId, usage.ConversationId, (int)released.Length);
            return Task.CompletedTask;
        });

        await using var stream = new ObservedUpstreamStream(new ChunkedStream(body, chunkSize), call, observer, TestHops.Instance);
        var buffer = new byte[64 * 1024];
        int read;
        while ((read = await stream.ReadAsync(buffer)) > 0)
        {
            released.Write(buffer, 0, read);
        }

        run.Released = released.ToArray();
        return run;
    }

    private sealed class Run
    {
        private readonly Dictionary<string, int> _first = new(StringComparer.Ordinal);

        public List<string> RecordedObjectIds { get; } = [];

        public List<string> RecordedConversationIds { get; } = [];

        public byte[] Released { get; set; } = [];

        public int FirstRecorded(string id) => _first.TryGetValue(id, out var at) ? at : int.MaxValue;

        public void Record(string? objectId, string? conversationId, int releasedSoFar)
        {
            Add(RecordedObjectIds, objectId, releasedSoFar);
            Add(RecordedConversationIds, conversationId, releasedSoFar);
        }

        private void Add(List<string> list, string? id, int releasedSoFar)
        {
            if (id is not null && !list.Contains(id))
            {
                list.Add(id);
            }

            if (id is not null)
            {
                _first.TryAdd(id, releasedSoFar);
            }
        }
    }

    /// <summary>A body that arrives at most <c>chunkSize</c> bytes per read, as a network may deliver it.</summary>
    private sealed class ChunkedStream(byte[] data, int chunkSize) : Stream
    {
        private int _position;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => data.Length;

        public override long Position
        {
            get => _position;
            set => throw new NotSupportedException();
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var count = Math.Min(Math.Min(chunkSize, buffer.Length), data.Length - _position);
            data.AsSpan(_position, count).CopyTo(buffer.Span);
            _position += count;
            return ValueTask.FromResult(count);
        }

        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
