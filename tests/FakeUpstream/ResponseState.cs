namespace FakeUpstream;

internal enum ResponseStatus
{
    Queued,
    Completed,
    Cancelled,
}

/// <summary>Which snapshot of a response to render: the lifecycle events show it queued/in progress, the end shows it final.</summary>
internal enum ResponsePhase
{
    Queued,
    InProgress,
    Final,
    Cancelled,
}

/// <summary>
/// A created response. Only the inputs are kept; JSON bodies and events are re-rendered from them deterministically,
/// which keeps stored responses small and retrievals identical to the original answer.
/// </summary>
internal sealed class ResponseState
{
    private int _status;
    private long _readyAtMs;
    private int _usageDelivered;

    public required string Id { get; init; }

    public required string MessageId { get; init; }

    public required long CreatedAt { get; init; }

    /// <summary>The dated model name the API reports (e.g. gpt-4o-mini-2024-07-18).</summary>
    public required string Model { get; init; }

    public required int Deltas { get; init; }

    public required TokenUsage Usage { get; init; }

    /// <summary>Cut by max_output_tokens: status <c>incomplete</c>, terminal event <c>response.incomplete</c> (still with usage).</summary>
    public bool Incomplete { get; init; }

    public bool Background { get; init; }

    public bool Store { get; init; } = true;

    public bool Obfuscation { get; init; } = true;

    public int? MaxOutputTokens { get; init; }

    public string? Instructions { get; init; }

    public string? PreviousResponseId { get; init; }

    public string? ConversationId { get; init; }

    /// <summary>Raw JSON of the request's metadata object, or null for <c>{}</c>.</summary>
    public string? MetadataJson { get; init; }

    /// <summary>The request body, parsed again only when input items are listed.</summary>
    public byte[] RequestBody { get; init; } = [];

    public ResponseStatus Status
    {
        get => (ResponseStatus)Volatile.Read(ref _status);
        init => _status = (int)value;
    }

    /// <summary>Environment.TickCount64 after which a queued background response completes on the next GET.</summary>
    public long ReadyAtMs
    {
        get => Interlocked.Read(ref _readyAtMs);
        set => Interlocked.Exchange(ref _readyAtMs, value);
    }

    public string Text => Words.Text(Deltas);

    public bool TryTransition(ResponseStatus from, ResponseStatus to) =>
        Interlocked.CompareExchange(ref _status, (int)to, (int)from) == (int)from;

    /// <summary>True exactly once: the first time this response's usage reaches a client.</summary>
    public bool TryMarkUsageDelivered() => Interlocked.Exchange(ref _usageDelivered, 1) == 0;

    public ResponsePhase CurrentPhase => Status switch
    {
        ResponseStatus.Queued => ResponsePhase.Queued,
        ResponseStatus.Cancelled => ResponsePhase.Cancelled,
        _ => ResponsePhase.Final,
    };
}
