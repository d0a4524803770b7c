using Gateway.Routing;
using Gateway.Tenants;

namespace Gateway.Requests;

/// <summary>
/// Stage 1 of the request path: who asks (tenant), for what (route, path id) and with which body and facts. Built by
/// the handler step by step with <c>with</c> (route matched, then body read and checked); never changed in place.
/// </summary>
internal sealed record AuthenticatedRequest(HttpContext Http, string RequestId, long StartTimestamp, Tenant Tenant)
{
    /// <summary>Null only when the path matched no allowed route.</summary>
    public ApiRoute? Route { get; init; }

    public string? PathId { get; init; }

    /// <summary>The buffered (possibly edited) JSON body that is forwarded; null for routes without one.</summary>
    public PooledBody? Body { get; init; }

    public RequestFacts? Facts { get; init; }

    /// <summary>The gateway turned on chat <c>include_usage</c>; the extra usage chunk must not reach the client.</summary>
    public bool HideChatUsageChunk { get; init; }

    /// <summary>The upstream holding the object this request names (set by Isolation's check); null: any upstream may serve it.</summary>
    public UpstreamPin? Pin { get; init; }
}
