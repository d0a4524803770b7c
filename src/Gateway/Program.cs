using Gateway.Hosting;
using Gateway.Observability;
using Microsoft.Extensions.Options;

if (GatewayEndpointExtensions.TryRunCommand(args, out var exitCode))
{
    return exitCode;
}

var builder = WebApplication.CreateBuilder(GatewayConfigurationExtensions.ResolveOptions(args));
builder.AddGatewayConfiguration();
builder.AddGatewayLogging();
builder.AddGatewayServices();

var app = builder.Build();
app.MapGateway();

try
{
    await app.RunAsync();
    return 0;
}
catch (OptionsValidationException ex)
{
    // A configuration mistake: say which key and how to fix it, without a stack trace.
    await Console.Error.WriteLineAsync("The gateway cannot start: the configuration is invalid.");
    foreach (var failure in ex.Failures)
    {
        await Console.Error.WriteLineAsync("  - " + failure);
    }

    return 1;
}

/// <summary>Entry point; public so the integration tests can host it with WebApplicationFactory.</summary>
public partial class Program;
