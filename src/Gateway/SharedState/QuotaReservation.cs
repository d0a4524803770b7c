namespace Gateway.SharedState;

/// <summary>What an admitted request holds until it is settled: reserved tokens in each window, a concurrency lease.</summary>
internal sealed record QuotaReservation(
    string TenantId,
    long ReservedTokens,
    long MinuteWindow,
    long DayWindow,
    long MonthWindow,
    string? LeaseId)
{
    /// <summary>Reserved in the in-memory fallback (shared store down); it must be settled there too.</summary>
    public bool ByFallback { get; init; }

    /// <summary>Of <see cref="ReservedTokens"/>, the estimated context of <c>previous_response_id</c> / <c>conversation</c>.</summary>
    public long ContextTokens { get; init; }

    /// <summary>Estimated cost held against the dollar budgets (day and month windows), in micro-dollars.</summary>
    public long ReservedMicroUsd { get; init; }
}
