namespace Gateway.Hosting;

internal static class GatewayConfigurationExtensions
{
    /// <summary>
    /// The deployable configuration is <c>appsettings.json</c> at the repository root (in the container: <c>/app</c>).
    /// Run from the repository root and it is the content root's file; run from elsewhere and the copy beside the
    /// binary is used. <c>GATEWAY_CONFIG</c> names another file. Environment variables override any key
    /// (<c>Gateway__Upstream__BaseUrl</c>). The file is watched: tenant keys and limits change without a restart.
    /// </summary>
    public static WebApplicationOptions ResolveOptions(string[] args)
    {
        var explicitFile = Environment.GetEnvironmentVariable("GATEWAY_CONFIG");
        string contentRoot;
        if (args.Any(a => a.StartsWith("--contentRoot", StringComparison.OrdinalIgnoreCase)))
        {
            // A host (the test factory) chose the content root already.
            return new WebApplicationOptions { Args = args };
        }

        if (!string.IsNullOrEmpty(explicitFile))
        {
            contentRoot = Path.GetDirectoryName(Path.GetFullPath(explicitFile))!;
        }
        else if (File.Exists(Path.Combine(Directory.GetCurrentDirectory(), "appsettings.json")))
        {
            contentRoot = Directory.GetCurrentDirectory();
        }
        else
        {
            contentRoot = AppContext.BaseDirectory;
        }

        return new WebApplicationOptions { Args = args, ContentRootPath = contentRoot };
    }

    /// <param name="builder">The host being built.</param>
    /// <param name="args">The process's command line: it is added again after the explicit file so <c>--key=value</c> still wins.</param>
    public static void AddGatewayConfiguration(this WebApplicationBuilder builder, string[] args)
    {
        var explicitFile = Environment.GetEnvironmentVariable("GATEWAY_CONFIG");
        if (!string.IsNullOrEmpty(explicitFile) && !string.Equals(Path.GetFileName(explicitFile), "appsettings.json", StringComparison.Ordinal))
        {
            // Added after the defaults, then environment and command line again so they still win.
            builder.Configuration.AddJsonFile(Path.GetFullPath(explicitFile), optional: false, reloadOnChange: true);
            builder.Configuration.AddEnvironmentVariables();
            builder.Configuration.AddCommandLine(args);
        }
    }
}
