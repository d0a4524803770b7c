namespace Gateway.Upstreams;

/// <summary>
/// What to do with one attempt's outcome, decided before any byte went to the client (the caller must never ask
/// once the response has started). 429, 5xx (500/502/503/504 and the rest), connect failures, timeouts before
/// headers and 401/403 move on to the next candidate; everything else (2xx, 400/404/409/422…) is the answer.
/// </summary>
internal static class UpstreamFailoverPolicy
{
    public static FailoverAction Decide(UpstreamAttemptOutcome outcome, FailoverContext context)
    {
        var kind = outcome.Kind;
        if (kind == UpstreamOutcomeKind.Answered)
        {
            return FailoverAction.Relay;
        }

        var failoverAllowed = context.FailoverAllowed && context.AttemptNumber < context.MaxAttempts && context.HasNextCandidate;
        if (failoverAllowed)
        {
            return FailoverAction.TryNext;
        }

        // Out of candidates or attempts (or pinned / the model's only upstream).
        return kind switch
        {
            // The tenant never sees an upstream's auth message: it is about our key, not theirs.
            UpstreamOutcomeKind.AuthFailure or UpstreamOutcomeKind.Forbidden => FailoverAction.AnswerBadGateway,
            UpstreamOutcomeKind.Unavailable when outcome.TransportFailure == UpstreamTransportFailure.Timeout => FailoverAction.AnswerGatewayTimeout,
            UpstreamOutcomeKind.Unavailable when outcome.TransportFailure == UpstreamTransportFailure.ConnectFailure => FailoverAction.AnswerBadGateway,
            // Several candidates and at least one was rate limited: our 429 with the soonest recovery.
            _ when context.FailoverAllowed && (kind == UpstreamOutcomeKind.RateLimited || context.EarlierAttemptRateLimited) => FailoverAction.AnswerRateLimited,
            // A single or pinned upstream's own 429 or 5xx is relayed, as without a pool.
            _ => FailoverAction.Relay,
        };
    }
}

/// <param name="AttemptNumber">1 for the first attempt.</param>
/// <param name="FailoverAllowed">False for a pinned request and for a model with a single candidate.</param>
/// <param name="EarlierAttemptRateLimited">An earlier attempt of this request got a 429.</param>
internal readonly record struct FailoverContext(int AttemptNumber, int MaxAttempts, bool HasNextCandidate, bool FailoverAllowed, bool EarlierAttemptRateLimited);

internal enum FailoverAction
{
    /// <summary>Send this upstream's answer to the client.</summary>
    Relay,

    /// <summary>Report the outcome and send the same buffered request to the next candidate.</summary>
    TryNext,

    /// <summary>OpenAI's 429 envelope in the gateway's words, with retry-after(-ms) of the soonest recovery.</summary>
    AnswerRateLimited,

    /// <summary>502: no upstream gave a usable answer.</summary>
    AnswerBadGateway,

    /// <summary>504: the upstream stayed silent past the timeout.</summary>
    AnswerGatewayTimeout,
}
