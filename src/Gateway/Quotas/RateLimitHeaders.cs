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
            headers[ResetRequests] = RequestResetText.Of(status.RequestReset);
        }

        if (status.TokenLimit is { } tokenLimit)
        {
            headers[LimitTokens] = TokenLimitText.Of(tokenLimit);
            headers[RemainingTokens] = Math.Max(0, status.TokenRemaining).ToString(CultureInfo.InvariantCulture);
            headers[ResetTokens] = TokenResetText.Of(status.TokenReset);
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

    private static readonly ResetText RequestResetText = new();
    private static readonly ResetText TokenResetText = new();
    private static readonly LimitText RequestLimitText = new();
    private static readonly LimitText TokenLimitText = new();

    /// <summary>Limits change only with the configuration: the text of the last one seen is reused.</summary>
    private sealed class LimitText
    {
        private Entry? _last;

        public string Of(long limit)
        {
            var last = _last;
            if (last is not null && last.Value == limit)
            {
                return last.Text;
            }

            var entry = new Entry(limit, limit.ToString(CultureInfo.InvariantCulture));
            _last = entry;
            return entry.Text;
        }

        private sealed record Entry(long Value, string Text);
    }

    /// <summary>
    /// A reset is written to the millisecond (rounded up, as <see cref="FormatDuration"/> does), so the requests of one
    /// millisecond share its text: the last one is reused.
    /// </summary>
    private sealed class ResetText
    {
        private Entry? _last;

        public string Of(TimeSpan reset)
        {
            var milliseconds = reset <= TimeSpan.Zero ? 0 : (long)Math.Ceiling(reset.TotalMilliseconds);
            var last = _last;
            if (last is not null && last.Milliseconds == milliseconds)
            {
                return last.Text;
            }

            var entry = new Entry(milliseconds, FormatDuration(TimeSpan.FromMilliseconds(milliseconds)));
            _last = entry;
            return entry.Text;
        }

        private sealed record Entry(long Milliseconds, string Text);
    }
}
