using System.Collections.Concurrent;
using Gateway.Configuration;
using Gateway.Observability;
using Gateway.Quotas;

namespace Gateway.SharedState;

/// <summary>
/// The single-process store: the same semantics as <see cref="RedisStateStore"/>, with a lock per tenant
/// standing in for Redis's atomic scripts. Entries expire like Redis keys do (checked on access, swept
/// every minute). Everything is lost on restart, including object ownership: run Redis in production. Each kind of
/// record is bounded by <c>Gateway:Quotas:MemoryStore:MaxRecords</c>, oldest evicted first.
/// </summary>
internal sealed class MemoryStateStore : ISharedStateStore, IDisposable
{
    private readonly ConcurrentDictionary<string, TenantState> _tenants = new(StringComparer.Ordinal);
    private readonly MemoryOwnershipStore _owners;
    // Keyed by (tenant, response id) without building a key string: one mark per stored response adds up.
    private readonly ExpiringRecords<(string Tenant, string ResponseId), UsageMark> _marks;
    private readonly ExpiringRecords<(string Tenant, string ResponseId), HeldReservation> _held;
    private readonly ExpiringRecords<(string Tenant, string ConversationId), long> _contexts;
    private readonly TimeProvider _time;
    private readonly ITimer _sweeper;

    public MemoryStateStore(TimeProvider time, GatewaySettings? settings = null, GatewayMetrics? metrics = null)
    {
        _time = time;
        Func<int> capacity = () => settings?.Current.Quotas.MemoryStore.MaxRecords ?? MemoryStoreOptions.DefaultMaxRecords;
        _owners = new(time, capacity, () => metrics?.RecordStoreEviction("owner"));
        _marks = new(capacity, () => metrics?.RecordStoreEviction("usage_mark"));
        _held = new(capacity, () => metrics?.RecordStoreEviction("held_reservation"));
        _contexts = new(capacity, () => metrics?.RecordStoreEviction("context"));
        _sweeper = time.CreateTimer(_ => Sweep(), null, TimeSpan.FromMinutes(1), TimeSpan.FromMinutes(1));
    }

    public string Kind => "memory";

    public ValueTask<AdmissionResult> AdmitAsync(AdmissionRequest request, CancellationToken cancellationToken)
    {
        var state = _tenants.GetOrAdd(request.TenantId, static _ => new TenantState());
        var w = request.Windows;
        var limits = request.Limits;
        lock (state)
        {
            state.Prune(w);
            var counters = state.Read(w);
            var decision = AdmissionOrder.Decide(request, counters);
            var countsRequest = !request.TokensOnly;
            if (decision == AdmissionDecision.Admitted)
            {
                TenantState.Add(state.Requests, w.Minute, countsRequest ? 1 : 0);
                state.AddTokens(w.Minute, w.Day, w.Month, request.ReserveTokens);
                state.AddMicroUsd(w.Day, w.Month, request.ReserveMicroUsd);
                if (countsRequest && limits.MaxConcurrentRequests > 0)
                {
                    state.Leases[request.LeaseId] = w.Now + request.LeaseTimeout;
                }

                counters = state.Read(w);
            }

            return ValueTask.FromResult(new AdmissionResult(decision, counters));
        }
    }

    public ValueTask<SettleResult> SettleAsync(SettleRequest request, CancellationToken cancellationToken)
    {
        var w = request.Now;
        var now = w.Now;
        var state = _tenants.GetOrAdd(request.TenantId, static _ => new TenantState());
        // Marks, held reservations and contexts are per tenant: the tenant's lock makes claim and correction atomic.
        lock (state)
        {
            var first = true;
            UsageCorrection? correction = null;
            var input = request.InputTokens;
            var output = request.BilledTokens - request.InputTokens;
            if (request.ClaimResponseId is { } claimId)
            {
                var key = (request.TenantId, claimId);
                if (!_marks.TryGet(key, now, out var mark, out _))
                {
                    _marks.Set(key, new UsageMark(input, output, request.BilledMicroUsd, request.Estimated), now + request.ClaimRetention, now);
                }
                else
                {
                    first = false;
                    if (mark.Estimated && !request.Estimated)
                    {
                        // The real usage of a response counted from an estimate: charge the difference, once.
                        _marks.Set(key, new UsageMark(input, output, request.BilledMicroUsd, Estimated: false), now + request.ClaimRetention, now);
                        correction = new UsageCorrection(input - mark.InputTokens, output - mark.OutputTokens, request.BilledMicroUsd - mark.MicroUsd);
                    }
                }
            }

            var reservation = request.Reservation;
            var billed = first ? request.BilledTokens : 0;
            var billedMicroUsd = first ? request.BilledMicroUsd : 0;
            if (request.HoldForResponseId is { } holdId && reservation is not null)
            {
                // Still running: the reservation stays; remembered (past its timeout, see RedisStateStore) until the usage is seen.
                _held.Set((request.TenantId, holdId), new HeldReservation(reservation, now + request.HoldTimeout),
                    now + request.HoldTimeout + request.ClaimRetention, now);
            }
            else
            {
                if (first && request.ClaimResponseId is { } responseId
                    && _held.TryRemove((request.TenantId, responseId), out var held, out var heldExpiresAt) && heldExpiresAt > now)
                {
                    // The usage of a held background response replaces the held reservation: refunded in that reservation's
                    // windows, the usage charged below. Past the timeout the estimate that was kept stays the charge.
                    var heldReservation = held.Reservation;
                    if (held.Until > now)
                    {
                        state.AddTokens(heldReservation.MinuteWindow, heldReservation.DayWindow, heldReservation.MonthWindow, -heldReservation.ReservedTokens);
                        state.AddMicroUsd(heldReservation.DayWindow, heldReservation.MonthWindow, -heldReservation.ReservedMicroUsd);
                    }
                    else
                    {
                        billed = 0;
                        billedMicroUsd = 0;
                    }
                }

                // A negative correction gives back budget (day, month), never per-minute room: the minute it lands in did not
                // hold the estimate, and an over-estimate (a large inline image) must not become a burst past the TPM limit.
                var corrected = correction?.TotalTokens ?? 0;
                var charge = billed + Math.Max(0, corrected);
                if (corrected < 0)
                {
                    state.AddBudgetTokens(w.Day, w.Month, corrected);
                }

                if (reservation is null)
                {
                    state.AddTokens(w.Minute, w.Day, w.Month, charge);
                }
                else if (reservation.MinuteWindow == w.Minute)
                {
                    state.AddTokens(w.Minute, w.Day, w.Month, charge - reservation.ReservedTokens);
                }
                else
                {
                    // Refunded where it was reserved, charged where it was spent (a stream that crossed the minute).
                    state.AddTokens(reservation.MinuteWindow, reservation.DayWindow, reservation.MonthWindow, -reservation.ReservedTokens);
                    state.AddTokens(w.Minute, w.Day, w.Month, charge);
                }

                // Dollars have day and month windows only: a correction's difference of either sign is charged where it is seen.
                state.AddMicroUsd(reservation?.DayWindow ?? w.Day, reservation?.MonthWindow ?? w.Month, -(reservation?.ReservedMicroUsd ?? 0));
                state.AddMicroUsd(w.Day, w.Month, billedMicroUsd + (correction?.MicroUsd ?? 0));
            }

            if (request.ConversationId is { } conversationId && request.ClaimResponseId is not null && (first || correction is not null))
            {
                _contexts.Set((request.TenantId, conversationId), input + output, now + request.ClaimRetention, now);
            }

            if (reservation?.LeaseId is { } leaseId)
            {
                state.Leases.Remove(leaseId);
            }

            return ValueTask.FromResult(new SettleResult(first, correction));
        }
    }

    public ValueTask<long> GetContextTokensAsync(string tenantId, string? previousResponseId, string? conversationId, CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        long tokens = 0;
        if (previousResponseId is not null && _marks.TryGet((tenantId, previousResponseId), now, out var mark, out _))
        {
            tokens += mark.InputTokens + mark.OutputTokens;
        }

        if (conversationId is not null && _contexts.TryGet((tenantId, conversationId), now, out var turn, out _))
        {
            tokens += turn;
        }

        return ValueTask.FromResult(tokens);
    }

    public ValueTask<QuotaCounters> ReadCountersAsync(string tenantId, QuotaWindows windows, CancellationToken cancellationToken)
    {
        if (!_tenants.TryGetValue(tenantId, out var state))
        {
            return ValueTask.FromResult(default(QuotaCounters));
        }

        lock (state)
        {
            state.Prune(windows);
            return ValueTask.FromResult(state.Read(windows));
        }
    }

    public ValueTask RecordOwnerAsync(string objectId, string tenantId, string? upstream, TimeSpan retention, CancellationToken cancellationToken) =>
        _owners.RecordOwnerAsync(objectId, tenantId, upstream, retention);

    public ValueTask ExpireOwnerAsync(string objectId, string tenantId, TimeSpan keepFor, CancellationToken cancellationToken) =>
        _owners.ExpireOwnerAsync(objectId, tenantId, keepFor);

    public ValueTask<ObjectOwner?> GetOwnerAsync(string objectId, CancellationToken cancellationToken) => _owners.GetOwnerAsync(objectId);

    /// <summary>The live ownership record of <paramref name="objectId"/>, if this store holds one.</summary>
    public bool TryGetOwnerRecord(string objectId, out ObjectOwner owner, out DateTimeOffset expiresAt) =>
        _owners.TryGetOwnerRecord(objectId, out owner, out expiresAt);

    public ValueTask<bool> PingAsync(CancellationToken cancellationToken) => ValueTask.FromResult(true);

    public void Dispose() => _sweeper.Dispose();

    private void Sweep()
    {
        var now = _time.GetUtcNow();
        _owners.RemoveExpired(now);
        _marks.RemoveExpired(now);
        _held.RemoveExpired(now);
        _contexts.RemoveExpired(now);

        var windows = QuotaWindows.At(now);
        foreach (var state in _tenants.Values)
        {
            lock (state)
            {
                state.Prune(windows);
            }
        }
    }

    /// <summary>A response's usage was counted: its input and output tokens (its context size), and whether they were estimated.</summary>
    private readonly record struct UsageMark(long InputTokens, long OutputTokens, long MicroUsd, bool Estimated);

    /// <summary>A background response's reservation, reconciled if its usage is seen before <paramref name="Until"/>.</summary>
    private sealed record HeldReservation(QuotaReservation Reservation, DateTimeOffset Until);

    /// <summary>One tenant's counters by window number; guarded by locking the instance.</summary>
    private sealed class TenantState
    {
        public Dictionary<long, long> Requests { get; } = [];

        public Dictionary<long, long> MinuteTokens { get; } = [];

        public Dictionary<long, long> DayTokens { get; } = [];

        public Dictionary<long, long> MonthTokens { get; } = [];

        public Dictionary<string, DateTimeOffset> Leases { get; } = new(StringComparer.Ordinal);

        public Dictionary<long, long> DayMicroUsd { get; } = [];

        public Dictionary<long, long> MonthMicroUsd { get; } = [];

        public QuotaCounters Read(QuotaWindows w) => new(
            Requests.GetValueOrDefault(w.Minute),
            MinuteTokens.GetValueOrDefault(w.Minute),
            DayTokens.GetValueOrDefault(w.Day),
            MonthTokens.GetValueOrDefault(w.Month),
            Leases.Count,
            DayMicroUsd.GetValueOrDefault(w.Day),
            MonthMicroUsd.GetValueOrDefault(w.Month));

        public void AddMicroUsd(long day, long month, long microUsd)
        {
            if (microUsd == 0)
            {
                return;
            }

            Add(DayMicroUsd, day, microUsd);
            Add(MonthMicroUsd, month, microUsd);
        }

        public void AddTokens(long minute, long day, long month, long tokens)
        {
            if (tokens == 0)
            {
                return;
            }

            Add(MinuteTokens, minute, tokens);
            Add(DayTokens, day, tokens);
            Add(MonthTokens, month, tokens);
        }

        public void AddBudgetTokens(long day, long month, long tokens)
        {
            Add(DayTokens, day, tokens);
            Add(MonthTokens, month, tokens);
        }

        public static void Add(Dictionary<long, long> counters, long window, long delta) =>
            counters[window] = counters.GetValueOrDefault(window) + delta;

        /// <summary>Drops windows that have passed (as Redis keys would expire) and leases that timed out.</summary>
        public void Prune(QuotaWindows w)
        {
            PruneBefore(Requests, w.Minute - 2);
            PruneBefore(MinuteTokens, w.Minute - 2);
            PruneBefore(DayTokens, w.Day - 1);
            PruneBefore(MonthTokens, w.Month - 1);
            PruneBefore(DayMicroUsd, w.Day - 1);
            PruneBefore(MonthMicroUsd, w.Month - 1);
            // Dictionary.Remove does not invalidate an enumeration in progress: no list of keys, no closure per request.
            foreach (var (id, expiresAt) in Leases)
            {
                if (expiresAt <= w.Now)
                {
                    Leases.Remove(id);
                }
            }
        }

        private static void PruneBefore(Dictionary<long, long> counters, long oldest)
        {
            if (counters.Count <= 1)
            {
                return;
            }

            foreach (var window in counters.Keys)
            {
                if (window < oldest)
                {
                    counters.Remove(window);
                }
            }
        }
    }
}
