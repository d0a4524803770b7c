using System.Buffers;
using System.Text.Json;
using BenchmarkDotNet.Attributes;
using Gateway.Observability;
using Gateway.Usage;
using Microsoft.Extensions.Logging;
using Serilog;
using Serilog.Core;
using Serilog.Events;
using Serilog.Extensions.Logging;
using Serilog.Formatting.Compact;

namespace Gateway.Benchmarks;

/// <summary>
/// The usage event on the request thread (#15): the former path (the [LoggerMessage] state through Serilog's logging
/// adapter, inside Kestrel's connection scope) against <see cref="UsageEventWriter"/>, both into a sink that keeps
/// nothing, so the figure is building and dispatching the event.
/// </summary>
[MemoryDiagnoser]
public class UsageEventWriteBenchmark
{
    private static readonly UsageEvent Sample = new("team-a", "responses.create", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", Stream: false,
        Background: false, 200, "completed", "resp_271123ef722a9d70f00b9f95d7b9816f503667c36768cafc", 10, 0, 8, 0, 18, 0.000006m, "upstream",
        80.541, 38.906, "gw-f7249699919467351cf38b37", "req_3451d748a9fce828f8c3fe1b94be5814", "POST", "/v1/responses", "default", 1, "0HNQEPJUG4LFL");

    private UsageEventWriter _writer = null!;
    private SerilogLoggerFactory _factory = null!;
    private Microsoft.Extensions.Logging.ILogger _adapted = null!;

    [GlobalSetup]
    public void Setup()
    {
        var logger = new LoggerConfiguration().MinimumLevel.Information().Enrich.FromLogContext().WriteTo.Sink(new DiscardingSink()).CreateLogger();
        _writer = new UsageEventWriter(logger);
        _factory = new SerilogLoggerFactory(logger);
        _adapted = _factory.CreateLogger(UsageEventWriter.SourceContext);
    }

    [GlobalCleanup]
    public void Cleanup() => _factory.Dispose();

    [Benchmark(Baseline = true, Description = "former: [LoggerMessage] through the logging adapter")]
    public void LoggingAdapter()
    {
        using var scope = _adapted.BeginScope(new ConnectionScope(Sample.ConnectionId!));
        FormerUsageLog.Usage(_adapted, Sample.Tenant, Sample.Endpoint, Sample.RequestedModel, Sample.Model, Sample.Stream, Sample.Background,
            Sample.StatusCode, Sample.Outcome, Sample.ResponseId, Sample.InputTokens, Sample.CachedInputTokens, Sample.OutputTokens,
            Sample.ReasoningTokens, Sample.TotalTokens, Sample.CostUsd, Sample.UsageSource, Sample.DurationMs, Sample.TimeToFirstByteMs,
            Sample.RequestId, Sample.UpstreamRequestId, Sample.Method, Sample.Path, Sample.Upstream, Sample.Attempts);
    }

    [Benchmark(Description = "UsageEventWriter")]
    public void Writer() => _writer.Write(Sample);

    private sealed class DiscardingSink : ILogEventSink
    {
        public void Emit(LogEvent logEvent)
        {
        }
    }

    /// <summary>What Kestrel's connection scope exposes to the adapter (a one-entry list).</summary>
    private sealed class ConnectionScope(string connectionId) : IReadOnlyList<KeyValuePair<string, object>>
    {
        public KeyValuePair<string, object> this[int index] => new("ConnectionId", connectionId);

        public int Count => 1;

        public IEnumerator<KeyValuePair<string, object>> GetEnumerator()
        {
            yield return this[0];
        }

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }
}

/// <summary>The usage event as it was declared before #15, kept here only as the benchmark's baseline.</summary>
internal static partial class FormerUsageLog
{
#pragma warning disable SYSLIB1015, CA1707, IDE1006
    [LoggerMessage(EventId = 1000, EventName = "Usage", Level = Microsoft.Extensions.Logging.LogLevel.Information,
        Message = "{Tenant} {Endpoint} {StatusCode} {Outcome}: {TotalTokens} tokens ({UsageSource}) in {DurationMs} ms")]
    public static partial void Usage(Microsoft.Extensions.Logging.ILogger logger, string Tenant, string Endpoint, string? RequestedModel, string? Model,
        bool Stream, bool Background, int StatusCode, string Outcome, string? ResponseId, long? InputTokens, long? CachedInputTokens,
        long? OutputTokens, long? ReasoningTokens, long? TotalTokens, decimal? CostUsd, string UsageSource, double DurationMs,
        double? TimeToFirstByteMs, string RequestId, string? UpstreamRequestId, string Method, string Path, string? Upstream, int Attempts);
#pragma warning restore SYSLIB1015, CA1707, IDE1006
}

/// <summary>One usage event to CLEF bytes on the sink's batch thread: CompactJsonFormatter + UTF-8 encoding vs <see cref="ClefWriter"/>.</summary>
[MemoryDiagnoser]
public class ClefFormatBenchmark
{
    private readonly CompactJsonFormatter _formatter = new();
    private readonly StringWriter _text = new();
    private readonly ArrayBufferWriter<byte> _bytes = new(4096);
    private readonly ClefWriter _clef = new();
    private readonly FormerClefWriter _former = new();
    private Utf8JsonWriter _json = null!;
    private LogEvent _event = null!;

    [GlobalSetup]
    public void Setup()
    {
        var capture = new CapturingSink();
        var logger = new LoggerConfiguration().MinimumLevel.Information().WriteTo.Sink(capture).CreateLogger();
        new UsageEventWriter(logger).Write(new UsageEvent("team-a", "responses.create", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", false, false,
            200, "completed", "resp_271123ef722a9d70f00b9f95d7b9816f503667c36768cafc", 10, 0, 8, 0, 18, 0.000006m, "upstream", 80.541, 38.906,
            "gw-f7249699919467351cf38b37", "req_3451d748a9fce828f8c3fe1b94be5814", "POST", "/v1/responses", "default", 1, "0HNQEPJUG4LFL"));
        _event = capture.Last!;
        _json = new Utf8JsonWriter(_bytes, ClefWriter.WriterOptions);
    }

    [Benchmark(Baseline = true, Description = "former: CompactJsonFormatter, then UTF-8")]
    public int Formatter()
    {
        _text.GetStringBuilder().Clear();
        _formatter.Format(_event, _text);
        _bytes.ResetWrittenCount();
        var sb = _text.GetStringBuilder();
        var written = 0;
        foreach (var chunk in sb.GetChunks())
        {
            written += System.Text.Encoding.UTF8.GetBytes(chunk.Span, _bytes.GetSpan(chunk.Length * 3));
        }

        return written;
    }

    [Benchmark(Description = "ClefWriter")]
    public long Writer()
    {
        _bytes.ResetWrittenCount();
        _json.Reset(_bytes);
        _clef.TryWrite(_event, _json);
        _json.Flush();
        return _json.BytesCommitted;
    }

    [Benchmark(Description = "ClefWriter before the sixth pass (check, then write; names encoded per line)")]
    public long FormerWriter()
    {
        _bytes.ResetWrittenCount();
        _json.Reset(_bytes);
        _former.TryWrite(_event, _json);
        _json.Flush();
        return _json.BytesCommitted;
    }

    /// <summary>The bytes both writers produce for the sample event, to check they are the same before timing them.</summary>
    public (byte[] Current, byte[] Former) Lines()
    {
        Writer();
        var current = _bytes.WrittenSpan.ToArray();
        FormerWriter();
        return (current, _bytes.WrittenSpan.ToArray());
    }

    private sealed class CapturingSink : ILogEventSink
    {
        public LogEvent? Last { get; private set; }

        public void Emit(LogEvent logEvent) => Last = logEvent;
    }
}

/// <summary>
/// <c>--interleaved-clef</c>: the usage event's CLEF line, this writer and the former one timed in alternation, sample by
/// sample, so the machine's other load hits both alike (BenchmarkDotNet's separate runs are swamped by it on a shared machine).
/// </summary>
internal static class InterleavedClefComparison
{
    public static void Run()
    {
        var benchmark = new ClefFormatBenchmark();
        benchmark.Setup();
        var (current, former) = benchmark.Lines();
        if (!current.AsSpan().SequenceEqual(former))
        {
            throw new InvalidOperationException("the two writers wrote different lines");
        }

        // Until both are fully optimised (tiered compilation, PGO): the first second runs instrumented code.
        var warmUp = System.Diagnostics.Stopwatch.StartNew();
        while (warmUp.Elapsed < TimeSpan.FromSeconds(3))
        {
            Time(() => benchmark.Writer());
            Time(() => benchmark.FormerWriter());
        }

        var now = new List<double>();
        var before = new List<double>();
        for (var sample = 0; sample < 400; sample++)
        {
            now.Add(Time(() => benchmark.Writer()));
            before.Add(Time(() => benchmark.FormerWriter()));
        }

        now.Sort();
        before.Sort();
        Console.WriteLine(FormattableString.Invariant(
            $"usage event line ({current.Length} B): writer min {now[0]:F3} median {now[200]:F3} µs; former min {before[0]:F3} median {before[200]:F3} µs; ratio of medians {now[200] / before[200]:F2}"));
    }

    private static double Time(Func<long> write)
    {
        const int Operations = 500;
        var start = System.Diagnostics.Stopwatch.GetTimestamp();
        for (var i = 0; i < Operations; i++)
        {
            write();
        }

        return System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalMicroseconds / Operations;
    }
}
