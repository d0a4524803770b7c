namespace Gateway.Usage;

/// <summary>The values <see cref="JsonFieldScanner"/> extracts from OpenAI bodies and stream events.</summary>
internal enum ScanField : byte
{
    None = 0,
    Type,
    Id,
    Object,
    Model,
    Status,
    SequenceNumber,
    Delta,
    ChatDeltaContent,
    InputTokens,
    CachedTokens,
    OutputTokens,
    ReasoningTokens,
    TotalTokens,
    PromptTokens,
    CompletionTokens,
    ConversationId,
    Background,

    // Flags: set when a container starts at a path, or an array gets an element.
    UsageObject,
    ErrorObject,
    ChoicesArray,
    ChoicesElement,
    NullUsage,

    Count,
}
