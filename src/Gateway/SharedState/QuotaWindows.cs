namespace Gateway.SharedState;

/// <summary>
/// The fixed UTC windows quotas count in: the minute, the day (UTC midnight to midnight) and the calendar month.
/// Fixed windows are exact, cheap (one counter each) and identical in memory and in Redis; the price is that
/// a tenant can use up to twice a per-minute limit across a minute boundary (documented in docs/quotas.md).
/// </summary>
internal readonly record struct QuotaWindows(long Minute, long Day, long Month, DateTimeOffset Now)
{
    public static QuotaWindows At(DateTimeOffset now)
    {
        var utc = now.ToUniversalTime();
        var seconds = utc.ToUnixTimeSeconds();
        return new QuotaWindows(seconds / 60, seconds / 86_400, (utc.Year * 12L) + utc.Month - 1, utc);
    }

    public TimeSpan UntilMinuteEnd => DateTimeOffset.FromUnixTimeSeconds((Minute + 1) * 60) - Now;

    public TimeSpan UntilDayEnd => DateTimeOffset.FromUnixTimeSeconds((Day + 1) * 86_400) - Now;

    public TimeSpan UntilMonthEnd
    {
        get
        {
            var year = (int)(Month / 12);
            var month = (int)(Month % 12) + 1;
            return new DateTimeOffset(year, month, 1, 0, 0, 0, TimeSpan.Zero).AddMonths(1) - Now;
        }
    }

    // Counters outlive their window a little, so a late settle still finds them; then they expire by themselves.
    public static readonly TimeSpan MinuteTtl = TimeSpan.FromMinutes(3);
    public static readonly TimeSpan DayTtl = TimeSpan.FromDays(2);
    public static readonly TimeSpan MonthTtl = TimeSpan.FromDays(63);
}
