using System.Diagnostics;

namespace Gateway.Tests.Infrastructure;

/// <summary>
/// The one way tests wait: poll a condition until it holds or a deadline passes, never sleep for a guessed time.
/// Polls quickly at first (most conditions hold within milliseconds) and backs off to <see cref="MaxPollInterval"/>
/// so a slow condition on a loaded machine does not burn the CPU it waits for. On timeout the failure says what was
/// awaited, for how long, and the last value seen.
/// </summary>
public static class Eventually
{
    /// <summary>Generous: CI machines run this suite beside other work; a healthy condition holds far sooner.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(30);

    private static readonly TimeSpan FirstPollInterval = TimeSpan.FromMilliseconds(10);
    private static readonly TimeSpan MaxPollInterval = TimeSpan.FromMilliseconds(200);

    /// <summary>Waits until <paramref name="condition"/> is true; fails the test with <paramref name="awaited"/> otherwise.</summary>
    public static Task UntilAsync(Func<bool> condition, string awaited, TimeSpan? timeout = null) =>
        UntilAsync(() => Task.FromResult(condition()), awaited, timeout);

    /// <summary>Waits until <paramref name="condition"/> is true; fails the test with <paramref name="awaited"/> otherwise.</summary>
    public static async Task UntilAsync(Func<Task<bool>> condition, string awaited, TimeSpan? timeout = null) =>
        await ValueAsync(condition, static done => done, awaited, timeout);

    /// <summary>
    /// Probes until <paramref name="done"/> holds for the probed value and returns that value; fails the test with
    /// <paramref name="awaited"/> and the last value otherwise.
    /// </summary>
    public static async Task<T> ValueAsync<T>(Func<Task<T>> probe, Func<T, bool> done, string awaited, TimeSpan? timeout = null)
    {
        var (reached, last, waited) = await PollAsync(probe, done, timeout ?? DefaultTimeout);
        if (!reached)
        {
            Assert.Fail($"Timed out after {waited.TotalSeconds:0.0} s waiting until {awaited}. Last value: {Describe(last)}");
        }

        return last;
    }

    /// <inheritdoc cref="ValueAsync{T}(Func{Task{T}}, Func{T, bool}, string, TimeSpan?)"/>
    public static Task<T> ValueAsync<T>(Func<T> probe, Func<T, bool> done, string awaited, TimeSpan? timeout = null) =>
        ValueAsync(() => Task.FromResult(probe()), done, awaited, timeout);

    /// <summary>
    /// Probes until <paramref name="done"/> holds or the deadline passes and returns the last value either way, for
    /// callers that assert on what is there (e.g. "at least N log events", reported with the events themselves).
    /// </summary>
    public static async Task<T> LastValueAsync<T>(Func<Task<T>> probe, Func<T, bool> done, TimeSpan? timeout = null) =>
        (await PollAsync(probe, done, timeout ?? DefaultTimeout)).Last;

    /// <inheritdoc cref="LastValueAsync{T}(Func{Task{T}}, Func{T, bool}, TimeSpan?)"/>
    public static Task<T> LastValueAsync<T>(Func<T> probe, Func<T, bool> done, TimeSpan? timeout = null) =>
        LastValueAsync(() => Task.FromResult(probe()), done, timeout);

    private static async Task<(bool Reached, T Last, TimeSpan Waited)> PollAsync<T>(Func<Task<T>> probe, Func<T, bool> done, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        var interval = FirstPollInterval;
        while (true)
        {
            var value = await probe();
            if (done(value))
            {
                return (true, value, clock.Elapsed);
            }

            if (clock.Elapsed >= timeout)
            {
                return (false, value, clock.Elapsed);
            }

            await Task.Delay(interval);
            interval = TimeSpan.FromTicks(Math.Min(interval.Ticks * 2, MaxPollInterval.Ticks));
        }
    }

    private static string Describe<T>(T value) => value switch
    {
        null => "null",
        string text => text.Length > 2000 ? text[..2000] + "…" : text,
        System.Collections.ICollection items => $"{items.Count} item(s)",
        _ => value.ToString() ?? "null",
    };
}
