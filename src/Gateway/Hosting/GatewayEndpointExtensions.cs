using Gateway.Configuration;
using Gateway.Errors;
using Gateway.Health;
using Gateway.Pipeline;
using Gateway.Reporting;
using Gateway.Tenants;

namespace Gateway.Hosting;

internal static class GatewayEndpointExtensions
{
    /// <summary>Maps the OpenAI surface under <c>/v1</c>, health, and metrics; everything else is a 404 envelope.</summary>
    public static WebApplication MapGateway(this WebApplication app)
    {
        var handler = app.Services.GetRequiredService<GatewayRequestHandler>();

        // Outermost: whatever throws, the client gets an OpenAI envelope (500 server_error with the request id), not an empty 500.
        var faultLogger = app.Services.GetRequiredService<ILogger<GatewayRequestHandler>>();
        app.Use((context, next) => GatewayFaults.GuardAsync(context, next, faultLogger));

        // Then: the metrics port serves nothing of the API, and /metrics nothing outside it (judged by the connection's port).
        var metricsExposure = new MetricsExposure(app.Services.GetRequiredService<GatewaySettings>().Current.Metrics);
        metricsExposure.LogChoice(app.Services.GetRequiredService<ILogger<MetricsExposure>>());
        app.Use(metricsExposure.InvokeAsync);

        // /v1 bypasses endpoint routing: the gateway matches its own allow-list (and needs the tenant first).
        app.Use((context, next) => context.Request.Path.StartsWithSegments("/v1") ? handler.HandleAsync(context) : next(context));

        app.MapHealthEndpoints();
        app.MapPrometheusScrapingEndpoint("/metrics");

        app.MapFallback(static context =>
            OpenAIError.UnknownUrl(context.Request.Method, context.Request.Path.Value ?? "/").WriteAsync(context));
        return app;
    }

    /// <summary>Handles the commands that run instead of the server (<c>new-key</c>, <c>hash-key</c>, <c>probe</c>, <c>usage-report</c>).</summary>
    public static bool TryRunCommand(string[] args, out int exitCode) =>
        GatewayKeyCommand.TryRun(args, Console.In, Console.Out, out exitCode)
        || ProbeCommand.TryRun(args, Console.Out, out exitCode)
        || UsageReportCommand.TryRun(args, out exitCode);
}
