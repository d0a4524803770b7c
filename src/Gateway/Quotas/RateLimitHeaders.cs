using System.Buffers;
using System.Globalization;
using System.Net.Http.Headers;

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

    /// <summary>
    /// Removes the upstream's <c>x-ratelimit-*</c> headers from its answer before they are copied to the client, so they
    /// are never added to the client's headers only to be removed again.
    /// </summary>
    public static void RemoveUpstream(HttpHeaders headers)
    {
        string[]? names = null;
        var count = 0;
        foreach (var header in headers.NonValidated)
        {
            if (header.Key.StartsWith("x-ratelimit-", StringComparison.OrdinalIgnoreCase))
            {
                names ??= ArrayPool<string>.Shared.Rent(headers.NonValidated.Count);
                names[count++] = header.Key;
            }
        }

        if (names is null)
        {
            return;
        }

        foreach (var name in names.AsSpan(0, count))
        {
            headers.Remove(name);
        }

        ArrayPool<string>.Shared.Return(names, clearArray: true);
    }

    public static void Apply(IHeaderDictionary headers, QuotaStatus? status)
    {
        if (status is null)
        {
            return;
        }

        if (status.RequestLimit is { } requestLimit)
        {
            headers[LimitRequests] = RequestLimitText.Of(requestLimit);
            headers[RemainingRequests] = Math.Max(0, status.RequestRemaining).ToString(CultureInfo.InvariantCulture);
            headers[ResetRequests] = RequestResetText.Of(ResetMilliseconds(status.RequestReset));
        }

        if (status.TokenLimit is { } tokenLimit)
        {
            headers[LimitTokens] = TokenLimitText.Of(tokenLimit);
            headers[RemainingTokens] = Math.Max(0, status.TokenRemaining).ToString(CultureInfo.InvariantCulture);
            headers[ResetTokens] = TokenResetText.Of(ResetMilliseconds(status.TokenReset));
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
        Span<char> text = stackalloc char[48];
        var length = 0;
        if (totalMs < 1000)
        {
            Append(text, ref length, totalMs);
            text[length++] = 'm';
            text[length++] = 's';
            return new string(text[..length]);
        }

        var hours = totalMs / 3_600_000;
        var minutes = totalMs / 60_000 % 60;
        var millis = totalMs % 60_000;
        if (hours > 0)
        {
            Append(text, ref length, hours);
            text[length++] = 'h';
        }

        if (hours > 0 || minutes > 0)
        {
            Append(text, ref length, minutes);
            text[length++] = 'm';
        }

        // Seconds with up to three decimals and no trailing zeros: 1s, 1.5s, 59.999s.
        Append(text, ref length, millis / 1000);
        var fraction = (int)(millis % 1000);
        if (fraction > 0)
        {
            text[length++] = '.';
            fraction.TryFormat(text[length..], out var written, "000", CultureInfo.InvariantCulture);
            length += written;
            while (text[length - 1] == '0')
            {
                length--;
            }
        }

        text[length++] = 's';
        return new string(text[..length]);
    }

    private static void Append(Span<char> text, ref int length, long value)
    {
        value.TryFormat(text[length..], out var written, provider: CultureInfo.InvariantCulture);
        length += written;
    }

    // Limits change only with the configuration; a reset is written to the millisecond (rounded up, as FormatDuration
    // does), so the requests of one millisecond share its text. Either way the text of the last value seen is reused.
    private static readonly LastText RequestResetText = new(FormatResetMilliseconds);
    private static readonly LastText TokenResetText = new(FormatResetMilliseconds);
    private static readonly LastText RequestLimitText = new(static limit => limit.ToString(CultureInfo.InvariantCulture));
    private static readonly LastText TokenLimitText = new(static limit => limit.ToString(CultureInfo.InvariantCulture));

    private static long ResetMilliseconds(TimeSpan reset) => reset <= TimeSpan.Zero ? 0 : (long)Math.Ceiling(reset.TotalMilliseconds);

    private static string FormatResetMilliseconds(long milliseconds) => FormatDuration(TimeSpan.FromMilliseconds(milliseconds));

    /// <summary>The text of one header value, formatted once and reused while the value stays the same.</summary>
    private sealed class LastText(Func<long, string> format)
    {
        private Entry? _last;

        public string Of(long value)
        {
            var last = _last;
            if (last is not null && last.Value == value)
            {
                return last.Text;
            }

            var entry = new Entry(value, format(value));
            _last = entry;
            return entry.Text;
        }

        private sealed record Entry(long Value, string Text);
    }
}
