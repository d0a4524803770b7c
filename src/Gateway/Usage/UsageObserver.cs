using Gateway.Routing;

namespace Gateway.Usage;

/// <summary>
/// Reads usage out of an upstream body as it passes: a complete JSON document, a Responses SSE stream
/// (usage only in <c>response.completed|incomplete|failed</c>), or a chat SSE stream (the final usage
/// chunk before <c>[DONE]</c>). It never holds the body: <see cref="SseEventReader"/> frames the stream, each
/// event's data goes through <see cref="JsonFieldScanner"/>, and <see cref="UsageInterpreter"/> keeps only the
/// fields that matter. Text deltas are tallied so a stream cut short still gets an output-token estimate.
/// </summary>
internal sealed class UsageObserver : IDisposable
{
    private readonly JsonFieldScanner _scanner = new();
    private readonly SseEventReader _sse = new();
    private readonly OutputTokenTally _tally;
    private readonly UsageInterpreter _interpreter;
    private readonly byte[] _dataPrefix = new byte[8];
    private BodyFormat _format;
    private int _dataPrefixLength;

    public UsageObserver(TokenCounter counter)
    {
        _tally = new OutputTokenTally(counter);
        _interpreter = new UsageInterpreter(_tally);
    }

    public BodyFormat Format => _format;

    /// <inheritdoc cref="UsageInterpreter.LastEventWasChatUsageChunk"/>
    public bool LastEventWasChatUsageChunk => _interpreter.LastEventWasChatUsageChunk;

    /// <inheritdoc cref="UsageInterpreter.LastEventHadNullUsage"/>
    public bool LastEventHadNullUsage => _interpreter.LastEventHadNullUsage;

    /// <summary>Set when a <c>response.created</c> event or a JSON body revealed the object's id.</summary>
    public bool ObjectIdJustSeen
    {
        get => _interpreter.ObjectIdJustSeen;
        set => _interpreter.ObjectIdJustSeen = value;
    }

    public ObservedUsage Usage => _interpreter.Usage;

    /// <summary>True between SSE events (nothing of a next event seen yet).</summary>
    public bool AtEventBoundary => _sse.AtEventBoundary;

    public OutputTokenTally Tally => _tally;

    /// <summary>Begins a body with the observer's own <see cref="ObservedUsage"/>, reset (the pooled path: no new object per request).</summary>
    public void Begin(BodyFormat format, UsageShape shape)
    {
        var usage = _interpreter.Usage;
        usage.Reset();
        Begin(format, shape, usage);
    }

    public void Begin(BodyFormat format, UsageShape shape, ObservedUsage usage)
    {
        _format = format;
        _interpreter.Begin(shape, usage);
        _scanner.Reset();
        _sse.Reset();
        _dataPrefixLength = 0;
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
                    _interpreter.ReadIdsSoFar(_scanner);
                }

                break;
            case BodyFormat.Sse:
                ObserveSse(data, stopAtEventEnd: false);
                break;
        }
    }

    /// <summary>
    /// Observes an SSE body up to the end of the next event (or all of <paramref name="data"/>); returns how many bytes
    /// it read and whether an event ended there, so a filter can act on whole events framed by the same reader.
    /// </summary>
    public int ObserveToEventEnd(ReadOnlySpan<byte> data, out bool eventEnded)
    {
        var read = ObserveSse(data, stopAtEventEnd: true);
        eventEnded = read >= 0;
        return eventEnded ? read : data.Length;
    }

    /// <summary>Called once the body has ended (or was cut): completes a JSON document's fields.</summary>
    public void Complete()
    {
        if (_format == BodyFormat.Json && _scanner.IsComplete)
        {
            _interpreter.ReadDocument(_scanner, isEvent: false);
            Usage.SawEnd = true;
        }
    }

    /// <summary>Returns the offset just past the first event end when <paramref name="stopAtEventEnd"/>; otherwise (or with none) -1.</summary>
    private int ObserveSse(ReadOnlySpan<byte> data, bool stopAtEventEnd)
    {
        var offset = 0;
        while (true)
        {
            switch (_sse.Next(data, ref offset, out var value))
            {
                case SsePiece.NeedMoreData:
                    return -1;
                case SsePiece.Data:
                    CapturePrefix(value);
                    _scanner.Feed(value);
                    break;
                case SsePiece.DataLineBreak:
                    _scanner.Feed("\n"u8);
                    break;
                case SsePiece.EventEnd:
                    DispatchEvent();
                    if (stopAtEventEnd)
                    {
                        return offset;
                    }

                    break;
            }
        }
    }

    private void CapturePrefix(ReadOnlySpan<byte> value)
    {
        var take = Math.Min(value.Length, _dataPrefix.Length - _dataPrefixLength);
        value[..take].CopyTo(_dataPrefix.AsSpan(_dataPrefixLength));
        _dataPrefixLength += take;
    }

    private void DispatchEvent()
    {
        _interpreter.ForgetLastEvent();
        if (_sse.LastEventHadData)
        {
            Usage.EventCount++;
            if (_dataPrefix.AsSpan(0, _dataPrefixLength).StartsWith("[DONE]"u8))
            {
                _interpreter.ReadStreamDone();
            }
            else if (_scanner.IsComplete)
            {
                _interpreter.ReadDocument(_scanner, isEvent: true);
            }
        }

        _scanner.Reset();
        _dataPrefixLength = 0;
    }

    /// <summary>
    /// The stream is about to wait for its next bytes: between SSE events, give the scanner's value arena and the
    /// tally's batch back to their pools (10,000 open streams mostly wait), keeping only what the next bytes need.
    /// </summary>
    public void ReleaseIdleBuffers()
    {
        if (_format == BodyFormat.Sse && _sse.AtEventBoundary)
        {
            _scanner.ReleaseArena();
        }

        _tally.ReleaseBatch();
    }

    /// <summary>Whether a pooled buffer is held (a test hook: an idle stream holds none).</summary>
    internal bool HoldsPooledBuffers => _scanner.HoldsArena || _tally.HoldsBatch;

    /// <summary>Returns pooled buffers; the observer can then be reused for another request.</summary>
    public void Dispose()
    {
        _tally.Reset();
        _scanner.Reset();
        _scanner.ReleaseArena();
        _format = BodyFormat.None;
        // Keeps this request's (finished) usage until the next Attach replaces it: no new object per request just to let go of it.
        _interpreter.Begin(UsageShape.None, _interpreter.Usage);
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
