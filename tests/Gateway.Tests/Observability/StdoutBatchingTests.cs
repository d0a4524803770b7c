using System.Text;
using FakeUpstream;
using Gateway.Observability;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;
using Serilog.Events;
using Serilog.Parsing;

namespace Gateway.Tests.Observability;

/// <summary>
/// The stdout sink batches by time (<see cref="IntervalBatchingSink"/>): request threads only enqueue, a timer armed by
/// the first queued event writes the batch. What that must never do: lose an event (a timer left unarmed, a shutdown
/// before the interval) or write lines out of the order they were logged.
/// </summary>
public sealed class StdoutBatchingTests : IAsyncLifetime
{
    private static readonly MessageTemplateParser Parser = new();
    private FakeUpstreamServer _upstream = null!;

    public async Task InitializeAsync() => _upstream = await FakeUpstreamServer.StartAsync();

    public async Task DisposeAsync() => await _upstream.DisposeAsync();

    [Fact]
    public async Task SigTerm_EventsQueuedForALongInterval_AllReachStdoutInRequestOrder()
    {
        // A long interval (the "Now listening" line itself comes through it): the requests' events are still queued at SIGTERM.
        await using var gateway = StartGateway(("Serilog__WriteTo__0__Args__bufferingMilliseconds", "15000"));
        await gateway.WaitUntilListeningAsync(TimeSpan.FromSeconds(90));
        using var client = gateway.CreateClient();
        var sent = new List<string>();
        for (var i = 0; i < 25; i++)
        {
            sent.Add(await CreateAsync(client, i));
        }

        Assert.True(gateway.UsageEvents.Count < sent.Count, "some usage events are still queued when SIGTERM comes");
        gateway.Terminate();

        Assert.Equal(0, await gateway.WaitForExitAsync(TimeSpan.FromSeconds(90)));
        Assert.Equal(sent, gateway.UsageEvents.Select(e => e.GetProperty("RequestId").GetString()!));
    }

    [Fact]
    public async Task ConcurrentBursts_NoTrafficAfterwards_EveryUsageEventReachesStdoutOnce()
    {
        await using var gateway = StartGateway();
        await gateway.WaitUntilListeningAsync();
        using var client = gateway.CreateClient();
        var sent = new List<string>();
        for (var burst = 0; burst < 4; burst++)
        {
            sent.AddRange(await Task.WhenAll(Enumerable.Range(0, 40).Select(i => CreateAsync(client, i))));
        }

        // No request follows the last burst: an event left queued with the timer disarmed would never be written.
        await Eventually.UntilAsync(() => gateway.UsageEvents.Count >= sent.Count, $"{sent.Count} usage events on stdout");
        Assert.Equal(sent.Order(), gateway.UsageEvents.Select(e => e.GetProperty("RequestId").GetString()!).Order());
    }

    [Fact]
    public void Emit_IntervalNotElapsed_WritesNothingUntilItHasThenTheBatchInOrder()
    {
        var (sink, stdout, clock) = Sink();
        sink.Emit(Event("first"));
        sink.Emit(Event("second"));
        clock.Advance(TimeSpan.FromMilliseconds(99));
        Assert.Empty(Lines(stdout));

        clock.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(["first", "second"], Lines(stdout));
    }

    [Fact]
    public void Emit_AfterABatchWasWritten_ArmsTheTimerAgain()
    {
        var (sink, stdout, clock) = Sink();
        sink.Emit(Event("first"));
        clock.Advance(TimeSpan.FromMilliseconds(100));
        sink.Emit(Event("second"));
        sink.Emit(Event("third"));
        clock.Advance(TimeSpan.FromMilliseconds(100));

        Assert.Equal(["first", "second", "third"], Lines(stdout));
    }

    [Fact]
    public void Dispose_EventsStillQueued_WrittenWithoutWaitingForTheInterval()
    {
        var (sink, stdout, _) = Sink();
        for (var i = 0; i < 2500; i++)
        {
            sink.Emit(Event($"event {i}"));
        }

        sink.Dispose();

        Assert.Equal(Enumerable.Range(0, 2500).Select(i => $"event {i}"), Lines(stdout));
    }

    private GatewayProcess StartGateway(params (string Name, string Value)[] settings)
    {
        var environment = new Dictionary<string, string>
        {
            ["Gateway__Upstream__BaseUrl"] = _upstream.BaseUrl.ToString(),
            ["OPENAI_API_KEY"] = TestKeys.UpstreamKey,
            ["Gateway__Tenants__tenant-a__KeyHashes__0"] = TestKeys.Hash(TestKeys.KeyA),
            ["Gateway__Shutdown__DrainDelay"] = "00:00:00",
            ["Gateway__Warmup__Enabled"] = "false",
        };
        foreach (var (name, value) in settings)
        {
            environment[name] = value;
        }

        return GatewayProcess.Start(PublishedGateway.DirectoryAsync().GetAwaiter().GetResult(), environment);
    }

    private static async Task<string> CreateAsync(HttpClient client, int i)
    {
        using var content = new StringContent($$"""{"model":"gpt-4o-mini","input":"batch {{i}}"}""", Encoding.UTF8, "application/json");
        using var response = await client.PostAsync("responses", content);
        response.EnsureSuccessStatusCode();
        return response.Headers.GetValues("x-gateway-request-id").Single();
    }

    private static (IntervalBatchingSink Sink, MemoryStream Stdout, FakeTimeProvider Clock) Sink()
    {
        var clock = new FakeTimeProvider();
        var stdout = new MemoryStream();
        return (new IntervalBatchingSink(new StdoutClefSink(new NonClosingStream(stdout)), TimeSpan.FromMilliseconds(100), 1000, clock), stdout, clock);
    }

    private static LogEvent Event(string text) =>
        new(DateTimeOffset.UnixEpoch, LogEventLevel.Information, null, Parser.Parse(text), []);

    private static string[] Lines(MemoryStream stdout) =>
        [.. Encoding.UTF8.GetString(stdout.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => System.Text.Json.JsonDocument.Parse(line).RootElement.GetProperty("@mt").GetString()!)];

    private sealed class NonClosingStream(Stream inner) : Stream
    {
        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => inner.Length;

        public override long Position { get => inner.Position; set => throw new NotSupportedException(); }

        public override void Flush() => inner.Flush();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);
    }
}
