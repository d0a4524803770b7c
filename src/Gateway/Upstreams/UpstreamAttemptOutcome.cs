namespace Gateway.Upstreams;

/// <summary>What one attempt at one upstream came to before the first byte went to the client.</summary>
/// <param name="StatusCode">The upstream's status, or 0 when it never answered.</param>
/// <param name="RetryHint">From <see cref="RetryHint"/>: how long the upstream asked us to wait (429, 503).</param>
internal readonly record struct UpstreamAttemptOutcome(int StatusCode, UpstreamTransportFailure TransportFailure, TimeSpan? RetryHint)
{
    public static UpstreamAttemptOutcome Answered(int statusCode, TimeSpan? retryHint = null) => new(statusCode, UpstreamTransportFailure.None, retryHint);

    /// <summary>
    /// The outcome of an answer's headers. The retry hint is read only where it is used (429 and 5xx cooldowns): a
    /// 200 from OpenAI carries x-ratelimit-reset-* too, and parsing them on every answer would be wasted work.
    /// </summary>
    public static UpstreamAttemptOutcome FromAnswer(HttpResponseMessage response, DateTimeOffset now)
    {
        var status = (int)response.StatusCode;
        return Answered(status, status is 429 or >= 500 ? Upstreams.RetryHint.From(response, now) : null);
    }

    public static UpstreamAttemptOutcome ConnectFailed => new(0, UpstreamTransportFailure.ConnectFailure, null);

    /// <summary>Silent past the activity timeout before response headers.</summary>
    public static UpstreamAttemptOutcome TimedOut => new(0, UpstreamTransportFailure.Timeout, null);

    public UpstreamOutcomeKind Kind => TransportFailure != UpstreamTransportFailure.None
        ? UpstreamOutcomeKind.Unavailable
        : StatusCode switch
        {
            429 => UpstreamOutcomeKind.RateLimited,
            401 => UpstreamOutcomeKind.AuthFailure,
            403 => UpstreamOutcomeKind.Forbidden,
            >= 500 => UpstreamOutcomeKind.Unavailable,
            _ => UpstreamOutcomeKind.Answered,
        };

    /// <summary>Bounded metric label: 2xx…5xx, connect_failure or timeout.</summary>
    public string StatusClass => TransportFailure switch
    {
        UpstreamTransportFailure.ConnectFailure => "connect_failure",
        UpstreamTransportFailure.Timeout => "timeout",
        _ => StatusCode switch
        {
            >= 200 and < 300 => "2xx",
            >= 300 and < 400 => "3xx",
            >= 400 and < 500 => "4xx",
            >= 500 and < 600 => "5xx",
            _ => "other",
        },
    };
}

internal enum UpstreamTransportFailure
{
    None,
    ConnectFailure,
    Timeout,
}

internal enum UpstreamOutcomeKind
{
    /// <summary>The upstream answered (2xx, or the client's own 4xx): healthy.</summary>
    Answered,

    /// <summary>429: that model is out of quota on that upstream for a while.</summary>
    RateLimited,

    /// <summary>5xx, connect failure or timeout before headers: counts toward cooling the whole upstream.</summary>
    Unavailable,

    /// <summary>401: our key for that upstream is wrong or revoked.</summary>
    AuthFailure,

    /// <summary>403: our identity may not use that model there (also a missing Azure role). Per model, because a
    /// tenant can provoke it with a model the key may not use, and must not take the upstream away from everyone.</summary>
    Forbidden,
}
