using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Gateway.Forwarding;
using Gateway.Tests.Infrastructure;
using Gateway.Tests.Usage;

namespace Gateway.Tests.Forwarding;

/// <summary>
/// The upstream's credentials and organization are the gateway's secret. An upstream 401/403 (our key or org refused)
/// reaches the tenant as the gateway's own 502 <c>upstream_auth_failed</c> with no upstream text, and is logged at
/// Error for operators with the key fragment removed; other upstream error bodies pass with organization/project ids
/// and masked key fragments removed. The fake upstream quotes the key it got, masked, as OpenAI does.
/// </summary>
public sealed class UpstreamErrorTests() : GatewayTestBed(c => c["Gateway:Upstream:Organization"] = "org-GatewaysOwn42")
{
    private const string Prompt = """{"model":"gpt-4o-mini","input":"hello there"}""";

    // What the fake quotes of TestKeys.UpstreamKey in its 401: first 8 characters, stars, last 4 characters.
    private static readonly string MaskedKeyStart = TestKeys.UpstreamKey[..8] + "*";

    [Theory]
    [InlineData(401, false, null)]
    [InlineData(401, true, null)]
    [InlineData(401, false, "gzip")]
    [InlineData(403, false, null)]
    public async Task UpstreamRefusesGatewayCredentials_Tenant502UpstreamAuthFailedWithoutUpstreamText(int status, bool stream, string? encoding)
    {
        using var client = Gateway.CreateClient();
        using var request = Create(stream ? """{"model":"gpt-4o-mini","input":"hello there","stream":true}""" : Prompt, ("x-fake-status", status.ToString(CultureInfo.InvariantCulture)));
        if (encoding is not null)
        {
            request.Headers.Add("x-fake-encoding", encoding);
        }

        using var response = await client.SendAsync(request);

        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        var requestId = response.Headers.GetValues("x-gateway-request-id").Single();
        var body = await response.Content.ReadAsStringAsync();
        var error = JsonDocument.Parse(body).RootElement.GetProperty("error");
        Assert.Equal("server_error", error.GetProperty("type").GetString());
        Assert.Equal("upstream_auth_failed", error.GetProperty("code").GetString());
        Assert.Equal(JsonValueKind.Null, error.GetProperty("param").ValueKind);
        Assert.Contains(requestId, error.GetProperty("message").GetString(), StringComparison.Ordinal);
        foreach (var upstreamText in new[] { "Incorrect API key", "Country", MaskedKeyStart, "*", "org-", "invalid_api_key", "unsupported_country" })
        {
            Assert.DoesNotContain(upstreamText, body, StringComparison.Ordinal);
        }

        Assert.Equal(requestId, response.Headers.GetValues("x-request-id").Single()); // not the upstream's request id
        Assert.False(response.Headers.Contains("openai-organization"));
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);

        var usage = await UsageEvents.OfAsync(Gateway, response);
        Assert.Equal("upstream_error", UsageEvents.Text(usage, "Outcome"));
        Assert.Equal(502, UsageEvents.Long(usage, "StatusCode"));
        UsageEvents.AssertNoTokens(usage);

        var logged = Assert.Single(await Gateway.Logs.WaitForEventsAsync("UpstreamAuthFailed"));
        Assert.Equal("Error", logged.GetProperty("@l").GetString());
        Assert.Equal(status, logged.GetProperty("UpstreamStatus").GetInt32());
        Assert.Equal(requestId, logged.GetProperty("RequestId").GetString());
        Assert.Equal(TestKeys.TenantA, logged.GetProperty("Tenant").GetString());
        Assert.NotNull(logged.GetProperty("UpstreamRequestId").GetString());
        if (status == 401)
        {
            Assert.StartsWith("Incorrect API key provided: [redacted].", logged.GetProperty("UpstreamMessage").GetString(), StringComparison.Ordinal);
        }

        foreach (var secret in new[] { MaskedKeyStart, TestKeys.UpstreamKey, "***" })
        {
            Assert.DoesNotContain(secret, Gateway.Logs.AllText, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData(null)]
    [InlineData("gzip")]
    [InlineData("br")]
    public async Task Upstream429NamingTheOrganization_PassesWithStatusTypeAndCodeButNoOrgId(string? encoding)
    {
        using var client = Gateway.CreateClient();
        using var request = Create(Prompt, ("x-fake-status", "429"), ("x-fake-retry-after", "2"));
        if (encoding is not null)
        {
            request.Headers.Add("x-fake-encoding", encoding);
        }

        using var response = await client.SendAsync(request);

        Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
        Assert.Equal("2", response.Headers.GetValues("retry-after").Single()); // the upstream's retry hint still reaches the SDK
        Assert.False(response.Content.Headers.Contains("Content-Encoding"));
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal(body.Length, response.Content.Headers.ContentLength);
        var error = JsonDocument.Parse(body).RootElement.GetProperty("error");
        Assert.Equal("requests", error.GetProperty("type").GetString());
        Assert.Equal("rate_limit_exceeded", error.GetProperty("code").GetString());
        Assert.Equal(
            "Rate limit reached for gpt-4o-mini in organization [redacted] on requests per min (RPM): Limit 30000, Used 30000, Requested 1. Please try again in 2ms.",
            error.GetProperty("message").GetString());
        Assert.DoesNotContain("org-", body, StringComparison.Ordinal);
    }

    public static TheoryData<string, string> LeakyMessages() => new()
    {
        { "Incorrect API key provided: sk-proj-********************************************wxyz. You can find your API key at https://platform.openai.com/account/api-keys.", "wxyz" },
        { "Incorrect API key provided: sk-abc12********************wxyz.", "abc12" },
        { "Quota exceeded for organization org-AbC123dEf456 in project proj_Xy9Z8w7V6u (limit 10000).", "AbC123" },
        { "Your key sk-live-0000111122223333 is not allowed to use this model.", "0000111122223333" },
        { $"The key {TestKeys.UpstreamKey} was revoked.", TestKeys.UpstreamKey },
        { "Masked credential abcd****wxyz rejected.", "abcd" },
    };

    [Theory]
    [MemberData(nameof(LeakyMessages))]
    public async Task UpstreamErrorMessage_AccountIdentifiers_RemovedBeforeTheTenant(string message, string fragment)
    {
        using var client = Gateway.CreateClient();
        using var request = Create(Prompt, ("x-fake-status", "400"), ("x-fake-error-message", message), ("x-fake-error-code", "some_code"));

        using var response = await client.SendAsync(request);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var body = await response.Content.ReadAsStringAsync();
        Assert.DoesNotContain(fragment, body, StringComparison.Ordinal);
        var error = JsonDocument.Parse(body).RootElement.GetProperty("error");
        Assert.Contains("[redacted]", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal("some_code", error.GetProperty("code").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
    }

    [Fact]
    public async Task Upstream403ProjectLacksModel_TenantsOwnChoice_PassesAs403WithProjectIdRemovedAndNoAlert()
    {
        // OpenAI answers a model the project may not use with 403 model_not_found: caused by the tenant, not our key.
        using var client = Gateway.CreateClient();
        using var request = Create(Prompt, ("x-fake-status", "403"), ("x-fake-error-code", "model_not_found"),
            ("x-fake-error-message", "Project `proj_Qx81LmNs0Pq` does not have access to model `gpt-5-pro`"));

        using var response = await client.SendAsync(request);

        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("Project `[redacted]` does not have access to model `gpt-5-pro`", error.GetProperty("message").GetString());
        Assert.Equal("model_not_found", error.GetProperty("code").GetString());
        await UsageEvents.OfAsync(Gateway, response);
        Assert.Empty(Gateway.Logs.Named("UpstreamAuthFailed"));
    }

    [Fact]
    public async Task UpstreamErrorWithoutIdentifiers_PassesByteForByte()
    {
        using var client = Gateway.CreateClient();
        using var request = Create(Prompt, ("x-fake-status", "500"));

        using var response = await client.SendAsync(request);

        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        Assert.Equal(
            """{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}""",
            (await response.Content.ReadAsStringAsync()).Trim());
    }

    [Theory]
    [InlineData("sk-…wxyz", "[redacted]")]
    [InlineData("key sk-abc\\u2026wxyz.", "key [redacted].")]
    [InlineData("in organization org-x1 on tokens", "in organization [redacted] on tokens")]
    [InlineData("please retry later.", "please retry later.")]
    public void Scrub_MaskedFragmentsAndIds_Replaced(string text, string expected) =>
        Assert.Equal(expected, UpstreamErrors.Scrub(text, TestKeys.UpstreamKey));

    [Fact]
    public void ScrubBody_IdentifiersHiddenBehindJsonEscapes_FoundAfterUnescaping()
    {
        var body = Encoding.UTF8.GetBytes("""{"error":{"message":"in org\u002dEsc4ped9 with sk\u002dproj\u002dAbCd\u2026wxyz","type":"requests","param":null,"code":"rate_limit_exceeded"}}""");

        var scrubbed = Encoding.UTF8.GetString(UpstreamErrors.ScrubBody(body, TestKeys.UpstreamKey)!);

        var error = JsonDocument.Parse(scrubbed).RootElement.GetProperty("error");
        Assert.Equal("in [redacted] with [redacted]", error.GetProperty("message").GetString());
        Assert.Equal("rate_limit_exceeded", error.GetProperty("code").GetString());
        Assert.Equal(JsonValueKind.Null, error.GetProperty("param").ValueKind);
        Assert.Null(UpstreamErrors.ScrubBody(Encoding.UTF8.GetBytes("""{"error":{"message":"nothing to hide"}}"""), TestKeys.UpstreamKey));
    }

    private static HttpRequestMessage Create(string json, params (string Name, string Value)[] headers)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "responses") { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        foreach (var (name, value) in headers)
        {
            request.Headers.Add(name, value);
        }

        return request;
    }
}
