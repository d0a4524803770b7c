using System.Text;
using Gateway.Forwarding;
using Gateway.Routing;
using Gateway.Tests.Infrastructure;
using Gateway.Usage;

namespace Gateway.Tests.Forwarding;

/// <summary>
/// The chat usage-chunk filter on its own, over any chunking: the client gets the stream minus the usage chunk and the
/// <c>"usage":null</c> members, the observer (which frames the events for the filter) sees every byte exactly once.
/// </summary>
public sealed class ChatUsageChunkFilterTests
{
    private static readonly TokenCounter Tokens = new();

    private const string Upstream =
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n" +
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n" +
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n" +
        ": keep-alive\n\n" +
        "data: [DONE]\n\n";

    private const string Expected =
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n" +
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n" +
        ": keep-alive\n\n" +
        "data: [DONE]\n\n";

    public static TheoryData<int, bool> Chunkings => new()
    {
        { 1, false }, { 2, false }, { 7, true }, { 31, false }, { 64, true }, { 1 << 20, false }, { 1 << 20, true },
    };

    [Theory]
    [MemberData(nameof(Chunkings))]
    public async Task ReadAsync_AnyChunking_DropsUsageChunkAndNullUsageKeepsTheRest(int chunkSize, bool crlf)
    {
        var (released, usage) = await FilterAsync(Crlf(Upstream, crlf), chunkSize);

        Assert.Equal(Crlf(Expected, crlf), released);
        Assert.True(usage.HasUsage);
        Assert.Equal(11, usage.TotalTokens);
        Assert.True(usage.SawEnd);
        Assert.Equal("chatcmpl-1", usage.ObjectId);
        Assert.Equal(4, usage.EventCount); // three chunks and [DONE], each observed once; the comment carries no data
    }

    [Fact]
    public async Task ReadAsync_StreamEndsMidEvent_PartialEventGoesOutAsItIs()
    {
        const string cut = "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\ndata: {\"id\":\"chat";

        var (released, usage) = await FilterAsync(cut, 5);

        Assert.Equal("data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: {\"id\":\"chat", released);
        Assert.False(usage.SawEnd);
        Assert.Equal(1, usage.EventCount);
    }

    private static string Crlf(string text, bool crlf) => crlf ? text.Replace("\n", "\r\n", StringComparison.Ordinal) : text;

    private static async Task<(string Released, ObservedUsage Usage)> FilterAsync(string upstream, int chunkSize)
    {
        using var observer = new UsageObserver(Tokens);
        var usage = new ObservedUsage();
        observer.Begin(BodyFormat.Sse, UsageShape.Chat, usage);
        using var filter = new ChatUsageChunkFilter(observer, TestHops.Instance);
        await using var inner = new ChunkedStream(Encoding.UTF8.GetBytes(upstream), chunkSize);
        var released = new MemoryStream();
        var buffer = new byte[4096];
        int read;
        while ((read = await filter.ReadAsync(inner, buffer, CancellationToken.None)) > 0)
        {
            released.Write(buffer, 0, read);
        }

        return (Encoding.UTF8.GetString(released.ToArray()), usage);
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

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            ValueTask.FromResult(Read(buffer.Span));

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            var count = Math.Min(Math.Min(chunkSize, buffer.Length), data.Length - _position);
            data.AsSpan(_position, count).CopyTo(buffer);
            _position += count;
            return count;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
