using Gateway.Routing;

namespace Gateway.Usage;

/// <summary>
/// What the upstream's documents mean for usage: a whole JSON body (Responses, chat, embeddings, conversations), a
/// Responses stream event (<c>response.created|completed|incomplete|failed</c>, text deltas), or a chat stream chunk
/// (the final <c>choices: []</c> usage chunk). It reads the fields <see cref="JsonFieldScanner"/> kept and fills in
/// <see cref="ObservedUsage"/>; framing the bytes is <see cref="SseEventReader"/>'s job, not this one's.
/// </summary>
internal sealed class UsageInterpreter(OutputTokenTally tally)
{
    private UsageShape _shape;

    public ObservedUsage Usage { get; private set; } = new();

    /// <summary>Set when a <c>response.created</c> event or a JSON body revealed the object's id (or a conversation id).</summary>
    public bool ObjectIdJustSeen { get; set; }

    /// <summary>The most recent SSE event was a chat usage chunk (<c>choices: []</c> with usage).</summary>
    public bool LastEventWasChatUsageChunk { get; private set; }

    /// <summary>The most recent SSE event carried a top-level <c>"usage": null</c>.</summary>
    public bool LastEventHadNullUsage { get; private set; }

    public void Begin(UsageShape shape, ObservedUsage usage)
    {
        _shape = shape;
        Usage = usage;
        ObjectIdJustSeen = false;
        ForgetLastEvent();
    }

    /// <summary>An SSE event ended; what the previous one was no longer applies.</summary>
    public void ForgetLastEvent()
    {
        LastEventWasChatUsageChunk = false;
        LastEventHadNullUsage = false;
    }

    /// <summary>A JSON body still arriving: records its id and conversation as soon as each is whole, before the rest is released.</summary>
    public void ReadIdsSoFar(JsonFieldScanner s)
    {
        if (Usage.ObjectId is null && s.HasComplete(ScanField.Id))
        {
            Usage.ObjectId = s.GetString(ScanField.Id);
            ObjectIdJustSeen = Usage.ObjectId is not null;
        }

        if (Usage.ConversationId is null && s.HasComplete(ScanField.ConversationId))
        {
            Usage.ConversationId = s.GetString(ScanField.ConversationId);
            ObjectIdJustSeen |= Usage.ConversationId is not null;
        }
    }

    /// <summary>The chat stream's <c>data: [DONE]</c>.</summary>
    public void ReadStreamDone() => Usage.SawEnd = true;

    /// <summary>Reads one SSE event's data (<paramref name="isEvent"/>) or a whole JSON body.</summary>
    public void ReadDocument(JsonFieldScanner s, bool isEvent)
    {
        if (s.Has(ScanField.SequenceNumber) && s.GetInt64(ScanField.SequenceNumber) is { } sequence)
        {
            Usage.LastSequenceNumber = sequence;
        }

        if (s.Has(ScanField.ErrorObject) || (isEvent && s.StringEquals(ScanField.Type, "error"u8)))
        {
            Usage.SawErrorEvent = true;
        }

        if (_shape == UsageShape.Chat && isEvent)
        {
            ReadChatChunk(s);
            return;
        }

        if (isEvent)
        {
            ReadResponsesEvent(s);
            return;
        }

        // A whole JSON body: Responses, chat, embeddings, conversations, compaction.
        Usage.ObjectId ??= s.GetString(ScanField.Id);
        Usage.ObjectType = s.GetRepeatedString(ScanField.Object);
        Usage.Model = s.GetRepeatedString(ScanField.Model) ?? Usage.Model;
        Usage.ResponseStatus = s.GetRepeatedString(ScanField.Status);
        Usage.ConversationId = s.GetString(ScanField.ConversationId);
        Usage.Background = s.GetBoolean(ScanField.Background);
        ReadUsage(s);
    }

    private void ReadResponsesEvent(JsonFieldScanner s)
    {
        var hadConversation = Usage.ConversationId is not null;
        ReadResponsesEventFields(s);
        if (!hadConversation && Usage.ConversationId is not null)
        {
            ObjectIdJustSeen = true; // a conversation first named after response.created is recorded too
        }
    }

    private void ReadResponsesEventFields(JsonFieldScanner s)
    {
        var type = s.Raw(ScanField.Type);
        if (type.SequenceEqual("response.created"u8) || type.SequenceEqual("response.queued"u8) || type.SequenceEqual("response.in_progress"u8))
        {
            if (Usage.ObjectId is null && s.GetString(ScanField.Id) is { } id)
            {
                Usage.ObjectId = id;
                Usage.ObjectType = "response";
                ObjectIdJustSeen = true;
            }

            Usage.Model ??= s.GetRepeatedString(ScanField.Model);
            Usage.ResponseStatus = s.GetRepeatedString(ScanField.Status) ?? Usage.ResponseStatus;
            Usage.ConversationId ??= s.GetString(ScanField.ConversationId);
            Usage.Background ??= s.GetBoolean(ScanField.Background);
            return;
        }

        if (type.SequenceEqual("response.completed"u8) || type.SequenceEqual("response.incomplete"u8) || type.SequenceEqual("response.failed"u8))
        {
            Usage.SawEnd = true;
            Usage.ObjectId ??= s.GetString(ScanField.Id);
            Usage.ObjectType ??= "response";
            Usage.Model = s.GetRepeatedString(ScanField.Model) ?? Usage.Model;
            Usage.ResponseStatus = s.GetRepeatedString(ScanField.Status) ?? System.Text.Encoding.ASCII.GetString(type["response."u8.Length..]);
            Usage.ConversationId ??= s.GetString(ScanField.ConversationId);
            ReadUsage(s);
            return;
        }

        // Text the client has received; audio deltas are base64, not text.
        if (type.EndsWith(".delta"u8) && !type.StartsWith("response.audio."u8) && s.Has(ScanField.Delta))
        {
            tally.AddJsonString(s.Raw(ScanField.Delta));
        }
    }

    private void ReadChatChunk(JsonFieldScanner s)
    {
        if (Usage.ObjectId is null && s.GetString(ScanField.Id) is { } id)
        {
            Usage.ObjectId = id;
            Usage.ObjectType = "chat.completion";
            ObjectIdJustSeen = true;
        }

        Usage.Model ??= s.GetRepeatedString(ScanField.Model);
        if (s.Has(ScanField.ChatDeltaContent))
        {
            tally.AddJsonString(s.Raw(ScanField.ChatDeltaContent));
        }

        if (s.Has(ScanField.UsageObject))
        {
            ReadUsage(s);
            LastEventWasChatUsageChunk = s.Has(ScanField.ChoicesArray) && !s.Has(ScanField.ChoicesElement);
        }
        else if (s.Has(ScanField.NullUsage))
        {
            LastEventHadNullUsage = true;
        }
    }

    private void ReadUsage(JsonFieldScanner s)
    {
        if (!s.Has(ScanField.UsageObject))
        {
            return;
        }

        // Responses names tokens input/output; chat and embeddings name them prompt/completion.
        var input = s.GetInt64(ScanField.InputTokens) ?? s.GetInt64(ScanField.PromptTokens);
        var output = s.GetInt64(ScanField.OutputTokens) ?? s.GetInt64(ScanField.CompletionTokens);
        var total = s.GetInt64(ScanField.TotalTokens);
        if (input is null && output is null && total is null)
        {
            return;
        }

        Usage.HasUsage = true;
        Usage.InputTokens = input ?? 0;
        Usage.OutputTokens = output ?? (_shape == UsageShape.Embeddings ? 0 : null);
        Usage.CachedInputTokens = s.GetInt64(ScanField.CachedTokens);
        Usage.ReasoningTokens = s.GetInt64(ScanField.ReasoningTokens);
        Usage.TotalTokens = total ?? (input ?? 0) + (output ?? 0);
    }
}
