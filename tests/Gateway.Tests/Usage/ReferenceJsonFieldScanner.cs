using System.Buffers;
using Gateway.Usage;

namespace Gateway.Tests.Usage;

/// <summary>
/// The scanner's algorithm as it was before the vectorised skips (#15, fifth pass), kept only as the oracle of
/// <see cref="JsonFieldScannerPropertyTests"/>: the shipped scanner must find exactly what this one found (every
/// field's presence, completeness and raw bytes, completion and failure) for every input in every chunking. System.Text.Json
/// cannot be the oracle: it knows nothing of the scanner's raw values (escapes kept), capacities, flags or failure point.
/// </summary>
internal sealed class ReferenceJsonFieldScanner
{
    private const int MaxDepth = 96;
    private const int MaxKeyLength = 48;

    // One arena for every captured value, sized per field: ~3 KB per scanner keeps 10,000 open streams cheap.
    // The Responses delta and the chat delta content never occur in the same document, so they share one slot.
    private static readonly int[] Capacities = BuildCapacities();
    private static readonly int[] Offsets = BuildOffsets(out ArenaSize);
    private static readonly int ArenaSize;

    private static readonly SearchValues<byte> StringStops = SearchValues.Create("\"\\"u8);

    private readonly short[] _nodes = new short[MaxDepth];
    private readonly bool[] _isArray = new bool[MaxDepth];
    private readonly byte[] _key = new byte[MaxKeyLength];
    private byte[]? _arena; // rented on the first captured byte, returned by ReleaseArena (an idle stream holds none)
    private readonly int[] _lengths = new int[(int)ScanField.Count];
    private ulong _present;

    private State _state;
    private int _depth;
    private short _pendingNode;
    private int _keyLength;
    private bool _keyOverflow;
    private ScanField _capture;

    public ReferenceJsonFieldScanner() => Reset();

    private static int[] BuildCapacities()
    {
        var capacities = new int[(int)ScanField.Count];
        for (var i = 0; i < capacities.Length; i++)
        {
            capacities[i] = (ScanField)i switch
            {
                ScanField.Delta or ScanField.ChatDeltaContent => 2048,
                ScanField.Id or ScanField.Model or ScanField.ConversationId => 160,
                ScanField.Type or ScanField.Object or ScanField.Status => 64,
                _ => 24, // numbers, booleans, null
            };
        }

        return capacities;
    }

    /// <summary>Each field's place in the arena (fields that share a slot share an offset); the arena's size.</summary>
    private static int[] BuildOffsets(out int arenaSize)
    {
        var offsets = new int[Capacities.Length];
        var next = 0;
        for (var i = 0; i < offsets.Length; i++)
        {
            if (SlotPartner((ScanField)i) is var partner and not ScanField.None && partner < (ScanField)i)
            {
                offsets[i] = offsets[(int)partner];
                continue;
            }

            offsets[i] = next;
            next += Capacities[i];
        }

        arenaSize = next;
        return offsets;
    }

    /// <summary>The field that shares this field's arena slot, or <see cref="ScanField.None"/>.</summary>
    private static ScanField SlotPartner(ScanField field) => field switch
    {
        ScanField.Delta => ScanField.ChatDeltaContent,
        ScanField.ChatDeltaContent => ScanField.Delta,
        _ => ScanField.None,
    };

    private enum State : byte
    {
        Value,
        KeyOrEnd,
        Key,
        KeyEscape,
        Colon,
        AfterValue,
        String,
        StringEscape,
        Scalar,
        Done,
        Failed,
    }

    /// <summary>True once the root value has closed.</summary>
    public bool IsComplete => _state == State.Done;

    /// <summary>True if the input was not JSON (e.g. the <c>[DONE]</c> sentinel); nothing more is read.</summary>
    public bool HasFailed => _state == State.Failed;

    public void Reset()
    {
        _state = State.Value;
        _depth = 0;
        _pendingNode = ScanPaths.Root;
        _present = 0;
        _capture = ScanField.None;
        _keyLength = 0;
        _keyOverflow = false;
    }

    public bool Has(ScanField field) => (_present & (1UL << (int)field)) != 0;

    /// <summary>True once the field's value has ended; <see cref="Has"/> is already true while a value is still arriving.</summary>
    public bool HasComplete(ScanField field) => Has(field) && _capture != field;

    /// <summary>The raw bytes of a captured value (strings without quotes, escapes kept).</summary>
    public ReadOnlySpan<byte> Raw(ScanField field) => Has(field) && _arena is not null ? _arena.AsSpan(Offsets[(int)field], _lengths[(int)field]) : default;

    /// <summary>Whether the value arena is rented (a test hook for what an idle stream holds).</summary>
    internal bool HoldsArena => _arena is not null;

    /// <summary>
    /// Returns the value arena to the pool. Only between documents (after <see cref="Reset"/>, nothing captured yet):
    /// an SSE stream waiting for its next event then holds no arena; the next captured byte rents one again.
    /// </summary>
    public void ReleaseArena()
    {
        if (_arena is not null && _present == 0 && _capture == ScanField.None)
        {
            ArrayPool<byte>.Shared.Return(_arena);
            _arena = null;
        }
    }

    public void Feed(ReadOnlySpan<byte> data)
    {
        var i = 0;
        while (i < data.Length)
        {
            switch (_state)
            {
                case State.Done:
                case State.Failed:
                    return;

                case State.String:
                case State.Key:
                {
                    var rest = data[i..];
                    var stop = rest.IndexOfAny(StringStops);
                    var chunk = stop < 0 ? rest : rest[..stop];
                    AppendText(chunk);
                    if (stop < 0)
                    {
                        return;
                    }

                    i += stop;
                    if (data[i] == (byte)'\\')
                    {
                        AppendText(data.Slice(i, 1));
                        _state = _state == State.Key ? State.KeyEscape : State.StringEscape;
                        i++;
                        continue;
                    }

                    i++; // closing quote
                    if (_state == State.Key)
                    {
                        _pendingNode = _keyOverflow ? ScanPaths.Skip : ScanPaths.Child(_nodes[_depth - 1], _key.AsSpan(0, _keyLength));
                        _state = State.Colon;
                    }
                    else
                    {
                        EndValue();
                    }

                    continue;
                }

                case State.StringEscape:
                case State.KeyEscape:
                    // Only the character after '\' matters for finding the end of the string; \uXXXX has no quotes.
                    AppendText(data.Slice(i, 1));
                    _state = _state == State.KeyEscape ? State.Key : State.String;
                    i++;
                    continue;

                case State.Scalar:
                {
                    var b = data[i];
                    if (b is (byte)',' or (byte)'}' or (byte)']' or (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t')
                    {
                        EndValue();
                        continue; // re-read the delimiter in AfterValue
                    }

                    AppendText(data.Slice(i, 1));
                    i++;
                    continue;
                }
            }

            var c = data[i++];
            if (c is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t')
            {
                continue;
            }

            switch (_state)
            {
                case State.Value:
                    StartValue(c);
                    break;
                case State.KeyOrEnd:
                    if (c == (byte)'"')
                    {
                        _keyLength = 0;
                        _keyOverflow = false;
                        _state = State.Key;
                    }
                    else if (c == (byte)'}')
                    {
                        CloseContainer(isArray: false);
                    }
                    else
                    {
                        _state = State.Failed;
                    }

                    break;
                case State.Colon:
                    _state = c == (byte)':' ? State.Value : State.Failed;
                    break;
                case State.AfterValue:
                    if (_depth == 0)
                    {
                        _state = State.Failed;
                    }
                    else if (c == (byte)',')
                    {
                        _state = _isArray[_depth - 1] ? State.Value : State.KeyOrEnd;
                        if (_isArray[_depth - 1])
                        {
                            _pendingNode = ArrayElementNode();
                        }
                    }
                    else if (c == (byte)'}' && !_isArray[_depth - 1])
                    {
                        CloseContainer(isArray: false);
                    }
                    else if (c == (byte)']' && _isArray[_depth - 1])
                    {
                        CloseContainer(isArray: true);
                    }
                    else
                    {
                        _state = State.Failed;
                    }

                    break;
            }
        }
    }

    private void StartValue(byte c)
    {
        var node = _pendingNode;
        if (c == (byte)']' && _depth > 0 && _isArray[_depth - 1])
        {
            CloseContainer(isArray: true); // empty array
            return;
        }

        if (_depth > 0 && _isArray[_depth - 1] && node >= 0)
        {
            SetFlag(ScanPaths.Get(node).ElementFlag);
        }

        switch (c)
        {
            case (byte)'{':
            case (byte)'[':
                if (_depth == MaxDepth)
                {
                    _state = State.Failed;
                    return;
                }

                if (node >= 0)
                {
                    SetFlag(ScanPaths.Get(node).ContainerFlag);
                }

                _nodes[_depth] = node;
                _isArray[_depth] = c == (byte)'[';
                _depth++;
                if (c == (byte)'{')
                {
                    _state = State.KeyOrEnd;
                }
                else
                {
                    _state = State.Value;
                    _pendingNode = node;
                }

                return;
            case (byte)'"':
                BeginCapture(node);
                _state = State.String;
                return;
            default:
                if (c is (byte)'-' or (>= (byte)'0' and <= (byte)'9') or (byte)'t' or (byte)'f' or (byte)'n')
                {
                    BeginCapture(node);
                    AppendText([c]);
                    _state = State.Scalar;
                    return;
                }

                _state = State.Failed;
                return;
        }
    }

    private short ArrayElementNode() => _nodes[_depth - 1];

    private void BeginCapture(short node)
    {
        _capture = node >= 0 ? ScanPaths.Get(node).Scalar : ScanField.None;
        if (_capture != ScanField.None)
        {
            _lengths[(int)_capture] = 0;
            _present |= 1UL << (int)_capture;
            if (SlotPartner(_capture) is var partner and not ScanField.None)
            {
                // The slot is overwritten: the partner's value (should a malformed document hold both) is gone.
                _present &= ~(1UL << (int)partner);
            }
        }
    }

    private void AppendText(ReadOnlySpan<byte> text)
    {
        if (_state is State.Key or State.KeyEscape)
        {
            if (_keyLength + text.Length > MaxKeyLength)
            {
                _keyOverflow = true;
                return;
            }

            text.CopyTo(_key.AsSpan(_keyLength));
            _keyLength += text.Length;
            return;
        }

        if (_capture == ScanField.None)
        {
            return;
        }

        var field = (int)_capture;
        ref var length = ref _lengths[field];
        var take = Math.Min(Capacities[field] - length, text.Length);
        _arena ??= ArrayPool<byte>.Shared.Rent(ArenaSize);
        text[..take].CopyTo(_arena.AsSpan(Offsets[field] + length));
        length += take;
    }

    private void EndValue()
    {
        _capture = ScanField.None;
        _state = _depth == 0 ? State.Done : State.AfterValue;
    }

    private void CloseContainer(bool isArray)
    {
        _ = isArray;
        _depth--;
        _state = _depth == 0 ? State.Done : State.AfterValue;
    }

    private void SetFlag(ScanField flag)
    {
        if (flag != ScanField.None)
        {
            _present |= 1UL << (int)flag;
        }
    }
}
