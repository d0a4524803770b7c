namespace Gateway.Usage;

/// <summary>
/// The usage event: one per authenticated request, whatever its end, and the request's completion line.
/// EventId name <c>Usage</c> makes it easy to select in CLEF (<c>select(.EventId.Name == "Usage")</c>).
/// Every property is present on every event (null where unknown). Never add prompt or output text here.
/// Its fields are <see cref="UsageEvent"/>, written by <see cref="UsageEventWriter"/> straight into Serilog.
/// </summary>
internal static partial class UsageEventLog
{
    public const int UsageEventId = 1000;

    [LoggerMessage(EventId = 1001, EventName = "RequestCompleted", Level = LogLevel.Information,
        Message = "{Method} {Path} {StatusCode} in {DurationMs} ms (no tenant) {RequestId}")]
    public static partial void UnauthenticatedRequest(ILogger logger, string method, string path, int statusCode, double durationMs, string requestId);
}
