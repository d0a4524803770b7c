using System.Text;
using System.Text.Json;
using BenchmarkDotNet.Attributes;
using Gateway.Configuration;
using Gateway.Routing;
using Gateway.SharedState;
using Gateway.Tenants;
using Gateway.Usage;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging.Abstractions;

namespace Gateway.Benchmarks;

internal static class Fixtures
{
    public static string Root => Path.Combine(AppContext.BaseDirectory, "Fixtures", "openai-recordings");

    /// <summary>The exact SSE bytes of a recorded stream (ResponseBody strings concatenated).</summary>
    public static byte[] RecordedStream(string file)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, file)));
        var body = document.RootElement.GetProperty("Entries")[0].GetProperty("ResponseBody");
        return Encoding.UTF8.GetBytes(string.Concat(body.EnumerateArray().Select(s => s.GetString())));
    }

    public static byte[] RecordedJson(string file) =>
        Encoding.UTF8.GetBytes(JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, file))).RootElement.GetProperty("Entries")[0].GetProperty("ResponseBody").GetRawText());

    public static string RecordedRequest(string file) =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, file))).RootElement.GetProperty("Entries")[0].GetProperty("RequestBody").GetRawText();
}

/// <summary>The SSE usage tee over a real recorded Responses stream, fed in the chunks the network delivered (one per event).</summary>
[MemoryDiagnoser]
public class SseUsageTeeBenchmark
{
    private readonly TokenCounter _counter = new();
    private UsageObserver _observer = null!;
    private byte[][] _events = [];

    private UsageObserver _deltaObserver = null!;

    [GlobalSetup]
    public void Setup()
    {
        _observer = new UsageObserver(_counter);
        var stream = Fixtures.RecordedStream("ResponsesTests/StreamingResponses.json");
        var text = Encoding.UTF8.GetString(stream);
        _events = text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => Encoding.UTF8.GetBytes(e + "\n\n")).ToArray();
        _deltaObserver = new UsageObserver(_counter);
        _deltaObserver.Begin(BodyFormat.Sse, UsageShape.Responses, new ObservedUsage());
        foreach (var chunk in _events.Take(4))
        {
            _deltaObserver.Observe(chunk);
        }
    }

    /// <summary>Events in the recorded stream; divide the per-operation numbers by it for per-event cost.</summary>
    public int EventCount => _events.Length;

    [Benchmark(Description = "whole recorded stream (17 events)")]
    public long ObserveStream()
    {
        var usage = new ObservedUsage();
        _observer.Begin(BodyFormat.Sse, UsageShape.Responses, usage);
        foreach (var chunk in _events)
        {
            _observer.Observe(chunk);
        }

        var total = usage.TotalTokens ?? 0;
        _observer.Dispose();
        return total;
    }

    [Benchmark(Description = "one output_text.delta event, mid-stream (warm)")]
    public int ObserveDeltaEvent()
    {
        // The steady state of every stream: an open stream receiving one more text delta.
        _deltaObserver.Observe(_events[4]);
        return _events[4].Length;
    }
}

[MemoryDiagnoser]
public class JsonUsageParseBenchmark
{
    private readonly TokenCounter _counter = new();
    private UsageObserver _observer = null!;
    private byte[] _body = [];

    [GlobalSetup]
    public void Setup()
    {
        _observer = new UsageObserver(_counter);
        _body = Fixtures.RecordedJson("ResponsesTests/ResponsesWithReasoning.json");
    }

    [Benchmark(Description = "Responses JSON body usage")]
    public long ParseJsonUsage()
    {
        // As UsageObserverFactory.Attach begins a pooled observer: its own ObservedUsage, reset.
        _observer.Begin(BodyFormat.Json, UsageShape.Responses);
        _observer.Observe(_body);
        _observer.Complete();
        var total = _observer.Usage.ToReading().TotalTokens ?? 0;
        _observer.Dispose();
        return total;
    }
}

[MemoryDiagnoser]
public class TokenEstimateBenchmark
{
    private readonly TokenCounter _counter = new();
    private byte[] _small = [];
    private byte[] _conversation = [];

    [GlobalSetup]
    public void Setup()
    {
        _small = Encoding.UTF8.GetBytes(Fixtures.RecordedRequest("ResponsesTests/StreamingResponses.json"));
        _conversation = Encoding.UTF8.GetBytes(Fixtures.RecordedRequest("ResponsesTests/CanCompactConversation.json"));
    }

    [Benchmark(Description = "estimate: small Responses request")]
    public long EstimateSmall() => _counter.EstimateInput(_small, 64 * 1024);

    [Benchmark(Description = "estimate: multi-turn request (compact recording)")]
    public long EstimateConversation() => _counter.EstimateInput(_conversation, 64 * 1024);
}

[MemoryDiagnoser]
public class KeyLookupBenchmark
{
    private TenantDirectory _directory = null!;
    private string _key = "";

    [GlobalSetup]
    public void Setup()
    {
        var values = new Dictionary<string, string?> { ["Gateway:Upstream:ApiKey"] = "bench" };
        for (var i = 0; i < 1000; i++)
        {
            var key = $"gwk_bench_key_{i:D6}_padding_to_a_realistic_length";
            values[$"Gateway:Tenants:tenant-{i}:KeyHashes:0"] = GatewayKeyCommand.Hash(key);
            _key = key;
        }

        var configuration = new ConfigurationBuilder().AddInMemoryCollection(values).Build();
        var settings = new GatewaySettings(configuration, new GatewayOptionsValidator(configuration), NullLogger<GatewaySettings>.Instance);
        _directory = new TenantDirectory(settings, NullLogger<TenantDirectory>.Instance);
    }

    [Benchmark(Description = "key → tenant (1,000 tenants)")]
    public bool Lookup() => _directory.FindByKey(_key) is not null;
}

[MemoryDiagnoser]
public class QuotaAdmissionBenchmark
{
    private readonly MemoryStateStore _store = new(TimeProvider.System);
    private readonly TenantLimitsOptions _limits = new() { RequestsPerMinute = long.MaxValue, TokensPerMinute = long.MaxValue, TokensPerDay = long.MaxValue, TokensPerMonth = long.MaxValue, MaxConcurrentRequests = 1_000_000 };

    [Benchmark(Description = "admit + settle (memory store, all limits on)")]
    public async Task<bool> AdmitAndSettle()
    {
        var windows = QuotaWindows.At(DateTimeOffset.UtcNow);
        var admitted = await _store.AdmitAsync(new AdmissionRequest("tenant", _limits, 120, windows, "lease", TimeSpan.FromMinutes(15)), CancellationToken.None);
        var reservation = new Gateway.SharedState.QuotaReservation("tenant", 120, windows.Minute, windows.Day, windows.Month, "lease");
        return admitted.Decision == AdmissionDecision.Admitted
            && (await _store.SettleAsync(new SettleRequest("tenant", reservation, 100, null, null, TimeSpan.FromDays(1), TimeSpan.FromHours(1), windows), CancellationToken.None)).First;
    }
}
