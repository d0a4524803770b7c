using System.ClientModel;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using FakeUpstream;
using Gateway.Hosting;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using OpenAI.Responses;
using StackExchange.Redis;

namespace Gateway.Tests.Hosting;

/// <summary>
/// The start-up warm-up (Gateway:Warmup): it drives a private copy of the pipeline before the port opens, and leaves
/// no trace in anything real: no upstream call, no usage event, no Redis key, no /metrics series.
/// </summary>
[Collection(MetricsTestGroup.Name)]
public sealed class StartupWarmupTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private static void WarmupOn(Dictionary<string, string?> settings)
    {
        settings["Gateway:Warmup:Enabled"] = "true";
        settings["Gateway:Warmup:MaxSeconds"] = "3";
    }

    [Fact]
    public async Task Warmup_Enabled_RunsThenTheGatewayServesWithoutAnyTraceOfIt()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, WarmupOn);

        var completed = Assert.Single(gateway.Logs.Named("WarmupCompleted"));
        Assert.True(completed.GetProperty("WarmupRequests").GetInt32() > 0, completed.ToString());
        Assert.True(completed.GetProperty("MethodsCompiled").GetInt64() > 0, completed.ToString());
        Assert.Equal(0, upstream.RequestCount);
        Assert.Empty(gateway.Logs.UsageEvents);
        Assert.DoesNotContain(PipelineWarmup.TenantId, gateway.Logs.AllText, StringComparison.Ordinal);
        var metrics = await ScrapeAsync(gateway);
        Assert.DoesNotContain(PipelineWarmup.TenantId, metrics, StringComparison.Ordinal);
        Assert.DoesNotContain(WarmupMeterFactory.Prefix, metrics, StringComparison.Ordinal);

        var sdk = new ResponsesClient(new ApiKeyCredential(TestKeys.KeyA), new ResponsesClientOptions { Endpoint = gateway.BaseUrl });
        var result = await sdk.CreateResponseAsync("gpt-4o-mini", "Hello after the warm-up");

        Assert.Equal(ResponseStatus.Completed, result.Value.Status);
        var usage = Assert.Single(await gateway.Logs.WaitForUsageEventsAsync(1));
        Assert.Equal(TestKeys.TenantA, usage.GetProperty("Tenant").GetString());
        Assert.Equal(result.Value.Usage.TotalTokenCount, usage.GetProperty("TotalTokens").GetInt32());
        var call = Assert.Single(upstream.Requests);
        Assert.Equal("Bearer " + TestKeys.UpstreamKey, call.Header("Authorization"));
        // The real metrics still work: the warm-up's renamed meters did not take the real ones' place.
        await Eventually.UntilAsync(async () => (await ScrapeAsync(gateway)).Contains("tenant=\"" + TestKeys.TenantA + "\"", StringComparison.Ordinal),
            "the real request's series is on /metrics");
    }

    [Fact]
    public async Task Warmup_PublishedGatewayWithRedis_WritesNoRedisKey()
    {
        // A real process configured by environment variables, as a container is: the warm-up's copy must not pick
        // up the real gateway's environment (its Redis, upstream, tenants).
        await using var redis = await RedisServer.StartAsync();
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = GatewayProcess.Start(await PublishedGateway.DirectoryAsync(), new Dictionary<string, string>
        {
            ["Gateway__Upstream__BaseUrl"] = upstream.BaseUrl.ToString().TrimEnd('/'),
            ["OPENAI_API_KEY"] = TestKeys.UpstreamKey,
            ["Gateway__Tenants__tenant-a__KeyHashes__0"] = TestKeys.Hash(TestKeys.KeyA),
            ["Gateway__Tenants__tenant-a__Limits__RequestsPerMinute"] = "1000",
            ["ConnectionStrings__Redis"] = redis.ConnectionString,
            ["Gateway__Quotas__RedisKeyPrefix"] = "warmtest",
            ["Gateway__Warmup__Enabled"] = "true",
            ["Gateway__Warmup__MaxSeconds"] = "3",
        });
        await gateway.WaitUntilListeningAsync(Timeout);

        var completed = Assert.Single(await gateway.WaitForEventsAsync("WarmupCompleted", Timeout));
        Assert.True(completed.GetProperty("WarmupRequests").GetInt32() > 0, completed.ToString());
        await using var connection = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        // Only the installation's data-loss marker (written by the real gateway, warm-up or not).
        Assert.All(await KeysAsync(connection), key => Assert.Equal("warmtest:instance-marker", key));
        Assert.Equal(0, upstream.RequestCount);

        using var client = gateway.CreateClient(TestKeys.KeyA);
        using var response = await client.PostAsync("responses", new StringContent("""{"model":"gpt-4o-mini","input":"hi"}""", System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        // The same check sees a real tenant's keys, so it would see the warm-up's.
        await Eventually.UntilAsync(async () => (await KeysAsync(connection)).Any(k => k.StartsWith("warmtest:{t:tenant-a}:", StringComparison.Ordinal)),
            "the real request's quota keys are in Redis");
        Assert.DoesNotContain(await KeysAsync(connection), k => k.Contains(PipelineWarmup.TenantId, StringComparison.Ordinal));
        Assert.Equal(1, upstream.RequestCount);
        var usage = Assert.Single(await gateway.WaitForEventsAsync("Usage", Timeout));
        Assert.Equal(TestKeys.TenantA, usage.GetProperty("Tenant").GetString());
    }

    [Fact]
    public async Task Warmup_CannedUpstreamCannotBind_GatewayStillStartsAndServes()
    {
        using var occupied = new TcpListener(IPAddress.Loopback, 0);
        occupied.Start();
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, WarmupOn,
            services => services.AddSingleton(new WarmupBinding((IPEndPoint)occupied.LocalEndpoint)));

        var failed = Assert.Single(gateway.Logs.Named("WarmupFailed"));
        Assert.Equal("Warning", failed.GetProperty("@l").GetString());
        Assert.Empty(gateway.Logs.Named("WarmupCompleted"));
        using var client = gateway.CreateClient();
        using var response = await client.PostAsync("responses", new StringContent("""{"model":"gpt-4o-mini","input":"hi"}""", System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Single(await gateway.Logs.WaitForUsageEventsAsync(1));
    }

    [Fact]
    public async Task Warmup_PublishedGateway_PortOpensOnlyAfterTheWarmupEnds()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = GatewayProcess.Start(await PublishedGateway.DirectoryAsync(), new Dictionary<string, string>
        {
            ["Gateway__Upstream__BaseUrl"] = upstream.BaseUrl.ToString().TrimEnd('/'),
            ["OPENAI_API_KEY"] = TestKeys.UpstreamKey,
            ["Gateway__Warmup__Enabled"] = "true",
            ["Gateway__Warmup__MaxSeconds"] = "3",
        });

        await gateway.WaitUntilListeningAsync(Timeout);

        var names = gateway.Events.Select(GatewayProcess.EventName).ToList();
        var warmup = names.IndexOf("WarmupCompleted");
        var listening = names.IndexOf("ListeningOnAddress");
        Assert.True(warmup >= 0 && warmup < listening, $"the warm-up ended before the port opened:\n{gateway.Stdout}");
        Assert.Equal(0, upstream.RequestCount);
        Assert.Empty(gateway.UsageEvents);
        Assert.DoesNotContain(PipelineWarmup.TenantId, gateway.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("gwk_warmup_", gateway.Stdout + gateway.Stderr, StringComparison.Ordinal); // the copy's key
        Assert.DoesNotContain(TestKeys.UpstreamKey, gateway.Stdout + gateway.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Warmup_SigTermWhileWarmingUp_ExitsCleanlyWithoutAStackTrace()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = GatewayProcess.Start(await PublishedGateway.DirectoryAsync(), new Dictionary<string, string>
        {
            ["Gateway__Upstream__BaseUrl"] = upstream.BaseUrl.ToString().TrimEnd('/'),
            ["OPENAI_API_KEY"] = TestKeys.UpstreamKey,
            ["Gateway__Warmup__Enabled"] = "true",
            ["Gateway__Warmup__MaxSeconds"] = "60",
        });
        // The warm-up runs at least 2 s (until the JIT settles), time enough for the signal to land inside it.
        await gateway.WaitForEventsAsync("WarmupStarted", Timeout);

        gateway.Terminate();
        var exitCode = await gateway.WaitForExitAsync(Timeout);

        Assert.True(exitCode == 0, $"exit code {exitCode}\nstderr:\n{gateway.Stderr}");
        Assert.DoesNotContain("Unhandled exception", gateway.Stderr, StringComparison.Ordinal);
        Assert.Contains("WarmupCancelled", gateway.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain(gateway.StdoutLines, l => l.Contains("ListeningOnAddress", StringComparison.Ordinal));
        Assert.Equal(0, upstream.RequestCount);
    }

    [Fact]
    public async Task Warmup_Enabled_BadConfigurationStillFailsTheStartReadably()
    {
        // The warm-up swallows its own failures; a configuration error must not be one of them.
        await using var gateway = GatewayProcess.Start(await PublishedGateway.DirectoryAsync(), new Dictionary<string, string>
        {
            ["OPENAI_API_KEY"] = TestKeys.UpstreamKey,
            ["Gateway__Warmup__Enabled"] = "true",
            ["Gateway__Metrics__Port"] = "70000",
        });

        var exitCode = await gateway.WaitForExitAsync(Timeout);

        Assert.True(exitCode == 1, $"exit code {exitCode}\nstderr:\n{gateway.Stderr}");
        Assert.Contains("Gateway:Metrics:Port 70000 is not a TCP port", gateway.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("Warmup", gateway.Stdout, StringComparison.Ordinal);
    }

    private static async Task<string> ScrapeAsync(GatewayHost gateway)
    {
        using var http = new HttpClient { BaseAddress = gateway.RootUrl };
        return await http.GetStringAsync("/metrics");
    }

    private static async Task<List<string>> KeysAsync(ConnectionMultiplexer connection)
    {
        var keys = new List<string>();
        await foreach (var key in connection.GetServer(connection.GetEndPoints()[0]).KeysAsync(pattern: "*"))
        {
            keys.Add(key.ToString());
        }

        return keys;
    }
}
