using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net;
using System.Text;
using System.Text.Json;
using FakeUpstream;
using Gateway.Tests.Infrastructure;
using Gateway.Tests.Usage;
using OpenAI.Responses;

namespace Gateway.Tests.Upstreams;

/// <summary>
/// Two fake upstreams in a pool (issue #12, phase 2): "east" (OpenAI-style Bearer key, weight 3) and "west"
/// (Azure-style api-key, weight 1, a deployment name for gpt-4o-mini). Both serve only gpt-4o-mini.
/// </summary>
public sealed class PoolRoutingTests : IAsyncLifetime
{
    private const string EastKey = "sk-east-upstream-key";
    private const string WestKey = "west-azure-upstream-key";
    private const string WestDeployment = "mini-west-deployment";

    public FakeUpstreamServer East { get; private set; } = null!;

    public FakeUpstreamServer West { get; private set; } = null!;

    public GatewayHost Gateway { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        East = await FakeUpstreamServer.StartAsync();
        West = await FakeUpstreamServer.StartAsync();
        Gateway = await GatewayHost.StartAsync(East.BaseUrl, c =>
        {
            c["Gateway:Upstreams:east:BaseUrl"] = East.BaseUrl.ToString().TrimEnd('/');
            c["Gateway:Upstreams:east:ApiKey"] = EastKey;
            c["Gateway:Upstreams:east:Organization"] = "org-east";
            c["Gateway:Upstreams:east:Weight"] = "3";
            c["Gateway:Upstreams:east:Models:gpt-4o-mini"] = "gpt-4o-mini";
            // Azure's v1 surface: the fake takes api-key there only.
            c["Gateway:Upstreams:west:BaseUrl"] = new Uri(West.RootUrl, "/openai/v1").ToString();
            c["Gateway:Upstreams:west:ApiKey"] = WestKey;
            c["Gateway:Upstreams:west:AuthHeader"] = "api-key";
            c["Gateway:Upstreams:west:Weight"] = "1";
            c["Gateway:Upstreams:west:Models:gpt-4o-mini"] = WestDeployment;
        });
    }

    public async Task DisposeAsync()
    {
        await Gateway.DisposeAsync();
        await East.DisposeAsync();
        await West.DisposeAsync();
    }

    [Fact]
    public async Task Pool_OfficialSdkRequests_EachUpstreamGetsOnlyItsOwnKeyAndModelName()
    {
        var sdk = new ResponsesClient(new ApiKeyCredential(TestKeys.KeyA), new ResponsesClientOptions { Endpoint = Gateway.BaseUrl });

        for (var i = 0; i < 40; i++)
        {
            var result = await sdk.CreateResponseAsync("gpt-4o-mini", "Say hello");
            Assert.Equal(ResponseStatus.Completed, result.Value.Status);
        }

        var east = East.Requests.Where(r => r.Method == "POST").ToList();
        var west = West.Requests.Where(r => r.Method == "POST").ToList();
        Assert.Equal(40, east.Count + west.Count);
        Assert.NotEmpty(east);
        Assert.NotEmpty(west);
        Assert.All(east, r =>
        {
            Assert.Equal("Bearer " + EastKey, r.Header("Authorization"));
            Assert.Null(r.Header("api-key"));
            Assert.Equal("org-east", r.Header("OpenAI-Organization"));
            Assert.Equal("gpt-4o-mini", Model(r));
            Assert.DoesNotContain(TestKeys.KeyA, string.Join(' ', r.Headers.Values.SelectMany(v => v)), StringComparison.Ordinal);
        });
        Assert.All(west, r =>
        {
            Assert.Equal(WestKey, r.Header("api-key"));
            Assert.Null(r.Header("Authorization"));
            Assert.Null(r.Header("OpenAI-Organization"));
            Assert.Equal(WestDeployment, Model(r));
            Assert.DoesNotContain(TestKeys.KeyA, string.Join(' ', r.Headers.Values.SelectMany(v => v)), StringComparison.Ordinal);
        });
    }

    [Fact]
    public async Task Pool_WeightsThreeToOne_RequestsSplitRoughlyThreeToOne()
    {
        using var client = Gateway.CreateClient();
        const int requests = 120;
        for (var i = 0; i < requests; i++)
        {
            using var response = await PostAsync(client, """{"model":"gpt-4o-mini","input":"hi"}""");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // Expected 90 : 30; the binomial standard deviation is ~4.7, so 70..110 is over four of them either way.
        Assert.InRange(East.Requests.Count(r => r.Method == "POST"), 70, 110);
        Assert.Equal(requests, East.Requests.Count(r => r.Method == "POST") + West.Requests.Count(r => r.Method == "POST"));
    }

    [Fact]
    public async Task Pool_UsageEvent_NamesTheUpstreamAndKeepsTheClientModel()
    {
        using var client = Gateway.CreateClient();
        var seen = new HashSet<string>();
        for (var i = 0; i < 40 && seen.Count < 2; i++)
        {
            using var response = await PostAsync(client, """{"model":"gpt-4o-mini","input":"hi"}""");
            var usage = await UsageEvents.OfAsync(Gateway, response);
            var upstream = UsageEvents.Text(usage, "Upstream")!;
            Assert.True(upstream is "east" or "west", upstream);
            Assert.Equal(1, UsageEvents.Long(usage, "Attempts"));
            Assert.Equal("gpt-4o-mini", UsageEvents.Text(usage, "RequestedModel"));
            Assert.Equal("completed", UsageEvents.Text(usage, "Outcome"));
            seen.Add(upstream);
        }

        Assert.Equal(2, seen.Count);
        var westBodies = West.Requests.Where(r => r.Method == "POST").Select(Model).ToList();
        Assert.All(westBodies, m => Assert.Equal(WestDeployment, m));
    }

    [Fact]
    public async Task Pool_ModelNoUpstreamServes_Answers404ModelNotFoundWithoutForwarding()
    {
        using var client = Gateway.CreateClient();
        using var response = await PostAsync(client, """{"model":"gpt-4.1","input":"hi"}""");

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var error = body.RootElement.GetProperty("error");
        Assert.Equal("model_not_found", error.GetProperty("code").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.True(error.TryGetProperty("param", out _));
        Assert.DoesNotContain(East.Requests, r => r.Method == "POST");
        Assert.DoesNotContain(West.Requests, r => r.Method == "POST");

        var usage = await UsageEvents.OfAsync(Gateway, response);
        Assert.Equal(404, UsageEvents.Long(usage, "StatusCode"));
        Assert.Equal(0, UsageEvents.Long(usage, "Attempts"));
        Assert.Equal(JsonValueKind.Null, usage.GetProperty("Upstream").ValueKind);
    }

    [Fact]
    public async Task Failover_OneUpstreamRateLimited_SdkWithoutRetriesSeesOnlySuccesses()
    {
        West.SetMode(FakeUpstreamMode.Throttle(retryAfterSeconds: 30));
        var sdk = new ResponsesClient(new ApiKeyCredential(TestKeys.KeyA),
            new ResponsesClientOptions { Endpoint = Gateway.BaseUrl, RetryPolicy = new ClientRetryPolicy(maxRetries: 0) });

        for (var i = 0; i < 40; i++)
        {
            var result = await sdk.CreateResponseAsync("gpt-4o-mini", "Say hello");
            Assert.Equal(ResponseStatus.Completed, result.Value.Status);
        }

        var events = await Gateway.Logs.WaitForUsageEventsAsync(40);
        Assert.All(events, e => Assert.Equal(200, e.GetProperty("StatusCode").GetInt32()));
        Assert.All(events, e => Assert.Equal("east", e.GetProperty("Upstream").GetString()));
        // West was tried (weight 1 of 4 puts it first sometimes), answered 429 with retry-after 30, and then cooled.
        Assert.Contains(events, e => e.GetProperty("Attempts").GetInt32() == 2);
        Assert.Equal(1, West.Requests.Count(r => r.Method == "POST"));
    }

    [Fact]
    public async Task Failover_OneUpstreamUnreachable_ClientGetsAnswersFromTheOther()
    {
        await West.StopListeningAsync();
        using var client = Gateway.CreateClient();

        for (var i = 0; i < 20; i++)
        {
            using var response = await PostAsync(client, """{"model":"gpt-4o-mini","input":"hi"}""");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var usage = await UsageEvents.OfAsync(Gateway, response);
            Assert.Equal("east", UsageEvents.Text(usage, "Upstream"));
            Assert.Equal("completed", UsageEvents.Text(usage, "Outcome"));
        }

        Assert.Equal(20, East.Requests.Count(r => r.Method == "POST"));
    }

    [Fact]
    public async Task Failover_EveryUpstreamRateLimited_Answers429WithRetryAfterOfTheSoonest()
    {
        East.SetMode(FakeUpstreamMode.Throttle(retryAfterSeconds: 20));
        West.SetMode(FakeUpstreamMode.Throttle(retryAfterSeconds: 7));
        using var client = Gateway.CreateClient();

        using var response = await PostAsync(client, """{"model":"gpt-4o-mini","input":"hi"}""");

        Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
        var retryAfter = int.Parse(response.Headers.GetValues("retry-after").Single(), System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(retryAfter, 1, 7);
        Assert.True(response.Headers.Contains("retry-after-ms"));
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("rate_limit_exceeded", body.RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(1, East.Requests.Count(r => r.Method == "POST"));
        Assert.Equal(1, West.Requests.Count(r => r.Method == "POST"));
        var usage = await UsageEvents.OfAsync(Gateway, response);
        Assert.Equal(2, UsageEvents.Long(usage, "Attempts"));
        Assert.Equal(429, UsageEvents.Long(usage, "StatusCode"));
    }

    [Fact]
    public async Task Readyz_EveryUpstreamRefusesOurKey_NotReadyUntilOneIsUsable()
    {
        using var probe = new HttpClient { BaseAddress = Gateway.RootUrl };
        Assert.Equal(HttpStatusCode.OK, (await probe.GetAsync("/readyz")).StatusCode);
        East.SetMode(FakeUpstreamMode.Fail(401));
        West.SetMode(FakeUpstreamMode.Fail(401));
        using var client = Gateway.CreateClient();

        using var response = await PostAsync(client, """{"model":"gpt-4o-mini","input":"hi"}""");

        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.DoesNotContain("Incorrect API key", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        using var ready = await probe.GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        Assert.Contains("none_usable", await ready.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Pool_TenantNamesADeploymentOrEscapesTheModel_DeploymentUnreachableEscapedModelStillMapped()
    {
        using var client = Gateway.CreateClient();

        // A deployment name is not a client model: a tenant cannot address an upstream's deployments directly.
        using var direct = await PostAsync(client, $$"""{"model":"{{WestDeployment}}","input":"hi"}""");
        Assert.Equal(HttpStatusCode.NotFound, direct.StatusCode);

        // "gpt\u002d4o-mini" is gpt-4o-mini to every JSON parser: routed and rewritten like it, never passed through raw.
        for (var i = 0; i < 12; i++)
        {
            using var escaped = await PostAsync(client, """{"model":"gpt\u002d4o-mini","input":"hi"}""");
            Assert.Equal(HttpStatusCode.OK, escaped.StatusCode);
        }

        Assert.All(West.Requests.Where(r => r.Method == "POST"), r => Assert.Equal(WestDeployment, Model(r)));
        Assert.All(East.Requests.Where(r => r.Method == "POST"), r => Assert.Equal("gpt-4o-mini", Model(r)));
    }

    private static async Task<HttpResponseMessage> PostAsync(HttpClient client, string json) =>
        await client.PostAsync("responses", new StringContent(json, Encoding.UTF8, "application/json"));

    private static string? Model(RecordedRequest request)
    {
        using var body = JsonDocument.Parse(request.Body);
        return body.RootElement.GetProperty("model").GetString();
    }
}
