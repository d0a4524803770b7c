using Gateway.Errors;
using Gateway.SharedState;

namespace Gateway.Quotas;

/// <summary>
/// Stage 2 of the request path: what the request holds against the tenant's quotas (settled when it ends) and the
/// tenant's standing for the x-ratelimit-* headers. A refused step keeps what an earlier step took (a pre-admitted
/// slot), so the request still settles and gives it back.
/// </summary>
internal sealed record Admission(QuotaReservation? Reservation, QuotaStatus? Status)
{
    public static readonly Admission None = new(null, null);
}

/// <summary>The result of one admission step: the admission so far and, when refused, the answer to give.</summary>
internal readonly record struct AdmissionStep(Admission Admission, OpenAIError? Refusal);
