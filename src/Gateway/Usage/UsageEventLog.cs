namespace Gateway.Usage;

/// <summary>
/// The usage event: one per authenticated request, whatever its end, and the request's completion line.
/// EventId name <c>Usage</c> makes it easy to select in CLEF (<c>select(.EventId.Name == "Usage")</c>).
/// Every property is present on every event (null where unknown). Never add prompt or output text here.
/// </summary>
internal static partial class UsageEventLog
{
    public const int UsageEventId = 1000;

#pragma warning disable SYSLIB1015 // every argument is a structured property; the template shows the headline only
#pragma warning disable CA1707, IDE1006 // parameter names are the property names ops teams query, so PascalCase
    [LoggerMessage(EventId = UsageEventId, EventName = "Usage", Level = LogLevel.Information,
        Message = "{Tenant} {Endpoint} {StatusCode} {Outcome}: {TotalTokens} tokens ({UsageSource}) in {DurationMs} ms")]
    public static partial void Usage(
        ILogger logger,
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
        int Attempts);
#pragma warning restore CA1707, IDE1006
#pragma warning restore SYSLIB1015

    [LoggerMessage(EventId = 1001, EventName = "RequestCompleted", Level = LogLevel.Information,
        Message = "{Method} {Path} {StatusCode} in {DurationMs} ms (no tenant) {RequestId}")]
    public static partial void UnauthenticatedRequest(ILogger logger, string method, string path, int statusCode, double durationMs, string requestId);
}
