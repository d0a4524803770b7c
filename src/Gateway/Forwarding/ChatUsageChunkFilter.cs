using System.Buffers;
using System.Text.Json;
using Gateway.Usage;

namespace Gateway.Forwarding;

/// <summary>
/// For a streamed chat completion whose usage the gateway requested on the client's behalf: forwards the
/// stream event by event, minus what the client did not ask for: the final <c>choices: []</c> usage chunk and
/// the <c>"usage": null</c> member OpenAI adds to every chunk once <c>include_usage</c> is on. Complete events go
/// out as soon as they are complete; only a partial event waits for its end.
/// </summary>
internal sealed class ChatUsageChunkFilter(UsageObserver observer, ThreadPoolHop hops) : IDisposable
{
    // The bytes of the event in progress, already observed (the observer frames events; this only holds them back).
    private byte[]? _carry;
    private int _carryLength;

    /// <summary>Bytes of an unfinished event are held back: the client has seen none of them (the observer has).</summary>
    public bool HoldsPartialEvent => _carryLength > 0;

    /// <summary>Returns the carry buffer while it holds nothing (the stream waits for its next event).</summary>
    public void ReleaseIdleBuffer()
    {
        if (_carryLength == 0)
        {
            Dispose();
        }
    }

    /// <summary>Whether the carry buffer is rented (a test hook).</summary>
    internal bool HoldsBuffer => _carry is not null;

    public async ValueTask<int> ReadAsync(Stream inner, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        while (true)
        {
            if (_carryLength > buffer.Length / 2)
            {
                // One event larger than half a read buffer: stop filtering it and pass it through.
                var n = Math.Min(_carryLength, buffer.Length);
                _carry.AsSpan(0, n).CopyTo(buffer.Span);
                _carry.AsSpan(n, _carryLength - n).CopyTo(_carry);
                _carryLength -= n;
                return n;
            }

            var carried = _carryLength;
            _carry.AsSpan(0, carried).CopyTo(buffer.Span);
            var read = await inner.ReadAsync(buffer[carried..], cancellationToken);
            var total = carried + read;
            _carryLength = 0;
            if (read == 0)
            {
                // Upstream ended: whatever partial event is left goes out as it is.
                return total;
            }

            // Observing (and tokenizing the text of) a large read is CPU-bound: not on the upstream socket's thread.
            await hops.Above(read, ThreadPoolHop.ObserveAboveBytes, "usage_tee");
            var written = Process(buffer.Span[..total], carried);
            if (written > 0)
            {
                return written;
            }
        }
    }

    /// <summary>Observes <paramref name="data"/> from <paramref name="observed"/> on, writes whole events (filtered) to its start, carries the rest.</summary>
    private int Process(Span<byte> data, int observed)
    {
        var write = 0;
        var start = 0;
        var position = observed;
        while (position < data.Length)
        {
            position += observer.ObserveToEventEnd(data[position..], out var eventEnded);
            if (!eventEnded)
            {
                break;
            }

            var length = position - start;
            if (observer.LastEventWasChatUsageChunk)
            {
                // dropped
            }
            else if (observer.LastEventHadNullUsage)
            {
                write += RemoveNullUsage(data, start, length, write);
            }
            else
            {
                data.Slice(start, length).CopyTo(data[write..]);
                write += length;
            }

            start = position;
        }

        var rest = data[start..];
        if (rest.Length > 0)
        {
            if (_carry is null || _carry.Length < rest.Length)
            {
                var next = ArrayPool<byte>.Shared.Rent(Math.Max(rest.Length, 4096));
                if (_carry is not null)
                {
                    ArrayPool<byte>.Shared.Return(_carry);
                }

                _carry = next;
            }

            rest.CopyTo(_carry);
            _carryLength = rest.Length;
        }

        return write;
    }

    /// <summary>Copies the event at [start, start+length) to <paramref name="write"/> without its top-level <c>"usage":null</c>.</summary>
    private static int RemoveNullUsage(Span<byte> data, int start, int length, int write)
    {
        var evt = data.Slice(start, length);
        var dataField = evt.IndexOf("data:"u8);
        var lineEnd = dataField < 0 ? -1 : evt[dataField..].IndexOf((byte)'\n');
        if (lineEnd < 0)
        {
            evt.CopyTo(data[write..]);
            return length;
        }

        var jsonStart = dataField + 5;
        var json = evt.Slice(jsonStart, lineEnd - 5).TrimEnd((byte)'\r');
        var (cutStart, cutEnd) = FindNullUsage(json);
        if (cutStart < 0)
        {
            evt.CopyTo(data[write..]);
            return length;
        }

        // Destination never overtakes the source (write <= start), so left-to-right copies are safe.
        var before = evt[..(jsonStart + cutStart)];
        before.CopyTo(data[write..]);
        var after = evt[(jsonStart + cutEnd)..];
        after.CopyTo(data[(write + before.Length)..]);
        return before.Length + after.Length;
    }

    private static (int Start, int End) FindNullUsage(ReadOnlySpan<byte> json)
    {
        try
        {
            var reader = new Utf8JsonReader(json);
            while (reader.Read())
            {
                if (reader.TokenType == JsonTokenType.PropertyName && reader.CurrentDepth == 1 && reader.ValueTextEquals("usage"u8))
                {
                    var nameStart = (int)reader.TokenStartIndex;
                    reader.Read();
                    if (reader.TokenType != JsonTokenType.Null)
                    {
                        return (-1, -1);
                    }

                    var valueEnd = (int)reader.TokenStartIndex + 4;
                    var back = nameStart - 1;
                    while (back >= 0 && json[back] is (byte)' ' or (byte)'\t')
                    {
                        back--;
                    }

                    if (back >= 0 && json[back] == (byte)',')
                    {
                        return (back, valueEnd);
                    }

                    var forward = valueEnd;
                    while (forward < json.Length && json[forward] is (byte)' ' or (byte)'\t')
                    {
                        forward++;
                    }

                    return forward < json.Length && json[forward] == (byte)',' ? (nameStart, forward + 1) : (nameStart, valueEnd);
                }

                if (reader.TokenType is JsonTokenType.StartObject or JsonTokenType.StartArray && reader.CurrentDepth >= 1)
                {
                    reader.Skip();
                }
            }
        }
        catch (JsonException)
        {
        }

        return (-1, -1);
    }

    public void Dispose()
    {
        if (_carry is not null)
        {
            ArrayPool<byte>.Shared.Return(_carry);
            _carry = null;
        }
    }
}
