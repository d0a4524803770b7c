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

    /// <summary>
    /// Back to a new instance's values, for the next request of the pooled observer that owns it (one object fewer per
    /// request, #15). Only called once the previous request's <see cref="ToReading"/> was taken.
    /// </summary>
    public void Reset()
    {
        ObjectId = null;
        ObjectType = null;
        Model = null;
        ResponseStatus = null;
        ConversationId = null;
        Background = null;
        HasUsage = false;
        InputTokens = null;
        CachedInputTokens = null;
        OutputTokens = null;
        ReasoningTokens = null;
        TotalTokens = null;
        SawEnd = false;
        SawErrorEvent = false;
        LastSequenceNumber = -1;
        EventCount = 0;
    }

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
