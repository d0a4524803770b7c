using Gateway.Upstreams;
using Microsoft.Extensions.Logging;

namespace Gateway.Tests.Upstreams;

public sealed class UpstreamHealthTests
{
    [Fact]
    public void RateLimit_RetryAfterHint_CoolsThatModelUntilTheHintThenOneProbeDecides()
    {
        using var kit = new PoolTestKit(PoolTestKit.Config(["a", "b"]));
        var a = kit.Pool.Current.Find("a")!;
        kit.Report("a", "gpt-4o", UpstreamAttemptOutcome.Answered(429, TimeSpan.FromMilliseconds(1500)));

        kit.Time.Advance(TimeSpan.FromMilliseconds(1499));
        Assert.False(kit.Health.Availability("a", "gpt-4o").IsAvailable);
        Assert.True(kit.Health.Availability("a", "gpt-4o-mini").IsAvailable);

        kit.Time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.True(kit.Health.Availability("a", "gpt-4o").IsAvailable);
        var probe = kit.Health.TryBeginAttempt(a, "gpt-4o");
        Assert.NotNull(probe);
        Assert.True(probe.IsProbe);

        // Half-open: while the probe is out, nobody else is sent there.
        Assert.Null(kit.Health.TryBeginAttempt(a, "gpt-4o"));
        Assert.False(kit.Health.Availability("a", "gpt-4o").IsAvailable);

        kit.Health.Report(probe, UpstreamAttemptOutcome.Answered(200), kit.Routing);
        Assert.True(kit.Health.Availability("a", "gpt-4o").IsAvailable);
        Assert.False(kit.Health.TryBeginAttempt(a, "gpt-4o")!.IsProbe);
        Assert.Single(kit.Log.Named("UpstreamRecovered"));
        var cooling = Assert.Single(kit.Log.Named("UpstreamCoolingDown"));
        Assert.Contains("gpt-4o", cooling.Message, StringComparison.Ordinal);
        Assert.Contains("rate_limit", cooling.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void RateLimit_NoHint_CoolsForCooldownWithoutHint()
    {
        using var kit = new PoolTestKit(PoolTestKit.Config(["a", "b"], ("Gateway:Routing:CooldownWithoutHint", "00:00:04")));
        kit.Report("a", "gpt-4o", UpstreamAttemptOutcome.Answered(429));

        kit.Time.Advance(TimeSpan.FromSeconds(3.9));
        Assert.False(kit.Health.Availability("a", "gpt-4o").IsAvailable);
        kit.Time.Advance(TimeSpan.FromSeconds(0.1));
        Assert.True(kit.Health.Availability("a", "gpt-4o").IsAvailable);
    }

    [Fact]
    public void ProbeRateLimitedAgain_CoolsAgainForTheNewHint()
    {
        using var kit = new PoolTestKit(PoolTestKit.Config(["a", "b"]));
        kit.Report("a", "gpt-4o", UpstreamAttemptOutcome.Answered(429, TimeSpan.FromSeconds(1)));
        kit.Time.Advance(TimeSpan.FromSeconds(1));

        kit.Report("a", "gpt-4o", UpstreamAttemptOutcome.Answered(429, TimeSpan.FromSeconds(9)));

        kit.Time.Advance(TimeSpan.FromSeconds(8));
        Assert.False(kit.Health.Availability("a", "gpt-4o").IsAvailable);
        kit.Time.Advance(TimeSpan.FromSeconds(1));
        Assert.True(kit.Health.Availability("a", "gpt-4o").IsAvailable);
    }

    [Fact]
    public void ServerFailures_ConsecutiveUpToThreshold_CoolTheWholeUpstream()
    {
        using var kit = new PoolTestKit(PoolTestKit.Config(["a", "b"], ("Gateway:Routing:FailuresBeforeCooldown", "3")));
        kit.Report("a", "gpt-4o", UpstreamAttemptOutcome.Answered(503));
        kit.Report("a", "gpt-4o", UpstreamAttemptOutcome.ConnectFailed);
        kit.Report("a", "gpt-4o", UpstreamAttemptOutcome.Answered(200)); // a success resets the count
        kit.Report("a", "gpt-4o", UpstreamAttemptOutcome.Answered(500));
        kit.Report("a", "gpt-4o-mini", UpstreamAttemptOutcome.TimedOut);
        Assert.True(kit.Health.IsUsable("a"));

        kit.Report("a", "gpt-4o", UpstreamAttemptOutcome.Answered(502));

        Assert.False(kit.Health.IsUsable("a"));
        Assert.False(kit.Health.Availability("a", "any-model").IsAvailable);
        Assert.Equal(1, kit.Measure("gateway.upstream.cooldowns")["reason=failures,upstream=a"]);
    }

    [Fact]
    public void FailedProbe_CoolsAgainAtOnce()
    {
        using var kit = new PoolTestKit(PoolTestKit.Config(["a", "b"], ("Gateway:Routing:FailuresBeforeCooldown", "2")));
        kit.Report("a", null, UpstreamAttemptOutcome.Answered(500));
        kit.Report("a", null, UpstreamAttemptOutcome.Answered(500));
        kit.Time.Advance(kit.Routing.CooldownWithoutHint);
        Assert.True(kit.Health.IsUsable("a"));

        kit.Report("a", null, UpstreamAttemptOutcome.ConnectFailed); // the probe

        Assert.False(kit.Health.IsUsable("a"));
        Assert.Equal(2, kit.Log.Named("UpstreamCoolingDown").Count());
    }

    [Fact]
    public void AuthFailure_CoolsTheUpstreamAndLogsAtError()
    {
        using var kit = new PoolTestKit(PoolTestKit.Config(["a", "b"]));

        kit.Report("a", "gpt-4o", UpstreamAttemptOutcome.Answered(401));

        Assert.False(kit.Health.IsUsable("a"));
        var logged = Assert.Single(kit.Log.Named("UpstreamAuthRejected"));
        Assert.Equal(LogLevel.Error, logged.Level);
        Assert.DoesNotContain("sk-a", string.Join('\n', kit.Log.Events.Select(e => e.Message)), StringComparison.Ordinal);
    }

    [Fact]
    public void Forbidden_CoolsOnlyThatModel_UpstreamStaysAvailableToOthers()
    {
        // A tenant asking for a model our key may not use must not take the upstream away from everyone.
        using var kit = new PoolTestKit(PoolTestKit.Config(["a", "b"]));

        kit.Report("a", "o1-pro", UpstreamAttemptOutcome.Answered(403));

        Assert.True(kit.Health.IsUsable("a"));
        Assert.True(kit.Health.Availability("a", "gpt-4o").IsAvailable);
        Assert.False(kit.Health.Availability("a", "o1-pro").IsAvailable);
        Assert.Equal(LogLevel.Error, Assert.Single(kit.Log.Named("UpstreamAuthRejected")).Level);
    }

    [Fact]
    public async Task HalfOpen_ManyConcurrentRequests_ExactlyOneProbe()
    {
        using var kit = new PoolTestKit(PoolTestKit.Config(["a", "b"]));
        var a = kit.Pool.Current.Find("a")!;
        kit.Report("a", "gpt-4o", UpstreamAttemptOutcome.Answered(429, TimeSpan.FromSeconds(1)));
        kit.Time.Advance(TimeSpan.FromSeconds(1));

        using var start = new ManualResetEventSlim();
        var racers = Enumerable.Range(0, 64).Select(_ => Task.Run(() =>
        {
            start.Wait();
            return kit.Health.TryBeginAttempt(a, "gpt-4o");
        })).ToList();
        start.Set();
        var attempts = await Task.WhenAll(racers);

        Assert.Single(attempts, attempt => attempt is not null);
        Assert.True(attempts.Single(attempt => attempt is not null)!.IsProbe);
    }

    [Fact]
    public void AbandonedProbe_NextRequestMayProbe()
    {
        using var kit = new PoolTestKit(PoolTestKit.Config(["a", "b"]));
        var a = kit.Pool.Current.Find("a")!;
        kit.Report("a", "gpt-4o", UpstreamAttemptOutcome.Answered(429, TimeSpan.FromSeconds(1)));
        kit.Time.Advance(TimeSpan.FromSeconds(1));
        var probe = kit.Health.TryBeginAttempt(a, "gpt-4o")!;

        kit.Health.Abandon(probe);

        Assert.True(kit.Health.TryBeginAttempt(a, "gpt-4o")!.IsProbe);
    }

    [Fact]
    public void ProbeNeverReported_GivenUpAfterTheAttemptTimeout()
    {
        using var kit = new PoolTestKit(PoolTestKit.Config(["a", "b"]));
        var a = kit.Pool.Current.Find("a")!;
        kit.Report("a", "gpt-4o", UpstreamAttemptOutcome.Answered(429, TimeSpan.FromSeconds(1)));
        kit.Time.Advance(TimeSpan.FromSeconds(1));
        Assert.NotNull(kit.Health.TryBeginAttempt(a, "gpt-4o"));

        kit.Time.Advance(a.AttemptTimeout);

        Assert.NotNull(kit.Health.TryBeginAttempt(a, "gpt-4o"));
    }

    [Fact]
    public void Metrics_AttemptsCooldownsAndAvailability_ByUpstream()
    {
        using var kit = new PoolTestKit(PoolTestKit.Config(["a", "b"]));
        kit.Report("a", "gpt-4o", UpstreamAttemptOutcome.Answered(200));
        kit.Report("a", "gpt-4o", UpstreamAttemptOutcome.Answered(429));
        kit.Report("b", "gpt-4o", UpstreamAttemptOutcome.Answered(401));
        kit.Report("b", "gpt-4o", UpstreamAttemptOutcome.ConnectFailed); // still let through (forced), counted

        var requests = kit.Measure("gateway.upstream.requests");
        var cooldowns = kit.Measure("gateway.upstream.cooldowns");
        var available = kit.Measure("gateway.upstream.available");

        Assert.Equal(1, requests["status_class=2xx,upstream=a"]);
        Assert.Equal(1, requests["status_class=4xx,upstream=a"]);
        Assert.Equal(1, requests["status_class=4xx,upstream=b"]);
        Assert.Equal(1, requests["status_class=connect_failure,upstream=b"]);
        Assert.Equal(1, cooldowns["reason=rate_limit,upstream=a"]);
        Assert.Equal(1, cooldowns["reason=auth,upstream=b"]);
        Assert.Equal(1, available["upstream=a"]); // a 429 cools one model, not the upstream
        Assert.Equal(0, available["upstream=b"]);
    }
}
