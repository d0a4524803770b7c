using Serilog;
using Serilog.Events;

namespace Gateway.Observability;

/// <summary>
/// Serilog, writing compact JSON (CLEF) to stdout through <see cref="StdoutClefSink"/> (batched, off the request path,
/// never dropping). The <c>Serilog</c> configuration section can change sinks and levels; without a <c>WriteTo</c>
/// there, the defaults below apply.
/// </summary>
internal static class GatewayLogging
{
    public static void AddGatewayLogging(this WebApplicationBuilder builder)
    {
        var configuration = builder.Configuration;

        builder.Services.AddSerilog((services, logger) =>
        {
            logger
                .MinimumLevel.Information()
                .MinimumLevel.Override("Microsoft.AspNetCore", LogEventLevel.Warning)
                // Off: with it enabled ASP.NET starts an Activity and a log scope for every request (allocations on the
                // hot path, and a Kestrel RequestId that would shadow ours); the gateway logs its own RequestId instead.
                .MinimumLevel.Override("Microsoft.AspNetCore.Hosting.Diagnostics", LevelAlias.Off)
                .MinimumLevel.Override("Microsoft.Hosting.Lifetime", LogEventLevel.Information)
                .MinimumLevel.Override("Yarp", LogEventLevel.Error)
                .MinimumLevel.Override("System.Net.Http", LogEventLevel.Warning)
                .ReadFrom.Configuration(configuration)
                .ReadFrom.Services(services)
                .Enrich.FromLogContext();

            if (!configuration.GetSection("Serilog:WriteTo").GetChildren().Any())
            {
                logger.WriteTo.GatewayStdout();
            }
        }, preserveStaticLogger: true); // this host's own logger, disposed (flushed) with the host; never the process-wide Log.Logger
    }
}
