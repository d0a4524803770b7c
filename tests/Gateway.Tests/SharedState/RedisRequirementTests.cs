using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.SharedState;

/// <summary>
/// A Redis test without redis-server must fail under CI=true (a skipped test would let CI pass without ever
/// running the Redis half of the suite) and may only skip locally.
/// </summary>
public sealed class RedisRequirementTests
{
    [Fact]
    public void RequireInstalled_MissingUnderCi_FailsTheTest()
    {
        var failure = Assert.Throws<Xunit.Sdk.FailException>(() => RedisServer.RequireInstalled(binaryPath: null, underCi: true));

        Assert.Contains("CI=true", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void RequireInstalled_MissingLocally_SkipsTheTest()
    {
        Assert.Throws<SkipException>(() => RedisServer.RequireInstalled(binaryPath: null, underCi: false));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void RequireInstalled_Present_Passes(bool underCi)
    {
        RedisServer.RequireInstalled("/usr/bin/redis-server", underCi);
    }
}
