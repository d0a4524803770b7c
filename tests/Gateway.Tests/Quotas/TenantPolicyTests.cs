using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Gateway.Tests.Infrastructure;
using Gateway.Usage;
using static Gateway.Tests.Quotas.QuotaTestKit;

namespace Gateway.Tests.Quotas;

/// <summary>The per-tenant request policy: allowed models and the output-token cap (refused above it, injected when absent).</summary>
public sealed class TenantPolicyTests : GatewayTestBed
{
    public TenantPolicyTests()
        : base(c =>
        {
            c["Gateway:Tenants:tenant-a:Models:0"] = "gpt-4o-mini";
            c["Gateway:Tenants:tenant-a:Models:1"] = "text-embedding-3-small";
            c["Gateway:Tenants:tenant-a:MaxOutputTokens"] = "1000";
            c["Gateway:Tenants:tenant-a:Limits:TokensPerMinute"] = "1000000";
        })
    {
    }

    public static TheoryData<string, string> OtherModels => new()
    {
        { "responses", """{"model":"gpt-4o","input":"hi"}""" },
        { "chat/completions", """{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}""" },
        { "embeddings", """{"model":"text-embedding-3-large","input":"hi"}""" },
    };

    [Theory]
    [MemberData(nameof(OtherModels))]
    public async Task ModelOutsideTheTenantsList_404ModelNotFound_NothingReachesUpstream(string path, string body)
    {
        using var client = Gateway.CreateClient();

        using var response = await client.SendAsync(Post(path, body));

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        var error = await ErrorAsync(response);
        var model = JsonDocument.Parse(body).RootElement.GetProperty("model").GetString();
        Assert.Equal($"The model `{model}` does not exist or you do not have access to it.", error.GetProperty("message").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Equal("model", error.GetProperty("param").GetString());
        Assert.Equal("model_not_found", error.GetProperty("code").GetString());
        Assert.Empty(Upstream.Requests);
        Assert.Equal("rejected", (await Gateway.Logs.SingleUsageEventAsync(RequestId(response)!)).GetProperty("Outcome").GetString());
    }

    [Fact]
    public async Task AllowedModels_PassAndOtherTenantsAreNotRestricted()
    {
        using var client = Gateway.CreateClient();
        using var other = Gateway.CreateClient(TestKeys.KeyB);

        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(Post("responses", """{"model":"gpt-4o-mini","input":"hi"}"""))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(Post("embeddings", """{"model":"text-embedding-3-small","input":"hi"}"""))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await other.SendAsync(Post("responses", """{"model":"gpt-4o","input":"hi"}"""))).StatusCode);
    }

    public static TheoryData<string, string, string> AboveCap => new()
    {
        { "responses", """{"model":"gpt-4o-mini","input":"hi","max_output_tokens":5000}""", "max_output_tokens" },
        { "chat/completions", """{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":5000}""", "max_completion_tokens" },
        { "chat/completions", """{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":5000}""", "max_tokens" },
    };

    [Theory]
    [MemberData(nameof(AboveCap))]
    public async Task OutputLimitAboveTheCap_400NamingTheParameter(string path, string body, string param)
    {
        using var client = Gateway.CreateClient();

        using var response = await client.SendAsync(Post(path, body));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = await ErrorAsync(response);
        Assert.Equal($"Invalid '{param}': 5000 is above this tenant's cap of 1000 output tokens per request.", error.GetProperty("message").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.Equal("max_output_tokens_exceeded", error.GetProperty("code").GetString());
        Assert.Empty(Upstream.Requests);
    }

    public static TheoryData<string, string, string> WithoutLimit => new()
    {
        { "responses", """{"model":"gpt-4o-mini","input":"hi"}""", "max_output_tokens" },
        { "chat/completions", """{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}""", "max_completion_tokens" },
        { "chat/completions", """{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true}""", "max_completion_tokens" },
    };

    [Theory]
    [MemberData(nameof(WithoutLimit))]
    public async Task NoOutputLimit_CapInjectedIntoTheUpstreamBodyAndReserved(string path, string body, string param)
    {
        using var client = Gateway.CreateClient();

        using var response = await client.SendAsync(Post(path, body), HttpCompletionOption.ResponseHeadersRead);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        // The reservation is the input estimate plus the cap, not the 4096 default.
        var estimate = new TokenCounter().EstimateInput(Encoding.UTF8.GetBytes(body), 64 * 1024);
        Assert.Equal((1_000_000 - estimate - 1000).ToString(CultureInfo.InvariantCulture), Header(response, "x-ratelimit-remaining-tokens"));
        await response.Content.LoadIntoBufferAsync();
        var sent = JsonDocument.Parse(Assert.Single(Upstream.Requests).BodyText).RootElement;
        Assert.Equal(1000, sent.GetProperty(param).GetInt32());
        Assert.Equal("gpt-4o-mini", sent.GetProperty("model").GetString()); // the rest of the body is intact
        Assert.False(sent.TryGetProperty("max_tokens", out _));
    }

    [Fact]
    public async Task OutputLimitWithinTheCap_ForwardedUnchanged()
    {
        using var client = Gateway.CreateClient();
        const string Body = """{"model":"gpt-4o-mini","input":"hi","max_output_tokens":1000}""";

        using var response = await client.SendAsync(Post("responses", Body));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(Body, Assert.Single(Upstream.Requests).BodyText);
    }
}
