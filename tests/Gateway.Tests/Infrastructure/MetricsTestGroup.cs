namespace Gateway.Tests.Infrastructure;

/// <summary>
/// Tests that read <c>/metrics</c> run alone. Several gateway hosts in one test process share the process-wide
/// <see cref="System.Diagnostics.Metrics.MeterListener"/> machinery of OpenTelemetry, and a host started while another
/// one is running was seen to export none of its own instruments. Production runs one host per process.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public static class MetricsTestGroup
{
    public const string Name = "Reads /metrics (not in parallel)";
}
