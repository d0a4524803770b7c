namespace Gateway.Requests;

/// <summary>What the gateway needs to know from a JSON request body, read once before forwarding.</summary>
internal sealed class RequestFacts
{
    public string? Model { get; set; }

    public bool Stream { get; set; }

    public bool Background { get; set; }

    public bool? Store { get; set; }

    public string? PreviousResponseId { get; set; }

    public string? ConversationId { get; set; }

    /// <summary>The output limit the client asked for (<c>max_output_tokens</c>, <c>max_completion_tokens</c> or <c>max_tokens</c>).</summary>
    public long? MaxOutputTokens { get; set; }

    /// <summary>The name of the property that held <see cref="MaxOutputTokens"/>, for error messages.</summary>
    public string? MaxOutputTokensParam { get; set; }

    /// <summary>True when the output-limit property exists but is not an integer.</summary>
    public bool MaxOutputTokensInvalid { get; set; }

    /// <summary>Chat: <c>stream_options.include_usage</c> as sent (null when absent).</summary>
    public bool? IncludeUsage { get; set; }

    // Byte positions used to edit the body without re-serializing it.
    public int RootObjectStart { get; set; } = -1;

    public int StreamOptionsObjectStart { get; set; } = -1;

    public int IncludeUsageValueStart { get; set; } = -1;

    public int IncludeUsageValueLength { get; set; }
}
