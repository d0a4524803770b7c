using Gateway.Upstreams;

namespace Gateway.Tests.Upstreams;

public sealed class RetryHintTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 30, 8, 0, 0, TimeSpan.Zero);

    [Theory]
    [InlineData("retry-after-ms=1500", 1500)]
    [InlineData("retry-after-ms=20.5;retry-after=9", 20.5)]
    [InlineData("retry-after=2", 2000)]
    [InlineData("retry-after=Mon, 30 Nov 2026 08:00:07 GMT", 7000)]
    [InlineData("retry-after=Mon, 30 Nov 2026 07:59:00 GMT", 0)]
    [InlineData("x-ratelimit-reset-requests=20ms", 20)]
    [InlineData("x-ratelimit-reset-tokens=6m0s", 360000)]
    [InlineData("x-ratelimit-reset-requests=1s;x-ratelimit-reset-tokens=6m0s", 1000)]
    [InlineData("x-ratelimit-reset-requests=1s;x-ratelimit-reset-tokens=6m0s;x-ratelimit-remaining-tokens=0", 360000)]
    [InlineData("x-ratelimit-reset-requests=2s;x-ratelimit-reset-tokens=1.5s;x-ratelimit-remaining-requests=0", 2000)]
    [InlineData("x-ratelimit-reset-tokens=1m2.5s", 62500)]
    [InlineData("retry-after=86400000", 3600000)] // capped at an hour
    [InlineData("retry-after-ms=-5;retry-after=3", 3000)]
    public void Parse_Headers_WaitInMilliseconds(string headers, double expectedMs)
    {
        var values = headers.Split(';').Select(h => h.Split('=', 2)).ToDictionary(p => p[0], p => p[1], StringComparer.OrdinalIgnoreCase);

        var hint = RetryHint.Parse(name => values.GetValueOrDefault(name), Now);

        Assert.Equal(TimeSpan.FromMilliseconds(expectedMs), hint);
    }

    [Theory]
    [InlineData("")]
    [InlineData("retry-after=soon")]
    [InlineData("x-ratelimit-reset-requests=5 minutes")]
    [InlineData("x-ratelimit-reset-requests=1x")]
    public void Parse_NoUsableHint_Null(string headers)
    {
        var values = headers.Length == 0
            ? []
            : headers.Split(';').Select(h => h.Split('=', 2)).ToDictionary(p => p[0], p => p[1], StringComparer.OrdinalIgnoreCase);

        Assert.Null(RetryHint.Parse(name => values.GetValueOrDefault(name), Now));
    }

    [Theory]
    [InlineData("0s", 0)]
    [InlineData("20ms", 20)]
    [InlineData("6m0s", 360000)]
    [InlineData("1.5us", 0.0015)]
    [InlineData("250µs", 0.25)]
    public void TryParseGoDuration_GoForms_Parsed(string text, double expectedMs) =>
        Assert.Equal(TimeSpan.FromMilliseconds(expectedMs), RetryHint.TryParseGoDuration(text));

    [Fact]
    public void From_RealHttpResponse_ReadsRetryAfterMs()
    {
        using var response = new HttpResponseMessage(System.Net.HttpStatusCode.TooManyRequests);
        response.Headers.TryAddWithoutValidation("retry-after-ms", "750");
        response.Headers.TryAddWithoutValidation("retry-after", "1");

        Assert.Equal(TimeSpan.FromMilliseconds(750), RetryHint.From(response, Now));
    }
}
