using Gateway.Routing;

namespace Gateway.Usage;

/// <summary>
/// Reads usage out of an upstream body as it passes: a complete JSON document, a Responses SSE stream
/// (usage only in <c>response.completed|incomplete|failed</c>), or a chat SSE stream (the final usage
/// chunk before <c>[DONE]</c>). It never holds the body: SSE is framed line by line, each event's data goes
/// through <see cref="JsonFieldScanner"/>, and only the fields that matter are kept.
/// Text deltas are tallied so a stream cut short still gets an output-token estimate.
/// </summary>
internal sealed class UsageObserver : IDisposable
{
    private const int MaxEventName = 64;

    private readonly JsonFieldScanner _scanner = new();
    private readonly OutputTokenTally _tally;
    private ObservedUsage _usage = new();
    private readonly byte[] _eventName = new byte[MaxEventName];
    private readonly byte[] _dataPrefix = new byte[8];
    private BodyFormat _format;
    private UsageShape _shape;
    private LineState _line;
    private int _fieldLength;
    private int _fieldKind; // 0 unknown/ignored, 1 event, 2 data
    private int _eventNameLength;
    private int _dataPrefixLength;
    private bool _eventHasData;
    private bool _valueLeadingSpace;

    public UsageObserver(TokenCounter counter) => _tally = new OutputTokenTally(counter);

    private enum LineState : byte
    {
        Start,
        Field,
        Value,
    }

    public BodyFormat Format => _format;

    /// <summary>The most recent SSE event was a chat usage chunk (<c>choices: []</c> with usage).</summary>
    public bool LastEventWasChatUsageChunk { get; private set; }

    /// <summary>The most recent SSE event carried a top-level <c>"usage": null</c>.</summary>
    public bool LastEventHadNullUsage { get; private set; }

    /// <summary>Set when a <c>response.created</c> event or a JSON body revealed the object's id.</summary>
    public bool ObjectIdJustSeen { get; set; }

    public ObservedUsage Usage => _usage;

    /// <summary>True between SSE events (nothing of a next event seen yet).</summary>
    public bool AtEventBoundary => _line == LineState.Start && !_eventHasData;

    public OutputTokenTally Tally => _tally;

    public void Begin(BodyFormat format, UsageShape shape, ObservedUsage usage)
    {
        _format = format;
        _shape = shape;
        _usage = usage;
        ObjectIdJustSeen = false;
        LastEventWasChatUsageChunk = false;
        LastEventHadNullUsage = false;
        _scanner.Reset();
        _line = LineState.Start;
        ResetEvent();
    }

    /// <summary>Observes the next bytes of the body, in order.</summary>
    public void Observe(ReadOnlySpan<byte> data)
    {
        switch (_format)
        {
            case BodyFormat.Json:
                if (!_scanner.IsComplete && !_scanner.HasFailed)
                {
                    _scanner.Feed(data);

                    // Only whole values: a chunk can end inside the id string. The conversation a response names is
                    // recorded as it passes too (before the rest of the body is released), not only at the end.
                    if (_usage.ObjectId is null && _scanner.HasComplete(ScanField.Id))
                    {
                        _usage.ObjectId = _scanner.GetString(ScanField.Id);
                        ObjectIdJustSeen = _usage.ObjectId is not null;
                    }

                    if (_usage.ConversationId is null && _scanner.HasComplete(ScanField.ConversationId))
                    {
                        _usage.ConversationId = _scanner.GetString(ScanField.ConversationId);
                        ObjectIdJustSeen |= _usage.ConversationId is not null;
                    }
                }

                break;
            case BodyFormat.Sse:
                ObserveSse(data);
                break;
        }
    }

    /// <summary>Called once the body has ended (or was cut): completes a JSON document's fields.</summary>
    public void Complete()
    {
        if (_format == BodyFormat.Json && _scanner.IsComplete)
        {
            ReadDocument(_scanner, isEvent: false);
            _usage.SawEnd = true;
        }
    }

    private void ObserveSse(ReadOnlySpan<byte> data)
    {
        var i = 0;
        while (i < data.Length)
        {
            switch (_line)
            {
                case LineState.Start:
                    if (data[i] == (byte)'\r')
                    {
                        i++;
                        continue;
                    }

                    if (data[i] == (byte)'\n')
                    {
                        i++;
                        DispatchEvent();
                        continue;
                    }

                    _line = LineState.Field;
                    _fieldLength = 0;
                    _fieldKind = -1;
                    continue;
                case LineState.Field:
                {
                    var b = data[i++];
                    if (b == (byte)':')
                    {
                        _fieldKind = _fieldLength switch
                        {
                            0 => 0, // comment line
                            4 when _fieldKind == -4 => 2,
                            5 when _fieldKind == -5 => 1,
                            _ => 0,
                        };
                        _line = LineState.Value;
                        _valueLeadingSpace = true;
                        if (_fieldKind == 2)
                        {
                            if (_eventHasData)
                            {
                                _scanner.Feed("\n"u8); // SSE joins multiple data lines with a newline
                            }

                            _eventHasData = true;
                        }
                    }
                    else if (b == (byte)'\n')
                    {
                        _line = LineState.Start; // a field without a value: ignored
                    }
                    else
                    {
                        // Track whether the name so far is a prefix of "data" (-4) or "event" (-5).
                        _fieldKind = MatchFieldName(b, _fieldLength, _fieldKind);
                        _fieldLength++;
                    }

                    continue;
                }

                case LineState.Value:
                {
                    var rest = data[i..];
                    if (_valueLeadingSpace)
                    {
                        _valueLeadingSpace = false;
                        if (rest[0] == (byte)' ')
                        {
                            i++;
                            continue;
                        }
                    }

                    var end = rest.IndexOf((byte)'\n');
                    var value = end < 0 ? rest : rest[..end];
                    if (end >= 0 && value.Length > 0 && value[^1] == (byte)'\r')
                    {
                        value = value[..^1];
                    }

                    if (_fieldKind == 2)
                    {
                        CapturePrefix(value);
                        _scanner.Feed(value);
                    }
                    else if (_fieldKind == 1)
                    {
                        var take = Math.Min(value.Length, MaxEventName - _eventNameLength);
                        value[..take].CopyTo(_eventName.AsSpan(_eventNameLength));
                        _eventNameLength += take;
                    }

                    if (end < 0)
                    {
                        return;
                    }

                    i += end + 1;
                    _line = LineState.Start;
                    continue;
                }
            }
        }
    }

    private static int MatchFieldName(byte b, int position, int state)
    {
        if (position == 0)
        {
            return b == (byte)'d' ? -4 : b == (byte)'e' ? -5 : 0;
        }

        ReadOnlySpan<byte> expected = state == -4 ? "data"u8 : state == -5 ? "event"u8 : default;
        return position < expected.Length && expected[position] == b ? state : 0;
    }

    private void CapturePrefix(ReadOnlySpan<byte> value)
    {
        var take = Math.Min(value.Length, _dataPrefix.Length - _dataPrefixLength);
        value[..take].CopyTo(_dataPrefix.AsSpan(_dataPrefixLength));
        _dataPrefixLength += take;
    }

    private void DispatchEvent()
    {
        if (!_eventHasData)
        {
            ResetEvent();
            return;
        }

        _usage.EventCount++;
        LastEventWasChatUsageChunk = false;
        LastEventHadNullUsage = false;
        if (_dataPrefix.AsSpan(0, _dataPrefixLength).StartsWith("[DONE]"u8))
        {
            _usage.SawEnd = true;
        }
        else if (_scanner.IsComplete)
        {
            ReadDocument(_scanner, isEvent: true);
        }

        ResetEvent();
    }

    private void ResetEvent()
    {
        _scanner.Reset();
        _eventNameLength = 0;
        _dataPrefixLength = 0;
        _eventHasData = false;
    }

    private void ReadDocument(JsonFieldScanner s, bool isEvent)
    {
        if (s.Has(ScanField.SequenceNumber) && s.GetInt64(ScanField.SequenceNumber) is { } sequence)
        {
            _usage.LastSequenceNumber = sequence;
        }

        if (s.Has(ScanField.ErrorObject) || (isEvent && s.StringEquals(ScanField.Type, "error"u8)))
        {
            _usage.SawErrorEvent = true;
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
        _usage.ObjectId ??= s.GetString(ScanField.Id);
        _usage.ObjectType = s.GetString(ScanField.Object);
        _usage.Model = s.GetString(ScanField.Model) ?? _usage.Model;
        _usage.ResponseStatus = s.GetString(ScanField.Status);
        _usage.ConversationId = s.GetString(ScanField.ConversationId);
        _usage.Background = s.GetBoolean(ScanField.Background);
        ReadUsage(s);
    }

    private void ReadResponsesEvent(JsonFieldScanner s)
    {
        var hadConversation = _usage.ConversationId is not null;
        ReadResponsesEventFields(s);
        if (!hadConversation && _usage.ConversationId is not null)
        {
            ObjectIdJustSeen = true; // a conversation first named after response.created is recorded too
        }
    }

    private void ReadResponsesEventFields(JsonFieldScanner s)
    {
        var type = s.Raw(ScanField.Type);
        if (type.SequenceEqual("response.created"u8) || type.SequenceEqual("response.queued"u8) || type.SequenceEqual("response.in_progress"u8))
        {
            if (_usage.ObjectId is null && s.GetString(ScanField.Id) is { } id)
            {
                _usage.ObjectId = id;
                _usage.ObjectType = "response";
                ObjectIdJustSeen = true;
            }

            _usage.Model ??= s.GetString(ScanField.Model);
            _usage.ResponseStatus = s.GetString(ScanField.Status) ?? _usage.ResponseStatus;
            _usage.ConversationId ??= s.GetString(ScanField.ConversationId);
            _usage.Background ??= s.GetBoolean(ScanField.Background);
            return;
        }

        if (type.SequenceEqual("response.completed"u8) || type.SequenceEqual("response.incomplete"u8) || type.SequenceEqual("response.failed"u8))
        {
            _usage.SawEnd = true;
            _usage.ObjectId ??= s.GetString(ScanField.Id);
            _usage.ObjectType ??= "response";
            _usage.Model = s.GetString(ScanField.Model) ?? _usage.Model;
            _usage.ResponseStatus = s.GetString(ScanField.Status) ?? System.Text.Encoding.ASCII.GetString(type["response."u8.Length..]);
            _usage.ConversationId ??= s.GetString(ScanField.ConversationId);
            ReadUsage(s);
            return;
        }

        // Text the client has received; audio deltas are base64, not text.
        if (type.EndsWith(".delta"u8) && !type.StartsWith("response.audio."u8) && s.Has(ScanField.Delta))
        {
            _tally.AddJsonString(s.Raw(ScanField.Delta));
        }
    }

    private void ReadChatChunk(JsonFieldScanner s)
    {
        if (_usage.ObjectId is null && s.GetString(ScanField.Id) is { } id)
        {
            _usage.ObjectId = id;
            _usage.ObjectType = "chat.completion";
            ObjectIdJustSeen = true;
        }

        _usage.Model ??= s.GetString(ScanField.Model);
        if (s.Has(ScanField.ChatDeltaContent))
        {
            _tally.AddJsonString(s.Raw(ScanField.ChatDeltaContent));
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

        _usage.HasUsage = true;
        _usage.InputTokens = input ?? 0;
        _usage.OutputTokens = output ?? (_shape == UsageShape.Embeddings ? 0 : null);
        _usage.CachedInputTokens = s.GetInt64(ScanField.CachedTokens);
        _usage.ReasoningTokens = s.GetInt64(ScanField.ReasoningTokens);
        _usage.TotalTokens = total ?? (input ?? 0) + (output ?? 0);
    }

    /// <summary>Returns pooled buffers; the observer can then be reused for another request.</summary>
    public void Dispose()
    {
        _tally.Reset();
        _format = BodyFormat.None;
        _usage = new ObservedUsage();
    }
}

/// <summary>How the upstream body is framed.</summary>
internal enum BodyFormat : byte
{
    /// <summary>Not read (errors, non-metered routes, unknown content types).</summary>
    None,
    Json,
    Sse,
}
