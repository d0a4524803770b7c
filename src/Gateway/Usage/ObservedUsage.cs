namespace Gateway.Usage;

/// <summary>
/// What the upstream's body said about one request, filled in while the body streams past. Mutable, and owned by the
/// observer that fills it; everyone else reads the <see cref="UsageReading"/> it becomes when the body ends.
/// </summary>
internal sealed class ObservedUsage
{
    public string? ObjectId { get; set; }

    public string? ObjectType { get; set; }

    public string? Model { get; set; }

    /// <summary>Responses status: completed, incomplete, failed, queued, in_progress, cancelled.</summary>
    public string? ResponseStatus { get; set; }

    public string? ConversationId { get; set; }

    public bool? Background { get; set; }

    public bool HasUsage { get; set; }

    public long? InputTokens { get; set; }

    public long? CachedInputTokens { get; set; }

    public long? OutputTokens { get; set; }

    public long? ReasoningTokens { get; set; }

    public long? TotalTokens { get; set; }

    /// <summary>A Responses terminal event, the chat <c>[DONE]</c>, or a complete JSON body was seen.</summary>
    public bool SawEnd { get; set; }

    /// <summary>An SSE <c>error</c> event or a chat chunk with a top-level error.</summary>
    public bool SawErrorEvent { get; set; }

    public long LastSequenceNumber { get; set; } = -1;

    public int EventCount { get; set; }

    public UsageReading ToReading() => new()
    {
        ObjectId = ObjectId,
        ObjectType = ObjectType,
        Model = Model,
        ResponseStatus = ResponseStatus,
        ConversationId = ConversationId,
        Background = Background,
        HasUsage = HasUsage,
        InputTokens = InputTokens,
        CachedInputTokens = CachedInputTokens,
        OutputTokens = OutputTokens,
        ReasoningTokens = ReasoningTokens,
        TotalTokens = TotalTokens,
        SawEnd = SawEnd,
        SawErrorEvent = SawErrorEvent,
    };
}
