using Gateway.Errors;

namespace Gateway.Hosting;

/// <summary>
/// The last line of defence: an exception that escapes the gateway's own handling (authentication, the probes, the
/// metrics exporter) is logged once with the request id and answered as OpenAI answers its own faults, a 500
/// <c>server_error</c> envelope naming that id, instead of an empty 500. A client that left needs no answer.
/// </summary>
internal static class GatewayFaults
{
    public static async Task GuardAsync(HttpContext context, RequestDelegate next, ILogger logger)
    {
        try
        {
            await next(context);
        }
        catch (Exception ex) when (!context.RequestAborted.IsCancellationRequested && !context.Response.HasStarted)
        {
            // Once the answer has started it cannot be replaced: the exception goes on to Kestrel, which aborts the
            // connection so the client sees a broken answer rather than a complete-looking truncated one.
            HostingLog.UnhandledFault(logger, ex, context.TraceIdentifier);
            context.Response.Clear();
            context.Response.Headers["x-request-id"] = context.TraceIdentifier;
            await OpenAIError.Internal(context.TraceIdentifier).WriteAsync(context);
        }
    }
}

internal static partial class HostingLog
{
    [LoggerMessage(EventId = 8104, EventName = "UnhandledFault", Level = LogLevel.Error,
        Message = "Request {RequestId} failed inside the gateway before or outside its pipeline")]
    public static partial void UnhandledFault(ILogger logger, Exception exception, string requestId);
}
