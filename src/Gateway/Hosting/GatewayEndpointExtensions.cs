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

        // /v1 bypasses endpoint routing: the gateway matches its own allow-list (and needs the tenant first).
        app.Use((context, next) => context.Request.Path.StartsWithSegments("/v1") ? handler.HandleAsync(context) : next(context));

        app.MapHealthEndpoints();
        var metricsPort = app.Configuration.GetValue<int?>("Gateway:Metrics:Port");
        var metrics = app.MapPrometheusScrapingEndpoint("/metrics");
        if (metricsPort is > 0)
        {
            // Served only on the metrics port; add that port to ASPNETCORE_URLS / Kestrel endpoints and keep it off the Service.
            metrics.RequireHost($"*:{metricsPort}");
        }

        app.MapFallback(static context =>
            OpenAIError.UnknownUrl(context.Request.Method, context.Request.Path.Value ?? "/").WriteAsync(context));
        return app;
    }

    /// <summary>Handles the commands that run instead of the server (<c>new-key</c>, <c>hash-key</c>, <c>usage-report</c>).</summary>
    public static bool TryRunCommand(string[] args, out int exitCode) =>
        GatewayKeyCommand.TryRun(args, Console.In, Console.Out, out exitCode)
        || UsageReportCommand.TryRun(args, out exitCode);
}
