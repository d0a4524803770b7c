using System.Globalization;
using System.Text;
using System.Text.Json;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace Gateway.Tests.Quotas;

/// <summary>Shared helpers of the quota tests: limits, requests, reading 429s, the quota endpoint and metrics.</summary>
internal static class QuotaTestKit
{
    /// <summary>10:15:30.250 UTC: 29.75 s before the minute ends, so nothing a test does can straddle a minute boundary.</summary>
    public static readonly DateTimeOffset MidMinute = new(2031, 3, 12, 10, 15, 30, 250, TimeSpan.Zero);

    public static FakeTimeProvider MidMinuteClock() => new(MidMinute);

    public static Action<IServiceCollection> UseClock(TimeProvider time) => s => s.AddSingleton(time);

    public static void Limits(Dictionary<string, string?> c, string tenant = TestKeys.TenantA, long rpm = 0, long tpm = 0, long tpd = 0, long tpmo = 0, long concurrent = 0)
    {
        Set(c, tenant, "RequestsPerMinute", rpm);
        Set(c, tenant, "TokensPerMinute", tpm);
        Set(c, tenant, "TokensPerDay", tpd);
        Set(c, tenant, "TokensPerMonth", tpmo);
        Set(c, tenant, "MaxConcurrentRequests", concurrent);

        static void Set(Dictionary<string, string?> c, string tenant, string name, long value)
        {
            if (value > 0)
            {
                c[$"Gateway:Tenants:{tenant}:Limits:{name}"] = value.ToString(CultureInfo.InvariantCulture);
            }
        }
    }

    /// <summary>A <c>POST responses</c> with optional <c>x-fake-*</c> steering headers.</summary>
    public static HttpRequestMessage CreateResponse(string input = "Hello from the quota tests", bool stream = false, long? maxOutputTokens = null,
        string model = "gpt-4o-mini", bool background = false, params (string Name, string Value)[] headers)
    {
        var body = new Dictionary<string, object> { ["model"] = model, ["input"] = input };
        if (stream)
        {
            body["stream"] = true;
        }

        if (background)
        {
            body["background"] = true;
        }

        if (maxOutputTokens is { } max)
        {
            body["max_output_tokens"] = max;
        }

        return Post("responses", JsonSerializer.Serialize(body), headers);
    }

    public static HttpRequestMessage Post(string path, string json, params (string Name, string Value)[] headers)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        foreach (var (name, value) in headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }

        return request;
    }

    /// <summary>The <c>error</c> object of an OpenAI error envelope, after checking it has exactly the four members.</summary>
    public static async Task<JsonElement> ErrorAsync(HttpResponseMessage response)
    {
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        using var document = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var error = document.RootElement.GetProperty("error");
        Assert.Equal(["message", "type", "param", "code"], error.EnumerateObject().Select(p => p.Name));
        return error.Clone();
    }

    public static string? Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? string.Join(",", values) : null;

    /// <summary>The gateway's own request id (x-request-id carries the upstream's on forwarded answers).</summary>
    public static string? RequestId(HttpResponseMessage response) => Header(response, "x-gateway-request-id");

    /// <summary><c>GET /v1/gateway/quota</c> of the client's tenant.</summary>
    public static async Task<JsonElement> QuotaAsync(HttpClient client)
    {
        using var response = await client.GetAsync("gateway/quota");
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        using var document = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return document.RootElement.Clone();
    }

    public static long Used(JsonElement quota, string name) => quota.GetProperty("usage").GetProperty(name).GetInt64();

    /// <summary>Sends a request and waits until its usage event is written, i.e. until its quota settle is done.</summary>
    public static async Task<HttpResponseMessage> SendAndSettleAsync(GatewayHost gateway, HttpClient client, HttpRequestMessage request)
    {
        var response = await client.SendAsync(request);
        await response.Content.LoadIntoBufferAsync();
        await gateway.Logs.SingleUsageEventAsync(RequestId(response)!);
        return response;
    }

    /// <summary>Starts a streamed request that the fake parks after its first event until <paramref name="gate"/> is released.</summary>
    public static async Task<HttpResponseMessage> StartGatedStreamAsync(HttpClient client, string gate, params (string Name, string Value)[] extraHeaders)
    {
        var request = CreateResponse("Hold this slot", stream: true, headers: [("x-fake-gate", gate), .. extraHeaders]);
        var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        var reader = new SseReader(await response.Content.ReadAsStreamAsync());
        Assert.NotNull(await reader.NextAsync()); // the first event went through: the request is admitted and in flight
        return response;
    }

    /// <summary>Reads the rest of a (released) stream so the gateway finishes the request.</summary>
    public static async Task DrainAsync(HttpResponseMessage response)
    {
        using (response)
        {
            await (await response.Content.ReadAsStreamAsync()).CopyToAsync(Stream.Null);
        }
    }

    /// <summary>Sum of a Prometheus counter's series on the gateway's /metrics.</summary>
    public static async Task<double> MetricAsync(GatewayHost gateway, string name)
    {
        using var http = new HttpClient { BaseAddress = gateway.RootUrl };
        var text = await http.GetStringAsync("/metrics");
        return text.Split('\n')
            .Where(l => l.StartsWith(name + "{", StringComparison.Ordinal) || l.StartsWith(name + " ", StringComparison.Ordinal))
            .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture));
    }

    /// <summary>
    /// Waits until the gateway's /readyz reports the shared store up, as a readiness probe would before traffic is
    /// sent: the Redis connection is made in the background, and requests before it would be served by the fallback.
    /// </summary>
    public static async Task WaitForStoreAsync(GatewayHost gateway)
    {
        using var http = new HttpClient { BaseAddress = gateway.RootUrl };
        await Eventually.UntilAsync(async () =>
        {
            using var response = await http.GetAsync("/readyz");
            using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            return body.RootElement.GetProperty("store_state").GetString() == "up";
        }, "the gateway's /readyz reports the store up");
    }
}

/// <summary>A fake upstream and a gateway using the named store (<c>memory</c>, or <c>redis</c> on its own redis-server).</summary>
internal sealed class QuotaBed : IAsyncDisposable
{
    private QuotaBed(FakeUpstream.FakeUpstreamServer upstream, GatewayHost gateway, RedisServer? redis)
    {
        Upstream = upstream;
        Gateway = gateway;
        Redis = redis;
    }

    public FakeUpstream.FakeUpstreamServer Upstream { get; }

    public GatewayHost Gateway { get; }

    public RedisServer? Redis { get; }

    public static async Task<QuotaBed> StartAsync(string store, Action<Dictionary<string, string?>> configure, TimeProvider? clock = null)
    {
        var redis = store == "redis" ? await RedisServer.StartAsync() : null; // skips (locally) without redis-server
        var upstream = await FakeUpstream.FakeUpstreamServer.StartAsync();
        var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c =>
        {
            configure(c);
            if (redis is not null)
            {
                c["ConnectionStrings:Redis"] = redis.ConnectionString;
            }
        }, clock is null ? null : QuotaTestKit.UseClock(clock));
        await QuotaTestKit.WaitForStoreAsync(gateway);
        return new QuotaBed(upstream, gateway, redis);
    }

    public async ValueTask DisposeAsync()
    {
        await Gateway.DisposeAsync();
        await Upstream.DisposeAsync();
        if (Redis is not null)
        {
            await Redis.DisposeAsync();
        }
    }
}
