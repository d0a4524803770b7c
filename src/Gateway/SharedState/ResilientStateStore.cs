using Gateway.Configuration;
using Gateway.Observability;
using StackExchange.Redis;

namespace Gateway.SharedState;

/// <summary>
/// Redis first; when it fails (connection lost, timeout), either a per-replica in-memory store takes over
/// (<c>Allow</c>: limits then hold per replica, not across the cluster) or requests are refused with 503
/// (<c>Deny</c>). After a failure Redis is left alone for <c>RedisRetryInterval</c>, then tried again, so
/// shared enforcement resumes on its own when Redis is back.
/// </summary>
internal sealed class ResilientStateStore(
    RedisStateStore primary,
    MemoryStateStore fallback,
    GatewaySettings settings,
    GatewayMetrics metrics,
    TimeProvider time,
    ILogger<ResilientStateStore> logger) : ISharedStateStore
{
    private long _retryAtTimestamp;
    private int _degraded;

    public string Kind => primary.Kind;

    /// <summary>True while operations go to the fallback (or are refused).</summary>
    public bool IsDegraded => Volatile.Read(ref _degraded) == 1;

    public ValueTask<AdmissionResult> AdmitAsync(AdmissionRequest request, CancellationToken cancellationToken) =>
        RunAsync("admit", async (s, r, ct) =>
        {
            var result = await s.AdmitAsync(r, ct);
            return ReferenceEquals(s, fallback) ? result with { ByFallback = true } : result;
        }, request, cancellationToken);

    /// <summary>
    /// A reservation is released in the store that holds it, whichever store is active now. One made by the fallback
    /// during an outage is released there (with its lease), while the claim and the billed tokens go to the active
    /// store: Redis is never refunded a reservation it did not count. One made in Redis is not refunded into the
    /// fallback while Redis is down: the fallback counts the billed tokens, Redis keeps the reservation as the charge
    /// and its lease expires after ConcurrencyLeaseTimeout.
    /// </summary>
    public async ValueTask<SettleResult> SettleAsync(SettleRequest request, CancellationToken cancellationToken)
    {
        if (request.Reservation is not { ByFallback: true })
        {
            return await RunAsync("settle", (s, r, ct) =>
                s.SettleAsync(ReferenceEquals(s, fallback) && r.Reservation is not null ? r with { Reservation = null, HoldForResponseId = null } : r, ct),
                request, cancellationToken);
        }

        var result = request.ClaimResponseId is null && request.BilledTokens == 0
            ? new SettleResult(true)
            : await RunAsync("settle", static (s, r, ct) => s.SettleAsync(r, ct), request with { Reservation = null, HoldForResponseId = null }, cancellationToken);
        await fallback.SettleAsync(request with { ClaimResponseId = null, BilledTokens = 0, InputTokens = 0, ConversationId = null }, cancellationToken);
        return result;
    }

    public ValueTask<long> GetContextTokensAsync(string tenantId, string? previousResponseId, string? conversationId, CancellationToken cancellationToken) =>
        RunAsync("context", (s, r, ct) => s.GetContextTokensAsync(r, previousResponseId, conversationId, ct), tenantId, cancellationToken);

    public ValueTask<QuotaCounters> ReadCountersAsync(string tenantId, QuotaWindows windows, CancellationToken cancellationToken) =>
        RunAsync("read", (s, r, ct) => s.ReadCountersAsync(r, windows, ct), tenantId, cancellationToken);

    public async ValueTask RecordOwnerAsync(string objectId, string tenantId, string? upstream, TimeSpan retention, CancellationToken cancellationToken) =>
        await RunAsync("record_owner", async (s, r, ct) =>
        {
            await s.RecordOwnerAsync(r, tenantId, upstream, retention, ct);
            return true;
        }, objectId, cancellationToken);

    public async ValueTask ExpireOwnerAsync(string objectId, string tenantId, TimeSpan keepFor, CancellationToken cancellationToken) =>
        await RunAsync("expire_owner", async (s, r, ct) =>
        {
            await s.ExpireOwnerAsync(r, tenantId, keepFor, ct);
            return true;
        }, objectId, cancellationToken);

    /// <summary>
    /// Redis's answer, except for an id recorded by this replica's fallback during an outage: Redis never saw it, so it
    /// is written back then (once Redis answers again), and the object stays its owner's on every replica.
    /// </summary>
    public ValueTask<ObjectOwner?> GetOwnerAsync(string objectId, CancellationToken cancellationToken) =>
        RunAsync("get_owner", async (s, r, ct) =>
        {
            var owner = await s.GetOwnerAsync(r, ct);
            if (owner is not null || ReferenceEquals(s, fallback) || !fallback.TryGetOwnerRecord(r, out var recorded, out var expiresAt))
            {
                return owner;
            }

            var retention = expiresAt == DateTimeOffset.MaxValue ? Timeout.InfiniteTimeSpan : expiresAt - time.GetUtcNow();
            if (retention == Timeout.InfiniteTimeSpan || retention > TimeSpan.Zero)
            {
                await s.RecordOwnerAsync(r, recorded.Tenant, recorded.Upstream, retention, ct);
            }

            return (ObjectOwner?)recorded;
        }, objectId, cancellationToken);

    public async ValueTask<bool> PingAsync(CancellationToken cancellationToken)
    {
        try
        {
            await primary.PingAsync(cancellationToken);
            MarkHealthy();
            return true;
        }
        catch (Exception ex) when (IsStoreFailure(ex))
        {
            return false;
        }
    }

    private async ValueTask<TResult> RunAsync<TArg, TResult>(string operation, Func<ISharedStateStore, TArg, CancellationToken, ValueTask<TResult>> call, TArg arg, CancellationToken cancellationToken)
    {
        if (!IsDegraded || time.GetTimestamp() >= Volatile.Read(ref _retryAtTimestamp))
        {
            try
            {
                var result = await call(primary, arg, cancellationToken);
                MarkHealthy();
                return result;
            }
            catch (Exception ex) when (IsStoreFailure(ex))
            {
                MarkDegraded(operation, ex);
            }
        }

        var mode = settings.Current.Quotas.OnStoreFailure;
        metrics.RecordStoreFailure(primary.Kind, operation, mode.ToString());
        if (mode == StoreFailureMode.Deny)
        {
            throw new StoreUnavailableException("The shared quota store (Redis) is unavailable.");
        }

        return await call(fallback, arg, cancellationToken);
    }

    private void MarkDegraded(string operation, Exception ex)
    {
        Volatile.Write(ref _retryAtTimestamp, time.GetTimestamp() + (long)(settings.Current.Quotas.RedisRetryInterval.TotalSeconds * time.TimestampFrequency));
        if (Interlocked.Exchange(ref _degraded, 1) == 0)
        {
            StoreLog.StoreDown(logger, primary.Kind, operation, settings.Current.Quotas.OnStoreFailure.ToString(), ex.GetType().Name, ex.Message);
        }
    }

    private void MarkHealthy()
    {
        if (Interlocked.Exchange(ref _degraded, 0) == 1)
        {
            StoreLog.StoreBack(logger, primary.Kind);
        }
    }

    private static bool IsStoreFailure(Exception ex) => ex is RedisException or TimeoutException or ObjectDisposedException;
}

internal static partial class StoreLog
{
    [LoggerMessage(EventId = 4001, EventName = "StoreDown", Level = LogLevel.Error,
        Message = "Shared store {Store} failed during {Operation}; OnStoreFailure={Mode} now applies: {ErrorType} {ErrorMessage}")]
    public static partial void StoreDown(ILogger logger, string store, string operation, string mode, string errorType, string errorMessage);

    [LoggerMessage(EventId = 4002, EventName = "StoreBack", Level = LogLevel.Warning,
        Message = "Shared store {Store} answers again; shared enforcement resumed")]
    public static partial void StoreBack(ILogger logger, string store);
}
