using System.Net;
using Gateway.Upstreams;

namespace Gateway.Tests.Upstreams;

public sealed class UpstreamAttemptOutcomeTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 30, 8, 0, 0, TimeSpan.Zero);

    [Theory]
    [InlineData(429, 750.0)]
    [InlineData(503, 750.0)]
    [InlineData(500, 750.0)]
    [InlineData(200, null)] // OpenAI's 200s carry x-ratelimit-reset-*: nothing cools on them, so they are not parsed
    [InlineData(400, null)]
    [InlineData(401, null)]
    public void FromAnswer_HintOnlyWhereACooldownUsesIt(int status, double? expectedMs)
    {
        using var response = new HttpResponseMessage((HttpStatusCode)status);
        response.Headers.TryAddWithoutValidation("retry-after-ms", "750");
        response.Headers.TryAddWithoutValidation("x-ratelimit-reset-requests", "6m0s");

        var outcome = UpstreamAttemptOutcome.FromAnswer(response, Now);

        Assert.Equal(status, outcome.StatusCode);
        Assert.Equal(expectedMs is { } ms ? TimeSpan.FromMilliseconds(ms) : null, outcome.RetryHint);
    }
}
