using System.Collections.Concurrent;
using System.Text.Json;
using Serilog.Core;
using Serilog.Events;
using Serilog.Formatting.Compact;

namespace Gateway.Tests.Infrastructure;

/// <summary>
/// A Serilog sink the gateway picks up from DI (<c>ReadFrom.Services</c>): every event is rendered exactly as the
/// production console sink renders it (CLEF), so tests assert on the very lines ops teams read.
/// </summary>
public sealed class LogCapture : ILogEventSink
{
    private readonly CompactJsonFormatter _formatter = new();
    private readonly ConcurrentQueue<string> _lines = new();

    public void Emit(LogEvent logEvent)
    {
        using var writer = new StringWriter();
        _formatter.Format(logEvent, writer);
        _lines.Enqueue(writer.ToString().TrimEnd('\n', '\r'));
    }

    public IReadOnlyList<string> Lines => _lines.ToArray();

    public string AllText => string.Join('\n', _lines);

    public IReadOnlyList<JsonElement> Events => _lines.Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToArray();

    public IReadOnlyList<JsonElement> UsageEvents => Named("Usage");

    public IReadOnlyList<JsonElement> Named(string eventName) =>
        Events.Where(e => e.TryGetProperty("EventId", out var id) && id.TryGetProperty("Name", out var name) && name.GetString() == eventName).ToArray();

    /// <summary>Waits until at least <paramref name="count"/> usage events were written (they are written as requests finish).</summary>
    public Task<IReadOnlyList<JsonElement>> WaitForUsageEventsAsync(int count, TimeSpan? timeout = null) =>
        WaitForEventsAsync("Usage", count, timeout);

    /// <summary>
    /// Waits until at least <paramref name="count"/> events named <paramref name="eventName"/> were written; returns
    /// what is there at the deadline otherwise. A log line can follow the answer that shows its effect.
    /// </summary>
    public Task<IReadOnlyList<JsonElement>> WaitForEventsAsync(string eventName, int count = 1, TimeSpan? timeout = null) =>
        Eventually.LastValueAsync(() => Named(eventName), events => events.Count >= count, timeout ?? TimeSpan.FromSeconds(15));

    public async Task<JsonElement> SingleUsageEventAsync(string requestId, TimeSpan? timeout = null)
    {
        var matches = await Eventually.LastValueAsync(
            () => UsageEvents.Where(e => e.GetProperty("RequestId").GetString() == requestId).ToArray(),
            found => found.Length > 0,
            timeout ?? TimeSpan.FromSeconds(15));
        Assert.Single(matches);
        await Task.Delay(100); // a second event for the same request would be a defect: give it the chance to show
        Assert.Single(UsageEvents, e => e.GetProperty("RequestId").GetString() == requestId);
        return matches[0];
    }
}
