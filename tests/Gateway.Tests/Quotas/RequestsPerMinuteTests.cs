using System.Globalization;
using System.Net;
using FakeUpstream;
using Gateway.Tests.Infrastructure;
using static Gateway.Tests.Quotas.QuotaTestKit;

namespace Gateway.Tests.Quotas;

/// <summary>
/// RequestsPerMinute under a burst: 200 requests at once against a limit of 50 let exactly 50 through to the
/// upstream, in memory, in Redis, and across two gateway replicas sharing one Redis. The clock is a
/// FakeTimeProvider at 10:15:30.250, so the burst cannot straddle a minute and the retry hints are exact.
/// </summary>
public sealed class RequestsPerMinuteTests
{
    private const int Limit = 50;
    private const int Burst = 200;

    [Fact]
    public async Task Burst_MemoryStore_ExactlyTheLimitReachesUpstream()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        var clock = MidMinuteClock();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c => Limits(c, rpm: Limit), UseClock(clock));

        await AssertBurstAsync(upstream, [gateway]);
    }

    [SkippableFact]
    public async Task Burst_RedisStore_ExactlyTheLimitReachesUpstream()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var upstream = await FakeUpstreamServer.StartAsync();
        var clock = MidMinuteClock();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c =>
        {
            Limits(c, rpm: Limit);
            c["ConnectionStrings:Redis"] = redis.ConnectionString;
        }, UseClock(clock));
        await WaitForStoreAsync(gateway);

        await AssertBurstAsync(upstream, [gateway]);
        Assert.Equal("redis", (await QuotaAsync(gateway.CreateClient())).GetProperty("store").GetString());
    }

    [SkippableFact]
    public async Task Burst_TwoReplicasSharingRedis_ExactlyTheLimitInTotal()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var upstream = await FakeUpstreamServer.StartAsync();
        var clock = MidMinuteClock();
        void Configure(Dictionary<string, string?> c)
        {
            Limits(c, rpm: Limit);
            c["ConnectionStrings:Redis"] = redis.ConnectionString;
        }

        await using var first = await GatewayHost.StartAsync(upstream.BaseUrl, Configure, UseClock(clock));
        await using var second = await GatewayHost.StartAsync(upstream.BaseUrl, Configure, UseClock(clock));
        await WaitForStoreAsync(first);
        await WaitForStoreAsync(second);

        await AssertBurstAsync(upstream, [first, second]);

        // Each replica took half of the burst (unshared counters would have let 100 through) and logged its own requests.
        var events = (await first.Logs.WaitForUsageEventsAsync(Burst / 2)).Concat(await second.Logs.WaitForUsageEventsAsync(Burst / 2)).ToList();
        Assert.Equal(Burst, events.Count);
        Assert.Equal(Limit, events.Count(e => e.GetProperty("StatusCode").GetInt32() == 200));
    }

    [Fact]
    public async Task RequestsPerMinute_CountsEveryV1RequestButTheQuotaEndpoint()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        var clock = MidMinuteClock();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c => Limits(c, rpm: 3), UseClock(clock));
        using var client = gateway.CreateClient();

        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(0, Used(await QuotaAsync(client), "requests_this_minute")); // reading the quota is free
        }

        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("models")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(CreateResponse())).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("models/gpt-4o-mini")).StatusCode);
        using var refused = await client.GetAsync("models");

        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.Equal(3, Used(await QuotaAsync(client), "requests_this_minute"));
        Assert.Equal(3, upstream.RequestCount);

        // Another tenant has its own window.
        using var other = gateway.CreateClient(TestKeys.KeyB);
        Assert.Equal(HttpStatusCode.OK, (await other.GetAsync("models")).StatusCode);
    }

    private static async Task AssertBurstAsync(FakeUpstreamServer upstream, GatewayHost[] gateways)
    {
        var clients = gateways.Select(g => g.CreateClient()).ToArray();
        using var start = new SemaphoreSlim(0);
        var tasks = Enumerable.Range(0, Burst).Select(async i =>
        {
            await start.WaitAsync();
            var response = await clients[i % clients.Length].SendAsync(CreateResponse($"burst request {i}"));
            await response.Content.LoadIntoBufferAsync();
            return (Replica: i % clients.Length, Response: response);
        }).ToList();
        start.Release(Burst);
        var responses = (await Task.WhenAll(tasks)).ToList();

        var ok = responses.Where(r => r.Response.StatusCode == HttpStatusCode.OK).Select(r => r.Response).ToList();
        var refused = responses.Where(r => r.Response.StatusCode == HttpStatusCode.TooManyRequests).Select(r => r.Response).ToList();
        Assert.Equal(Limit, ok.Count);
        Assert.Equal(Burst - Limit, refused.Count);
        Assert.Equal(Limit, upstream.Requests.Count(r => r.Method == "POST" && r.PathAndQuery == "/v1/responses"));

        // Each admission was counted atomically: the 50 answers report every remaining count from 49 down to 0 exactly once.
        Assert.Equal(Enumerable.Range(0, Limit).Select(n => n.ToString(CultureInfo.InvariantCulture)).Order(),
            ok.Select(r => Header(r, "x-ratelimit-remaining-requests")!).Order());
        Assert.All(ok, r => Assert.Equal("50", Header(r, "x-ratelimit-limit-requests")));
        Assert.All(ok, r => Assert.Equal("29.75s", Header(r, "x-ratelimit-reset-requests")));

        foreach (var response in refused)
        {
            var error = await ErrorAsync(response);
            Assert.Equal("requests", error.GetProperty("type").GetString());
            Assert.Equal("rate_limit_exceeded", error.GetProperty("code").GetString());
            Assert.Equal(System.Text.Json.JsonValueKind.Null, error.GetProperty("param").ValueKind);
            Assert.Equal("Rate limit reached for requests per minute (RPM): Limit 50, Used 50, Requested 1. Please try again in 29.75s.",
                error.GetProperty("message").GetString());
            Assert.Equal("30", Header(response, "retry-after"));        // whole seconds, rounded up, 1..60
            Assert.Equal("29750", Header(response, "retry-after-ms"));
            Assert.Null(Header(response, "x-should-retry"));              // a rate limit is worth retrying
            Assert.Equal("50", Header(response, "x-ratelimit-limit-requests"));
            Assert.Equal("0", Header(response, "x-ratelimit-remaining-requests"));
            Assert.Equal("29.75s", Header(response, "x-ratelimit-reset-requests"));
            Assert.Equal(RequestId(response), Header(response, "x-request-id")); // the gateway answered: its own id
        }

        foreach (var client in clients)
        {
            client.Dispose();
        }
    }
}
