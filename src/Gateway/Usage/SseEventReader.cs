namespace Gateway.Usage;

/// <summary>What <see cref="SseEventReader.Next"/> found next in the bytes it was given.</summary>
internal enum SsePiece : byte
{
    /// <summary>Every byte given was read; call again with the next bytes.</summary>
    NeedMoreData,

    /// <summary>A part of a <c>data:</c> value (an event's value can arrive in any number of parts).</summary>
    Data,

    /// <summary>A further <c>data:</c> line of the same event starts: SSE joins data lines with a newline.</summary>
    DataLineBreak,

    /// <summary>A part of an <c>event:</c> value.</summary>
    EventName,

    /// <summary>A blank line ended an event; <see cref="SseEventReader.LastEventHadData"/> tells whether it carried data.</summary>
    EventEnd,
}

/// <summary>
/// The one byte-level Server-Sent Events framer of the gateway (the usage tee and the chat usage-chunk filter both
/// read through it). It holds no bytes: it walks what it is given and says where data and event-name values are and
/// where each event ends, carrying only the line state across reads, so any cut of the stream reads the same.
/// Lines end in <c>\n</c> or <c>\r\n</c>; the one optional space after the colon is dropped; comments and other
/// fields are skipped.
/// </summary>
internal sealed class SseEventReader
{
    private LineState _line;
    private FieldName _field;
    private int _fieldNameLength;
    private bool _valueLeadingSpace;
    private bool _eventHasData;
    private bool _heldCarriageReturn; // a value part ended in '\r': part of a CRLF line end unless no '\n' follows

    private enum LineState : byte
    {
        Start,
        Field,
        Value,
    }

    /// <summary>The field of the current line: while its name is read, the field it can still become.</summary>
    private enum FieldName : byte
    {
        Ignored,
        Data,
        Event,
    }

    /// <summary>True between events (nothing of a next event seen yet).</summary>
    public bool AtEventBoundary => _line == LineState.Start && !_eventHasData;

    /// <summary>Whether the event that just ended (<see cref="SsePiece.EventEnd"/>) had a <c>data:</c> line.</summary>
    public bool LastEventHadData { get; private set; }

    public void Reset()
    {
        _line = LineState.Start;
        _field = FieldName.Ignored;
        _fieldNameLength = 0;
        _valueLeadingSpace = false;
        _eventHasData = false;
        _heldCarriageReturn = false;
        LastEventHadData = false;
    }

    /// <summary>Reads from <paramref name="offset"/> to the next piece and moves <paramref name="offset"/> past it.</summary>
    public SsePiece Next(ReadOnlySpan<byte> data, ref int offset, out ReadOnlySpan<byte> value)
    {
        value = default;
        while (offset < data.Length)
        {
            switch (_line)
            {
                case LineState.Start:
                    if (data[offset] == (byte)'\r')
                    {
                        offset++;
                        continue;
                    }

                    if (data[offset] == (byte)'\n')
                    {
                        offset++;
                        LastEventHadData = _eventHasData;
                        _eventHasData = false;
                        return SsePiece.EventEnd;
                    }

                    _line = LineState.Field;
                    _fieldNameLength = 0;
                    _field = FieldName.Ignored;
                    continue;
                case LineState.Field:
                {
                    var b = data[offset++];
                    if (b == (byte)':')
                    {
                        // A comment line (": keep-alive") has an empty name; "data" and "event" must be whole names.
                        _field = (_field, _fieldNameLength) switch
                        {
                            (FieldName.Data, 4) => FieldName.Data,
                            (FieldName.Event, 5) => FieldName.Event,
                            _ => FieldName.Ignored,
                        };
                        _line = LineState.Value;
                        _valueLeadingSpace = true;
                        if (_field == FieldName.Data)
                        {
                            var continues = _eventHasData;
                            _eventHasData = true;
                            if (continues)
                            {
                                return SsePiece.DataLineBreak;
                            }
                        }
                    }
                    else if (b == (byte)'\n')
                    {
                        _line = LineState.Start; // a field without a value: ignored
                    }
                    else
                    {
                        _field = MatchFieldName(b, _fieldNameLength, _field);
                        _fieldNameLength++;
                    }

                    continue;
                }

                case LineState.Value:
                {
                    var rest = data[offset..];
                    if (_valueLeadingSpace)
                    {
                        _valueLeadingSpace = false;
                        if (rest[0] == (byte)' ')
                        {
                            offset++;
                            continue;
                        }
                    }

                    if (_heldCarriageReturn)
                    {
                        _heldCarriageReturn = false;
                        if (rest[0] != (byte)'\n' && _field != FieldName.Ignored)
                        {
                            value = "\r"u8;
                            return _field == FieldName.Data ? SsePiece.Data : SsePiece.EventName;
                        }
                    }

                    var end = rest.IndexOf((byte)'\n');
                    var part = end < 0 ? rest : rest[..end];
                    if (part.Length > 0 && part[^1] == (byte)'\r')
                    {
                        // Before '\n' it ends the line; at the end of a read it may, so it waits for the next byte.
                        part = part[..^1];
                        _heldCarriageReturn = end < 0;
                    }

                    if (end < 0)
                    {
                        offset = data.Length;
                    }
                    else
                    {
                        offset += end + 1;
                        _line = LineState.Start;
                    }

                    if (_field == FieldName.Ignored || part.IsEmpty)
                    {
                        continue;
                    }

                    value = part;
                    return _field == FieldName.Data ? SsePiece.Data : SsePiece.EventName;
                }
            }
        }

        return SsePiece.NeedMoreData;
    }

    /// <summary>Whether a field name read so far (<paramref name="position"/> bytes, then <paramref name="b"/>) can still be "data" or "event".</summary>
    private static FieldName MatchFieldName(byte b, int position, FieldName candidate)
    {
        if (position == 0)
        {
            return b == (byte)'d' ? FieldName.Data : b == (byte)'e' ? FieldName.Event : FieldName.Ignored;
        }

        var expected = candidate switch
        {
            FieldName.Data => "data"u8,
            FieldName.Event => "event"u8,
            _ => default,
        };
        return position < expected.Length && expected[position] == b ? candidate : FieldName.Ignored;
    }
}
