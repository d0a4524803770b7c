using System.Text;
using System.Text.Json;
using BenchmarkDotNet.Attributes;
using Gateway.Tests.Usage;
using Gateway.Usage;

namespace Gateway.Benchmarks;

/// <summary>
/// The response tee's JSON scanner alone, on recorded answers: the shipped scanner against the algorithm before the
/// vectorised skips (#15, fifth pass; the test project's oracle, linked here as the baseline). Per whole answer.
/// </summary>
[MemoryDiagnoser]
public class JsonFieldScannerBenchmark
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    private readonly JsonFieldScanner _scanner = new();
    private readonly ReferenceJsonFieldScanner _reference = new();
    private byte[] _compact = [];
    private byte[] _indented = [];
    private byte[][] _events = [];

    [GlobalSetup]
    public void Setup()
    {
        _compact = Fixtures.RecordedJson("ResponsesTests/ResponsesWithReasoning.json");
        _indented = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(JsonDocument.Parse(_compact).RootElement, Indented));
        var stream = Encoding.UTF8.GetString(Fixtures.RecordedStream("ResponsesTests/StreamingResponses.json"));
        _events = stream.Split('\n').Where(l => l.StartsWith("data: {", StringComparison.Ordinal)).Select(l => Encoding.UTF8.GetBytes(l[6..])).ToArray();
    }

    [Benchmark(Description = "scanner: Responses body, compact (3 KB)")]
    public bool Compact() => Scan(_compact);

    [Benchmark(Description = "former scanner: Responses body, compact (3 KB)", Baseline = true)]
    public bool CompactFormer() => ScanFormer(_compact);

    [Benchmark(Description = "scanner: Responses body, indented as the API sends it")]
    public bool IndentedBody() => Scan(_indented);

    [Benchmark(Description = "former scanner: Responses body, indented")]
    public bool IndentedFormer() => ScanFormer(_indented);

    [Benchmark(Description = "scanner: the 17 events of a recorded stream")]
    public bool Stream()
    {
        var complete = true;
        foreach (var e in _events)
        {
            complete &= Scan(e);
        }

        return complete;
    }

    [Benchmark(Description = "former scanner: the 17 events of a recorded stream")]
    public bool StreamFormer()
    {
        var complete = true;
        foreach (var e in _events)
        {
            complete &= ScanFormer(e);
        }

        return complete;
    }

    private bool Scan(byte[] document)
    {
        _scanner.Reset();
        _scanner.Feed(document);
        return _scanner.IsComplete;
    }

    private bool ScanFormer(byte[] document)
    {
        _reference.Reset();
        _reference.Feed(document);
        return _reference.IsComplete;
    }
}

/// <summary>
/// The same comparison without BenchmarkDotNet, for a shared machine: the two scanners measured in alternation, sample by
/// sample, so whatever else runs hits both alike; the minimum and median per answer of each.
/// <c>dotnet run -c Release --project bench/Gateway.Benchmarks -- --interleaved-scanner</c>
/// </summary>
internal static class InterleavedScannerComparison
{
    public static void Run()
    {
        var benchmark = new JsonFieldScannerBenchmark();
        benchmark.Setup();
        (string Name, Func<bool> Current, Func<bool> Former)[] cases =
        [
            ("Responses body, compact", benchmark.Compact, benchmark.CompactFormer),
            ("Responses body, indented", benchmark.IndentedBody, benchmark.IndentedFormer),
            ("17 events of a recorded stream", benchmark.Stream, benchmark.StreamFormer),
        ];
        foreach (var (name, current, former) in cases)
        {
            var now = new List<double>();
            var before = new List<double>();
            for (var sample = 0; sample < 400; sample++)
            {
                now.Add(Time(current));
                before.Add(Time(former));
            }

            now.Sort();
            before.Sort();
            Console.WriteLine(FormattableString.Invariant(
                $"{name}: scanner min {now[0]:F3} median {now[200]:F3} µs; former min {before[0]:F3} median {before[200]:F3} µs; ratio of medians {now[200] / before[200]:F2}"));
        }
    }

    private static double Time(Func<bool> scan)
    {
        const int Operations = 500;
        var start = System.Diagnostics.Stopwatch.GetTimestamp();
        for (var i = 0; i < Operations; i++)
        {
            scan();
        }

        return System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalMicroseconds / Operations;
    }
}
