namespace Gateway.Usage;

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

/// <summary>
/// Stage 4 of the request path: how the request ended and what the upstream said, the input of accounting
/// (Quotas settles, Usage bills and writes the event). Decided once by the handler.
/// </summary>
internal sealed record RequestOutcome(Outcome Kind, UsageReading Usage)
{
    /// <summary>The request was sent to the upstream.</summary>
    public bool Forwarded { get; init; }

    /// <summary>The upstream's status code; 0 when no answer arrived.</summary>
    public int UpstreamStatus { get; init; }

    public string? UpstreamRequestId { get; init; }

    /// <summary>The name of the upstream that answered (or was tried last); null when none was tried.</summary>
    public string? Upstream { get; init; }

    /// <summary>How many upstreams were tried.</summary>
    public int Attempts { get; init; }

    /// <summary>The answering upstream's price factor; null: <c>Gateway:Upstream:PriceMultiplier</c>.</summary>
    public decimal? PriceMultiplier { get; init; }

    /// <summary>The upstream answered with an SSE stream.</summary>
    public bool Streaming { get; init; }

    /// <summary>Output tokens of the text already forwarded, counted only when the upstream gave no usage.</summary>
    public long OutputTokensSeen { get; init; }

    /// <summary>When the first upstream body byte arrived (<see cref="TimeProvider.GetTimestamp"/>); 0 if none did.</summary>
    public long FirstByteTimestamp { get; init; }

    public string Text => Kind switch
    {
        Outcome.Completed => "completed",
        Outcome.Incomplete => "incomplete",
        Outcome.Failed => "failed",
        Outcome.Rejected => "rejected",
        Outcome.ClientAborted => "client_aborted",
        Outcome.GatewayError => "gateway_error",
        _ => "upstream_error",
    };
}
