using System.Globalization;
using System.Net;
using System.Text.Json;
using FakeUpstream;
using Gateway.Tests.Infrastructure;
using static Gateway.Tests.Quotas.QuotaTestKit;

namespace Gateway.Tests.Quotas;

/// <summary><c>GET /v1/gateway/quota</c> and the tenant's own <c>x-ratelimit-*</c> headers on successful answers.</summary>
public sealed class QuotaEndpointTests
{
    [Fact]
    public async Task Quota_ReportsLimitsUsageAndResets()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c =>
        {
            Limits(c, rpm: 60, tpm: 10_000, tpd: 100_000, tpmo: 1_000_000, concurrent: 4);
            c["Gateway:Tenants:tenant-a:Models:0"] = "gpt-4o-mini";
            c["Gateway:Tenants:tenant-a:MaxOutputTokens"] = "2000";
        }, UseClock(MidMinuteClock()));
        using var client = gateway.CreateClient();
        using var spent = await SendAndSettleAsync(gateway, client, CreateResponse(maxOutputTokens: 100, headers: [("x-fake-input-tokens", "120"), ("x-fake-deltas", "30")]));
        var holder = await StartGatedStreamAsync(client, "in-flight");

        using var response = await client.GetAsync("gateway/quota");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var quota = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("gateway.quota", quota.GetProperty("object").GetString());
        Assert.Equal("tenant-a", quota.GetProperty("tenant").GetString());
        Assert.Equal("memory", quota.GetProperty("store").GetString());
        var limits = quota.GetProperty("limits");
        Assert.Equal(60, limits.GetProperty("requests_per_minute").GetInt64());
        Assert.Equal(10_000, limits.GetProperty("tokens_per_minute").GetInt64());
        Assert.Equal(100_000, limits.GetProperty("tokens_per_day").GetInt64());
        Assert.Equal(1_000_000, limits.GetProperty("tokens_per_month").GetInt64());
        Assert.Equal(4, limits.GetProperty("max_concurrent_requests").GetInt64());
        Assert.Equal(2000, limits.GetProperty("max_output_tokens").GetInt64());
        Assert.Equal(["gpt-4o-mini"], limits.GetProperty("models").EnumerateArray().Select(m => m.GetString()));

        // One settled request (150 billed) and one in flight (its reservation: input estimate + the 2000 cap).
        var usage = quota.GetProperty("usage");
        Assert.Equal(2, usage.GetProperty("requests_this_minute").GetInt64());
        Assert.Equal(1, usage.GetProperty("concurrent_requests").GetInt64());
        var inFlightReservation = 10_000 - 150 - long.Parse(Header(holder, "x-ratelimit-remaining-tokens")!, CultureInfo.InvariantCulture);
        Assert.InRange(inFlightReservation, 2001, 2100);
        Assert.Equal(150 + inFlightReservation, usage.GetProperty("tokens_this_minute").GetInt64());
        Assert.Equal(150 + inFlightReservation, usage.GetProperty("tokens_today").GetInt64());
        Assert.Equal(150 + inFlightReservation, usage.GetProperty("tokens_this_month").GetInt64());

        var resets = quota.GetProperty("resets");
        Assert.Equal(new DateTimeOffset(2031, 3, 12, 10, 16, 0, TimeSpan.Zero), resets.GetProperty("minute").GetDateTimeOffset());
        Assert.Equal(new DateTimeOffset(2031, 3, 13, 0, 0, 0, TimeSpan.Zero), resets.GetProperty("day").GetDateTimeOffset());
        Assert.Equal(new DateTimeOffset(2031, 4, 1, 0, 0, 0, TimeSpan.Zero), resets.GetProperty("month").GetDateTimeOffset());
        Assert.Equal("fixed UTC windows: minute, day, calendar month", quota.GetProperty("window_semantics").GetString());

        // Its own headers describe the same standing, and reading it used up nothing.
        Assert.Equal("58", Header(response, "x-ratelimit-remaining-requests"));
        Assert.Equal((10_000 - 150 - inFlightReservation).ToString(CultureInfo.InvariantCulture), Header(response, "x-ratelimit-remaining-tokens"));
        Assert.Equal("29.75s", Header(response, "x-ratelimit-reset-tokens"));
        Assert.Equal(2, Used(await QuotaAsync(client), "requests_this_minute"));
        Assert.Equal(2, upstream.RequestCount);

        upstream.ReleaseGate("in-flight");
        await DrainAsync(holder);
    }

    [Fact]
    public async Task Quota_TenantWithoutLimits_NullLimitsAndNoRateLimitHeaders()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c => Limits(c, rpm: 5));
        using var client = gateway.CreateClient(TestKeys.KeyB);

        using var response = await client.GetAsync("gateway/quota");

        var quota = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("tenant-b", quota.GetProperty("tenant").GetString());
        Assert.All(quota.GetProperty("limits").EnumerateObject().Where(p => p.Name != "models"), p => Assert.Equal(JsonValueKind.Null, p.Value.ValueKind));
        Assert.Empty(quota.GetProperty("limits").GetProperty("models").EnumerateArray());
        Assert.DoesNotContain(response.Headers, h => h.Key.StartsWith("x-ratelimit-", StringComparison.OrdinalIgnoreCase));
    }

    [Fact]
    public async Task Quota_WithoutKey_401()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl);
        using var client = gateway.CreateClient(key: null);

        using var response = await client.GetAsync("gateway/quota");

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("invalid_api_key", (await ErrorAsync(response)).GetProperty("code").GetString());
    }

    [Fact]
    public async Task SuccessfulAnswers_CarryTheTenantsRateLimitHeadersInsteadOfTheUpstreams()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c => Limits(c, rpm: 10, tpm: 50_000), UseClock(MidMinuteClock()));
        using var client = gateway.CreateClient();

        using var json = await client.SendAsync(CreateResponse(maxOutputTokens: 100));
        using var sse = await client.SendAsync(CreateResponse(stream: true, maxOutputTokens: 100), HttpCompletionOption.ResponseHeadersRead);
        using var chat = await client.SendAsync(Post("chat/completions", """{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true,"max_completion_tokens":100}"""),
            HttpCompletionOption.ResponseHeadersRead);
        using var models = await client.GetAsync("models");

        var remaining = 10;
        foreach (var response in new[] { json, sse, chat, models })
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("10", Header(response, "x-ratelimit-limit-requests"));                // the fake sent 30000
            Assert.Equal((--remaining).ToString(CultureInfo.InvariantCulture), Header(response, "x-ratelimit-remaining-requests"));
            Assert.Equal("29.75s", Header(response, "x-ratelimit-reset-requests"));
            Assert.Equal("50000", Header(response, "x-ratelimit-limit-tokens"));
            Assert.InRange(long.Parse(Header(response, "x-ratelimit-remaining-tokens")!, CultureInfo.InvariantCulture), 40_000, 49_999); // reservations held
            Assert.Equal("29.75s", Header(response, "x-ratelimit-reset-tokens"));
        }

        Assert.Contains("text/event-stream", sse.Content.Headers.ContentType?.MediaType, StringComparison.Ordinal);
    }
}
