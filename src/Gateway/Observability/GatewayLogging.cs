using Serilog;
using Serilog.Events;
using Serilog.Formatting.Compact;

namespace Gateway.Observability;

/// <summary>
/// Serilog, writing compact JSON (CLEF) to stdout. The <c>Serilog</c> configuration section can change sinks and
/// levels; without one, the defaults below apply. The console sink is asynchronous (the request path never waits
/// on stdout) and blocks rather than drops when its buffer is full: usage events are billing records.
/// </summary>
internal static class GatewayLogging
{
    public static void AddGatewayLogging(this WebApplicationBuilder builder)
    {
        var configuration = builder.Configuration;

        // ASP.NET's per-request log scope (Kestrel's connection-based RequestId) costs allocations on every request
        // and would shadow ours; the gateway writes its own RequestId on each of its lines instead.
        builder.Logging.AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.None);
        builder.Services.AddSerilog((services, logger) =>
        {
            logger
                .MinimumLevel.Information()
                .MinimumLevel.Override("Microsoft.AspNetCore", LogEventLevel.Warning)
                .MinimumLevel.Override("Microsoft.Hosting.Lifetime", LogEventLevel.Information)
                .MinimumLevel.Override("Yarp", LogEventLevel.Error)
                .MinimumLevel.Override("System.Net.Http", LogEventLevel.Warning)
                .ReadFrom.Configuration(configuration)
                .ReadFrom.Services(services)
                .Enrich.FromLogContext();

            if (!configuration.GetSection("Serilog:WriteTo").GetChildren().Any())
            {
                logger.WriteTo.Async(sink => sink.Console(new CompactJsonFormatter()), bufferSize: 65_536, blockWhenFull: true);
            }
        }, preserveStaticLogger: true); // this host's own logger, disposed (flushed) with the host; never the process-wide Log.Logger
    }
}
