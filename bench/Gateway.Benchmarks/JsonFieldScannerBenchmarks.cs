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
