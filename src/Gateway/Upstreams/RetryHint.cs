using System.Globalization;
using System.Net.Http.Headers;

namespace Gateway.Upstreams;

/// <summary>
/// How long an upstream asked us to wait: <c>retry-after-ms</c> (Azure OpenAI, OpenAI), else <c>retry-after</c>
/// (seconds or an HTTP date), else <c>x-ratelimit-reset-requests</c>/<c>-tokens</c> (Go durations such as
/// <c>1s</c>, <c>6m0s</c>, <c>20ms</c>): the one whose <c>x-ratelimit-remaining-*</c> is 0, else the shorter. Capped
/// at <see cref="Longest"/> so a broken or hostile upstream cannot park itself for days.
/// </summary>
internal static class RetryHint
{
    public static readonly TimeSpan Longest = TimeSpan.FromHours(1);

    public static TimeSpan? From(HttpResponseMessage response, DateTimeOffset now) =>
        Parse(name => response.Headers.TryGetValues(name, out var values) ? values.FirstOrDefault() : null, now);

    public static TimeSpan? From(IHeaderDictionary headers, DateTimeOffset now) =>
        Parse(name => headers.TryGetValue(name, out var values) && values.Count > 0 ? values[0] : null, now);

    public static TimeSpan? Parse(Func<string, string?> header, DateTimeOffset now)
    {
        if (double.TryParse(header("retry-after-ms"), NumberStyles.Float, CultureInfo.InvariantCulture, out var ms) && ms >= 0 && double.IsFinite(ms))
        {
            return Cap(TimeSpan.FromMilliseconds(Math.Min(ms, Longest.TotalMilliseconds)));
        }

        if (header("retry-after") is { } retryAfter)
        {
            if (double.TryParse(retryAfter, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) && seconds >= 0 && double.IsFinite(seconds))
            {
                return Cap(TimeSpan.FromSeconds(Math.Min(seconds, Longest.TotalSeconds)));
            }

            if (RetryConditionHeaderValue.TryParse(retryAfter, out var condition) && condition.Date is { } date)
            {
                return Cap(date - now);
            }
        }

        var requests = TryParseGoDuration(header("x-ratelimit-reset-requests"));
        var tokens = TryParseGoDuration(header("x-ratelimit-reset-tokens"));
        var requestsExhausted = header("x-ratelimit-remaining-requests") is "0";
        var tokensExhausted = header("x-ratelimit-remaining-tokens") is "0";
        var reset = (requests, tokens) switch
        {
            ({ } r, { } t) when requestsExhausted && tokensExhausted => r > t ? r : t,
            ({ } r, _) when requestsExhausted => r,
            (_, { } t) when tokensExhausted => t,
            ({ } r, { } t) => r < t ? r : t,
            ({ } r, null) => r,
            (null, { } t) => t,
            _ => (TimeSpan?)null,
        };
        return reset is { } value ? Cap(value) : null;
    }

    /// <summary>Go's <c>time.Duration.String()</c> form: <c>1h2m3.5s</c>, <c>6m0s</c>, <c>20ms</c>, <c>1.5us</c>, <c>0s</c>.</summary>
    public static TimeSpan? TryParseGoDuration(string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return null;
        }

        var span = text.AsSpan().Trim();
        double totalMs = 0;
        while (!span.IsEmpty)
        {
            var numberLength = 0;
            while (numberLength < span.Length && (char.IsAsciiDigit(span[numberLength]) || span[numberLength] == '.'))
            {
                numberLength++;
            }

            if (numberLength == 0 || !double.TryParse(span[..numberLength], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number))
            {
                return null;
            }

            span = span[numberLength..];
            var unitLength = 0;
            while (unitLength < span.Length && !char.IsAsciiDigit(span[unitLength]) && span[unitLength] != '.')
            {
                unitLength++;
            }

            double? unitMs = span[..unitLength] switch
            {
                "h" => 3_600_000,
                "m" => 60_000,
                "s" => 1_000,
                "ms" => 1,
                "us" or "µs" or "μs" => 0.001,
                "ns" => 0.000_001,
                _ => null,
            };
            if (unitMs is null)
            {
                return null;
            }

            totalMs += number * unitMs.Value;
            span = span[unitLength..];
        }

        return TimeSpan.FromMilliseconds(Math.Min(totalMs, Longest.TotalMilliseconds));
    }

    private static TimeSpan Cap(TimeSpan wait) => wait < TimeSpan.Zero ? TimeSpan.Zero : wait > Longest ? Longest : wait;
}
