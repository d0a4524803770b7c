using System.Net;
using System.Text.Json;
using FakeUpstream;
using Gateway.Tests.Infrastructure;
using static Gateway.Tests.Quotas.QuotaTestKit;

namespace Gateway.Tests.Quotas;

/// <summary>
/// Redis stopped in the middle of a test (a real redis-server process killed and restarted on the same port).
/// OnStoreFailure=Allow keeps serving with per-replica limits in memory; Deny answers 503. Either way shared
/// enforcement comes back by itself once Redis answers again (RedisRetryInterval is short here).
/// MaxConcurrentRequests is the probe: it is not windowed, so these tests cannot depend on the wall clock.
/// </summary>
[Collection(MetricsTestGroup.Name)]
public sealed class QuotaStoreFailureTests
{
    [SkippableFact]
    public async Task RedisDown_AllowMode_ServesWithPerReplicaLimitsThenSharedEnforcementResumes()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var upstream = await FakeUpstreamServer.StartAsync();
        void Configure(Dictionary<string, string?> c)
        {
            Limits(c, concurrent: 1);
            c["ConnectionStrings:Redis"] = redis.ConnectionString;
            c["Gateway:Quotas:RedisRetryInterval"] = "00:00:00.300";
        }

        await using var first = await GatewayHost.StartAsync(upstream.BaseUrl, Configure);
        await using var second = await GatewayHost.StartAsync(upstream.BaseUrl, Configure);
        await WaitForStoreAsync(first);
        await WaitForStoreAsync(second);
        using var one = first.CreateClient();
        using var two = second.CreateClient();

        // Shared: a slot held through one replica is taken for the other.
        Assert.True(await SharedAsync(upstream, (first, one), (second, two), "before"), "limits were not shared while Redis was up");

        await redis.StopProcessAsync();

        // Allow: still served, and the limit now holds per replica.
        var held = await StartGatedStreamAsync(one, "during");
        using (var otherReplica = await two.SendAsync(CreateResponse()))
        {
            Assert.Equal(HttpStatusCode.OK, otherReplica.StatusCode);
        }

        using (var sameReplica = await one.SendAsync(CreateResponse()))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, sameReplica.StatusCode);
            Assert.Equal("rate_limit_exceeded", (await ErrorAsync(sameReplica)).GetProperty("code").GetString());
        }

        var (readyStatus, ready) = await ReadyAsync(first);
        Assert.Equal(HttpStatusCode.OK, readyStatus);
        Assert.Equal("ready", ready.GetProperty("status").GetString());
        Assert.Equal("redis", ready.GetProperty("store").GetString());
        Assert.Equal("down", ready.GetProperty("store_state").GetString());
        await Eventually.UntilAsync(async () => await MetricAsync(first, "gateway_quota_store_failures_total") > 0,
            "gateway_quota_store_failures_total counts the outage");
        upstream.ReleaseGate("during");
        await DrainAsync(held);

        await redis.StartProcessAsync();

        // Back: without a restart, once RedisRetryInterval has passed and the connection is re-established.
        var attempt = 0;
        await Eventually.UntilAsync(() => SharedAsync(upstream, (first, one), (second, two), "after-" + attempt++),
            "shared enforcement resumes after Redis came back", TimeSpan.FromSeconds(45));
        Assert.Equal("up", (await ReadyAsync(first)).Body.GetProperty("store_state").GetString());
        Assert.Equal("up", (await ReadyAsync(second)).Body.GetProperty("store_state").GetString());
    }

    [SkippableFact]
    public async Task RedisDown_DenyMode_503QuotaStoreUnavailableAndNotReady_ThenServesAgain()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c =>
        {
            Limits(c, rpm: 1000);
            c["ConnectionStrings:Redis"] = redis.ConnectionString;
            c["Gateway:Quotas:OnStoreFailure"] = "Deny";
            c["Gateway:Quotas:RedisRetryInterval"] = "00:00:00.300";
        });
        await WaitForStoreAsync(gateway);
        using var client = gateway.CreateClient();
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(CreateResponse())).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await ReadyAsync(gateway)).Status);

        await redis.StopProcessAsync();

        using (var refused = await client.SendAsync(CreateResponse()))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            var error = await ErrorAsync(refused);
            Assert.Equal("server_error", error.GetProperty("type").GetString());
            Assert.Equal("quota_store_unavailable", error.GetProperty("code").GetString());
            Assert.Equal("The gateway's quota store is unavailable, so requests cannot be admitted. Please retry shortly.", error.GetProperty("message").GetString());
            Assert.Equal(RequestId(refused), Header(refused, "x-request-id"));
            Assert.Equal("rejected", (await gateway.Logs.SingleUsageEventAsync(RequestId(refused)!)).GetProperty("Outcome").GetString());
        }

        using (var quota = await client.GetAsync("gateway/quota"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, quota.StatusCode);
            Assert.Equal("quota_store_unavailable", (await ErrorAsync(quota)).GetProperty("code").GetString());
        }

        var (status, ready) = await ReadyAsync(gateway);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        Assert.Equal("not_ready", ready.GetProperty("status").GetString());
        Assert.Equal("down", ready.GetProperty("store_state").GetString());
        Assert.Equal(1, upstream.RequestCount);
        Assert.True(await MetricAsync(gateway, "gateway_quota_store_failures_total") > 0);

        await redis.StartProcessAsync();

        await Eventually.UntilAsync(async () => (await client.SendAsync(CreateResponse())).StatusCode == HttpStatusCode.OK,
            "requests are served again after Redis came back", TimeSpan.FromSeconds(45));
        Assert.Equal(HttpStatusCode.OK, (await ReadyAsync(gateway)).Status);
    }

    /// <summary>
    /// A request admitted by the memory fallback during the outage and finished after Redis is back: its reservation is
    /// released where it was made (with its concurrency slot), its billed tokens count in Redis. Redis never saw the
    /// reservation and must not be refunded it (that drove the shared counters negative and handed out free tokens).
    /// </summary>
    [SkippableFact]
    public async Task AdmittedDuringOutage_FinishedAfterRecovery_SettledInTheStoreThatReservedIt()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c =>
        {
            Limits(c, tpd: 100_000, concurrent: 1);
            c["ConnectionStrings:Redis"] = redis.ConnectionString;
            c["Gateway:Quotas:RedisRetryInterval"] = "00:00:00.300";
        });
        await WaitForStoreAsync(gateway);
        using var client = gateway.CreateClient();
        await redis.StopProcessAsync();
        var straddling = await StartGatedStreamAsync(client, "straddle", ("x-fake-input-tokens", "10"), ("x-fake-deltas", "5"));
        var straddlingId = RequestId(straddling)!;

        await redis.StartProcessAsync();
        await Eventually.UntilAsync(async () => (await ReadyAsync(gateway)).Body.GetProperty("store_state").GetString() == "up",
            "/readyz reports Redis back", TimeSpan.FromSeconds(45));
        upstream.ReleaseGate("straddle");
        await DrainAsync(straddling);
        await gateway.Logs.SingleUsageEventAsync(straddlingId);

        var shared = await QuotaAsync(client);
        Assert.Equal(15, Used(shared, "tokens_today"));         // the billed tokens, not 15 - reservation
        Assert.Equal(0, Used(shared, "concurrent_requests"));

        // Should Redis fail again, this replica's fallback must not still hold the straddling request's slot.
        await redis.StopProcessAsync();
        using var duringSecondOutage = await client.SendAsync(CreateResponse());
        Assert.Equal(HttpStatusCode.OK, duringSecondOutage.StatusCode);
    }

    /// <summary>The reverse: reserved in Redis, finished while Redis is down. The fallback counts the billed tokens but never held the reservation, so it must not refund it.</summary>
    [SkippableFact]
    public async Task AdmittedBeforeOutage_FinishedDuringIt_FallbackCountersNotRefunded()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c =>
        {
            Limits(c, tpd: 100_000);
            c["ConnectionStrings:Redis"] = redis.ConnectionString;
            c["Gateway:Quotas:RedisRetryInterval"] = "00:00:30";
        });
        await WaitForStoreAsync(gateway);
        using var client = gateway.CreateClient();
        var straddling = await StartGatedStreamAsync(client, "straddle", ("x-fake-input-tokens", "10"), ("x-fake-deltas", "5"));
        var straddlingId = RequestId(straddling)!;

        await redis.StopProcessAsync();
        upstream.ReleaseGate("straddle");
        await DrainAsync(straddling);
        await gateway.Logs.SingleUsageEventAsync(straddlingId);

        var fallback = await QuotaAsync(client); // still degraded (retry in 30 s): read from this replica's memory
        Assert.Equal(15, Used(fallback, "tokens_today")); // the billed tokens, not 15 - reservation: the fallback never held it
    }

    /// <summary>
    /// Holds a slot through <paramref name="holder"/>; true when <paramref name="other"/> is then refused (limits shared).
    /// Returns only once both requests are settled (their usage events are written after the settle), so a lease still
    /// held from this probe cannot make the next one look shared.
    /// </summary>
    private static async Task<bool> SharedAsync(FakeUpstreamServer upstream, (GatewayHost Gateway, HttpClient Client) holder, (GatewayHost Gateway, HttpClient Client) other, string gate)
    {
        var held = await StartGatedStreamAsync(holder.Client, gate);
        var heldId = RequestId(held)!;
        string? otherId = null;
        try
        {
            using var response = await other.Client.SendAsync(CreateResponse());
            otherId = RequestId(response);
            return response.StatusCode == HttpStatusCode.TooManyRequests;
        }
        finally
        {
            upstream.ReleaseGate(gate);
            await DrainAsync(held);
            await holder.Gateway.Logs.SingleUsageEventAsync(heldId);
            if (otherId is not null)
            {
                await other.Gateway.Logs.SingleUsageEventAsync(otherId);
            }
        }
    }

    private static async Task<(HttpStatusCode Status, JsonElement Body)> ReadyAsync(GatewayHost gateway)
    {
        using var http = new HttpClient { BaseAddress = gateway.RootUrl };
        using var response = await http.GetAsync("/readyz");
        return (response.StatusCode, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone());
    }
}
