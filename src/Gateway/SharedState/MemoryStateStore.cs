using System.Collections.Concurrent;
using Gateway.Quotas;

namespace Gateway.SharedState;

/// <summary>
/// The single-process store: the same semantics as <see cref="RedisStateStore"/>, with a lock per tenant
/// standing in for Redis's atomic scripts. Entries expire like Redis keys do (checked on access, swept
/// every minute). Everything is lost on restart, including object ownership: run Redis in production.
/// </summary>
internal sealed class MemoryStateStore : ISharedStateStore, IDisposable
{
    private readonly ConcurrentDictionary<string, TenantState> _tenants = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Expiring<string>> _owners = new(StringComparer.Ordinal);
    // Keyed by (tenant, response id) without building a key string: one mark per stored response adds up.
    private readonly ConcurrentDictionary<(string Tenant, string ResponseId), Expiring<bool>> _marks = new();
    private readonly ConcurrentDictionary<(string Tenant, string ResponseId), Expiring<HeldReservation>> _held = new();
    private readonly TimeProvider _time;
    private readonly ITimer _sweeper;

    public MemoryStateStore(TimeProvider time)
    {
        _time = time;
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
            var decision = AdmissionDecision.Admitted;
            if (limits.MaxConcurrentRequests > 0 && counters.Concurrent >= limits.MaxConcurrentRequests)
            {
                decision = AdmissionDecision.Concurrency;
            }
            else if (limits.RequestsPerMinute > 0 && counters.Requests + 1 > limits.RequestsPerMinute)
            {
                decision = AdmissionDecision.RequestsPerMinute;
            }
            else if (limits.TokensPerMinute > 0 && counters.MinuteTokens + request.ReserveTokens > limits.TokensPerMinute)
            {
                decision = AdmissionDecision.TokensPerMinute;
            }
            else if (limits.TokensPerDay > 0 && counters.DayTokens + request.ReserveTokens > limits.TokensPerDay)
            {
                decision = AdmissionDecision.TokensPerDay;
            }
            else if (limits.TokensPerMonth > 0 && counters.MonthTokens + request.ReserveTokens > limits.TokensPerMonth)
            {
                decision = AdmissionDecision.TokensPerMonth;
            }
            else if (request.MicroUsdPerDay > 0 && counters.DayMicroUsd + request.ReserveMicroUsd > request.MicroUsdPerDay)
            {
                decision = AdmissionDecision.UsdPerDay;
            }
            else if (request.MicroUsdPerMonth > 0 && counters.MonthMicroUsd + request.ReserveMicroUsd > request.MicroUsdPerMonth)
            {
                decision = AdmissionDecision.UsdPerMonth;
            }

            if (decision == AdmissionDecision.Admitted)
            {
                TenantState.Add(state.Requests, w.Minute, 1);
                state.AddTokens(w.Minute, w.Day, w.Month, request.ReserveTokens);
                state.AddMicroUsd(w.Day, w.Month, request.ReserveMicroUsd);
                if (limits.MaxConcurrentRequests > 0)
                {
                    state.Leases[request.LeaseId] = w.Now + request.LeaseTimeout;
                }

                counters = state.Read(w);
            }

            return ValueTask.FromResult(new AdmissionResult(decision, counters));
        }
    }

    public ValueTask<bool> SettleAsync(SettleRequest request, CancellationToken cancellationToken)
    {
        var now = request.Now.Now;
        var first = true;
        if (request.ClaimResponseId is { } claimId)
        {
            var mark = new Expiring<bool>(true, now + request.ClaimRetention);
            first = TryAddOrReplaceExpired(_marks, (request.TenantId, claimId), mark, now);
        }

        var state = _tenants.GetOrAdd(request.TenantId, static _ => new TenantState());
        lock (state)
        {
            var reservation = request.Reservation;
            var billed = first ? request.BilledTokens : 0;
            var billedMicroUsd = first ? request.BilledMicroUsd : 0;
            if (request.HoldForResponseId is { } holdId && reservation is not null)
            {
                // Still running: the reservation stays; remembered (past its timeout, see RedisStateStore) until the usage is seen.
                _held[(request.TenantId, holdId)] = new Expiring<HeldReservation>(
                    new HeldReservation(reservation, now + request.HoldTimeout), now + request.HoldTimeout + request.ClaimRetention);
            }
            else
            {
                if (first && request.ClaimResponseId is { } responseId
                    && _held.TryRemove((request.TenantId, responseId), out var held) && held.ExpiresAt > now)
                {
                    // The usage of a held background response: it replaces the held reservation, in that reservation's windows
                    // (or, past the timeout, the estimate that was kept stays the charge). Either way it is not charged again below.
                    var heldReservation = held.Value.Reservation;
                    if (held.Value.Until > now)
                    {
                        state.AddTokens(heldReservation.MinuteWindow, heldReservation.DayWindow, heldReservation.MonthWindow, billed - heldReservation.ReservedTokens);
                        state.AddMicroUsd(heldReservation.DayWindow, heldReservation.MonthWindow, billedMicroUsd - heldReservation.ReservedMicroUsd);
                    }

                    billed = 0;
                    billedMicroUsd = 0;
                }

                if (reservation is not null)
                {
                    state.AddTokens(reservation.MinuteWindow, reservation.DayWindow, reservation.MonthWindow, billed - reservation.ReservedTokens);
                    state.AddMicroUsd(reservation.DayWindow, reservation.MonthWindow, billedMicroUsd - reservation.ReservedMicroUsd);
                }
                else
                {
                    state.AddTokens(request.Now.Minute, request.Now.Day, request.Now.Month, billed);
                    state.AddMicroUsd(request.Now.Day, request.Now.Month, billedMicroUsd);
                }
            }

            if (reservation?.LeaseId is { } leaseId)
            {
                state.Leases.Remove(leaseId);
            }
        }

        return ValueTask.FromResult(first);
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

    public ValueTask RecordOwnerAsync(string objectId, string tenantId, TimeSpan retention, CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        var expiresAt = retention == Timeout.InfiniteTimeSpan ? DateTimeOffset.MaxValue : now + retention;
        TryAddOrReplaceExpired(_owners, objectId, new Expiring<string>(tenantId, expiresAt), now);
        return ValueTask.CompletedTask;
    }

    public ValueTask<string?> GetOwnerAsync(string objectId, CancellationToken cancellationToken)
    {
        var found = _owners.TryGetValue(objectId, out var owner) && owner.ExpiresAt > _time.GetUtcNow();
        return ValueTask.FromResult(found ? owner.Value : null);
    }

    /// <summary>The live ownership record of <paramref name="objectId"/>, if this store holds one.</summary>
    public bool TryGetOwnerRecord(string objectId, out string tenantId, out DateTimeOffset expiresAt)
    {
        if (_owners.TryGetValue(objectId, out var owner) && owner.ExpiresAt > _time.GetUtcNow())
        {
            (tenantId, expiresAt) = (owner.Value, owner.ExpiresAt);
            return true;
        }

        (tenantId, expiresAt) = ("", default);
        return false;
    }

    public ValueTask<bool> PingAsync(CancellationToken cancellationToken) => ValueTask.FromResult(true);

    public void Dispose() => _sweeper.Dispose();

    /// <summary>SET NX with expiry: adds, or replaces an expired entry; false if a live one exists.</summary>
    private static bool TryAddOrReplaceExpired<TKey, T>(ConcurrentDictionary<TKey, Expiring<T>> map, TKey key, Expiring<T> value, DateTimeOffset now)
        where TKey : notnull
    {
        while (true)
        {
            if (map.TryAdd(key, value))
            {
                return true;
            }

            if (!map.TryGetValue(key, out var existing))
            {
                continue;
            }

            if (existing.ExpiresAt > now)
            {
                return false;
            }

            if (map.TryUpdate(key, value, existing))
            {
                return true;
            }
        }
    }

    private static void RemoveExpired<TKey, T>(ConcurrentDictionary<TKey, Expiring<T>> map, DateTimeOffset now)
        where TKey : notnull
    {
        foreach (var (key, entry) in map)
        {
            if (entry.ExpiresAt <= now)
            {
                map.TryRemove(key, out _);
            }
        }
    }

    private void Sweep()
    {
        var now = _time.GetUtcNow();
        RemoveExpired(_owners, now);
        RemoveExpired(_marks, now);
        RemoveExpired(_held, now);

        var windows = QuotaWindows.At(now);
        foreach (var state in _tenants.Values)
        {
            lock (state)
            {
                state.Prune(windows);
            }
        }
    }

    // A struct: stored inline in the dictionary node, one object fewer per record for the GC to trace.
    private readonly record struct Expiring<T>(T Value, DateTimeOffset ExpiresAt);

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
            if (Leases.Count > 0)
            {
                List<string>? expired = null;
                foreach (var (id, expiresAt) in Leases)
                {
                    if (expiresAt <= w.Now)
                    {
                        (expired ??= []).Add(id);
                    }
                }

                expired?.ForEach(id => Leases.Remove(id));
            }
        }

        private static void PruneBefore(Dictionary<long, long> counters, long oldest)
        {
            if (counters.Count <= 1)
            {
                return;
            }

            List<long>? old = null;
            foreach (var window in counters.Keys)
            {
                if (window < oldest)
                {
                    (old ??= []).Add(window);
                }
            }

            old?.ForEach(window => counters.Remove(window));
        }
    }
}
