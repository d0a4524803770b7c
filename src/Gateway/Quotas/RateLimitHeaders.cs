using System.Globalization;
using System.Text;

namespace Gateway.Quotas;

/// <summary>
/// The tenant's own <c>x-ratelimit-*</c> headers, in OpenAI's format (Go durations such as <c>1s</c>, <c>6m0s</c>,
/// <c>20ms</c>). The upstream's are removed: they describe the whole organisation's key, not the tenant.
/// </summary>
internal static class RateLimitHeaders
{
    public const string LimitRequests = "x-ratelimit-limit-requests";
    public const string RemainingRequests = "x-ratelimit-remaining-requests";
    public const string ResetRequests = "x-ratelimit-reset-requests";
    public const string LimitTokens = "x-ratelimit-limit-tokens";
    public const string RemainingTokens = "x-ratelimit-remaining-tokens";
    public const string ResetTokens = "x-ratelimit-reset-tokens";

    public static void RemoveUpstream(IHeaderDictionary headers)
    {
        List<string>? names = null;
        foreach (var header in headers)
        {
            if (header.Key.StartsWith("x-ratelimit-", StringComparison.OrdinalIgnoreCase))
            {
                (names ??= []).Add(header.Key);
            }
        }

        if (names is not null)
        {
            foreach (var name in names)
            {
                headers.Remove(name);
            }
        }
    }

    public static void Apply(IHeaderDictionary headers, QuotaStatus? status)
    {
        if (status is null)
        {
            return;
        }

        if (status.RequestLimit is { } requestLimit)
        {
            headers[LimitRequests] = requestLimit.ToString(CultureInfo.InvariantCulture);
            headers[RemainingRequests] = Math.Max(0, status.RequestRemaining).ToString(CultureInfo.InvariantCulture);
            headers[ResetRequests] = FormatDuration(status.RequestReset);
        }

        if (status.TokenLimit is { } tokenLimit)
        {
            headers[LimitTokens] = tokenLimit.ToString(CultureInfo.InvariantCulture);
            headers[RemainingTokens] = Math.Max(0, status.TokenRemaining).ToString(CultureInfo.InvariantCulture);
            headers[ResetTokens] = FormatDuration(status.TokenReset);
        }
    }

    /// <summary>Go's time.Duration text, as OpenAI sends it: <c>20ms</c>, <c>1s</c>, <c>1.5s</c>, <c>6m0s</c>, <c>1h2m3s</c>.</summary>
    public static string FormatDuration(TimeSpan duration)
    {
        if (duration <= TimeSpan.Zero)
        {
            return "0s";
        }

        var totalMs = (long)Math.Ceiling(duration.TotalMilliseconds);
        if (totalMs < 1000)
        {
            return totalMs.ToString(CultureInfo.InvariantCulture) + "ms";
        }

        var builder = new StringBuilder();
        var hours = totalMs / 3_600_000;
        var minutes = totalMs / 60_000 % 60;
        var millis = totalMs % 60_000;
        if (hours > 0)
        {
            builder.Append(hours.ToString(CultureInfo.InvariantCulture)).Append('h');
        }

        if (hours > 0 || minutes > 0)
        {
            builder.Append(minutes.ToString(CultureInfo.InvariantCulture)).Append('m');
        }

        var seconds = millis / 1000m;
        builder.Append(seconds.ToString("0.###", CultureInfo.InvariantCulture)).Append('s');
        return builder.ToString();
    }
}
