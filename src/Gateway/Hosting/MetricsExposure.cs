using Gateway.Configuration;
using Gateway.Errors;

namespace Gateway.Hosting;

/// <summary>
/// Decides per connection where <c>/metrics</c> answers, from the port the connection arrived on (its local end),
/// never from the Host header, which the client writes. With <c>Gateway:Metrics:Port</c> that port serves only
/// <c>/metrics</c> and the probes, and no other port serves <c>/metrics</c>; without it <c>/metrics</c> is off unless
/// <c>Gateway:Metrics:Public</c> is true. Refusals are the same 404 as any unknown URL.
/// </summary>
internal sealed class MetricsExposure(MetricsOptions options)
{
    private static readonly PathString MetricsPath = "/metrics";
    private static readonly PathString[] MetricsPortPaths = [MetricsPath, "/healthz", "/readyz"];

    public Task InvokeAsync(HttpContext context, Func<Task> next)
    {
        var path = context.Request.Path;
        var allowed = options.Port is { } port && context.Connection.LocalPort == port
            ? MetricsPortPaths.Any(p => path.Equals(p, StringComparison.OrdinalIgnoreCase) || path.Equals(p + "/", StringComparison.OrdinalIgnoreCase))
            : !path.StartsWithSegments(MetricsPath, StringComparison.OrdinalIgnoreCase) || (options.Port is null && options.Public);
        return allowed ? next() : OpenAIError.UnknownUrl(context.Request.Method, path.Value ?? "/").WriteAsync(context);
    }

    public void LogChoice(ILogger logger)
    {
        if (options.Port is { } port)
        {
            HostingLog.MetricsOnPort(logger, port);
        }
        else if (options.Public)
        {
            HostingLog.MetricsPublic(logger);
        }
        else
        {
            HostingLog.MetricsOff(logger);
        }
    }
}

internal static partial class HostingLog
{
    [LoggerMessage(EventId = 8101, EventName = "MetricsOnPort", Level = LogLevel.Information,
        Message = "/metrics is served only on port {MetricsPort} (Gateway:Metrics:Port), which serves nothing but /metrics, /healthz and /readyz")]
    public static partial void MetricsOnPort(ILogger logger, int metricsPort);

    [LoggerMessage(EventId = 8102, EventName = "MetricsPublic", Level = LogLevel.Warning,
        Message = "/metrics is served on every port (Gateway:Metrics:Public=true): anyone who reaches the gateway can read every tenant's series; set Gateway:Metrics:Port instead")]
    public static partial void MetricsPublic(ILogger logger);

    [LoggerMessage(EventId = 8103, EventName = "MetricsOff", Level = LogLevel.Information,
        Message = "/metrics is off: set Gateway:Metrics:Port (and add that port to Urls) to serve it on a private port")]
    public static partial void MetricsOff(ILogger logger);
}
