using System.Net;
using FakeUpstream;
using Gateway.Tests.Infrastructure;
using StackExchange.Redis;
using static Gateway.Tests.Quotas.QuotaTestKit;

namespace Gateway.Tests.SharedState;

/// <summary>
/// A Redis that comes back empty (restarted without persistence, flushed) answers as if nothing happened while
/// every quota window and ownership record is gone. The gateway notices through its marker key: RedisDataLost at
/// Error and gateway_store_data_loss_total, on every replica, and the marker is written anew. Real redis-server.
/// </summary>
[Collection(MetricsTestGroup.Name)]
public sealed class RedisDataLossTests
{
    private const string Prefix = "llmgw";
    private const string Marker = Prefix + ":instance-marker";

    [SkippableFact]
    public async Task RedisRestartedEmpty_OnReconnect_RedisDataLostLoggedCountedAndMarkerRewritten()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c =>
        {
            c["ConnectionStrings:Redis"] = redis.ConnectionString;
            c["Gateway:Quotas:RedisKeyPrefix"] = Prefix;
            c["Gateway:Quotas:RedisRetryInterval"] = "00:00:00.300";
            c["Gateway:Quotas:RedisDataLossCheckInterval"] = "01:00:00"; // only the reconnect can trigger the check here
        });
        await WaitForStoreAsync(gateway);
        await gateway.Logs.WaitForEventsAsync("RedisMarker");
        var firstMarker = await ReadMarkerAsync(redis);
        Assert.NotNull(firstMarker);
        Assert.Empty(gateway.Logs.Named("RedisDataLost"));

        // The restart of a Redis without persistence: same address, no data.
        await redis.StopProcessAsync();
        await redis.StartProcessAsync();

        var lost = Assert.Single(await gateway.Logs.WaitForEventsAsync("RedisDataLost", timeout: TimeSpan.FromSeconds(45)));
        Assert.Equal("Error", lost.GetProperty("@l").GetString());
        Assert.Equal(4050, lost.GetProperty("EventId").GetProperty("Id").GetInt32());
        Assert.Equal(Marker, lost.GetProperty("Marker").GetString());
        Assert.Equal(1, await MetricAsync(gateway, "gateway_store_data_loss_total"));

        // Written anew, without a TTL, so the next loss is seen too; the gateway keeps serving.
        var rewritten = await ReadMarkerAsync(redis);
        Assert.NotNull(rewritten);
        Assert.NotEqual(firstMarker, rewritten);
        await using (var connection = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString))
        {
            Assert.Null(await connection.GetDatabase().KeyTimeToLiveAsync(Marker));
        }

        using var client = gateway.CreateClient();
        using var response = await client.SendAsync(CreateResponse());
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [SkippableFact]
    public async Task RedisFlushed_TwoReplicas_EachReportsTheLossOnce()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var upstream = await FakeUpstreamServer.StartAsync();
        void Configure(Dictionary<string, string?> c)
        {
            c["ConnectionStrings:Redis"] = redis.ConnectionString;
            c["Gateway:Quotas:RedisKeyPrefix"] = Prefix;
            c["Gateway:Quotas:RedisDataLossCheckInterval"] = "00:00:00.200";
        }

        await using var first = await GatewayHost.StartAsync(upstream.BaseUrl, Configure);
        await using var second = await GatewayHost.StartAsync(upstream.BaseUrl, Configure);
        var seenByFirst = (await first.Logs.WaitForEventsAsync("RedisMarker"))[0].GetProperty("MarkerSince").GetString();
        var seenBySecond = (await second.Logs.WaitForEventsAsync("RedisMarker"))[0].GetProperty("MarkerSince").GetString();
        Assert.Equal(seenByFirst, seenBySecond); // one marker for the installation, whoever wrote it

        // No restart, no reconnect: only the periodic check can see this. Whichever replica rewrites the marker
        // first, the other sees a marker it does not know and reports the loss too.
        await using (var admin = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString + ",allowAdmin=true"))
        {
            await admin.GetServer(admin.GetEndPoints()[0]).FlushAllDatabasesAsync();
        }

        Assert.Single(await first.Logs.WaitForEventsAsync("RedisDataLost", timeout: TimeSpan.FromSeconds(30)));
        Assert.Single(await second.Logs.WaitForEventsAsync("RedisDataLost", timeout: TimeSpan.FromSeconds(30)));
        Assert.NotNull(await ReadMarkerAsync(redis));
    }

    private static async Task<string?> ReadMarkerAsync(RedisServer redis)
    {
        await using var connection = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        return await connection.GetDatabase().StringGetAsync(Marker);
    }
}
