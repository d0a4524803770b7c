namespace FakeUpstream;

/// <summary>
/// How a whole fake instance behaves, whatever the request headers say (a gateway in front of several fakes sends
/// the same headers to each): set with <see cref="FakeUpstreamServer.SetMode"/> or <c>POST /_fake/mode</c>
/// <c>{"mode":"fail","status":503}</c>, <c>{"mode":"throttle","retryAfter":2,"retryAfterMs":1500}</c>,
/// <c>{"mode":"hang"}</c>, <c>{"mode":"normal"}</c>, or <c>{"mode":"stop"}</c> (closes the listener).
/// </summary>
public sealed record FakeUpstreamMode
{
    public static readonly FakeUpstreamMode Normal = new() { Kind = FakeUpstreamModeKind.Normal };

    public static readonly FakeUpstreamMode Hang = new() { Kind = FakeUpstreamModeKind.Hang };

    public FakeUpstreamModeKind Kind { get; init; }

    /// <summary>Status of <see cref="FakeUpstreamModeKind.Fail"/> (e.g. 500, 503, 401).</summary>
    public int Status { get; init; } = 500;

    /// <summary><c>retry-after</c> seconds of a throttled answer, if any.</summary>
    public int? RetryAfterSeconds { get; init; }

    /// <summary><c>retry-after-ms</c> of a throttled answer, if any.</summary>
    public int? RetryAfterMs { get; init; }

    public static FakeUpstreamMode Fail(int status) => new() { Kind = FakeUpstreamModeKind.Fail, Status = status };

    public static FakeUpstreamMode Throttle(int? retryAfterSeconds = null, int? retryAfterMs = null) =>
        new() { Kind = FakeUpstreamModeKind.Throttle, Status = 429, RetryAfterSeconds = retryAfterSeconds, RetryAfterMs = retryAfterMs };
}

public enum FakeUpstreamModeKind
{
    Normal,

    /// <summary>Every /v1 request gets the OpenAI error envelope of <see cref="FakeUpstreamMode.Status"/>.</summary>
    Fail,

    /// <summary>Every /v1 request gets 429 with the configured retry headers.</summary>
    Throttle,

    /// <summary>Every /v1 request is read and then never answered (no headers) until the client gives up.</summary>
    Hang,
}
