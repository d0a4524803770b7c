using System.Globalization;
using System.Text.RegularExpressions;
using Gateway.Configuration;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Hosting;

/// <summary>
/// The port opens only after the start-up warm-up, so the probes that wait for it must outlast its cap with room for
/// the rest of the start on a slow node: otherwise a warm-up would get the pod killed or the container marked unhealthy.
/// </summary>
public sealed partial class WarmupProbeBudgetTests
{
    /// <summary>The warm-up's cap, plus as much again for the start around it, plus 10 s.</summary>
    private static readonly double RequiredSeconds = (2 * WarmupOptions.DefaultMaxSeconds) + 10;

    [Fact]
    public void KubernetesStartupProbe_Budget_OutlastsTheWarmupCap()
    {
        var deployment = RepositoryPaths.Read("deploy/base/deployment.yaml");

        var probe = StartupProbe().Match(deployment);

        Assert.True(probe.Success, "deploy/base/deployment.yaml has no startupProbe with periodSeconds and failureThreshold");
        var budget = int.Parse(probe.Groups["period"].Value, CultureInfo.InvariantCulture) * int.Parse(probe.Groups["failures"].Value, CultureInfo.InvariantCulture);
        Assert.True(budget >= RequiredSeconds, $"the startup probe allows {budget} s; the warm-up alone may take {WarmupOptions.DefaultMaxSeconds} s");
    }

    [Fact]
    public void ComposeHealthcheck_StartPeriod_OutlastsTheWarmupCap()
    {
        var compose = RepositoryPaths.Read("docker-compose.yml");

        var startPeriod = StartPeriod().Match(compose);

        Assert.True(startPeriod.Success, "docker-compose.yml's gateway healthcheck has no start_period");
        Assert.True(int.Parse(startPeriod.Groups["seconds"].Value, CultureInfo.InvariantCulture) >= RequiredSeconds,
            $"start_period {startPeriod.Groups["seconds"].Value}s; the warm-up alone may take {WarmupOptions.DefaultMaxSeconds} s");
    }

    [GeneratedRegex(@"startupProbe:(?:\n\s+[^\n]*)*?\n\s+periodSeconds: (?<period>\d+)\n\s+failureThreshold: (?<failures>\d+)")]
    private static partial Regex StartupProbe();

    [GeneratedRegex(@"Gateway\.dll"", ""probe""[^\n]*\n(?:\s+[^\n]*\n)*?\s+start_period: (?<seconds>\d+)s")]
    private static partial Regex StartPeriod();
}
