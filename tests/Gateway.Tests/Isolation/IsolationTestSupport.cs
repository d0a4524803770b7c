using System.ClientModel.Primitives;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using FakeUpstream;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Isolation;

/// <summary>
/// Tenants A and B in front of one fake upstream. Every request a test client sends carries <c>x-test-caller</c>
/// (the gateway forwards unknown headers untouched), so a test can tell whose requests reached the upstream.
/// </summary>
public class TwoTenantBed : GatewayTestBed
{
    public TwoTenantBed()
    {
    }

    protected TwoTenantBed(Action<Dictionary<string, string?>> configure)
        : base(configure)
    {
    }

    /// <summary>Tenant A's client (gateway key A, caller header tenant-a).</summary>
    public HttpClient A { get; private set; } = null!;

    /// <summary>Tenant B's client (gateway key B, caller header tenant-b).</summary>
    public HttpClient B { get; private set; } = null!;

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        A = Tenants.Client(Gateway, TestKeys.KeyA, TestKeys.TenantA);
        B = Tenants.Client(Gateway, TestKeys.KeyB, TestKeys.TenantB);
    }

    public override async Task DisposeAsync()
    {
        A.Dispose();
        B.Dispose();
        await base.DisposeAsync();
    }

    /// <summary>Requests of <paramref name="caller"/> that reached the fake upstream.</summary>
    public IReadOnlyList<RecordedRequest> UpstreamRequestsFrom(string caller) => Tenants.RequestsFrom(Upstream, caller);
}

/// <summary>Helpers shared by the isolation tests: clients, object creation, the OpenAI error envelope.</summary>
public static class Tenants
{
    public const string CallerHeader = "x-test-caller";

    public static HttpClient Client(GatewayHost gateway, string key, string caller)
    {
        var client = gateway.CreateClient(key);
        client.DefaultRequestHeaders.Add(CallerHeader, caller);
        return client;
    }

    /// <summary>A client talking to the fake upstream directly with the real key: what OpenAI itself answers.</summary>
    public static HttpClient Direct(FakeUpstreamServer upstream)
    {
        var client = new HttpClient { BaseAddress = new Uri(upstream.RootUrl, "v1/"), Timeout = TimeSpan.FromSeconds(60) };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", TestKeys.UpstreamKey);
        client.DefaultRequestHeaders.Add(CallerHeader, "direct");
        return client;
    }

    public static IReadOnlyList<RecordedRequest> RequestsFrom(FakeUpstreamServer upstream, string caller) =>
        upstream.Requests.Where(r => r.Header(CallerHeader) == caller).ToArray();

    public static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    public static async Task<JsonElement> ReadJsonAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    public static async Task<string> CreateResponseAsync(HttpClient client, string fields = "")
    {
        using var response = await client.PostAsync("responses", Json($$"""{"model":"gpt-4o-mini","input":"Tell me a joke"{{fields}}}"""));
        return (await ReadJsonAsync(response)).GetProperty("id").GetString()!;
    }

    public static async Task<string> CreateConversationAsync(HttpClient client)
    {
        using var response = await client.PostAsync("conversations",
            Json("""{"metadata":{"topic":"test"},"items":[{"type":"message","role":"user","content":"Hello there"}]}"""));
        return (await ReadJsonAsync(response)).GetProperty("id").GetString()!;
    }

    public static async Task<string> FirstItemIdAsync(HttpClient client, string conversationId)
    {
        using var response = await client.GetAsync($"conversations/{conversationId}/items");
        return (await ReadJsonAsync(response)).GetProperty("data")[0].GetProperty("id").GetString()!;
    }

    public static async Task<string> CreateStoredChatCompletionAsync(HttpClient client)
    {
        using var response = await client.PostAsync("chat/completions",
            Json("""{"model":"gpt-4o-mini","store":true,"messages":[{"role":"user","content":"Hello"}]}"""));
        return (await ReadJsonAsync(response)).GetProperty("id").GetString()!;
    }

    /// <summary>An OpenAI error answer: status, JSON content type, and exactly the four envelope members with these values.</summary>
    public static async Task AssertErrorAsync(HttpResponseMessage response, HttpStatusCode status, string message, string? param = null, string? code = null)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"expected {(int)status}, got {(int)response.StatusCode}: {text}");
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        AssertEnvelope(text, message, param, code);
    }

    public static void AssertEnvelope(string body, string message, string? param, string? code)
    {
        var root = JsonDocument.Parse(body).RootElement;
        var error = Assert.Single(root.EnumerateObject());
        Assert.Equal("error", error.Name);
        Assert.Equal(["message", "type", "param", "code"], error.Value.EnumerateObject().Select(p => p.Name));
        Assert.Equal(message, error.Value.GetProperty("message").GetString());
        Assert.Equal("invalid_request_error", error.Value.GetProperty("type").GetString());
        Assert.Equal(param, error.Value.GetProperty("param").GetString());
        Assert.Equal(code, error.Value.GetProperty("code").GetString());
    }

    /// <summary>Status and body with <paramref name="id"/> replaced by a placeholder, to compare answers about different ids.</summary>
    public static async Task<(HttpStatusCode Status, string Body)> ShapeAsync(HttpResponseMessage response, string id) =>
        (response.StatusCode, (await response.Content.ReadAsStringAsync()).Replace(id, "{id}", StringComparison.Ordinal));

    /// <summary>The gateway's request id of an answer (also the usage event's and log lines' RequestId).</summary>
    public static string GatewayRequestId(HttpResponseMessage response) => response.Headers.GetValues("x-gateway-request-id").Single();
}

/// <summary>Ids shaped like OpenAI's that nobody ever created.</summary>
public static class NeverSeen
{
    public static string Response() => "resp_" + Hex(48);

    public static string Conversation() => "conv_" + Hex(48);

    public static string ChatCompletion() => "chatcmpl-" + Hex(29);

    private static string Hex(int digits) => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32))[..digits];
}

/// <summary>Adds a header to every request an official SDK client sends (caller marker, fake-upstream directives).</summary>
public sealed class AddHeaderPolicy(string name, string value) : PipelinePolicy
{
    public override void Process(PipelineMessage message, IReadOnlyList<PipelinePolicy> pipeline, int currentIndex)
    {
        message.Request.Headers.Set(name, value);
        ProcessNext(message, pipeline, currentIndex);
    }

    public override ValueTask ProcessAsync(PipelineMessage message, IReadOnlyList<PipelinePolicy> pipeline, int currentIndex)
    {
        message.Request.Headers.Set(name, value);
        return ProcessNextAsync(message, pipeline, currentIndex);
    }
}
