namespace Gateway.Requests;

/// <summary>
/// What the gateway needs to know from a JSON request body, read once before forwarding. Every value is the one
/// the upstream acts on: a policy key may appear once only (<see cref="RequestInspector"/> refuses duplicates).
/// </summary>
internal sealed class RequestFacts
{
    public string? Model { get; set; }

    public bool Stream { get; set; }

    public bool Background { get; set; }

    public bool? Store { get; set; }

    public string? PreviousResponseId { get; set; }

    public string? ConversationId { get; set; }

    /// <summary>
    /// The most output tokens one choice may produce as the upstream reads the body (<c>max_output_tokens</c>, or the
    /// larger of <c>max_completion_tokens</c> and <c>max_tokens</c> on chat); null when the body sets no limit.
    /// </summary>
    public long? MaxOutputTokens { get; set; }

    /// <summary>The name of the property that held <see cref="MaxOutputTokens"/>, for error messages.</summary>
    public string? MaxOutputTokensParam { get; set; }

    /// <summary><c>max_output_tokens</c> (Responses) or <c>max_completion_tokens</c> (chat) as sent; null when absent or null.</summary>
    public long? OutputLimit { get; set; }

    public JsonValueSlot OutputLimitSlot { get; set; } = JsonValueSlot.Absent;

    /// <summary>Chat: the deprecated <c>max_tokens</c> as sent; null when absent or null.</summary>
    public long? LegacyOutputLimit { get; set; }

    public JsonValueSlot LegacyOutputLimitSlot { get; set; } = JsonValueSlot.Absent;

    /// <summary>Chat: <c>n</c>, the number of choices (each may produce <see cref="MaxOutputTokens"/>); null when absent or null.</summary>
    public long? Choices { get; set; }

    /// <summary>Chat: <c>stream_options.include_usage</c> as sent (null when absent or null).</summary>
    public bool? IncludeUsage { get; set; }

    // Byte positions used to edit the body without re-serializing it.
    public int RootObjectStart { get; set; } = -1;

    /// <summary>Chat: the value of <c>stream_options</c> (an object or null) when present.</summary>
    public JsonValueSlot StreamOptionsSlot { get; set; } = JsonValueSlot.Absent;

    /// <summary>Chat: the value of <c>stream_options.include_usage</c> (true, false or null) when present.</summary>
    public JsonValueSlot IncludeUsageSlot { get; set; } = JsonValueSlot.Absent;
}
