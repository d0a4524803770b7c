using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using Gateway.Tests.Infrastructure;
using OpenAI.Responses;

namespace Gateway.Tests.Usage;

/// <summary>
/// The usage event of each kind of request: every property present (null where unknown), the upstream's numbers
/// where it reports them, the outcome, and the timings. Rejected requests are logged too, without tokens.
/// </summary>
public sealed class UsageEventTests() : GatewayTestBed(c => c["Gateway:Tenants:tenant-b:Models:0"] = "gpt-4o-mini")
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Responses_CachedAndReasoningTokens_EventCarriesTheUpstreamUsageAndIds(bool stream)
    {
        using var client = Gateway.CreateClient();
        using var response = await SendAsync(client, "responses", $$"""{"model":"gpt-4o-mini","input":"Describe a kettle","stream":{{Lower(stream)}}}""",
            ("x-fake-input-tokens", "120"), ("x-fake-cached-tokens", "64"), ("x-fake-reasoning-tokens", "9"), ("x-fake-deltas", "11"));
        var body = await response.Content.ReadAsStringAsync();
        var usage = await UsageEvents.OfAsync(Gateway, response);

        Assert.Equal("upstream", UsageEvents.Text(usage, "UsageSource"));
        Assert.Equal(120, UsageEvents.Long(usage, "InputTokens"));
        Assert.Equal(64, UsageEvents.Long(usage, "CachedInputTokens"));
        Assert.Equal(20, UsageEvents.Long(usage, "OutputTokens"));
        Assert.Equal(9, UsageEvents.Long(usage, "ReasoningTokens"));
        Assert.Equal(140, UsageEvents.Long(usage, "TotalTokens"));
        Assert.Equal("completed", UsageEvents.Text(usage, "Outcome"));
        Assert.Equal(TestKeys.TenantA, UsageEvents.Text(usage, "Tenant"));
        Assert.Equal("responses.create", UsageEvents.Text(usage, "Endpoint"));
        Assert.Equal("gpt-4o-mini", UsageEvents.Text(usage, "RequestedModel"));
        Assert.Equal("gpt-4o-mini-2024-07-18", UsageEvents.Text(usage, "Model"));
        Assert.Equal(stream, usage.GetProperty("Stream").GetBoolean());
        Assert.False(usage.GetProperty("Background").GetBoolean());
        Assert.Equal(200, UsageEvents.Long(usage, "StatusCode"));
        Assert.Equal("POST", UsageEvents.Text(usage, "Method"));
        Assert.Equal("/v1/responses", UsageEvents.Text(usage, "Path"));
        Assert.StartsWith("resp_", UsageEvents.Text(usage, "ResponseId"), StringComparison.Ordinal);
        Assert.Contains(UsageEvents.Text(usage, "ResponseId")!, body, StringComparison.Ordinal);
        Assert.Equal(response.Headers.GetValues("x-request-id").Single(), UsageEvents.Text(usage, "UpstreamRequestId"));

        var duration = UsageEvents.Double(usage, "DurationMs")!.Value;
        var ttfb = UsageEvents.Double(usage, "TimeToFirstByteMs")!.Value;
        Assert.InRange(ttfb, double.Epsilon, duration);
    }

    [Fact]
    public async Task Stream_UpstreamSlowToStart_TimeToFirstByteCoversTheWait()
    {
        using var client = Gateway.CreateClient();
        using var response = await SendAsync(client, "responses", """{"model":"gpt-4o-mini","input":"hi","stream":true}""", ("x-fake-first-byte-delay-ms", "300"));
        await response.Content.ReadAsStringAsync();
        var usage = await UsageEvents.OfAsync(Gateway, response);

        // A lower bound only: the upstream sent nothing for 300 ms, so the first byte cannot have come sooner.
        Assert.True(UsageEvents.Double(usage, "TimeToFirstByteMs") >= 300, usage.ToString());
        Assert.True(UsageEvents.Double(usage, "DurationMs") >= UsageEvents.Double(usage, "TimeToFirstByteMs"));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Responses_MaxOutputTokensReached_OutcomeIncompleteWithUsage(bool stream)
    {
        using var client = Gateway.CreateClient();
        using var response = await SendAsync(client, "responses", $$"""{"model":"gpt-4o-mini","input":"Write an essay","max_output_tokens":16,"stream":{{Lower(stream)}}}""",
            ("x-fake-deltas", "40"));
        var body = await response.Content.ReadAsStringAsync();
        Assert.Contains("incomplete", body, StringComparison.Ordinal);
        var usage = await UsageEvents.OfAsync(Gateway, response);

        Assert.Equal("incomplete", UsageEvents.Text(usage, "Outcome"));
        Assert.Equal("upstream", UsageEvents.Text(usage, "UsageSource"));
        Assert.Equal(16, UsageEvents.Long(usage, "OutputTokens"));
        Assert.Equal(Upstream.Ledger.TotalTokens, UsageEvents.Long(usage, "TotalTokens"));
    }

    [Fact]
    public async Task Embeddings_UsageIsPromptTokensOnly()
    {
        using var client = Gateway.CreateClient();
        using var response = await SendAsync(client, "embeddings", """{"model":"text-embedding-3-small","input":["first text","second text"]}""", ("x-fake-input-tokens", "17"));
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        var usage = await UsageEvents.OfAsync(Gateway, response);

        Assert.Equal("upstream", UsageEvents.Text(usage, "UsageSource"));
        Assert.Equal(body.GetProperty("usage").GetProperty("prompt_tokens").GetInt64(), UsageEvents.Long(usage, "InputTokens"));
        Assert.Equal(17, UsageEvents.Long(usage, "InputTokens"));
        Assert.Equal(0, UsageEvents.Long(usage, "OutputTokens")); // embeddings produce no output: 0, not unknown
        Assert.Equal(17, UsageEvents.Long(usage, "TotalTokens"));
        Assert.Null(UsageEvents.Long(usage, "CachedInputTokens"));
        Assert.Null(UsageEvents.Long(usage, "ReasoningTokens"));
        Assert.Equal("embeddings", UsageEvents.Text(usage, "Endpoint"));
        Assert.Equal("text-embedding-3-small", UsageEvents.Text(usage, "Model"));
        Assert.Null(UsageEvents.Text(usage, "ResponseId")); // an embeddings list has no id
    }

    [Fact]
    public async Task Compact_BilledEveryTime()
    {
        // A compaction is not a stored response: it cannot be fetched again, so each one counts.
        using var client = Gateway.CreateClient();
        const string body = """{"model":"gpt-4o-mini","input":[{"role":"user","content":"a long conversation"},{"role":"assistant","content":"indeed"}]}""";
        for (var i = 0; i < 2; i++)
        {
            using var response = await SendAsync(client, "responses/compact", body, ("x-fake-deltas", "30"), ("x-fake-input-tokens", "900"));
            var answer = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
            Assert.Equal("response.compaction", answer.GetProperty("object").GetString());
            var usage = await UsageEvents.OfAsync(Gateway, response);
            UsageEvents.AssertEqualsUpstream(answer.GetProperty("usage"), usage);
            Assert.Equal("responses.compact", UsageEvents.Text(usage, "Endpoint"));
            Assert.Equal(900, UsageEvents.Long(usage, "InputTokens"));
            Assert.Equal(30, UsageEvents.Long(usage, "OutputTokens"));
        }

        Assert.Equal(Upstream.Ledger.TotalTokens, UsageEvents.Sum(Gateway.Logs.UsageEvents).Total);
    }

    [Fact]
    public async Task ChatJson_UsageWithDetails()
    {
        using var client = Gateway.CreateClient();
        using var response = await SendAsync(client, "chat/completions", """{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}""",
            ("x-fake-cached-tokens", "2"), ("x-fake-reasoning-tokens", "5"));
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        var usage = await UsageEvents.OfAsync(Gateway, response);
        UsageEvents.AssertEqualsUpstream(body.GetProperty("usage"), usage);
        Assert.Equal(body.GetProperty("id").GetString(), UsageEvents.Text(usage, "ResponseId"));
        Assert.Equal("chat.completions", UsageEvents.Text(usage, "Endpoint"));
    }

    [Fact]
    public async Task OfficialSdk_CreateResponse_ReportedUsageEqualsTheEvent()
    {
        var client = new ResponsesClient(new ApiKeyCredential(TestKeys.KeyA), new ResponsesClientOptions { Endpoint = Gateway.BaseUrl });
        var result = (await client.CreateResponseAsync("gpt-4o-mini", "Say hello to the gateway")).Value;

        var usage = Assert.Single(await Gateway.Logs.WaitForUsageEventsAsync(1));
        UsageEvents.AssertWellFormed(usage);
        Assert.Equal(result.Id, UsageEvents.Text(usage, "ResponseId"));
        Assert.Equal(result.Usage.InputTokenCount, UsageEvents.Long(usage, "InputTokens"));
        Assert.Equal(result.Usage.OutputTokenCount, UsageEvents.Long(usage, "OutputTokens"));
        Assert.Equal(result.Usage.TotalTokenCount, UsageEvents.Long(usage, "TotalTokens"));
        Assert.Equal(result.Usage.InputTokenDetails.CachedTokenCount, UsageEvents.Long(usage, "CachedInputTokens"));
        Assert.Equal(result.Usage.OutputTokenDetails.ReasoningTokenCount, UsageEvents.Long(usage, "ReasoningTokens"));
    }

    public static TheoryData<string, string, string?, int, string> Rejections() => new()
    {
        { "POST", "files", "{}", 404, "unknown" },                                                     // not on the allow-list
        { "POST", "responses", """{"model":"gpt-4o-mini","input":""", 400, "responses.create" },     // not JSON
        { "POST", "responses", null, 400, "responses.create" },                                          // no body
        { "GET", "responses/resp_never_created_here", null, 404, "responses.retrieve" },                 // unknown id (Deny)
        { "GET", "chat/completions", null, 403, "chat.completions.list" },                               // cross-tenant listing
    };

    [Theory]
    [MemberData(nameof(Rejections))]
    public async Task RejectedByTheGateway_OneEventRejectedWithoutTokens(string method, string path, string? body, int status, string endpoint)
    {
        using var client = Gateway.CreateClient();
        using var request = new HttpRequestMessage(new HttpMethod(method), path);
        if (body is not null)
        {
            request.Content = new StringContent(body, Encoding.UTF8, "application/json");
        }

        using var response = await client.SendAsync(request);
        Assert.Equal(status, (int)response.StatusCode);
        var usage = await UsageEvents.OfAsync(Gateway, response);
        Assert.Equal("rejected", UsageEvents.Text(usage, "Outcome"));
        UsageEvents.AssertNoTokens(usage);
        Assert.Equal(status, UsageEvents.Long(usage, "StatusCode"));
        Assert.Equal(endpoint, UsageEvents.Text(usage, "Endpoint"));
        Assert.Null(UsageEvents.Text(usage, "UpstreamRequestId"));
        Assert.Null(UsageEvents.Double(usage, "TimeToFirstByteMs"));
        Assert.Empty(Upstream.Requests);
    }

    [Fact]
    public async Task ModelNotAllowedForTenant_RejectedWithRequestedModelLogged()
    {
        using var client = Gateway.CreateClient(TestKeys.KeyB);
        using var response = await SendAsync(client, "responses", """{"model":"gpt-4.1","input":"hi"}""");
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        var usage = await UsageEvents.OfAsync(Gateway, response);
        Assert.Equal("rejected", UsageEvents.Text(usage, "Outcome"));
        Assert.Equal("gpt-4.1", UsageEvents.Text(usage, "RequestedModel"));
        Assert.Null(UsageEvents.Text(usage, "Model"));
        Assert.Equal(TestKeys.TenantB, UsageEvents.Text(usage, "Tenant"));
    }

    [Fact]
    public async Task NonGeneratingRoutes_OneEventEachWithoutTokens()
    {
        using var client = Gateway.CreateClient();
        using (var models = await client.GetAsync("models"))
        {
            Assert.Equal(HttpStatusCode.OK, models.StatusCode);
            var usage = await UsageEvents.OfAsync(Gateway, models);
            Assert.Equal("models.list", UsageEvents.Text(usage, "Endpoint"));
            UsageEvents.AssertNoTokens(usage);
            Assert.Equal("completed", UsageEvents.Text(usage, "Outcome"));
        }

        using (var quota = await client.GetAsync("gateway/quota"))
        {
            Assert.Equal(HttpStatusCode.OK, quota.StatusCode);
            var usage = await UsageEvents.OfAsync(Gateway, quota);
            Assert.Equal("gateway.quota", UsageEvents.Text(usage, "Endpoint"));
            UsageEvents.AssertNoTokens(usage);
        }

        using (var count = await SendAsync(client, "responses/input_tokens", """{"model":"gpt-4o-mini","input":"count these words"}"""))
        {
            // Counting input tokens is free: the answer's "input_tokens" is not usage.
            Assert.Equal(HttpStatusCode.OK, count.StatusCode);
            var usage = await UsageEvents.OfAsync(Gateway, count);
            Assert.Equal("responses.input_tokens", UsageEvents.Text(usage, "Endpoint"));
            UsageEvents.AssertNoTokens(usage);
        }
    }

    [Fact]
    public async Task NoValidKey_NoUsageEventButOneRequestCompletedLine()
    {
        using var client = Gateway.CreateClient("gwk_not_a_key_of_anyone_000000000000000");
        using var response = await SendAsync(client, "responses", """{"model":"gpt-4o-mini","input":"hi"}""");
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        await Gateway.Logs.WaitForEventsAsync("RequestCompleted");
        await Task.Delay(200); // a usage event or a second line would be a defect: give it the chance to show
        Assert.Empty(Gateway.Logs.UsageEvents);
        var line = Assert.Single(Gateway.Logs.Named("RequestCompleted"));
        Assert.Equal(401, line.GetProperty("StatusCode").GetInt32());
        Assert.Equal(response.Headers.GetValues("x-gateway-request-id").Single(), line.GetProperty("RequestId").GetString());
    }

    private static string Lower(bool value) => value ? "true" : "false";

    private static async Task<HttpResponseMessage> SendAsync(HttpClient client, string path, string body, params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        foreach (var (name, value) in headers)
        {
            request.Headers.Add(name, value);
        }

        return await client.SendAsync(request);
    }
}
