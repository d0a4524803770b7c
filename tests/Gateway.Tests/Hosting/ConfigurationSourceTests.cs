using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Hosting;

/// <summary>
/// Where settings come from in the published gateway: the file named by <c>GATEWAY_CONFIG</c>, then environment
/// variables, then the command line, the later winning (docs/operations.md). Run as a real process.
/// </summary>
public sealed class ConfigurationSourceTests
{
    [Fact]
    public async Task CommandLineOverride_WithGatewayConfigFile_WinsOverTheFile()
    {
        // The file alone is invalid (0 body reads per tenant); only the command line's value lets the gateway start.
        var folder = Directory.CreateTempSubdirectory("gateway-config-").FullName;
        var file = Path.Combine(folder, "gateway.json");
        await File.WriteAllTextAsync(file, """{ "Gateway": { "Limits": { "MaxConcurrentBodyReadsPerTenant": 0 } } }""");

        await using var gateway = GatewayProcess.Start(await PublishedGateway.DirectoryAsync(), new Dictionary<string, string>
        {
            ["OPENAI_API_KEY"] = TestKeys.UpstreamKey,
            ["GATEWAY_CONFIG"] = file,
        }, arguments: ["--Gateway:Limits:MaxConcurrentBodyReadsPerTenant=4"]);

        await gateway.WaitUntilListeningAsync();

        using var client = gateway.CreateClient(key: null);
        using var health = await client.GetAsync(new Uri(gateway.RootUrl, "/healthz"));
        Assert.True(health.IsSuccessStatusCode, $"/healthz answered {(int)health.StatusCode}");
    }

    [Fact]
    public async Task InvalidCommandLineOverride_WithGatewayConfigFile_ProcessExitsNamingTheKey()
    {
        // The file is fine; the override is not: it must be seen (and refused), not silently dropped.
        var folder = Directory.CreateTempSubdirectory("gateway-config-").FullName;
        var file = Path.Combine(folder, "gateway.json");
        await File.WriteAllTextAsync(file, """{ "Gateway": { "Limits": { "MaxConcurrentBodyReadsPerTenant": 8 } } }""");

        await using var gateway = GatewayProcess.Start(await PublishedGateway.DirectoryAsync(), new Dictionary<string, string>
        {
            ["OPENAI_API_KEY"] = TestKeys.UpstreamKey,
            ["GATEWAY_CONFIG"] = file,
        }, arguments: ["--Gateway:Limits:MaxConcurrentBodyReadsPerTenant=0"]);

        var exitCode = await gateway.WaitForExitAsync(TimeSpan.FromSeconds(60));

        Assert.True(exitCode == 1, $"exit code {exitCode}\nstderr:\n{gateway.Stderr}");
        Assert.Contains("Gateway:Limits:MaxConcurrentBodyReadsPerTenant must be a positive number", gateway.Stderr, StringComparison.Ordinal);
    }
}
