using Gateway.Usage;
using Yarp.ReverseProxy.Forwarder;

namespace Gateway.Forwarding;

/// <summary>
/// Stage 3 of the request path: what happened at the upstream, written only by Forwarding once the body has ended.
/// </summary>
/// <param name="Upstream">The name of the upstream the request went to.</param>
/// <param name="Error">YARP's verdict on the exchange (<see cref="ForwarderError.None"/> when it went through).</param>
/// <param name="Status">The upstream's status code; 0 when no answer arrived.</param>
/// <param name="Usage">What the body said: ids, model, status, token usage.</param>
internal sealed record UpstreamExchange(string Upstream, ForwarderError Error, int Status, UsageReading Usage)
{
    public string? UpstreamRequestId { get; init; }

    /// <summary>How many upstreams were tried (0 when the pool refused the request before any).</summary>
    public int Attempts { get; init; } = 1;

    /// <summary>The answering upstream's <c>PriceMultiplier</c> (<c>default</c>: <c>Gateway:Upstream</c>'s); null when none answered.</summary>
    public decimal? PriceMultiplier { get; init; }

    /// <summary>When the first body byte arrived (<see cref="TimeProvider.GetTimestamp"/>); 0 if none did.</summary>
    public long FirstByteTimestamp { get; init; }

    /// <summary>The upstream connection broke mid-body.</summary>
    public bool Broke { get; init; }

    /// <summary>The body was an SSE stream.</summary>
    public bool Streaming { get; init; }

    /// <summary>Output tokens of the text already forwarded; counted only when the body carried no usage.</summary>
    public long OutputTokensSeen { get; init; }

    /// <summary>An exception of the gateway's own while forwarding; the handler answers it as a gateway fault.</summary>
    public Exception? Fault { get; init; }

    /// <summary>
    /// The ownership records this request issued while its body passed (null: none); the handler awaits them before the
    /// request ends, so the usage event and a graceful drain come after them.
    /// </summary>
    public Task? OwnershipRecorded { get; init; }

    /// <summary>The id of the object this request created, if the body named one.</summary>
    public string? CreatedObjectId => Usage.ObjectId;
}
