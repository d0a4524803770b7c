using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.IO.Pipelines;
using System.Text;
using System.Threading.Tasks.Sources;
using Gateway.Configuration;
using Gateway.Forwarding;
using Gateway.Observability;
using Gateway.Requests;
using Gateway.Routing;
using Gateway.Tenants;
using Gateway.Tests.Infrastructure;
using Gateway.Usage;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Gateway.Tests.Forwarding;

/// <summary>
/// What an open stream holds while it waits for its next event (#15, 10,000 open streams): read as YARP's StreamCopier
/// reads (a zero-byte read, then a read into its buffer) over a pipe the test writes event by event, the usage tee and
/// the chat filter give their pooled buffers back while the zero-byte read waits, and the bytes and usage are the same
/// as when the stream never paused.
/// </summary>
public sealed class ObservedUpstreamStreamTests
{
    private static readonly TokenCounter Tokens = new();

    private static readonly string[] Words =
        [" The", " keeper", " climbed", " the", " stairs,", " counting", " ninety-two", " steps", " in", " the", " dark;", " then", " a", " lamp", "light", "house", " glowed", "."];

    [Fact]
    public async Task ZeroByteRead_ResponsesStreamWaitsBetweenEvents_HoldsNoPooledBufferAndReadsUsageExactly()
    {
        var events = ResponsesEvents();
        var (paused, pausedUsage, pausedEstimate) = await ReadWithPausesAsync(ApiRouteTable.ResponsesCreate, hideChatUsageChunk: false, events, BodyFormat.Sse);
        var (whole, wholeUsage, wholeEstimate) = await ReadWholeAsync(ApiRouteTable.ResponsesCreate, hideChatUsageChunk: false, string.Concat(events));

        Assert.Equal(string.Concat(events), paused);
        Assert.Equal(whole, paused);
        Assert.True(pausedUsage.HasUsage);
        Assert.Equal(wholeUsage.TotalTokens, pausedUsage.TotalTokens);
        Assert.Equal(wholeUsage.ObjectId, pausedUsage.ObjectId);
        Assert.Equal(wholeUsage.EventCount, pausedUsage.EventCount);
        Assert.Equal(wholeEstimate, pausedEstimate);
    }

    private static readonly string[] NumbersPunctuationAndWhitespace = [" 123", "4567", " 89", ",", " ,", "x", "  ", " two  spaces", ".\\n", "\\n\\n", " tab\\t", "\\tafter"];

    private static readonly string[] NonAsciiAndSplitSurrogates = [" 日本語", "のテキスト", " \\ud83d\\ude00", "\\ud83d", "\\ude00 smile", " caf\\u00e9", " na\\u00efve"];

    // Runs longer than the tally's idle carry: the batch stays rented rather than cut inside a word.
    private static readonly string[] RunsLongerThanTheIdleCarry = [" " + new string('a', 100), new string('b', 70), " c", " " + new string('d', 63), "e"];

    public static TheoryData<string[], bool> HostileTexts => new()
    {
        { Words, true }, { NumbersPunctuationAndWhitespace, true }, { NonAsciiAndSplitSurrogates, true }, { RunsLongerThanTheIdleCarry, false },
    };

    [Theory]
    [MemberData(nameof(HostileTexts))]
    public async Task ZeroByteRead_StreamCutBeforeUsage_EstimateEqualsTheWholeTextsTokens(string[] deltas, bool holdsNothingBetweenEvents)
    {
        // No terminal event: the output estimate comes from the tally, which was counted piecewise at every pause.
        var events = ResponsesEvents(deltas)[..^1];
        var (_, usage, estimate) = await ReadWithPausesAsync(ApiRouteTable.ResponsesCreate, hideChatUsageChunk: false, events, BodyFormat.Sse,
            holdsNothingBetweenEvents);

        Assert.False(usage.HasUsage);
        Assert.Equal(Tokens.Count(System.Text.RegularExpressions.Regex.Unescape(string.Concat(deltas))), estimate);
    }

    [Fact]
    public async Task ZeroByteRead_ChatFilterCarriedAPartialEvent_ReturnsTheCarryOnceTheEventIsOut()
    {
        // The first write ends inside an event, so the filter rents its carry; the rest of the event follows.
        const string first = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\ndata: {\"id\":\"chatcmpl-1\",\"object\":\"chat.com";
        const string second = "pletion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"}}],\"usage\":null}\n\n";
        const string usageChunk = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\ndata: [DONE]\n\n";

        var (released, usage, _) = await ReadWithPausesAsync(ApiRouteTable.ChatCompletionsCreate, hideChatUsageChunk: true, [first, second, usageChunk], BodyFormat.Sse);

        Assert.Equal(
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n" +
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"}}]}\n\n" +
            "data: [DONE]\n\n",
            released);
        Assert.Equal(11, usage.TotalTokens);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)] // the chat filter reads and observes by itself
    public async Task LargeRead_CompletedOnAnIoThread_ObservedOnTheThreadPool(bool hideChatUsageChunk)
    {
        // With inline socket completions an upstream read completes on the epoll thread; a thread of the test's own
        // stands in for it. Observing a read over ThreadPoolHop.ObserveAboveBytes must move to the pool first.
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var meters = services.GetRequiredService<IMeterFactory>();
        var hops = new ThreadPoolHop(meters);
        var meter = meters.Create(GatewayMetrics.MeterName);
        var threads = new ConcurrentQueue<string>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter, meter))
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, _, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == "thread")
                {
                    threads.Enqueue((string)tag.Value!);
                }
            }
        });
        listener.Start();

        var text = string.Concat(Enumerable.Repeat(" lamp", 5_000)); // one event of ~25 KB
        var body = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" + text + "\"}}],\"usage\":null}\n\n" +
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":5000,\"total_tokens\":5009}}\n\ndata: [DONE]\n\n";
        var (stream, observer) = Open(ApiRouteTable.ChatCompletionsCreate, hideChatUsageChunk, new MemoryStream(Encoding.UTF8.GetBytes(body)), BodyFormat.Sse, hops);

        var buffer = new byte[64 * 1024];
        var read = await Task.Factory.StartNew(() => stream.ReadAsync(buffer).AsTask(), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();

        Assert.True(read > ThreadPoolHop.ObserveAboveBytes, $"read {read} bytes");
        Assert.Equal(["thread_pool"], threads.ToArray());
        while (await stream.ReadAsync(buffer) > 0)
        {
        }

        Assert.Equal(5009, observer.Usage.TotalTokens);
    }

    [Fact]
    public void ZeroByteRead_StreamWaitsThousandsOfTimes_AllocatesNothingPerWait()
    {
        // 10,000 open streams wait 10,000 times a second; whatever a wait allocates lives the second to the next event
        // and is promoted (#15). The inner stream completes each wait on this thread, so the count is this thread's.
        using var inner = new SignalledStream();
        var (stream, _) = Open(ApiRouteTable.ResponsesCreate, hideChatUsageChunk: false, inner, BodyFormat.Sse);
        Assert.True(WaitOnce(stream, inner)); // first use: the stream's one continuation delegate

        // No assertion inside the measured loop: xunit's asserts allocate.
        var waitedAsExpected = 0;
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            waitedAsExpected += WaitOnce(stream, inner) ? 1 : 0;
        }

        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
        Assert.Equal(1000, waitedAsExpected);
    }

    [Fact]
    public async Task ZeroByteRead_UpstreamBreaksWhileWaiting_WaitEndsCleanlyAndTheErrorEventFollows()
    {
        using var inner = new SignalledStream();
        var (stream, observer) = Open(ApiRouteTable.ResponsesCreate, hideChatUsageChunk: false, inner, BodyFormat.Sse);
        var idle = stream.ReadAsync(Memory<byte>.Empty);
        Assert.False(idle.IsCompleted);

        inner.Break(new IOException("connection reset"));

        Assert.Equal(0, await idle);
        var buffer = new byte[4096];
        var read = await stream.ReadAsync(buffer);
        Assert.Contains("event: error", Encoding.UTF8.GetString(buffer, 0, read), StringComparison.Ordinal);
        Assert.Equal(0, await stream.ReadAsync(buffer));
        Assert.True(observer.Usage.SawErrorEvent);
    }

    /// <summary>One wait between events: pending until the upstream has data, then done with nothing read.</summary>
    private static bool WaitOnce(ObservedUpstreamStream stream, SignalledStream inner)
    {
        var idle = stream.ReadAsync(Memory<byte>.Empty);
        var pending = !idle.IsCompleted;
        inner.Signal(); // completes inline, on this thread
        return pending && idle.IsCompleted && idle.Result == 0;
    }

    /// <summary>An upstream body whose zero-byte reads wait until the test signals (or breaks) them, completing inline.</summary>
    private sealed class SignalledStream : Stream, IValueTaskSource<int>
    {
        private ManualResetValueTaskSourceCore<int> _wait;

        public void Signal() => _wait.SetResult(0);

        public void Break(Exception error) => _wait.SetException(error);

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Assert.True(buffer.IsEmpty); // these tests only wait
            _wait.Reset();
            return new(this, _wait.Version);
        }

        int IValueTaskSource<int>.GetResult(short token) => _wait.GetResult(token);

        ValueTaskSourceStatus IValueTaskSource<int>.GetStatus(short token) => _wait.GetStatus(token);

        void IValueTaskSource<int>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _wait.OnCompleted(continuation, state, token, flags);

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    private static string[] ResponsesEvents(string[]? deltas = null)
    {
        var words = deltas ?? Words;
        var events = new List<string>
        {
            "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_idle\",\"object\":\"response\",\"status\":\"in_progress\",\"model\":\"gpt-4o-mini\",\"usage\":null}}\n\n",
        };
        for (var i = 0; i < words.Length; i++)
        {
            events.Add($"event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"sequence_number\":{i + 1},\"delta\":\"{words[i]}\"}}\n\n");
        }

        events.Add("event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":99,\"response\":{\"id\":\"resp_idle\",\"object\":\"response\",\"status\":\"completed\"," +
            "\"model\":\"gpt-4o-mini\",\"usage\":{\"input_tokens\":12,\"output_tokens\":21,\"total_tokens\":33}}}\n\n");
        return [.. events];
    }

    /// <summary>
    /// Writes one piece at a time and reads as YARP does; before each next piece the zero-byte read is pending (the
    /// stream is idle), and between events the stream must hold no pooled buffer then (inside one, the part already
    /// read is state it needs).
    /// </summary>
    private static async Task<(string Released, ObservedUsage Usage, long Estimate)> ReadWithPausesAsync(
        ApiRoute route, bool hideChatUsageChunk, IReadOnlyList<string> pieces, BodyFormat format, bool holdsNothingBetweenEvents = true)
    {
        var pipe = new Pipe();
        var (stream, observer) = Open(route, hideChatUsageChunk, pipe.Reader.AsStream(), format);
        var released = new MemoryStream();
        var buffer = new byte[64 * 1024];
        var betweenEvents = true;
        foreach (var piece in pieces)
        {
            var idle = stream.ReadAsync(Memory<byte>.Empty);
            Assert.False(idle.IsCompleted); // nothing written yet: the stream waits
            if (betweenEvents && holdsNothingBetweenEvents)
            {
                Assert.False(stream.HoldsPooledBuffers);
            }

            betweenEvents = piece.EndsWith("\n\n", StringComparison.Ordinal);

            await pipe.Writer.WriteAsync(Encoding.UTF8.GetBytes(piece));
            Assert.Equal(0, await idle);
            var read = await stream.ReadAsync(buffer);
            released.Write(buffer, 0, read);
        }

        await pipe.Writer.CompleteAsync();
        int rest;
        while ((rest = await stream.ReadAsync(buffer)) > 0)
        {
            released.Write(buffer, 0, rest);
        }

        var estimate = observer.Tally.Total();
        await stream.DisposeAsync();
        return (Encoding.UTF8.GetString(released.ToArray()), observer.Usage, estimate);
    }

    private static async Task<(string Released, ObservedUsage Usage, long Estimate)> ReadWholeAsync(ApiRoute route, bool hideChatUsageChunk, string body)
    {
        var (stream, observer) = Open(route, hideChatUsageChunk, new MemoryStream(Encoding.UTF8.GetBytes(body)), BodyFormat.Sse);
        var released = new MemoryStream();
        await stream.CopyToAsync(released);
        var estimate = observer.Tally.Total();
        await stream.DisposeAsync();
        return (Encoding.UTF8.GetString(released.ToArray()), observer.Usage, estimate);
    }

    private static (ObservedUpstreamStream Stream, UsageObserver Observer) Open(ApiRoute route, bool hideChatUsageChunk, Stream inner, BodyFormat format, ThreadPoolHop? hops = null)
    {
        var observer = new UsageObserver(Tokens);
        observer.Begin(format, route.Usage, new ObservedUsage());
        var request = new AuthenticatedRequest(new DefaultHttpContext(), "gw-test", 0, new Tenant("t", new TenantOptions()))
        {
            Route = route,
            HideChatUsageChunk = hideChatUsageChunk,
        };
        var call = new UpstreamCall(request, null, TimeProvider.System, objectIdentified: null);
        return (new ObservedUpstreamStream(inner, call, observer, hops ?? TestHops.Instance), observer);
    }
}
