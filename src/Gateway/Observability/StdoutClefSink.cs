using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Serilog;
using Serilog.Configuration;
using Serilog.Core;
using Serilog.Events;
using Serilog.Formatting.Compact;

namespace Gateway.Observability;

/// <summary>
/// Compact JSON (CLEF) to stdout in batches: one write per batch instead of several per event (the console sink
/// writes through a 256-character buffer, i.e. four syscalls for a usage event). Lines are written as UTF-8 by
/// <see cref="ClefWriter"/> into one reused buffer (no UTF-16 text and re-encoding per event). Formatting happens on the
/// batch timer's thread (<see cref="IntervalBatchingSink"/>), never on the request path. The queue is unbounded on purpose: usage events are
/// billing records and are never dropped; disposal (at shutdown) writes whatever is still queued.
/// </summary>
internal sealed class StdoutClefSink(Stream output) : IDisposable
{
    /// <summary>Written to stdout once it holds this much, and at the end of every batch.</summary>
    private const int FlushAboveBytes = 64 * 1024;
    private static readonly byte[] NewLine = "\n"u8.ToArray();

    private readonly ClefWriter _clef = new();
    private readonly ArrayBufferWriter<byte> _buffer = new(FlushAboveBytes + 4096);
    private readonly ArrayBufferWriter<byte> _line = new(4096);
    private readonly CompactJsonFormatter _formatter = new();
    private readonly StringWriter _fallback = new(CultureInfo.InvariantCulture);
    private Utf8JsonWriter? _json;

    /// <summary>
    /// Writes one batch, synchronously: stdout has no asynchronous write (an async path would only hand the write to
    /// another thread). Called by <see cref="IntervalBatchingSink"/>, one batch at a time.
    /// </summary>
    public void EmitBatch(IReadOnlyCollection<LogEvent> batch)
    {
        foreach (var logEvent in batch)
        {
            Format(logEvent);
            if (_buffer.WrittenCount >= FlushAboveBytes)
            {
                output.Write(_buffer.WrittenSpan);
                _buffer.ResetWrittenCount();
            }
        }

        if (_buffer.WrittenCount > 0)
        {
            output.Write(_buffer.WrittenSpan);
            _buffer.ResetWrittenCount();
        }

        output.Flush();
    }

    /// <summary>
    /// One event as one line into the buffer: UTF-8 straight from the event, or the CLEF formatter for what that does not
    /// cover or cannot write (a string that is not valid UTF-16). Usage events are billing records: none may be lost to a
    /// formatting fault, so the fast writer works on a scratch line that is only copied once complete.
    /// </summary>
    private void Format(LogEvent logEvent)
    {
        _line.ResetWrittenCount();
        var json = _json ??= new Utf8JsonWriter(_line, ClefWriter.WriterOptions);
        json.Reset(_line);
        bool written;
        try
        {
            written = _clef.TryWrite(logEvent, json);
            json.Flush();
        }
        catch (ArgumentException)
        {
            written = false;
        }

        if (written)
        {
            _buffer.Write(_line.WrittenSpan);
            _buffer.Write(NewLine);
            return;
        }

        _fallback.GetStringBuilder().Clear();
        _formatter.Format(logEvent, _fallback);
        var text = _fallback.ToString();
        _buffer.Advance(Encoding.UTF8.GetBytes(text, _buffer.GetSpan(Encoding.UTF8.GetMaxByteCount(text.Length))));
    }

    public void Dispose()
    {
        _json?.Dispose();
        output.Dispose();
    }
}

/// <summary>Lets the <c>Serilog</c> configuration section name the sink: <c>"WriteTo": [{ "Name": "GatewayStdout" }]</c> with <c>"Using": ["Gateway"]</c>.</summary>
public static class GatewayStdoutSinkExtensions
{
    private const int BatchSizeLimit = 1000;

    public static LoggerConfiguration GatewayStdout(
        this LoggerSinkConfiguration sinks,
        LogEventLevel restrictedToMinimumLevel = LogEventLevel.Verbose,
        int bufferingMilliseconds = 100)
    {
        ArgumentNullException.ThrowIfNull(sinks);
        return sinks.Sink(CreateSink(Console.OpenStandardOutput(), bufferingMilliseconds), restrictedToMinimumLevel);
    }

    /// <summary>The stdout sink as the gateway runs it (time-batched CLEF), writing to <paramref name="output"/>.</summary>
    internal static IntervalBatchingSink CreateSink(Stream output, int bufferingMilliseconds) =>
        new(new StdoutClefSink(output), TimeSpan.FromMilliseconds(Math.Max(1, bufferingMilliseconds)), BatchSizeLimit, TimeProvider.System);
}
