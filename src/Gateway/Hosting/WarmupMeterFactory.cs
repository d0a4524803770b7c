using System.Diagnostics.Metrics;

namespace Gateway.Hosting;

/// <summary>
/// The warm-up gateway's meters. Meter listeners are process-wide: a meter named <c>Gateway</c> would be seen by the
/// real gateway's exporter (and by any other gateway in the process), so the warm-up's series could reach the real
/// <c>/metrics</c>. Every meter made here is renamed under <see cref="Prefix"/>, which only the warm-up's own
/// (discarded) meter provider listens to, so the recording code still runs and gets compiled.
/// </summary>
internal sealed class WarmupMeterFactory : IMeterFactory
{
    public const string Prefix = "Gateway.Warmup.";

    private readonly List<Meter> _meters = [];

    public Meter Create(MeterOptions options)
    {
        var meter = new Meter(new MeterOptions(Prefix + options.Name) { Version = options.Version, Tags = options.Tags, Scope = this });
        lock (_meters)
        {
            _meters.Add(meter);
        }

        return meter;
    }

    public void Dispose()
    {
        lock (_meters)
        {
            foreach (var meter in _meters)
            {
                meter.Dispose();
            }

            _meters.Clear();
        }
    }
}
