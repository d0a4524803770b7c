namespace Gateway.Usage;

/// <summary>
/// What the upstream's body said about one request, read out once when the body ended: the immutable copy of the
/// <see cref="ObservedUsage"/> the observer filled in while the bytes streamed past.
/// </summary>
internal sealed record UsageReading
{
    public static readonly UsageReading None = new();

    public string? ObjectId { get; init; }

    public string? ObjectType { get; init; }

    public string? Model { get; init; }

    /// <summary>Responses status: completed, incomplete, failed, queued, in_progress, cancelled.</summary>
    public string? ResponseStatus { get; init; }

    public string? ConversationId { get; init; }

    public bool? Background { get; init; }

    public bool HasUsage { get; init; }

    public long? InputTokens { get; init; }

    public long? CachedInputTokens { get; init; }

    public long? OutputTokens { get; init; }

    public long? ReasoningTokens { get; init; }

    public long? TotalTokens { get; init; }

    /// <summary>A Responses terminal event, the chat <c>[DONE]</c>, or a complete JSON body was seen.</summary>
    public bool SawEnd { get; init; }

    /// <summary>An SSE <c>error</c> event or a chat chunk with a top-level error.</summary>
    public bool SawErrorEvent { get; init; }
}
