using Gateway.Hosting;
using Gateway.Observability;

if (GatewayEndpointExtensions.TryRunCommand(args, out var exitCode))
{
    return exitCode;
}

try
{
    // Building the host resolves the validated settings (the shutdown timeout depends on them), so a bad
    // configuration surfaces here, inside the try, as well as later while the host starts.
    var builder = WebApplication.CreateBuilder(GatewayConfigurationExtensions.ResolveOptions(args));
    builder.AddGatewayConfiguration(args);
    builder.AddGatewayLogging();
    builder.AddGatewayServices();

    var app = builder.Build();
    app.MapGateway();

    // Returns after a graceful drain (SIGTERM/SIGINT); disposing the host flushes every buffered log event.
    var stopping = app.Lifetime.ApplicationStopping; // read now: RunAsync disposes the host's services
    try
    {
        await app.RunAsync();
    }
    catch (OperationCanceledException) when (stopping.IsCancellationRequested)
    {
        // SIGTERM while still starting (during the warm-up, say): the server never bound; a stop, not a crash.
    }

    return 0;
}
catch (Exception ex) when (StartupFailure.Describe(ex) is { } failures)
{
    // A configuration mistake: say which key and how to fix it, without a stack trace.
    await StartupFailure.WriteAsync(Console.Error, failures);
    return 1;
}

/// <summary>Entry point; public so the integration tests can host it with WebApplicationFactory.</summary>
public partial class Program;
