using System.Collections.Concurrent;
using System.Diagnostics;
using Serilog.Core;
using Serilog.Events;
using Serilog.Parsing;

namespace Gateway.Usage;

/// <summary>The fields of one usage event (docs/usage-events.md), in the order they are written.</summary>
internal readonly record struct UsageEvent(
    string Tenant,
    string Endpoint,
    string? RequestedModel,
    string? Model,
    bool Stream,
    bool Background,
    int StatusCode,
    string Outcome,
    string? ResponseId,
    long? InputTokens,
    long? CachedInputTokens,
    long? OutputTokens,
    long? ReasoningTokens,
    long? TotalTokens,
    decimal? CostUsd,
    string UsageSource,
    double DurationMs,
    double? TimeToFirstByteMs,
    string RequestId,
    string? UpstreamRequestId,
    string Method,
    string Path,
    string? Upstream,
    int Attempts,
    string? ConnectionId);

/// <summary>
/// Writes the usage event straight into the Serilog pipeline (its sinks, enrichers and level overrides as configured),
/// without the Microsoft.Extensions.Logging adapter: that path boxed a 24-argument state, bound each argument through
/// Serilog's property factory into a dictionary grown step by step, and enumerated the Kestrel connection scope, all on
/// the request thread, for every request. Here the event is assembled from a pre-sized dictionary, a parsed template and
/// cached values for everything constant (names, event id, booleans, small numbers, endpoint/outcome/source strings).
/// The CLEF line is the same: every field, <c>EventId</c> {1000, Usage}, <c>SourceContext</c>, and the <c>ConnectionId</c>
/// the connection scope used to add.
/// </summary>
internal sealed class UsageEventWriter
{
    public const string MessageTemplateText = "{Tenant} {Endpoint} {StatusCode} {Outcome}: {TotalTokens} tokens ({UsageSource}) in {DurationMs} ms";

    /// <summary>The category the event has always been written under (ops filter on it).</summary>
    public const string SourceContext = "Gateway.Usage.UsageAccounting";

    // 24 fields, EventId, SourceContext, ConnectionId: sized exactly (an enricher that adds more grows it once).
    private const int PropertyCapacity = 27;
    private const int MaxCachedStrings = 256;

    private static readonly MessageTemplate Template = new MessageTemplateParser().Parse(MessageTemplateText);
    private static readonly ScalarValue Null = new(null);
    private static readonly ScalarValue True = new(true);
    private static readonly ScalarValue False = new(false);
    private static readonly ScalarValue SourceContextValue = new(SourceContext);
    private static readonly StructureValue EventIdValue = new([
        new LogEventProperty("Id", new ScalarValue(UsageEventLog.UsageEventId)),
        new LogEventProperty("Name", new ScalarValue("Usage")),
    ]);

    private static readonly ScalarValue[] SmallInts = [.. Enumerable.Range(0, 600).Select(i => new ScalarValue(i))];
    private static readonly ScalarValue[] SmallLongs = [.. Enumerable.Range(0, 256).Select(i => new ScalarValue((long)i))];

    // Only strings the gateway itself chose (endpoint names, outcomes, usage sources, HTTP method constants) or its
    // configuration names (tenant ids, upstream names): a bounded set.
    private static readonly ConcurrentDictionary<string, ScalarValue> Constants = new(StringComparer.Ordinal);

    private readonly Serilog.ILogger _logger;

    public UsageEventWriter(Serilog.ILogger logger)
    {
        // ForContext gives the level overrides configured for this category (Serilog:MinimumLevel:Override).
        _logger = logger.ForContext(Serilog.Core.Constants.SourceContextPropertyName, SourceContext);
    }

    public bool IsEnabled => _logger.IsEnabled(LogEventLevel.Information);

    public void Write(in UsageEvent usage)
    {
        if (!_logger.IsEnabled(LogEventLevel.Information))
        {
            return;
        }

        var properties = new Dictionary<string, LogEventPropertyValue>(PropertyCapacity)
        {
            ["Tenant"] = Constant(usage.Tenant),
            ["Endpoint"] = Constant(usage.Endpoint),
            ["RequestedModel"] = Text(usage.RequestedModel),
            ["Model"] = Text(usage.Model),
            ["Stream"] = usage.Stream ? True : False,
            ["Background"] = usage.Background ? True : False,
            ["StatusCode"] = Number(usage.StatusCode),
            ["Outcome"] = Constant(usage.Outcome),
            ["ResponseId"] = Text(usage.ResponseId),
            ["InputTokens"] = Number(usage.InputTokens),
            ["CachedInputTokens"] = Number(usage.CachedInputTokens),
            ["OutputTokens"] = Number(usage.OutputTokens),
            ["ReasoningTokens"] = Number(usage.ReasoningTokens),
            ["TotalTokens"] = Number(usage.TotalTokens),
            ["CostUsd"] = usage.CostUsd is { } cost ? new ScalarValue(cost) : Null,
            ["UsageSource"] = Constant(usage.UsageSource),
            ["DurationMs"] = new ScalarValue(usage.DurationMs),
            ["TimeToFirstByteMs"] = usage.TimeToFirstByteMs is { } ttfb ? new ScalarValue(ttfb) : Null,
            ["RequestId"] = Text(usage.RequestId),
            ["UpstreamRequestId"] = Text(usage.UpstreamRequestId),
            ["Method"] = Method(usage.Method),
            ["Path"] = Text(usage.Path),
            ["Upstream"] = usage.Upstream is { } upstream ? Constant(upstream) : Null,
            ["Attempts"] = Number(usage.Attempts),
            ["EventId"] = EventIdValue,
            ["SourceContext"] = SourceContextValue,
        };
        if (usage.ConnectionId is { } connectionId)
        {
            properties["ConnectionId"] = new ScalarValue(connectionId);
        }

        // Like Serilog's own Write and its Microsoft.Extensions.Logging adapter: local time, the current trace and span.
        var activity = Activity.Current;
        _logger.Write(LogEvent.UnstableAssembleFromParts(DateTimeOffset.Now, LogEventLevel.Information, null, Template, properties,
            activity?.TraceId ?? default, activity?.SpanId ?? default));
    }

    private static ScalarValue Text(string? value) => value is null ? Null : new ScalarValue(value);

    private static ScalarValue Number(int value) => (uint)value < (uint)SmallInts.Length ? SmallInts[value] : new ScalarValue(value);

    private static ScalarValue Number(long? value) => value switch
    {
        null => Null,
        { } v when (ulong)v < (ulong)SmallLongs.Length => SmallLongs[v],
        { } v => new ScalarValue(v),
    };

    private static ScalarValue Constant(string value)
    {
        if (Constants.TryGetValue(value, out var cached))
        {
            return cached;
        }

        var scalar = new ScalarValue(value);
        if (Constants.Count < MaxCachedStrings)
        {
            Constants.TryAdd(value, scalar);
        }

        return scalar;
    }

    /// <summary>The method is the client's: only the exact standard spellings are cached, so a client cannot fill the cache.</summary>
    private static ScalarValue Method(string method) =>
        method is "POST" or "GET" or "DELETE" ? Constant(method) : new ScalarValue(method);
}
