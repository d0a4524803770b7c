using Gateway.Quotas;
using Gateway.Requests;
using Gateway.Upstreams;
using Gateway.Usage;

namespace Gateway.Forwarding;

/// <summary>
/// What Forwarding records about one request while YARP drives it (status, first byte, a broken body, the usage
/// observer). Mutable because it fills in as the bytes pass; it never leaves Forwarding, which reads it out once as
/// an immutable <see cref="UpstreamExchange"/> when the body has ended. YARP's transformer gets it through its own
/// per-request instance (<see cref="UpstreamTransformer.For"/>), not through <c>HttpContext.Features</c>.
/// </summary>
/// <param name="ObjectIdentified">
/// Called when the body first names an object this request created (or a conversation), before those bytes are
/// released: it issues the ownership record and returns its completion, which is not awaited before the bytes go on
/// (<see cref="OwnershipRecorded"/>).
/// </param>
internal sealed class UpstreamCall(AuthenticatedRequest request, QuotaStatus? quotaStatus, TimeProvider clock, Func<ObservedUsage, Task>? objectIdentified)
{
    public AuthenticatedRequest Request { get; } = request;

    /// <summary>The tenant's standing after admission, for the x-ratelimit-* headers.</summary>
    public QuotaStatus? QuotaStatus { get; } = quotaStatus;

    public TimeProvider Clock { get; } = clock;

    public Func<ObservedUsage, Task>? ObjectIdentified { get; } = objectIdentified;

    /// <summary>The ownership records issued for this request, awaited before it finishes (null: none).</summary>
    public Task? OwnershipRecorded { get; private set; }

    public void AddOwnershipRecord(Task recorded) =>
        OwnershipRecorded = OwnershipRecorded is null || OwnershipRecorded.IsCompleted ? recorded : Task.WhenAll(OwnershipRecorded, recorded);

    public int Status { get; set; }

    public string? UpstreamRequestId { get; set; }

    public long FirstByteTimestamp { get; set; }

    /// <summary>The upstream connection broke mid-body (the client got a synthetic error event).</summary>
    public bool Broke { get; set; }

    public UsageObserver? Observer { get; set; }

    /// <summary>The buffered body as this attempt sends it (null: no body); its bytes are in use until it has been sent.</summary>
    public BufferedRequestContent? RequestContent { get; set; }

    /// <summary>
    /// Asked with the response headers, before anything reaches the client: true drops this answer (the pool tries
    /// the next upstream, or answers itself). Null for the single upstream.
    /// </summary>
    public Func<HttpResponseMessage, bool>? DropAnswer { get; init; }
}
