using Gateway.Quotas;
using Gateway.Requests;
using Gateway.Routing;
using Gateway.Tenants;
using Gateway.Usage;
using Yarp.ReverseProxy.Forwarder;

namespace Gateway.Pipeline;

/// <summary>How a request ended, as written in the usage event's <c>Outcome</c>.</summary>
internal enum Outcome
{
    Completed,
    Incomplete,
    Failed,
    Rejected,
    ClientAborted,
    UpstreamError,

    /// <summary>A fault of the gateway itself (answered 500 server_error); not the upstream's and not the client's.</summary>
    GatewayError,
}

/// <summary>Everything the gateway learns about one request on its way through, read by the usage event at the end.</summary>
internal sealed class GatewayExchange(HttpContext http, string requestId, TimeProvider clock)
{
    public HttpContext Http { get; } = http;

    public TimeProvider Clock { get; } = clock;

    public string RequestId { get; } = requestId;

    public long StartTimestamp { get; } = clock.GetTimestamp();

    public long FirstByteTimestamp { get; set; }

    public Tenant? Tenant { get; set; }

    public ApiRoute? Route { get; set; }

    public string? PathId { get; set; }

    public PooledBody? Body { get; set; }

    public RequestFacts? Request { get; set; }

    /// <summary>The gateway itself answered (400/404/413/415/429/503...); nothing reached the upstream.</summary>
    public bool Rejected { get; set; }

    public bool Forwarded { get; set; }

    /// <summary>The gateway failed while handling the request (an exception of its own).</summary>
    public bool GatewayFault { get; set; }

    public ForwarderError ForwarderError { get; set; }

    public int UpstreamStatus { get; set; }

    public string? UpstreamRequestId { get; set; }

    /// <summary>The upstream connection broke mid-body (the client got a synthetic error event).</summary>
    public bool UpstreamBroke { get; set; }

    /// <summary>The gateway turned on chat <c>include_usage</c>; the extra usage chunk must not reach the client.</summary>
    public bool HideChatUsageChunk { get; set; }

    public UsageObserver? Observer { get; set; }

    public ObservedUsage Usage { get; } = new();

    public QuotaReservation? Reservation { get; set; }

    /// <summary>The tenant's rate-limit state after admission, for the x-ratelimit-* headers.</summary>
    public QuotaStatus? QuotaStatus { get; set; }

    /// <summary>Called (and awaited) when the upstream body reveals the id of an object this request created.</summary>
    public Func<GatewayExchange, ValueTask>? ObjectIdentified { get; set; }

    public bool IsStreamingResponse => Observer?.Format == BodyFormat.Sse;
}
