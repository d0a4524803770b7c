using System.Text;
using Serilog;
using Serilog.Configuration;
using Serilog.Core;
using Serilog.Events;
using Serilog.Formatting.Compact;

namespace Gateway.Observability;

/// <summary>
/// Compact JSON (CLEF) to stdout in batches: one write per batch instead of several per event (the console sink
/// writes through a 256-character buffer, i.e. four syscalls for a usage event). Formatting happens on Serilog's
/// background batching task, never on the request path. The queue is unbounded on purpose: usage events are
/// billing records and are never dropped; disposal (at shutdown) writes whatever is still queued.
/// </summary>
internal sealed class StdoutClefSink : IBatchedLogEventSink, IDisposable
{
    private readonly CompactJsonFormatter _formatter = new();
    private readonly StreamWriter _writer = new(Console.OpenStandardOutput(), new UTF8Encoding(false), bufferSize: 64 * 1024) { AutoFlush = false };

    public async Task EmitBatchAsync(IReadOnlyCollection<LogEvent> batch)
    {
        foreach (var logEvent in batch)
        {
            _formatter.Format(logEvent, _writer);
        }

        await _writer.FlushAsync();
    }

    public Task OnEmptyBatchAsync() => Task.CompletedTask;

    public void Dispose() => _writer.Dispose();
}

/// <summary>Lets the <c>Serilog</c> configuration section name the sink: <c>"WriteTo": [{ "Name": "GatewayStdout" }]</c> with <c>"Using": ["Gateway"]</c>.</summary>
public static class GatewayStdoutSinkExtensions
{
    public static LoggerConfiguration GatewayStdout(
        this LoggerSinkConfiguration sinks,
        LogEventLevel restrictedToMinimumLevel = LogEventLevel.Verbose,
        int bufferingMilliseconds = 100)
    {
        ArgumentNullException.ThrowIfNull(sinks);
        var options = new BatchingOptions
        {
            BatchSizeLimit = 1000,
            BufferingTimeLimit = TimeSpan.FromMilliseconds(Math.Max(1, bufferingMilliseconds)),
            EagerlyEmitFirstEvent = true,
            QueueLimit = null,
        };
        return sinks.Sink(new StdoutClefSink(), options, restrictedToMinimumLevel);
    }
}
