using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using FakeUpstream;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Hosting;

/// <summary>
/// The published gateway with the configuration it ships with (appsettings.json beside the binary): the README's
/// local trial works as written, because its demo tenant comes from the command line and not from the file; the
/// file alone knows no tenant; and the <c>probe</c> command that the compose health checks run.
/// </summary>
public sealed class ShippedConfigurationTests : IAsyncLifetime
{
    private const string DemoKey = "gwk_demo_local_only";
    private FakeUpstreamServer _upstream = null!;

    public async Task InitializeAsync() => _upstream = await FakeUpstreamServer.StartAsync();

    public async Task DisposeAsync() => await _upstream.DisposeAsync();

    [Fact]
    public async Task ReadmeTrial_CommandLineAsWritten_DemoTenantStreamsAndSeesItsQuota()
    {
        var environment = ReadmeTrialEnvironment();
        Assert.Equal("http://127.0.0.1:9090/v1", environment["Gateway__Upstream__BaseUrl"]); // where the README starts the fake
        environment["Gateway__Upstream__BaseUrl"] = _upstream.BaseUrl.ToString().TrimEnd('/');
        await using var gateway = GatewayProcess.Start(await PublishedGateway.DirectoryAsync(), environment);
        await gateway.WaitUntilListeningAsync();
        using var client = gateway.CreateClient(DemoKey);

        // The README's two curl commands.
        using var stream = await client.PostAsync("responses",
            new StringContent("""{"model":"gpt-4o-mini","input":"Hello","stream":true}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, stream.StatusCode);
        Assert.Contains("event: response.completed", await stream.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        using var quota = await client.GetAsync("gateway/quota");
        Assert.Equal(HttpStatusCode.OK, quota.StatusCode);
        Assert.Contains("\"demo\"", await quota.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        var usage = (await gateway.WaitForEventsAsync("Usage", TimeSpan.FromSeconds(30)))[0];
        Assert.Equal("demo", usage.GetProperty("Tenant").GetString());
    }

    [Fact]
    public async Task ShippedSettings_WithoutTheTrialCommandLine_DemoKeyRefused()
    {
        var environment = ReadmeTrialEnvironment().Where(e => !e.Key.StartsWith("Gateway__Tenants__", StringComparison.Ordinal))
            .ToDictionary(e => e.Key, e => e.Value);
        environment["Gateway__Upstream__BaseUrl"] = _upstream.BaseUrl.ToString().TrimEnd('/');
        await using var gateway = GatewayProcess.Start(await PublishedGateway.DirectoryAsync(), environment);
        await gateway.WaitUntilListeningAsync();
        using var client = gateway.CreateClient(DemoKey);

        using var response = await client.GetAsync("models");

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        using var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("invalid_api_key", error.RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(0, _upstream.RequestCount);
    }

    [Fact]
    public async Task ProbeCommand_HealthyGatewayThenClosedPort_ExitCodesZeroThenOne()
    {
        await using var gateway = GatewayProcess.Start(await PublishedGateway.DirectoryAsync(), new Dictionary<string, string>
        {
            ["Gateway__Upstream__BaseUrl"] = _upstream.BaseUrl.ToString().TrimEnd('/'),
            ["OPENAI_API_KEY"] = TestKeys.UpstreamKey,
        });
        await gateway.WaitUntilListeningAsync();
        var healthz = new Uri(gateway.RootUrl, "/healthz").ToString();

        Assert.Equal(0, await ProbeAsync(healthz));
        Assert.Equal(1, await ProbeAsync(new Uri(gateway.RootUrl, "/no-such-path").ToString())); // a 404 is not healthy

        gateway.Terminate();
        Assert.Equal(0, await gateway.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Equal(1, await ProbeAsync(healthz));
        Assert.Equal(2, await ProbeAsync("not-a-url"));
    }

    [Fact]
    public async Task FakeUpstreamProbe_RunningThenStopped_ExitCodesZeroThenOne()
    {
        // The compose demo's health check of the fake (its chiseled image has no curl either).
        await using var fake = await FakeUpstreamServer.StartAsync();
        var healthz = new Uri(fake.RootUrl, "/healthz").ToString();
        var fakeProgram = Path.Combine(AppContext.BaseDirectory, "FakeUpstream.dll");

        Assert.Equal(0, await RunAsync(fakeProgram, "probe", healthz));
        await fake.DisposeAsync();
        Assert.Equal(1, await RunAsync(fakeProgram, "probe", healthz));
    }

    /// <summary>The <c>NAME=value</c> assignments in front of <c>dotnet run --project src/Gateway</c> in the README's local trial.</summary>
    private static Dictionary<string, string> ReadmeTrialEnvironment()
    {
        var readme = RepositoryPaths.Read("README.md");
        var trial = readme[readme.IndexOf("## Try it locally", StringComparison.Ordinal)..];
        trial = trial[..trial.IndexOf("\n## ", 3, StringComparison.Ordinal)];
        var line = Assert.Single(trial.Split('\n'), l => l.Contains("dotnet run --project src/Gateway", StringComparison.Ordinal));
        var words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return words.TakeWhile(w => w != "dotnet").Select(w => w.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);
    }

    private static async Task<int> ProbeAsync(string url) =>
        await RunAsync(Path.Combine(await PublishedGateway.DirectoryAsync(), "Gateway.dll"), "probe", url);

    private static async Task<int> RunAsync(string program, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, UseShellExecute = false };
        info.ArgumentList.Add(program);
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
        await process.StandardOutput.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return process.ExitCode;
    }
}
