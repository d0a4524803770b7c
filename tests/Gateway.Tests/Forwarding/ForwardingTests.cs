using System.Net;
using System.Text;
using System.Text.Json;
using FakeUpstream;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Forwarding;

public sealed class ForwardingTests() : GatewayTestBed(c =>
{
    c["Gateway:Upstream:Organization"] = "org-gateway";
    c["Gateway:Upstream:Project"] = "proj_gateway";
})
{
    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    [Fact]
    public async Task Request_ClientCredentialsAndOrgHeaders_ReplacedByGatewayOnes()
    {
        using var client = Gateway.CreateClient(key: null);
        using var request = new HttpRequestMessage(HttpMethod.Post, "responses") { Content = Json("""{"model":"gpt-4o-mini","input":"hi"}""") };
        request.Headers.Add("api-key", TestKeys.KeyA); // Azure-style key header is accepted too
        request.Headers.Add("OpenAI-Organization", "org-client");
        request.Headers.Add("OpenAI-Project", "proj-client");
        request.Headers.Add("Accept-Encoding", "gzip, br");
        request.Headers.Add("X-Stainless-Lang", "js");
        using var response = await client.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var upstream = Assert.Single(Upstream.Requests);
        Assert.Equal($"Bearer {TestKeys.UpstreamKey}", upstream.Header("Authorization"));
        Assert.Null(upstream.Header("api-key"));
        Assert.Equal("org-gateway", upstream.Header("OpenAI-Organization"));
        Assert.Equal("proj_gateway", upstream.Header("OpenAI-Project"));
        Assert.Equal("identity", upstream.Header("Accept-Encoding"));
        Assert.Equal("js", upstream.Header("X-Stainless-Lang"));
        Assert.NotEqual(Gateway.RootUrl.Authority, upstream.Header("Host"));
        Assert.False(upstream.Aborted); // a request answered in full is not an abort
    }

    [Fact]
    public async Task Request_QueryString_ForwardedVerbatim()
    {
        using var client = Gateway.CreateClient();
        using var response = await client.PostAsync("responses?beta=true&x=%2Fa", Json("""{"model":"gpt-4o-mini","input":"hi"}"""));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("/v1/responses?beta=true&x=%2Fa", Assert.Single(Upstream.Requests).PathAndQuery);
    }

    [Fact]
    public async Task Response_UpstreamCookiesAndOrganisationRateLimits_NeverReachTheClient()
    {
        using var client = Gateway.CreateClient();
        using var response = await client.PostAsync("responses", Json("""{"model":"gpt-4o-mini","input":"hi"}"""));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.False(response.Headers.Contains("Set-Cookie"));
        Assert.False(response.Headers.Contains("x-ratelimit-limit-requests")); // tenant A has no limits, the org's are hidden
        Assert.StartsWith("req_", response.Headers.GetValues("x-request-id").Single(), StringComparison.Ordinal);
        Assert.StartsWith("gw-", response.Headers.GetValues("x-gateway-request-id").Single(), StringComparison.Ordinal);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
    }

    [Fact]
    public async Task Stream_UpstreamHoldsTheRest_ClientAlreadyHasTheFirstEvent()
    {
        using var client = Gateway.CreateClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, "responses") { Content = Json("""{"model":"gpt-4o-mini","input":"hi","stream":true}""") };
        request.Headers.Add("x-fake-gate", "unbuffered-1");
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var reader = new SseReader(await response.Content.ReadAsStreamAsync());

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var first = await reader.NextAsync(timeout.Token);
        Assert.Equal("response.created", first?.Event);

        // The rest only exists once the upstream is released: the gateway held nothing back.
        Upstream.ReleaseGate("unbuffered-1");
        var rest = await reader.ReadAllAsync(timeout.Token);
        Assert.Equal("response.completed", rest[^1].Event);
    }

    [Fact]
    public async Task Stream_ClientHangsUp_UpstreamRequestIsCancelled()
    {
        using var client = Gateway.CreateClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, "responses") { Content = Json("""{"model":"gpt-4o-mini","input":"hi","stream":true}""") };
        request.Headers.Add("x-fake-deltas", "200");
        request.Headers.Add("x-fake-delay-ms", "50");
        var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var reader = new SseReader(await response.Content.ReadAsStreamAsync());
        await reader.NextAsync();
        response.Dispose(); // hang up

        // The upstream stream would take 10 s; the gateway cancels its upstream request instead, and the fake sees
        // that request aborted (its HttpContext.RequestAborted fired) long before it could deliver the usage.
        await Eventually.UntilAsync(() => Upstream.AbortedRequestCount == 1, "the upstream saw its request aborted", TimeSpan.FromSeconds(8));
        Assert.True(Assert.Single(Upstream.Requests).Aborted);
        Assert.Equal(0, Upstream.Ledger.ResponsesWithUsage);
        var usage = Assert.Single(await Gateway.Logs.WaitForUsageEventsAsync(1));
        Assert.Equal("client_aborted", usage.GetProperty("Outcome").GetString());
    }

    [Fact]
    public async Task Routes_OutsideTheAllowList_Answer404EnvelopeAndNeverReachUpstream()
    {
        using var client = Gateway.CreateClient();
        foreach (var (method, path) in new[] { ("GET", "files"), ("POST", "batches"), ("POST", "fine_tuning/jobs"), ("GET", "organization/users"), ("DELETE", "models/ft:x") })
        {
            using var response = await client.SendAsync(new HttpRequestMessage(new HttpMethod(method), path) { Content = method == "POST" ? Json("{}") : null });
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
            var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
            Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
            Assert.Contains("Invalid URL", error.GetProperty("message").GetString(), StringComparison.Ordinal);
            Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        }

        Assert.Empty(Upstream.Requests);
    }

    [Fact]
    public async Task Models_ListAndRetrieve_AreForwarded()
    {
        using var client = Gateway.CreateClient();
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("models")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("models/gpt-4o-mini")).StatusCode);
        Assert.Equal(2, Upstream.Requests.Count);
    }

    [Fact]
    public async Task NonV1Path_Answers404Envelope()
    {
        using var client = new HttpClient { BaseAddress = Gateway.RootUrl };
        using var response = await client.GetAsync("/admin");
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("invalid_request_error", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("type").GetString());
    }
}

/// <summary>The upstream's base URL may carry a path (Azure OpenAI's <c>/openai/v1</c>); the client's path after /v1 is appended.</summary>
public sealed class UpstreamBasePathTests : IAsyncLifetime
{
    private FakeUpstreamServer _upstream = null!;
    private GatewayHost _gateway = null!;

    public async Task InitializeAsync()
    {
        _upstream = await FakeUpstreamServer.StartAsync();
        _gateway = await GatewayHost.StartAsync(new Uri(_upstream.RootUrl, "openai/v1"), c => c["Gateway:Upstream:AuthHeader"] = "api-key");
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _upstream.DisposeAsync();
    }

    [Fact]
    public async Task Request_WithBasePath_PathAppendedAndAzureKeyHeaderUsed()
    {
        using var client = _gateway.CreateClient();
        await client.GetAsync("models?api-version=preview");
        var upstream = Assert.Single(_upstream.Requests);
        Assert.Equal("/openai/v1/models?api-version=preview", upstream.PathAndQuery);
        Assert.Equal(TestKeys.UpstreamKey, upstream.Header("api-key"));
        Assert.Null(upstream.Header("Authorization"));
    }
}

public sealed class UpstreamFailureTests
{
    [Fact]
    public async Task Upstream_Unreachable_Answers502ServerErrorEnvelope()
    {
        await using var gateway = await GatewayHost.StartAsync(new Uri("http://127.0.0.1:9/v1"), c => c["Gateway:Upstream:ConnectTimeout"] = "00:00:02");
        using var client = gateway.CreateClient();
        using var response = await client.PostAsync("responses", new StringContent("""{"model":"gpt-4o-mini","input":"hi"}""", Encoding.UTF8, "application/json"));

        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("server_error", error.GetProperty("type").GetString());
        Assert.True(response.Headers.Contains("x-request-id"));
        var usage = Assert.Single(await gateway.Logs.WaitForUsageEventsAsync(1));
        Assert.Equal("upstream_error", usage.GetProperty("Outcome").GetString());
        Assert.Equal(502, usage.GetProperty("StatusCode").GetInt32());
    }

    [Fact]
    public async Task Upstream_SilentPastActivityTimeout_Answers504ServerErrorEnvelope()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c => c["Gateway:Upstream:ActivityTimeout"] = "00:00:01");
        using var client = gateway.CreateClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, "responses")
        {
            Content = new StringContent("""{"model":"gpt-4o-mini","input":"hi"}""", Encoding.UTF8, "application/json"),
        };
        request.Headers.Add("x-fake-first-byte-delay-ms", "10000");
        using var response = await client.SendAsync(request);

        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("server_error", error.GetProperty("type").GetString());
        Assert.Equal("false", response.Headers.GetValues("x-should-retry").Single());
    }

    [Fact]
    public void ActivityTimeout_Default_IsAtLeastTenMinutes()
    {
        Assert.True(new Gateway.Configuration.UpstreamOptions().ActivityTimeout >= TimeSpan.FromMinutes(10));
    }
}
