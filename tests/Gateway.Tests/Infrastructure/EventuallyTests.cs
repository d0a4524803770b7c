namespace Gateway.Tests.Infrastructure;

/// <summary>The polling helper every waiting test relies on: it returns as soon as the condition holds, and fails clearly when it never does.</summary>
public sealed class EventuallyTests
{
    [Fact]
    public async Task UntilAsync_ConditionHoldsAfterSomeProbes_ReturnsWithoutWaitingOutTheTimeout()
    {
        var probes = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();

        await Eventually.UntilAsync(() => ++probes == 3, "the third probe", TimeSpan.FromSeconds(30));

        Assert.Equal(3, probes);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"took {clock.Elapsed}");
    }

    [Fact]
    public async Task ValueAsync_ConditionNeverHolds_FailsNamingWhatWasAwaitedAndTheLastValue()
    {
        var probes = 0;

        var failure = await Assert.ThrowsAsync<Xunit.Sdk.FailException>(() =>
            Eventually.ValueAsync(() => Task.FromResult(++probes), n => n < 0, "a negative count", TimeSpan.FromMilliseconds(200)));

        Assert.Contains("waiting until a negative count", failure.Message, StringComparison.Ordinal);
        Assert.Contains($"Last value: {probes}", failure.Message, StringComparison.Ordinal);
        Assert.True(probes > 1, "polled once only");
    }

    [Fact]
    public async Task LastValueAsync_ConditionNeverHolds_ReturnsTheLastValueWithoutFailing()
    {
        var probes = 0;

        var last = await Eventually.LastValueAsync(() => ++probes, n => n < 0, TimeSpan.FromMilliseconds(100));

        Assert.Equal(probes, last);
    }
}
