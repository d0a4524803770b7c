using FakeUpstream;
using Gateway.Quotas;
using Gateway.Tests.Infrastructure;
using static Gateway.Tests.Quotas.QuotaTestKit;

namespace Gateway.Tests.Quotas;

public sealed class RateLimitHeadersTests
{
    /// <summary>The reset texts are reused within one millisecond: a later request, or a sub-millisecond step, still gets its own.</summary>
    [Fact]
    public async Task Reset_ClockMovedBetweenRequests_EachAnswerCarriesItsOwnReset()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        var clock = MidMinuteClock();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c => Limits(c, rpm: 1000, tpm: 1_000_000), UseClock(clock));
        using var client = gateway.CreateClient();
        var resets = new List<(string? Requests, string? Tokens)>();
        foreach (var step in new[] { 0, 1500, 0, 1, 250, 0 })
        {
            clock.Advance(TimeSpan.FromMilliseconds(step));
            using var response = await client.SendAsync(CreateResponse());
            response.EnsureSuccessStatusCode();
            resets.Add((Header(response, "x-ratelimit-reset-requests"), Header(response, "x-ratelimit-reset-tokens")));
        }

        string[] expected = ["29.75s", "28.25s", "28.25s", "28.249s", "27.999s", "27.999s"];
        Assert.Equal(expected, resets.Select(r => r.Requests));
        Assert.Equal(expected, resets.Select(r => r.Tokens));
    }

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
