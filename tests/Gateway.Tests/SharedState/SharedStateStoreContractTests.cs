using Gateway.Configuration;
using Gateway.Quotas;
using Gateway.SharedState;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;
using StackExchange.Redis;

namespace Gateway.Tests.SharedState;

/// <summary>
/// The contract every <see cref="ISharedStateStore"/> must keep. The same tests run against the in-process
/// <see cref="MemoryStateStore"/> and against <see cref="RedisStateStore"/> on a real redis-server, so the two
/// cannot drift apart. Time is a <see cref="FakeTimeProvider"/> fed to the store through <see cref="QuotaWindows"/>;
/// expiries that Redis measures on its own clock (PX/PEXPIRE) are short and waited out for real.
/// </summary>
public abstract class SharedStateStoreContract
{
    private const string Tenant = "tenant-x";
    private static readonly TimeSpan LongTimeout = TimeSpan.FromMinutes(15);
    private static readonly TimeSpan LongRetention = TimeSpan.FromDays(45);

    private ISharedStateStore? _store;

    /// <summary>The clock of the current test; set by <see cref="StartAt"/>.</summary>
    protected FakeTimeProvider Time { get; private set; } = new(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));

    private protected ISharedStateStore Store => _store ?? throw new InvalidOperationException("Call StartAt first.");

    private QuotaWindows Now => QuotaWindows.At(Time.GetUtcNow());

    /// <summary>Creates a fresh, empty store whose clock is <paramref name="time"/>.</summary>
    private protected abstract Task<ISharedStateStore> CreateStoreAsync(FakeTimeProvider time);

    /// <summary>
    /// Lets <paramref name="span"/> pass for expiries: the fake clock moves (QuotaWindows, memory expiries) and, for a
    /// store whose keys expire on the server's own clock, real time passes too.
    /// </summary>
    protected virtual Task LetTimePassAsync(TimeSpan span)
    {
        Time.Advance(span);
        return Task.CompletedTask;
    }

    private async Task StartAt(DateTimeOffset utc)
    {
        Time = new FakeTimeProvider(utc);
        _store = await CreateStoreAsync(Time);
    }

    private static TenantLimitsOptions Limits(long rpm = 0, long tpm = 0, long tpd = 0, long tpmo = 0, long concurrent = 0) => new()
    {
        RequestsPerMinute = rpm,
        TokensPerMinute = tpm,
        TokensPerDay = tpd,
        TokensPerMonth = tpmo,
        MaxConcurrentRequests = concurrent,
    };

    /// <summary>Admits as QuotaService does and returns the decision and, when admitted, the reservation to settle.</summary>
    private async Task<(AdmissionResult Result, QuotaReservation? Reservation)> AdmitAsync(TenantLimitsOptions limits, long reserve = 0, string? leaseId = null, TimeSpan? leaseTimeout = null)
    {
        var windows = Now;
        leaseId ??= limits.MaxConcurrentRequests > 0 ? Guid.NewGuid().ToString("N") : "";
        var result = await Store.AdmitAsync(new AdmissionRequest(Tenant, limits, reserve, windows, leaseId, leaseTimeout ?? LongTimeout), CancellationToken.None);
        var reservation = result.Decision == AdmissionDecision.Admitted
            ? new QuotaReservation(Tenant, reserve, windows.Minute, windows.Day, windows.Month, leaseId.Length == 0 ? null : leaseId)
            : null;
        return (result, reservation);
    }

    private async Task<bool> SettleAsync(QuotaReservation? reservation, long billed, string? claim = null, string? hold = null, TimeSpan? claimRetention = null, TimeSpan? holdTimeout = null) =>
        (await SettleFullyAsync(reservation, billed, claim, hold, claimRetention, holdTimeout)).First;

    private Task<SettleResult> SettleFullyAsync(QuotaReservation? reservation, long billed, string? claim = null, string? hold = null, TimeSpan? claimRetention = null,
        TimeSpan? holdTimeout = null, long input = 0, bool estimated = false, string? conversation = null) =>
        Store.SettleAsync(new SettleRequest(Tenant, reservation, billed, claim, hold, claimRetention ?? LongRetention, holdTimeout ?? TimeSpan.FromHours(1), Now)
        {
            InputTokens = input,
            Estimated = estimated,
            ConversationId = conversation,
        }, CancellationToken.None).AsTask();

    private Task<QuotaCounters> CountersAsync(QuotaWindows? windows = null) =>
        Store.ReadCountersAsync(Tenant, windows ?? Now, CancellationToken.None).AsTask();

    // ---------------------------------------------------------------- requests per minute, windows

    [SkippableFact]
    public async Task Admit_RequestsPerMinute_AdmitsUpToTheLimitThenRefusesWithoutCounting()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        var limits = Limits(rpm: 3);

        for (var i = 1; i <= 3; i++)
        {
            var (admitted, _) = await AdmitAsync(limits);
            Assert.Equal(AdmissionDecision.Admitted, admitted.Decision);
            Assert.Equal(i, admitted.Counters.Requests); // the counters include the request just admitted
        }

        var (refused, _) = await AdmitAsync(limits);
        Assert.Equal(AdmissionDecision.RequestsPerMinute, refused.Decision);
        Assert.Equal(3, refused.Counters.Requests);
        Assert.Equal(3, (await CountersAsync()).Requests); // a refusal consumes nothing
    }

    [SkippableFact]
    public async Task Admit_TwoHundredAtOnce_AdmitsExactlyTheLimit()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        var limits = Limits(rpm: 50);

        var results = await Task.WhenAll(Enumerable.Range(0, 200).Select(_ => Task.Run(() => AdmitAsync(limits))));

        Assert.Equal(50, results.Count(r => r.Result.Decision == AdmissionDecision.Admitted));
        Assert.Equal(150, results.Count(r => r.Result.Decision == AdmissionDecision.RequestsPerMinute));
        Assert.Equal(50, (await CountersAsync()).Requests);
    }

    [SkippableFact]
    public async Task Admit_MinuteRollsOver_RequestAndTokenCountersStartAgain()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 59, TimeSpan.Zero).AddMilliseconds(500));
        var limits = Limits(rpm: 2, tpm: 100);
        Assert.Equal(AdmissionDecision.Admitted, (await AdmitAsync(limits, 60)).Result.Decision);
        Assert.Equal(AdmissionDecision.TokensPerMinute, (await AdmitAsync(limits, 60)).Result.Decision);
        Assert.Equal(AdmissionDecision.Admitted, (await AdmitAsync(limits, 40)).Result.Decision);
        Assert.Equal(AdmissionDecision.RequestsPerMinute, (await AdmitAsync(limits, 1)).Result.Decision);
        var before = Now;

        Time.Advance(TimeSpan.FromMilliseconds(500)); // 10:16:00.000, a new minute

        var (admitted, _) = await AdmitAsync(limits, 100);
        Assert.Equal(AdmissionDecision.Admitted, admitted.Decision);
        Assert.Equal(new QuotaCounters(1, 100, 200, 200, 0), admitted.Counters);
        Assert.Equal(new QuotaCounters(2, 100, 200, 200, 0), await CountersAsync(before)); // the old minute keeps its own counts
    }

    [SkippableFact]
    public async Task Admit_DayRollsOverAtUtcMidnight_DailyBudgetStartsAgainButMonthKeepsCounting()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 23, 59, 30, TimeSpan.Zero));
        var limits = Limits(tpd: 1000, tpmo: 5000);
        Assert.Equal(AdmissionDecision.Admitted, (await AdmitAsync(limits, 900)).Result.Decision);
        Time.Advance(TimeSpan.FromSeconds(20)); // 23:59:50, still the same day, a new minute is irrelevant for TPD
        Assert.Equal(AdmissionDecision.TokensPerDay, (await AdmitAsync(limits, 101)).Result.Decision);
        Assert.Equal(AdmissionDecision.Admitted, (await AdmitAsync(limits, 100)).Result.Decision);

        Time.Advance(TimeSpan.FromSeconds(10)); // 2031-03-13T00:00:00Z

        var (admitted, _) = await AdmitAsync(limits, 1000);
        Assert.Equal(AdmissionDecision.Admitted, admitted.Decision);
        Assert.Equal(1000, admitted.Counters.DayTokens);
        Assert.Equal(2000, admitted.Counters.MonthTokens);
    }

    [SkippableFact]
    public async Task Admit_MonthRollsOverOnTheFirstOfTheMonth_MonthlyBudgetStartsAgain()
    {
        await StartAt(new DateTimeOffset(2031, 12, 31, 23, 59, 45, TimeSpan.Zero)); // also a year boundary
        var limits = Limits(tpmo: 500);
        Assert.Equal(AdmissionDecision.Admitted, (await AdmitAsync(limits, 500)).Result.Decision);
        var (refused, _) = await AdmitAsync(limits, 1);
        Assert.Equal(AdmissionDecision.TokensPerMonth, refused.Decision);
        Assert.Equal(500, refused.Counters.MonthTokens);

        Time.Advance(TimeSpan.FromSeconds(15)); // 2032-01-01T00:00:00Z

        var (admitted, _) = await AdmitAsync(limits, 500);
        Assert.Equal(AdmissionDecision.Admitted, admitted.Decision);
        Assert.Equal(new QuotaCounters(1, 500, 500, 500, 0), admitted.Counters);
    }

    // ---------------------------------------------------------------- reserve, then reconcile

    [SkippableFact]
    public async Task Settle_BilledLessThanReserved_RefundsTheDifferenceInEveryWindow()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        var limits = Limits(tpm: 1000, tpd: 10_000, tpmo: 100_000);
        var (_, reservation) = await AdmitAsync(limits, 900);
        Assert.Equal(AdmissionDecision.TokensPerMinute, (await AdmitAsync(limits, 200)).Result.Decision);

        Assert.True(await SettleAsync(reservation, billed: 300));

        var counters = await CountersAsync();
        Assert.Equal((300L, 300L, 300L), (counters.MinuteTokens, counters.DayTokens, counters.MonthTokens));
        Assert.Equal(AdmissionDecision.Admitted, (await AdmitAsync(limits, 700)).Result.Decision); // exactly the refund fits
    }

    [SkippableFact]
    public async Task Settle_BilledMoreThanReserved_ChargesTheExtra()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        var limits = Limits(tpm: 1000, tpd: 1200);
        var (_, reservation) = await AdmitAsync(limits, 100);

        Assert.True(await SettleAsync(reservation, billed: 950));

        var counters = await CountersAsync();
        Assert.Equal((950L, 950L, 950L), (counters.MinuteTokens, counters.DayTokens, counters.MonthTokens));
        Assert.Equal(AdmissionDecision.TokensPerMinute, (await AdmitAsync(limits, 51)).Result.Decision);
        Assert.Equal(AdmissionDecision.Admitted, (await AdmitAsync(limits, 50)).Result.Decision);
    }

    /// <summary>A stream opened at 10:15:50 that ends at 10:16:10: its tokens were spent in the 10:16 minute, and count there.</summary>
    [SkippableFact]
    public async Task Settle_AfterTheMinuteChanged_RefundedWhereReservedChargedWhereSpent()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 50, TimeSpan.Zero));
        var limits = Limits(tpm: 1000);
        var admittedIn = Now;
        var (_, reservation) = await AdmitAsync(limits, 800);

        Time.Advance(TimeSpan.FromSeconds(20)); // 10:16:10; the stream ran across the minute boundary
        Assert.True(await SettleAsync(reservation, billed: 120));

        Assert.Equal(0, (await CountersAsync(admittedIn)).MinuteTokens);                // the reservation is gone from 10:15
        Assert.Equal(new QuotaCounters(0, 120, 120, 120, 0), await CountersAsync());    // the usage is in 10:16
        Assert.Equal(AdmissionDecision.TokensPerMinute, (await AdmitAsync(limits, 881)).Result.Decision);
        Assert.Equal(AdmissionDecision.Admitted, (await AdmitAsync(limits, 880)).Result.Decision);
    }

    [SkippableFact]
    public async Task Settle_StreamCrossesUtcMidnight_ChargedToTheNewDaysBudget()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 23, 59, 59, TimeSpan.Zero));
        var limits = Limits(tpd: 1000);
        var admittedIn = Now;
        var (_, reservation) = await AdmitAsync(limits, 900);

        Time.Advance(TimeSpan.FromSeconds(31)); // 2031-03-13T00:00:30Z
        Assert.True(await SettleAsync(reservation, billed: 400));

        Assert.Equal(0, (await CountersAsync(admittedIn)).DayTokens);
        Assert.Equal(400, (await CountersAsync()).DayTokens);
        Assert.Equal(AdmissionDecision.TokensPerDay, (await AdmitAsync(limits, 601)).Result.Decision);
    }

    [SkippableFact]
    public async Task Settle_DailyBudget_RefusedUntilReconcileFreesRoomThenAdmitted()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        var limits = Limits(tpd: 5000);
        var (_, first) = await AdmitAsync(limits, 4200);
        var (refused, _) = await AdmitAsync(limits, 4200);
        Assert.Equal(AdmissionDecision.TokensPerDay, refused.Decision);
        Assert.Equal(4200, refused.Counters.DayTokens);

        Assert.True(await SettleAsync(first, billed: 700));
        Time.Advance(TimeSpan.FromMinutes(5)); // a later minute of the same day

        var (admitted, _) = await AdmitAsync(limits, 4200);
        Assert.Equal(AdmissionDecision.Admitted, admitted.Decision);
        Assert.Equal(4900, admitted.Counters.DayTokens);
    }

    [SkippableFact]
    public async Task Admit_BudgetsAreCheckedAfterTheRateLimits_MonthlyBudgetRefusesLast()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        Assert.Equal(AdmissionDecision.Admitted, (await AdmitAsync(Limits(tpmo: 300), 250)).Result.Decision);

        Assert.Equal(AdmissionDecision.TokensPerMonth, (await AdmitAsync(Limits(tpm: 1000, tpd: 1000, tpmo: 300), 100)).Result.Decision);
        Assert.Equal(AdmissionDecision.TokensPerDay, (await AdmitAsync(Limits(tpm: 1000, tpd: 300, tpmo: 300), 100)).Result.Decision);
        Assert.Equal(AdmissionDecision.TokensPerMinute, (await AdmitAsync(Limits(tpm: 300, tpd: 300, tpmo: 300), 100)).Result.Decision);
        Assert.Equal(250, (await CountersAsync()).MonthTokens);
    }

    // ---------------------------------------------------------------- concurrency leases

    [SkippableFact]
    public async Task Settle_ReleasesTheConcurrencyLease_WhateverTheOutcome()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        var limits = Limits(concurrent: 2);
        var (_, succeeded) = await AdmitAsync(limits);
        var (_, failed) = await AdmitAsync(limits);
        var (refused, _) = await AdmitAsync(limits);
        Assert.Equal(AdmissionDecision.Concurrency, refused.Decision);
        Assert.Equal(2, refused.Counters.Concurrent);

        Assert.True(await SettleAsync(succeeded, billed: 42));      // success: usage billed
        Assert.Equal(1, (await CountersAsync()).Concurrent);
        Assert.True(await SettleAsync(failed, billed: 0));          // upstream error / client abort: nothing billed
        Assert.Equal(0, (await CountersAsync()).Concurrent);

        var (a, _) = await AdmitAsync(limits);
        var (b, _) = await AdmitAsync(limits);
        Assert.Equal((AdmissionDecision.Admitted, AdmissionDecision.Admitted), (a.Decision, b.Decision));
        Assert.Equal(2, b.Counters.Concurrent);
    }

    [SkippableFact]
    public async Task Admit_LeaseNeverSettled_ExpiresAfterTheLeaseTimeout()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        var limits = Limits(concurrent: 1);
        var timeout = TimeSpan.FromSeconds(5);
        Assert.Equal(AdmissionDecision.Admitted, (await AdmitAsync(limits, leaseTimeout: timeout)).Result.Decision); // its replica "dies"

        Time.Advance(TimeSpan.FromMilliseconds(4900));
        Assert.Equal(AdmissionDecision.Concurrency, (await AdmitAsync(limits, leaseTimeout: timeout)).Result.Decision);
        Assert.Equal(1, (await CountersAsync()).Concurrent);

        await LetTimePassAsync(TimeSpan.FromMilliseconds(200)); // past the first lease's expiry
        Assert.Equal(0, (await CountersAsync()).Concurrent);
        var (admitted, _) = await AdmitAsync(limits, leaseTimeout: timeout);
        Assert.Equal(AdmissionDecision.Admitted, admitted.Decision);
        Assert.Equal(1, admitted.Counters.Concurrent);
    }

    [SkippableFact]
    public async Task Admit_ConcurrencyIsCheckedFirst_AndARefusalTakesNoLease()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        Assert.Equal(AdmissionDecision.Admitted, (await AdmitAsync(Limits(rpm: 1, concurrent: 1))).Result.Decision);

        Assert.Equal(AdmissionDecision.Concurrency, (await AdmitAsync(Limits(rpm: 1, concurrent: 1))).Result.Decision);
        Assert.Equal(AdmissionDecision.RequestsPerMinute, (await AdmitAsync(Limits(rpm: 1, concurrent: 5))).Result.Decision);
        Assert.Equal(new QuotaCounters(1, 0, 0, 0, 1), await CountersAsync());
    }

    // ---------------------------------------------------------------- once per response id

    [SkippableFact]
    public async Task Settle_ClaimSameResponseIdTwice_OnlyTheFirstCounts()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        var limits = Limits(tpm: 10_000);

        Assert.True(await SettleAsync(null, billed: 77, claim: "resp_once"));   // without a reservation: charged to the current windows
        Assert.False(await SettleAsync(null, billed: 77, claim: "resp_once"));
        Assert.Equal(77, (await CountersAsync()).MinuteTokens);

        // A reserving request whose response id was already counted is charged nothing: its reservation is refunded.
        var (_, reservation) = await AdmitAsync(limits, 500);
        Assert.False(await SettleAsync(reservation, billed: 77, claim: "resp_once"));
        Assert.Equal(77, (await CountersAsync()).MinuteTokens);
        Assert.True(await SettleAsync(null, billed: 5, claim: "resp_other"));
        Assert.Equal(82, (await CountersAsync()).MinuteTokens);
    }

    [SkippableFact]
    public async Task Settle_ClaimMarkExpiresAfterItsRetention_ThenCountsAgain()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        var retention = TimeSpan.FromSeconds(1);
        Assert.True(await SettleAsync(null, billed: 1, claim: "resp_short", claimRetention: retention));
        Assert.False(await SettleAsync(null, billed: 1, claim: "resp_short", claimRetention: retention));

        await LetTimePassAsync(TimeSpan.FromMilliseconds(1300));

        Assert.True(await SettleAsync(null, billed: 1, claim: "resp_short", claimRetention: retention));
    }

    [SkippableFact]
    public async Task Settle_ConcurrentClaimsOfOneResponseId_ExactlyOneWins()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));

        var results = await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => Task.Run(() => SettleAsync(null, billed: 3, claim: "resp_race"))));

        Assert.Single(results, first => first);
        Assert.Equal(3, (await CountersAsync()).DayTokens);
    }

    // ---------------------------------------------------------------- background responses: held reservations

    [SkippableFact]
    public async Task Settle_HeldBackgroundReservation_IsReconciledOnTheFirstClaimOnly()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 50, TimeSpan.Zero));
        var limits = Limits(tpm: 1000, concurrent: 1);
        var admittedIn = Now;
        var (_, reservation) = await AdmitAsync(limits, 600);

        // The POST returned "queued": the reservation stays, the concurrency slot is freed.
        Assert.True(await SettleAsync(reservation, billed: 0, hold: "resp_bg"));
        var held = await CountersAsync();
        Assert.Equal((600L, 600L, 0L), (held.MinuteTokens, held.MonthTokens, held.Concurrent));

        // Later, in another minute, a GET sees it completed: the reservation is refunded in its windows, the usage charged now.
        Time.Advance(TimeSpan.FromSeconds(30));
        Assert.True(await SettleAsync(null, billed: 250, claim: "resp_bg"));
        Assert.Equal(0, (await CountersAsync(admittedIn)).MinuteTokens);
        Assert.Equal(new QuotaCounters(0, 250, 250, 250, 0), await CountersAsync());

        // Every later retrieval shows the same usage again and changes nothing.
        Assert.False(await SettleAsync(null, billed: 250, claim: "resp_bg"));
        Assert.Equal(0, (await CountersAsync(admittedIn)).MinuteTokens);
        Assert.Equal(new QuotaCounters(0, 250, 250, 250, 0), await CountersAsync());
    }

    /// <summary>
    /// The shape the gateway really produces: the GET that first sees the background response completed has an
    /// admission of its own (no tokens, a concurrency lease). The held reservation is replaced, the billed tokens are
    /// not charged a second time to the GET's own windows, and the GET's lease is released.
    /// </summary>
    [SkippableFact]
    public async Task Settle_HeldReservationClaimedByARequestWithItsOwnAdmission_ReconciledOnceNotChargedTwice()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 50, TimeSpan.Zero));
        var limits = Limits(tpm: 1000, concurrent: 2);
        var postedIn = Now;
        var (_, post) = await AdmitAsync(limits, 600);
        Assert.True(await SettleAsync(post, billed: 0, hold: "resp_bg2"));

        Time.Advance(TimeSpan.FromSeconds(30)); // the GET comes in the next minute
        var (_, get) = await AdmitAsync(limits, 0);
        Assert.True(await SettleAsync(get, billed: 250, claim: "resp_bg2"));

        Assert.Equal(0, (await CountersAsync(postedIn)).MinuteTokens);
        Assert.Equal(new QuotaCounters(1, 250, 250, 250, 0), await CountersAsync());

        var (_, again) = await AdmitAsync(limits, 0);
        Assert.False(await SettleAsync(again, billed: 250, claim: "resp_bg2"));
        Assert.Equal(new QuotaCounters(2, 250, 250, 250, 0), await CountersAsync());
    }

    [SkippableFact]
    public async Task Settle_HeldReservationTimedOut_ClaimedLater_TheKeptEstimateIsTheChargeNotChargedAgain()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        var limits = Limits(tpd: 10_000);
        var (_, post) = await AdmitAsync(limits, 600);
        Assert.True(await SettleAsync(post, billed: 0, hold: "resp_late", holdTimeout: TimeSpan.FromSeconds(1)));

        await LetTimePassAsync(TimeSpan.FromMilliseconds(1300));
        var (_, get) = await AdmitAsync(limits, 0);

        Assert.True(await SettleAsync(get, billed: 250, claim: "resp_late")); // logged once, as usual
        Assert.Equal(600, (await CountersAsync()).DayTokens);                  // 600, not 850
    }

    [SkippableFact]
    public async Task Settle_HeldReservationTimedOut_TheReservationStaysAsTheCharge()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        var limits = Limits(tpd: 10_000);
        var (_, reservation) = await AdmitAsync(limits, 600);
        Assert.True(await SettleAsync(reservation, billed: 0, hold: "resp_slow", holdTimeout: TimeSpan.FromSeconds(1)));

        await LetTimePassAsync(TimeSpan.FromMilliseconds(1300));

        Assert.True(await SettleAsync(null, billed: 250, claim: "resp_slow")); // its usage is still logged once
        Assert.Equal(600, (await CountersAsync()).DayTokens);                    // but the held estimate is what was charged
    }

    // ---------------------------------------------------------------- estimates corrected by the real usage

    [SkippableFact]
    public async Task Settle_EstimatedThenRealUsage_DifferenceChargedOnceThenNothing()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        var limits = Limits(tpd: 10_000);
        var (_, cut) = await AdmitAsync(limits, 900);
        var estimate = await SettleFullyAsync(cut, billed: 40, claim: "resp_cut", input: 30, estimated: true); // 30 in, 10 out
        Assert.Equal(new SettleResult(true), estimate);
        Assert.Equal(40, (await CountersAsync()).DayTokens);

        var real = await SettleFullyAsync(null, billed: 75, claim: "resp_cut", input: 35); // a GET shows 35 in, 40 out
        Assert.Equal(new SettleResult(false, new UsageCorrection(5, 30)), real);
        Assert.Equal(75, (await CountersAsync()).DayTokens);

        // Every later retrieval (or an estimate arriving late) changes nothing.
        Assert.Equal(new SettleResult(false), await SettleFullyAsync(null, billed: 75, claim: "resp_cut", input: 35));
        Assert.Equal(new SettleResult(false), await SettleFullyAsync(null, billed: 99, claim: "resp_cut", input: 9, estimated: true));
        Assert.Equal(75, (await CountersAsync()).DayTokens);
    }

    [SkippableFact]
    public async Task Settle_EstimateHigherThanTheRealUsage_NegativeCorrectionRefunds()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        Assert.True((await SettleFullyAsync(null, billed: 120, claim: "resp_over", input: 100, estimated: true)).First);

        var real = await SettleFullyAsync(null, billed: 90, claim: "resp_over", input: 80);

        Assert.Equal(new UsageCorrection(-20, -10), real.Correction);
        Assert.Equal(-30, real.Correction!.Value.TotalTokens);
        var counters = await CountersAsync();
        Assert.Equal((90L, 90L), (counters.DayTokens, counters.MonthTokens));
        Assert.Equal(120, counters.MinuteTokens); // budget given back, but no per-minute room: an over-estimate is no TPM burst
    }

    [SkippableFact]
    public async Task Settle_ConcurrentRealClaimsOfAnEstimate_ExactlyOneCorrection()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        await SettleFullyAsync(null, billed: 10, claim: "resp_race_fix", input: 10, estimated: true);

        var results = await Task.WhenAll(Enumerable.Range(0, 40).Select(_ => Task.Run(() => SettleFullyAsync(null, billed: 50, claim: "resp_race_fix", input: 20))));

        Assert.Single(results, r => r.Correction is not null);
        Assert.All(results, r => Assert.False(r.First));
        Assert.Equal(50, (await CountersAsync()).DayTokens);
    }

    // ---------------------------------------------------------------- hidden context

    [SkippableFact]
    public async Task GetContextTokens_AfterSettle_LastInputPlusOutputOfTheResponseAndOfTheConversationTurn()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        Assert.Equal(0, await Store.GetContextTokensAsync(Tenant, "resp_unknown", "conv_unknown", CancellationToken.None));

        await SettleFullyAsync(null, billed: 300, claim: "resp_turn1", input: 200, conversation: "conv_ctx");
        await SettleFullyAsync(null, billed: 700, claim: "resp_turn2", input: 550, conversation: "conv_ctx");
        await SettleFullyAsync(null, billed: 700, claim: "resp_turn2", input: 550, conversation: "conv_ctx"); // a re-read: no change

        Assert.Equal(300, await Store.GetContextTokensAsync(Tenant, "resp_turn1", null, CancellationToken.None));
        Assert.Equal(700, await Store.GetContextTokensAsync(Tenant, null, "conv_ctx", CancellationToken.None));
        Assert.Equal(0, await Store.GetContextTokensAsync("tenant-other", "resp_turn1", "conv_ctx", CancellationToken.None)); // per tenant
    }

    // ---------------------------------------------------------------- ownership

    [SkippableFact]
    public async Task RecordOwner_FirstWriterWins()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));

        await Store.RecordOwnerAsync("resp_owned", "tenant-a", null, LongRetention, CancellationToken.None);
        await Store.RecordOwnerAsync("resp_owned", "tenant-b", null, LongRetention, CancellationToken.None);

        Assert.Equal("tenant-a", (await Store.GetOwnerAsync("resp_owned", CancellationToken.None))?.Tenant);
        Assert.Null(await Store.GetOwnerAsync("resp_never_seen", CancellationToken.None));
    }

    [SkippableFact]
    public async Task RecordOwner_ExpiresAfterRetention_ThenUnknownAndClaimableAgain()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        var retention = TimeSpan.FromSeconds(1);
        await Store.RecordOwnerAsync("conv_short", "tenant-a", null, retention, CancellationToken.None);
        Assert.Equal("tenant-a", (await Store.GetOwnerAsync("conv_short", CancellationToken.None))?.Tenant);

        await LetTimePassAsync(TimeSpan.FromMilliseconds(1300));

        Assert.Null(await Store.GetOwnerAsync("conv_short", CancellationToken.None));
        await Store.RecordOwnerAsync("conv_short", "tenant-b", null, LongRetention, CancellationToken.None);
        Assert.Equal("tenant-b", (await Store.GetOwnerAsync("conv_short", CancellationToken.None))?.Tenant);
    }

    [SkippableFact]
    public async Task RecordOwner_OwnerRecordsAgainForEver_TheRecordNoLongerExpires()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        var retention = TimeSpan.FromSeconds(1);
        await Store.RecordOwnerAsync("conv_upgraded", "tenant-a", null, retention, CancellationToken.None);
        await Store.RecordOwnerAsync("conv_upgraded", "tenant-b", null, Timeout.InfiniteTimeSpan, CancellationToken.None); // not its owner: nothing
        await Store.RecordOwnerAsync("conv_kept_short", "tenant-a", null, retention, CancellationToken.None);
        await Store.RecordOwnerAsync("conv_kept_short", "tenant-b", null, Timeout.InfiniteTimeSpan, CancellationToken.None);

        await Store.RecordOwnerAsync("conv_upgraded", "tenant-a", null, Timeout.InfiniteTimeSpan, CancellationToken.None);
        await Store.RecordOwnerAsync("conv_upgraded", "tenant-a", null, retention, CancellationToken.None); // never shortened again
        await LetTimePassAsync(TimeSpan.FromMilliseconds(1300));

        Assert.Equal("tenant-a", (await Store.GetOwnerAsync("conv_upgraded", CancellationToken.None))?.Tenant);
        Assert.Null(await Store.GetOwnerAsync("conv_kept_short", CancellationToken.None));
    }

    [SkippableFact]
    public async Task ExpireOwner_OwnerDeletedTheObject_RecordExpiresAfterKeepForAndOnlyTheOwnerCanDoIt()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        await Store.RecordOwnerAsync("conv_deleted", "tenant-a", null, Timeout.InfiniteTimeSpan, CancellationToken.None);
        await Store.RecordOwnerAsync("conv_other", "tenant-a", null, Timeout.InfiniteTimeSpan, CancellationToken.None);

        await Store.ExpireOwnerAsync("conv_deleted", "tenant-a", TimeSpan.FromSeconds(1), CancellationToken.None);
        await Store.ExpireOwnerAsync("conv_other", "tenant-b", TimeSpan.FromSeconds(1), CancellationToken.None);
        Assert.Equal("tenant-a", (await Store.GetOwnerAsync("conv_deleted", CancellationToken.None))?.Tenant); // still refused to others for keepFor
        await LetTimePassAsync(TimeSpan.FromMilliseconds(1300));

        Assert.Null(await Store.GetOwnerAsync("conv_deleted", CancellationToken.None));
        Assert.Equal("tenant-a", (await Store.GetOwnerAsync("conv_other", CancellationToken.None))?.Tenant);
    }

    [SkippableFact]
    public async Task RecordOwner_WithUpstream_TenantAndUpstreamRoundTrip_FirstUpstreamWins()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));

        await Store.RecordOwnerAsync("resp_pinned", "tenant-a", "east-1.eu", LongRetention, CancellationToken.None);
        await Store.RecordOwnerAsync("resp_pinned", "tenant-b", "west", LongRetention, CancellationToken.None); // not its owner
        await Store.RecordOwnerAsync("resp_pinned", "tenant-a", "west", LongRetention, CancellationToken.None); // the upstream never moves
        await Store.RecordOwnerAsync("resp_unpinned", "tenant-b", null, LongRetention, CancellationToken.None);

        Assert.Equal(new ObjectOwner("tenant-a", "east-1.eu"), await Store.GetOwnerAsync("resp_pinned", CancellationToken.None));
        Assert.Equal(new ObjectOwner("tenant-b", null), await Store.GetOwnerAsync("resp_unpinned", CancellationToken.None));
    }

    /// <summary>A record without an upstream is what earlier versions wrote (in Redis: the tenant alone).</summary>
    [SkippableFact]
    public async Task RecordOwner_RecordWithoutUpstream_OwnerGivesItOne_OthersCannot_ExpiryKept()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        var retention = TimeSpan.FromSeconds(1);
        await Store.RecordOwnerAsync("conv_legacy", "tenant-a", null, Timeout.InfiniteTimeSpan, CancellationToken.None);
        await Store.RecordOwnerAsync("resp_legacy", "tenant-a", null, retention, CancellationToken.None);

        await Store.RecordOwnerAsync("conv_legacy", "tenant-b", "west", Timeout.InfiniteTimeSpan, CancellationToken.None);
        Assert.Equal(new ObjectOwner("tenant-a", null), await Store.GetOwnerAsync("conv_legacy", CancellationToken.None));
        await Store.RecordOwnerAsync("conv_legacy", "tenant-a", "east", Timeout.InfiniteTimeSpan, CancellationToken.None);
        await Store.RecordOwnerAsync("resp_legacy", "tenant-a", "east", retention, CancellationToken.None);

        Assert.Equal(new ObjectOwner("tenant-a", "east"), await Store.GetOwnerAsync("conv_legacy", CancellationToken.None));
        Assert.Equal(new ObjectOwner("tenant-a", "east"), await Store.GetOwnerAsync("resp_legacy", CancellationToken.None));
        await LetTimePassAsync(TimeSpan.FromMilliseconds(1300));
        Assert.Null(await Store.GetOwnerAsync("resp_legacy", CancellationToken.None)); // given its upstream, not a longer life
        Assert.Equal(new ObjectOwner("tenant-a", "east"), await Store.GetOwnerAsync("conv_legacy", CancellationToken.None));
    }

    [SkippableFact]
    public async Task ExpireOwner_RecordWithUpstream_OnlyItsTenantShortensIt()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        await Store.RecordOwnerAsync("conv_gone", "tenant-a", "east", Timeout.InfiniteTimeSpan, CancellationToken.None);
        await Store.RecordOwnerAsync("conv_kept", "tenant-a", "east", Timeout.InfiniteTimeSpan, CancellationToken.None);

        await Store.ExpireOwnerAsync("conv_gone", "tenant-a", TimeSpan.FromSeconds(1), CancellationToken.None);
        await Store.ExpireOwnerAsync("conv_kept", "tenant-b", TimeSpan.FromSeconds(1), CancellationToken.None);
        await LetTimePassAsync(TimeSpan.FromMilliseconds(1300));

        Assert.Null(await Store.GetOwnerAsync("conv_gone", CancellationToken.None));
        Assert.Equal(new ObjectOwner("tenant-a", "east"), await Store.GetOwnerAsync("conv_kept", CancellationToken.None));
    }

    // ---------------------------------------------------------------- tenants

    /// <summary>
    /// The admission order is stated once (<see cref="AdmissionOrder.Checks"/>); this drives the store through every
    /// pair of limits a request exceeds at once and expects the earlier check of that table to refuse it, so the Lua
    /// and the C# cannot order the checks differently. The tokens-only step skips the request-counting checks.
    /// </summary>
    [SkippableFact]
    public async Task Admit_EveryPairOfExceededLimits_RefusedByTheEarlierCheckOfTheAdmissionOrder()
    {
        var checks = AdmissionOrder.Checks;
        Assert.Equal(Enum.GetValues<AdmissionDecision>().Length - 1, checks.Length); // every limit is in the table, once
        Assert.Equal(checks.Length, checks.Select(c => c.Decision).Distinct().Count());
        foreach (var tokensOnly in new[] { false, true })
        {
            for (var first = 0; first < checks.Length; first++)
            {
                for (var second = first; second < checks.Length; second++)
                {
                    await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
                    // One request in flight: 1 request, 1 lease, 100 tokens and 50 micro-dollars in every window.
                    var admitted = await Store.AdmitAsync(new AdmissionRequest(Tenant, Limits(concurrent: 10), 100, Now, "lease-1", LongTimeout, ReserveMicroUsd: 50), CancellationToken.None);
                    Assert.Equal(AdmissionDecision.Admitted, admitted.Decision);

                    var limits = ExceededLimits(checks[first].Decision, checks[second].Decision);
                    var result = await Store.AdmitAsync(new AdmissionRequest(Tenant, limits, 10, Now, tokensOnly ? "" : "lease-2", LongTimeout, tokensOnly, ReserveMicroUsd: 5), CancellationToken.None);

                    var expected = checks.Skip(first).Where((c, i) => i == 0 || first + i == second)
                        .FirstOrDefault(c => !(tokensOnly && c.CountsRequest))?.Decision ?? AdmissionDecision.Admitted;
                    Assert.True(expected == result.Decision,
                        $"{checks[first].Decision} and {checks[second].Decision} exceeded (tokens only: {tokensOnly}): expected {expected}, got {result.Decision}.");
                }
            }
        }
    }

    /// <summary>Limits that the in-flight request's usage (1 request, 1 lease, 100 tokens, 50 micro-dollars) leaves no room in, for these two checks only.</summary>
    private static TenantLimitsOptions ExceededLimits(AdmissionDecision a, AdmissionDecision b)
    {
        bool Exceeds(AdmissionDecision d) => d == a || d == b;
        return new TenantLimitsOptions
        {
            MaxConcurrentRequests = Exceeds(AdmissionDecision.Concurrency) ? 1 : 0,
            RequestsPerMinute = Exceeds(AdmissionDecision.RequestsPerMinute) ? 1 : 0,
            TokensPerMinute = Exceeds(AdmissionDecision.TokensPerMinute) ? 100 : 0,
            TokensPerDay = Exceeds(AdmissionDecision.TokensPerDay) ? 100 : 0,
            TokensPerMonth = Exceeds(AdmissionDecision.TokensPerMonth) ? 100 : 0,
            UsdPerDay = Exceeds(AdmissionDecision.UsdPerDay) ? 0.00005m : 0,
            UsdPerMonth = Exceeds(AdmissionDecision.UsdPerMonth) ? 0.00005m : 0,
        };
    }

    [SkippableFact]
    public async Task Counters_AreKeptPerTenant()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        var limits = Limits(rpm: 1);
        Assert.Equal(AdmissionDecision.Admitted, (await AdmitAsync(limits, 10)).Result.Decision);

        var other = await Store.AdmitAsync(new AdmissionRequest("tenant-y", limits, 10, Now, "", LongTimeout), CancellationToken.None);

        Assert.Equal(AdmissionDecision.Admitted, other.Decision);
        Assert.Equal(new QuotaCounters(1, 10, 10, 10, 0), other.Counters);
        Assert.Equal(default, await Store.ReadCountersAsync("tenant-never-seen", Now, CancellationToken.None));
    }

    // ---------------------------------------------------------------- dollar budgets (micro-dollars)

    [SkippableFact]
    public async Task DollarBudget_ReserveSettleAndHold_CountedInMicroDollarsPerDayAndMonth()
    {
        await StartAt(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        var limits = new TenantLimitsOptions { UsdPerDay = 0.001m, UsdPerMonth = 0.0025m };

        var first = await AdmitDollarsAsync(limits, 600);
        Assert.Equal(AdmissionDecision.Admitted, first.Result.Decision);
        Assert.Equal((600, 600), (first.Result.Counters.DayMicroUsd, first.Result.Counters.MonthMicroUsd));
        var refused = await AdmitDollarsAsync(limits, 401);
        Assert.Equal(AdmissionDecision.UsdPerDay, refused.Result.Decision);
        Assert.Equal(600, (await CountersAsync()).DayMicroUsd); // a refusal consumes nothing

        // Settled to the real cost: the reservation is replaced.
        await Store.SettleAsync(new SettleRequest(Tenant, first.Reservation, 10, null, null, LongRetention, TimeSpan.FromHours(1), Now, BilledMicroUsd: 250), CancellationToken.None);
        Assert.Equal((250, 250), ((await CountersAsync()).DayMicroUsd, (await CountersAsync()).MonthMicroUsd));

        // A background response's reservation is held, then replaced by its usage when first seen.
        var background = await AdmitDollarsAsync(limits, 700);
        Assert.Equal(AdmissionDecision.Admitted, background.Result.Decision);
        await Store.SettleAsync(new SettleRequest(Tenant, background.Reservation, 0, null, "resp_bg", LongRetention, TimeSpan.FromHours(1), Now), CancellationToken.None);
        Assert.Equal(950, (await CountersAsync()).DayMicroUsd);
        await Store.SettleAsync(new SettleRequest(Tenant, null, 10, "resp_bg", null, LongRetention, TimeSpan.FromHours(1), Now, BilledMicroUsd: 100), CancellationToken.None);
        Assert.Equal(350, (await CountersAsync()).DayMicroUsd);

        // The next day starts at zero (new window keys; nothing needs to expire); the month keeps counting and its own limit applies.
        Time.Advance(TimeSpan.FromDays(1));
        Assert.Equal((0, 350), ((await CountersAsync()).DayMicroUsd, (await CountersAsync()).MonthMicroUsd));
        Assert.Equal(AdmissionDecision.Admitted, (await AdmitDollarsAsync(limits, 1000)).Result.Decision);
        Assert.Equal(AdmissionDecision.UsdPerMonth, (await AdmitDollarsAsync(new TenantLimitsOptions { UsdPerMonth = 0.0025m }, 1151)).Result.Decision);
    }

    private async Task<(AdmissionResult Result, QuotaReservation? Reservation)> AdmitDollarsAsync(TenantLimitsOptions limits, long reserveMicroUsd)
    {
        var windows = Now;
        var result = await Store.AdmitAsync(new AdmissionRequest(Tenant, limits, 0, windows, "", LongTimeout, ReserveMicroUsd: reserveMicroUsd), CancellationToken.None);
        var reservation = result.Decision == AdmissionDecision.Admitted
            ? new QuotaReservation(Tenant, 0, windows.Minute, windows.Day, windows.Month, null) { ReservedMicroUsd = reserveMicroUsd }
            : null;
        return (result, reservation);
    }
}

public sealed class MemoryStateStoreContractTests : SharedStateStoreContract
{
    private protected override Task<ISharedStateStore> CreateStoreAsync(FakeTimeProvider time) =>
        Task.FromResult<ISharedStateStore>(new MemoryStateStore(time));
}

/// <summary>One redis-server for the class; every test gets its own key prefix, so tests never see each other's keys.</summary>
public sealed class RedisStateStoreContractTests(RedisStateStoreContractTests.RedisFixture redis)
    : SharedStateStoreContract, IClassFixture<RedisStateStoreContractTests.RedisFixture>
{
    private protected override async Task<ISharedStateStore> CreateStoreAsync(FakeTimeProvider time)
    {
        var connection = await redis.ConnectAsync();
        return new RedisStateStore(connection, "ct" + Guid.NewGuid().ToString("N")[..12]);
    }

    /// <summary>Key TTLs run on the server's clock: wait them out for real as well.</summary>
    protected override async Task LetTimePassAsync(TimeSpan span)
    {
        await base.LetTimePassAsync(span);
        await Task.Delay(span);
    }

    public sealed class RedisFixture : IAsyncLifetime
    {
        private readonly SemaphoreSlim _gate = new(1, 1);
        private RedisServer? _server;
        private ConnectionMultiplexer? _connection;

        /// <summary>Skips (locally) or fails (CI) without redis-server; else starts it once for the class.</summary>
        public async Task<IConnectionMultiplexer> ConnectAsync()
        {
            RedisServer.RequireInstalled();
            await _gate.WaitAsync();
            try
            {
                _server ??= await RedisServer.StartAsync();
                return _connection ??= await ConnectionMultiplexer.ConnectAsync(_server.ConnectionString);
            }
            finally
            {
                _gate.Release();
            }
        }

        public Task InitializeAsync() => Task.CompletedTask;

        public async Task DisposeAsync()
        {
            if (_connection is not null)
            {
                await _connection.DisposeAsync();
            }

            if (_server is not null)
            {
                await _server.DisposeAsync();
            }

            _gate.Dispose();
        }
    }
}

/// <summary>
/// The same contract on a real three-node Redis Cluster: every script's keys must be in KEYS and in one hash slot
/// (the tenant's <c>{t:tenant}</c> tag), or the cluster refuses the call. One cluster for the class.
/// </summary>
public sealed class RedisClusterStateStoreContractTests(RedisClusterStateStoreContractTests.ClusterFixture cluster)
    : SharedStateStoreContract, IClassFixture<RedisClusterStateStoreContractTests.ClusterFixture>
{
    private protected override async Task<ISharedStateStore> CreateStoreAsync(FakeTimeProvider time)
    {
        var connection = await cluster.ConnectAsync();
        return new RedisStateStore(connection, "cc" + Guid.NewGuid().ToString("N")[..12]);
    }

    protected override async Task LetTimePassAsync(TimeSpan span)
    {
        await base.LetTimePassAsync(span);
        await Task.Delay(span);
    }

    public sealed class ClusterFixture : IAsyncLifetime
    {
        private readonly SemaphoreSlim _gate = new(1, 1);
        private RedisCluster? _cluster;
        private ConnectionMultiplexer? _connection;

        public async Task<IConnectionMultiplexer> ConnectAsync()
        {
            RedisServer.RequireInstalled();
            await _gate.WaitAsync();
            try
            {
                _cluster ??= await RedisCluster.StartAsync();
                if (_connection is null)
                {
                    _connection = await ConnectionMultiplexer.ConnectAsync(_cluster.ConnectionString);
                    Assert.Equal(ServerType.Cluster, _connection.GetServer(_connection.GetEndPoints()[0]).ServerType);
                }

                return _connection;
            }
            finally
            {
                _gate.Release();
            }
        }

        public Task InitializeAsync() => Task.CompletedTask;

        public async Task DisposeAsync()
        {
            if (_connection is not null)
            {
                await _connection.DisposeAsync();
            }

            if (_cluster is not null)
            {
                await _cluster.DisposeAsync();
            }

            _gate.Dispose();
        }
    }
}
