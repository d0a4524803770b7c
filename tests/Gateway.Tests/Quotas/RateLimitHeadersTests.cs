using Gateway.Quotas;

namespace Gateway.Tests.Quotas;

public sealed class RateLimitHeadersTests
{
    [Theory]
    [InlineData(20, "20ms")]
    [InlineData(1000, "1s")]
    [InlineData(1500, "1.5s")]
    [InlineData(360_000, "6m0s")]
    [InlineData(3_723_000, "1h2m3s")]
    [InlineData(0, "0s")]
    [InlineData(999, "999ms")]
    [InlineData(1_050, "1.05s")]
    [InlineData(59_999, "59.999s")]
    [InlineData(61_001, "1m1.001s")]
    [InlineData(86_400_000, "24h0m0s")]
    public void FormatDuration_MatchesOpenAIGoDurations(int milliseconds, string expected)
    {
        Assert.Equal(expected, RateLimitHeaders.FormatDuration(TimeSpan.FromMilliseconds(milliseconds)));
    }
}
