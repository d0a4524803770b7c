using System.Buffers;
using System.Collections;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Features;

namespace FakeUpstream;

/// <summary>
/// Writes an SSE body chunk by chunk, flushing after each one so events reach the client one at a time, and applies the
/// stream faults: <c>x-fake-delay-ms</c> between events, <c>x-fake-gate</c> after the first event,
/// <c>x-fake-drop-after</c> (abort after N events) and <c>x-fake-encoding</c> (compressed, with a sync flush per event).
/// </summary>
internal static class SseWriter
{
    /// <summary>
    /// Streams <paramref name="chunks"/>. A chunk ending in a blank line ends an event (recordings split
    /// <c>event:</c> and <c>data:</c> lines into separate chunks). The caller sets the status and headers first.
    /// Returns the number of complete events written before the stream ended or was cut.
    /// </summary>
    public static async Task<int> StreamAsync(HttpContext context, IReadOnlyList<ReadOnlyMemory<byte>> chunks)
    {
        var fake = context.Fake();
        var directives = fake.Directives;
        var response = context.Response;
        var aborted = context.RequestAborted;
        response.ContentType ??= OpenAiWire.SseContentType;
        response.Headers.ContentLength = null;
        if (directives.Encoding is { } encoding)
        {
            response.Headers.ContentEncoding = encoding;
        }

        // No buffering anywhere between us and the socket: the point of the fake's streams is their timing.
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();

        var events = 0;
        Stream? compressor = null;
        try
        {
            await response.StartAsync(aborted);
            if (directives.DropAfter == 0)
            {
                await response.Body.FlushAsync(aborted);
                await AbortAsync(context);
                return 0;
            }

            var body = response.Body;
            compressor = directives.Encoding is { } enc ? Compression.CreateCompressor(enc, body) : null;
            var target = compressor ?? body;
            var atEventStart = true;
            for (var i = 0; i < chunks.Count; i++)
            {
                if (atEventStart && events > 0 && directives.DelayMs > 0)
                {
                    await Task.Delay(directives.DelayMs, fake.WaitToken(context));
                }

                var chunk = chunks[i];
                await target.WriteAsync(chunk, aborted);
                if (compressor is not null)
                {
                    await compressor.FlushAsync(aborted);
                }

                await body.FlushAsync(aborted);
                if (aborted.IsCancellationRequested)
                {
                    return events;
                }

                atEventStart = chunk.Span.EndsWith("\n\n"u8);
                if (!atEventStart)
                {
                    continue;
                }

                events++;
                if (events == 1 && directives.Gate is { } gate)
                {
                    await fake.State.Gates.WaitAsync(gate, fake.WaitToken(context));
                }

                if (directives.DropAfter is { } dropAfter && events >= dropAfter && i < chunks.Count - 1)
                {
                    await AbortAsync(context);
                    return events;
                }
            }

            if (compressor is not null)
            {
                await compressor.DisposeAsync(); // writes the compression trailer
                compressor = null;
                await body.FlushAsync(aborted);
            }

            return events;
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
            // The client went away, or the fake is shutting down: end like a dropped upstream, not a clean stream end.
            context.Abort();
            return events;
        }
        finally
        {
            if (compressor is not null)
            {
                try
                {
                    await compressor.DisposeAsync();
                }
                catch (Exception)
                {
                    // The connection is already gone; nothing left to flush to.
                }
            }
        }
    }

    private static async Task AbortAsync(HttpContext context)
    {
        await Task.Delay(OpenAiWire.AbortLingerMs);
        context.Abort();
    }
}

/// <summary>Builds SSE events into one buffer: <c>event: type\ndata: {json}\n\n</c> (Responses) or <c>data: {json}\n\n</c> (chat).</summary>
internal sealed class SseEventBuilder : IDisposable
{
    private readonly ArrayBufferWriter<byte> _buffer;
    private readonly Utf8JsonWriter _json;
    private readonly List<int> _ends;

    public SseEventBuilder(int expectedEvents)
    {
        _buffer = new ArrayBufferWriter<byte>(Math.Max(1024, expectedEvents * 256));
        _json = new Utf8JsonWriter(_buffer, Json.WriterOptions);
        _ends = new List<int>(expectedEvents);
    }

    public int Count => _ends.Count;

    /// <summary>Starts a Responses-API event; the caller writes the JSON object and calls <see cref="End"/>.</summary>
    public Utf8JsonWriter BeginEvent(string eventType)
    {
        Append("event: "u8);
        AppendUtf8(eventType);
        Append("\ndata: "u8);
        _json.Reset(_buffer);
        return _json;
    }

    /// <summary>Starts a chat-completions style <c>data:</c>-only event.</summary>
    public Utf8JsonWriter BeginData()
    {
        Append("data: "u8);
        _json.Reset(_buffer);
        return _json;
    }

    public void End()
    {
        _json.Flush();
        Append("\n\n"u8);
        _ends.Add(_buffer.WrittenCount);
    }

    /// <summary>Adds a complete raw event such as <c>data: [DONE]\n\n</c>.</summary>
    public void AddRaw(ReadOnlySpan<byte> rawEvent)
    {
        Append(rawEvent);
        _ends.Add(_buffer.WrittenCount);
    }

    public SseEvents Build() => new(_buffer.WrittenMemory, [.. _ends]);

    public void Dispose() => _json.Dispose();

    private void Append(ReadOnlySpan<byte> bytes) => _buffer.Write(bytes);

    private void AppendUtf8(string text)
    {
        var span = _buffer.GetSpan(Encoding.UTF8.GetMaxByteCount(text.Length));
        _buffer.Advance(Encoding.UTF8.GetBytes(text, span));
    }
}

/// <summary>Built events: one contiguous buffer plus the end offset of each event.</summary>
internal sealed class SseEvents(ReadOnlyMemory<byte> data, int[] ends) : IReadOnlyList<ReadOnlyMemory<byte>>
{
    private readonly int _first;

    private SseEvents(ReadOnlyMemory<byte> data, int[] ends, int first)
        : this(data, ends) => _first = first;

    public int Count => ends.Length - _first;

    public ReadOnlyMemory<byte> this[int index]
    {
        get
        {
            var i = index + _first;
            var start = i == 0 ? 0 : ends[i - 1];
            return data[start..ends[i]];
        }
    }

    /// <summary>The events after the first <paramref name="skip"/> ones (resume with <c>starting_after</c>).</summary>
    public SseEvents Skip(int skip) => new(data, ends, Math.Clamp(_first + skip, 0, ends.Length));

    public IEnumerator<ReadOnlyMemory<byte>> GetEnumerator()
    {
        for (var i = 0; i < Count; i++)
        {
            yield return this[i];
        }
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
