using Gateway.SharedState;

namespace Gateway.Tests.SharedState;

public sealed class QuotaWindowsTests
{
    [Fact]
    public void At_MidMinute_WindowsAndTimeUntilEachReset()
    {
        var now = new DateTimeOffset(2031, 3, 12, 10, 15, 30, 250, TimeSpan.Zero);

        var w = QuotaWindows.At(now);

        Assert.Equal(now.ToUnixTimeSeconds() / 60, w.Minute);
        Assert.Equal(now.ToUnixTimeSeconds() / 86_400, w.Day);
        Assert.Equal((2031 * 12) + 2, w.Month);
        Assert.Equal(TimeSpan.FromMilliseconds(29_750), w.UntilMinuteEnd);
        Assert.Equal(new DateTimeOffset(2031, 3, 13, 0, 0, 0, TimeSpan.Zero) - now, w.UntilDayEnd);
        Assert.Equal(new DateTimeOffset(2031, 4, 1, 0, 0, 0, TimeSpan.Zero) - now, w.UntilMonthEnd);
    }

    [Fact]
    public void At_LocalOffset_UsesUtcWindows()
    {
        // 01:30 at +02:00 is 23:30 UTC the day before: the UTC day and month count, not the local ones.
        var local = new DateTimeOffset(2031, 4, 1, 1, 30, 0, TimeSpan.FromHours(2));

        var w = QuotaWindows.At(local);

        Assert.Equal(QuotaWindows.At(new DateTimeOffset(2031, 3, 31, 23, 30, 0, TimeSpan.Zero)), w);
        Assert.Equal((2031 * 12) + 2, w.Month); // March
        Assert.Equal(TimeSpan.FromMinutes(30), w.UntilDayEnd);
        Assert.Equal(TimeSpan.FromMinutes(30), w.UntilMonthEnd);
    }

    [Fact]
    public void At_Boundaries_EachWindowStartsExactlyAtItsBoundary()
    {
        var lastInstant = new DateTimeOffset(2031, 12, 31, 23, 59, 59, 999, TimeSpan.Zero);
        var before = QuotaWindows.At(lastInstant);
        var after = QuotaWindows.At(lastInstant.AddMilliseconds(1));

        Assert.Equal(before.Minute + 1, after.Minute);
        Assert.Equal(before.Day + 1, after.Day);
        Assert.Equal(before.Month + 1, after.Month); // December 2031 → January 2032
        Assert.Equal(TimeSpan.FromMilliseconds(1), before.UntilMonthEnd);
        Assert.Equal(TimeSpan.FromMinutes(1), after.UntilMinuteEnd);
        Assert.Equal(new DateTimeOffset(2032, 2, 1, 0, 0, 0, TimeSpan.Zero) - after.Now, after.UntilMonthEnd);
    }
}
