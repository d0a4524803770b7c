using BenchmarkDotNet.Attributes;
using Gateway.SharedState;

namespace Gateway.Benchmarks;

/// <summary>
/// One sweep of the memory store's records when none has expired yet (the usual minute: owners kept 45 days): records in
/// write order of expiry (the sweep stops at the first live one) against the same records behind one written out of
/// order (the walk of every record, as every sweep did before the fifth pass of #15).
/// </summary>
[MemoryDiagnoser]
public class ExpiringRecordsSweepBenchmark
{
    private static readonly DateTimeOffset Now = new(2031, 3, 12, 10, 15, 30, TimeSpan.Zero);

    private ExpiringRecords<string, string> _inOrder = null!;
    private ExpiringRecords<string, string> _outOfOrder = null!;

    [Params(100_000)]
    public int Records { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _inOrder = new(() => Records + 1, () => { });
        _outOfOrder = new(() => Records + 1, () => { });
        _outOfOrder.Set("conversation", "tenant", DateTimeOffset.MaxValue, Now); // never expires: every later write is out of order
        for (var i = 0; i < Records; i++)
        {
            var id = "resp_" + i.ToString("D48", System.Globalization.CultureInfo.InvariantCulture);
            _inOrder.Set(id, "tenant", Now.AddDays(45).AddTicks(i), Now);
            _outOfOrder.Set(id, "tenant", Now.AddDays(45).AddTicks(i), Now);
        }
    }

    [Benchmark(Description = "sweep, expiry in write order (stops at the first live record)")]
    public int SweepInOrder()
    {
        _inOrder.RemoveExpired(Now.AddMinutes(1));
        return _inOrder.Count;
    }

    [Benchmark(Description = "sweep, order broken (walks every record, the former sweep)", Baseline = true)]
    public int SweepWalk()
    {
        _outOfOrder.RemoveExpired(Now.AddMinutes(1));
        return _outOfOrder.Count;
    }
}
