using Gateway.Configuration;
using Gateway.Quotas;

namespace Gateway.SharedState;

/// <summary>
/// The state every replica must agree on: quota windows and concurrency leases, the "usage already counted"
/// mark per response id, held reservations of background responses, and object ownership.
/// <see cref="MemoryStateStore"/> serves one process; <see cref="RedisStateStore"/> a cluster. Both implement
/// exactly the same semantics (one contract test suite runs against both).
/// </summary>
internal interface ISharedStateStore
{
    /// <summary><c>memory</c> or <c>redis</c>, for logs, metrics and <c>/readyz</c>.</summary>
    string Kind { get; }

    /// <summary>Checks every limit and, only if all fit, counts the request and reserves its tokens, atomically.</summary>
    ValueTask<AdmissionResult> AdmitAsync(AdmissionRequest request, CancellationToken cancellationToken);

    /// <summary>
    /// Ends a request's hold on the quotas, atomically: claims the response's usage (once per response id, ever),
    /// replaces the reservation with what was billed (or keeps it, for a background response still running),
    /// settles a background response's held reservation when its usage is first seen, and frees the concurrency lease.
    /// The reservation is refunded in the windows it was made in; what was billed is charged to the windows of
    /// <see cref="SettleRequest.Now"/>, where it was spent. A response first counted from an estimate and later seen
    /// with the upstream's usage is corrected once: the difference is charged and returned.
    /// </summary>
    ValueTask<SettleResult> SettleAsync(SettleRequest request, CancellationToken cancellationToken);

    /// <summary>
    /// The size of the context a request continuing these objects carries without sending it: the last recorded
    /// input + output tokens of <paramref name="previousResponseId"/> plus those of the last turn of
    /// <paramref name="conversationId"/> (0 for what the store does not know).
    /// </summary>
    ValueTask<long> GetContextTokensAsync(string tenantId, string? previousResponseId, string? conversationId, CancellationToken cancellationToken);

    /// <summary>Current counters of the tenant's windows, for <c>GET /v1/gateway/quota</c>.</summary>
    ValueTask<QuotaCounters> ReadCountersAsync(string tenantId, QuotaWindows windows, CancellationToken cancellationToken);

    /// <summary>
    /// Records that <paramref name="tenantId"/> created <paramref name="objectId"/> through <paramref name="upstream"/> (null:
    /// not pinned) (first writer wins), for <paramref name="retention"/>, or for ever when it is <see cref="Timeout.InfiniteTimeSpan"/>.
    /// The owner recording it again with a longer retention extends the record (never shortens it), and gives a record
    /// without an upstream this one (never changes a recorded upstream); another tenant changes nothing.
    /// </summary>
    ValueTask RecordOwnerAsync(string objectId, string tenantId, string? upstream, TimeSpan retention, CancellationToken cancellationToken);

    /// <summary>
    /// The owner deleted the object: its record (a conversation's has no expiry) now expires after
    /// <paramref name="keepFor"/> at the latest, so the id keeps being refused to others for a while, then is forgotten.
    /// </summary>
    ValueTask ExpireOwnerAsync(string objectId, string tenantId, TimeSpan keepFor, CancellationToken cancellationToken);

    /// <summary>The owner (and upstream, if recorded) of <paramref name="objectId"/>; null for an id without a live record.</summary>
    ValueTask<ObjectOwner?> GetOwnerAsync(string objectId, CancellationToken cancellationToken);

    /// <summary>True when the store answers; for <c>/readyz</c>.</summary>
    ValueTask<bool> PingAsync(CancellationToken cancellationToken);
}

internal enum AdmissionDecision
{
    Admitted,
    RequestsPerMinute,
    TokensPerMinute,
    TokensPerDay,
    TokensPerMonth,
    Concurrency,
    UsdPerDay,
    UsdPerMonth,
}

/// <param name="TokensOnly">
/// The second step of a two-step admission (see <c>QuotaService.PreAdmitAsync</c>): the request was already counted and
/// holds its lease; only the token windows are checked and reserved.
/// </param>
internal sealed record AdmissionRequest(
    string TenantId,
    TenantLimitsOptions Limits,
    long ReserveTokens,
    QuotaWindows Windows,
    string LeaseId,
    TimeSpan LeaseTimeout,
    bool TokensOnly = false,
    long ReserveMicroUsd = 0)
{
    /// <summary>The tenant's dollar budgets in micro-dollars (0: unlimited).</summary>
    public long MicroUsdPerDay => MicroUsd.From(Limits.UsdPerDay);

    public long MicroUsdPerMonth => MicroUsd.From(Limits.UsdPerMonth);
}

/// <summary>The decision, and the counters as they stand after it (including this request when admitted).</summary>
internal sealed record AdmissionResult(AdmissionDecision Decision, QuotaCounters Counters)
{
    /// <summary>Admitted by the in-memory fallback while the shared store was down: the reservation lives there.</summary>
    public bool ByFallback { get; init; }
}

/// <summary>Dollar amounts are micro-dollars (USD × 10^6) so that Redis, which counts integers, holds them exactly.</summary>
internal readonly record struct QuotaCounters(long Requests, long MinuteTokens, long DayTokens, long MonthTokens, long Concurrent, long DayMicroUsd = 0, long MonthMicroUsd = 0);

internal sealed record SettleRequest(
    string TenantId,
    QuotaReservation? Reservation,
    long BilledTokens,
    string? ClaimResponseId,
    string? HoldForResponseId,
    TimeSpan ClaimRetention,
    TimeSpan HoldTimeout,
    QuotaWindows Now,
    long BilledMicroUsd = 0)
{
    /// <summary>The part of <see cref="SettleRequest.BilledTokens"/> that is input; the rest is output.</summary>
    public long InputTokens { get; init; }

    /// <summary>The billed tokens are the gateway's estimate (a cut stream), to be corrected if the real usage is seen later.</summary>
    public bool Estimated { get; init; }

    /// <summary>A conversation this turn belongs to: its context size becomes this turn's input + output.</summary>
    public string? ConversationId { get; init; }
}

/// <summary>
/// <paramref name="First"/>: this request counted the response's usage (false when it had been counted before).
/// <paramref name="Correction"/>: this request saw the real usage of a response first counted from an estimate; the
/// difference was charged and is to be reported.
/// </summary>
internal readonly record struct SettleResult(bool First, UsageCorrection? Correction = null);

/// <summary>Real usage minus the estimate charged before (may be negative), input and output separately, and its cost in micro-dollars.</summary>
internal readonly record struct UsageCorrection(long InputTokens, long OutputTokens, long MicroUsd = 0)
{
    public long TotalTokens => InputTokens + OutputTokens;
}

/// <summary>Dollars as whole micro-dollars (USD × 10^6): what the stores count, exactly, as integers.</summary>
internal static class MicroUsd
{
    public const decimal PerUsd = 1_000_000m;

    /// <summary>Rounds up: a budget or a reservation never loses a fraction of a micro-dollar.</summary>
    public static long From(decimal usd) => (long)Math.Ceiling(usd * PerUsd);

    public static decimal ToUsd(long microUsd) => microUsd / PerUsd;
}
