using System.Text.Json;
using Gateway.Tests.Infrastructure;
using Gateway.Usage;
using Microsoft.Extensions.Logging;
using Serilog;
using Serilog.Core;
using Serilog.Events;
using Serilog.Extensions.Logging;
using Serilog.Formatting.Compact;

namespace Gateway.Tests.Usage;

/// <summary>
/// The usage event is written straight into Serilog (not through the Microsoft.Extensions.Logging adapter, #15): the
/// CLEF line must stay what the adapter produced, field for field, and cost a fraction of it on the request thread.
/// </summary>
public sealed class UsageEventWriterTests
{
    private static readonly UsageEvent Sample = new("team-a", "responses.create", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", Stream: true,
        Background: false, 200, "completed", "resp_abc", 1200, 0, 8, 3, 1208, 0.000186m, "upstream", 53.977, 39.975, "gw-0123456789abcdef01234567",
        "req_6f4a", "POST", "/v1/responses", "default", 1, "0HNQEPJUG4LFL");

    [Fact]
    public void Write_SameEventAsTheLoggingAdapter_EveryPropertyInOrderWithTheSameValue()
    {
        var direct = new CapturingSink();
        new UsageEventWriter(Logger(direct)).Write(Sample);

        // What the [LoggerMessage] path wrote: its state (every argument by name, then the template) through Serilog's
        // logging adapter, inside the connection scope Kestrel opens.
        var adapted = new CapturingSink();
        using (var factory = new SerilogLoggerFactory(Logger(adapted)))
        {
            WriteThroughAdapter(factory.CreateLogger(UsageEventWriter.SourceContext), Sample);
        }

        var expected = WithoutTimestamp(adapted.Lines.Single());
        var actual = WithoutTimestamp(direct.Lines.Single());
        Assert.Equal(expected.Select(p => p.Name), actual.Select(p => p.Name));
        Assert.Equal(expected.Select(p => p.Value.GetRawText()), actual.Select(p => p.Value.GetRawText()));
        Assert.Contains(actual, p => p.Name == "ConnectionId");
    }

    [Fact]
    public void Write_NullsAndLargeNumbers_WrittenAsJsonNullsAndExactNumbers()
    {
        var sink = new CapturingSink();
        new UsageEventWriter(Logger(sink)).Write(Sample with
        {
            Model = null,
            ResponseId = null,
            InputTokens = 5_000_000_000,
            CachedInputTokens = null,
            CostUsd = null,
            TimeToFirstByteMs = null,
            StatusCode = 999,
            Attempts = 700,
            Method = "PATCH",
            ConnectionId = null,
        });

        using var line = JsonDocument.Parse(sink.Lines.Single());
        var e = line.RootElement;
        Assert.Equal(JsonValueKind.Null, e.GetProperty("Model").ValueKind);
        Assert.Equal(JsonValueKind.Null, e.GetProperty("CachedInputTokens").ValueKind);
        Assert.Equal(JsonValueKind.Null, e.GetProperty("CostUsd").ValueKind);
        Assert.Equal(JsonValueKind.Null, e.GetProperty("TimeToFirstByteMs").ValueKind);
        Assert.Equal(5_000_000_000, e.GetProperty("InputTokens").GetInt64());
        Assert.Equal(999, e.GetProperty("StatusCode").GetInt32());
        Assert.Equal(700, e.GetProperty("Attempts").GetInt32());
        Assert.Equal("PATCH", e.GetProperty("Method").GetString());
        Assert.False(e.TryGetProperty("ConnectionId", out _));
    }

    [Fact]
    public void Write_OneEvent_AllocatesLessThanHalfOfTheLoggingAdapterPath()
    {
        var sink = new CountingSink();
        var writer = new UsageEventWriter(Logger(sink));
        var direct = AllocatedPerCall(() => writer.Write(Sample));

        using var factory = new SerilogLoggerFactory(Logger(sink));
        var logger = factory.CreateLogger(UsageEventWriter.SourceContext);
        var adapted = AllocatedPerCall(() => WriteThroughAdapter(logger, Sample));

        Assert.Equal(400, sink.Count);
        Assert.InRange(direct, 1, adapted / 2);
    }

    [Fact]
    public void Write_CategoryOverriddenToWarning_NothingWritten()
    {
        var sink = new CountingSink();
        var logger = new LoggerConfiguration().MinimumLevel.Information()
            .MinimumLevel.Override("Gateway.Usage", LogEventLevel.Warning)
            .WriteTo.Sink(sink).CreateLogger();
        var writer = new UsageEventWriter(logger);

        writer.Write(Sample);

        Assert.False(writer.IsEnabled);
        Assert.Equal(0, sink.Count);
    }

    [Fact]
    public async Task Gateway_UsageEvent_CarriesSourceContextAndConnectionId()
    {
        await using var upstream = await FakeUpstream.FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl);
        using var client = gateway.CreateClient();
        using var response = await client.PostAsync("responses", new StringContent("""{"model":"gpt-4o-mini","input":"hi"}""", System.Text.Encoding.UTF8, "application/json"));

        var usage = await UsageEvents.OfAsync(gateway, response);

        Assert.Equal(UsageEventWriter.SourceContext, UsageEvents.Text(usage, "SourceContext"));
        Assert.False(string.IsNullOrEmpty(UsageEvents.Text(usage, "ConnectionId")));
        Assert.Equal(UsageEventWriter.MessageTemplateText, UsageEvents.Text(usage, "@mt"));
    }

    private static long AllocatedPerCall(Action write)
    {
        for (var i = 0; i < 100; i++)
        {
            write();
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            write();
        }

        return (GC.GetAllocatedBytesForCurrentThread() - before) / 100;
    }

    /// <summary>What <c>[LoggerMessage]</c> generated code hands the logger: the arguments by name in order, then the template.</summary>
    private static void WriteThroughAdapter(Microsoft.Extensions.Logging.ILogger logger, UsageEvent s)
    {
        using var scope = logger.BeginScope(new Dictionary<string, object> { ["ConnectionId"] = s.ConnectionId! });
        List<KeyValuePair<string, object?>> state =
        [
            new("Tenant", s.Tenant), new("Endpoint", s.Endpoint), new("RequestedModel", s.RequestedModel), new("Model", s.Model),
            new("Stream", s.Stream), new("Background", s.Background), new("StatusCode", s.StatusCode), new("Outcome", s.Outcome),
            new("ResponseId", s.ResponseId), new("InputTokens", s.InputTokens), new("CachedInputTokens", s.CachedInputTokens),
            new("OutputTokens", s.OutputTokens), new("ReasoningTokens", s.ReasoningTokens), new("TotalTokens", s.TotalTokens),
            new("CostUsd", s.CostUsd), new("UsageSource", s.UsageSource), new("DurationMs", s.DurationMs),
            new("TimeToFirstByteMs", s.TimeToFirstByteMs), new("RequestId", s.RequestId), new("UpstreamRequestId", s.UpstreamRequestId),
            new("Method", s.Method), new("Path", s.Path), new("Upstream", s.Upstream), new("Attempts", s.Attempts),
            new("{OriginalFormat}", UsageEventWriter.MessageTemplateText),
        ];
        logger.Log(Microsoft.Extensions.Logging.LogLevel.Information, new EventId(UsageEventLog.UsageEventId, "Usage"), state, null, static (_, _) => "");
    }

    private static Logger Logger(ILogEventSink sink) =>
        new LoggerConfiguration().MinimumLevel.Information().Enrich.FromLogContext().WriteTo.Sink(sink).CreateLogger();

    private static JsonProperty[] WithoutTimestamp(string line) =>
        [.. JsonDocument.Parse(line).RootElement.EnumerateObject().Where(p => p.Name != "@t")];

    private sealed class CapturingSink : ILogEventSink
    {
        private readonly CompactJsonFormatter _formatter = new();

        public List<string> Lines { get; } = [];

        public void Emit(LogEvent logEvent)
        {
            using var writer = new StringWriter();
            _formatter.Format(logEvent, writer);
            Lines.Add(writer.ToString().TrimEnd());
        }
    }

    private sealed class CountingSink : ILogEventSink
    {
        public int Count { get; private set; }

        public void Emit(LogEvent logEvent) => Count++;
    }
}
