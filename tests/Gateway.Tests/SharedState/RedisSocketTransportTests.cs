using System.Globalization;
using System.Net;
using System.Text.Json;
using FakeUpstream;
using Gateway.SharedState;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using StackExchange.Redis;
using static Gateway.Tests.Isolation.Tenants;

namespace Gateway.Tests.SharedState;

/// <summary>
/// The gateway's Redis connections run over its own socket transport (<see cref="RedisSocketTunnel"/>, issue #15:
/// a command is sent by the thread that issues it). Real creates through the gateway on a real redis-server and on a
/// real 3-node Redis Cluster; the quota and isolation contract suites and the group commit tests run over it too.
/// </summary>
public sealed class RedisSocketTransportTests
{
    [SkippableFact]
    public async Task Create_RedisStore_CountedInRedisOverTheGatewaysSocket()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var bed = await Bed.StartAsync(redis.ConnectionString);

        var before = await bed.RequestsCountedAsync();
        await bed.CreateAndFinishAsync();

        Assert.Equal(before + 1, await bed.RequestsCountedAsync());
        Assert.True(bed.Tunnel.ConnectionsOpened >= 1);
        Assert.False(bed.Store.IsDegraded);
    }

    [SkippableFact]
    public async Task Create_RedisCluster_EveryTenantCountedOnItsNodeOverTheGatewaysSocket()
    {
        await using var cluster = await RedisCluster.StartAsync();
        await using var bed = await Bed.StartAsync(cluster.ConnectionString);
        using var b = Client(bed.Gateway, TestKeys.KeyB, TestKeys.TenantB);

        var beforeA = await bed.RequestsCountedAsync(TestKeys.TenantA);
        var beforeB = await bed.RequestsCountedAsync(TestKeys.TenantB);
        await bed.CreateAndFinishAsync();
        await bed.CreateAndFinishAsync(b);

        Assert.Equal(beforeA + 1, await bed.RequestsCountedAsync(TestKeys.TenantA));
        Assert.Equal(beforeB + 1, await bed.RequestsCountedAsync(TestKeys.TenantB));
        Assert.True(bed.Tunnel.ConnectionsOpened >= 3, $"{bed.Tunnel.ConnectionsOpened} connections for 3 nodes");
        Assert.False(bed.Store.IsDegraded);
    }

    [SkippableFact]
    public async Task RedisKillsTheGatewaysConnection_Reconnects_NextCreatesCountedInRedisAgain()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var bed = await Bed.StartAsync(redis.ConnectionString);
        var opened = bed.Tunnel.ConnectionsOpened;

        await bed.Server.ExecuteAsync("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes");

        // The create that meets the closed connection may be admitted by the fallback (OnStoreFailure: Allow); once the
        // gateway has connected again, creates are counted in Redis again.
        await Eventually.UntilAsync(async () =>
        {
            var before = await bed.RequestsCountedAsync();
            await bed.CreateAndFinishAsync();
            return !bed.Store.IsDegraded && await bed.RequestsCountedAsync() == before + 1;
        }, "creates counted in Redis again");
        Assert.True(bed.Tunnel.ConnectionsOpened > opened);
    }

    private sealed class Bed : IAsyncDisposable
    {
        private readonly FakeUpstreamServer _upstream;
        private readonly ConnectionMultiplexer _admin;

        private Bed(FakeUpstreamServer upstream, GatewayHost gateway, ConnectionMultiplexer admin)
        {
            _upstream = upstream;
            _admin = admin;
            Gateway = gateway;
            A = Client(gateway, TestKeys.KeyA, TestKeys.TenantA);
        }

        public GatewayHost Gateway { get; }

        public HttpClient A { get; }

        public RedisSocketTunnel Tunnel => (RedisSocketTunnel)Gateway.Services.GetRequiredService<ConfigurationOptions>().Tunnel!;

        public ResilientStateStore Store => Gateway.Services.GetRequiredService<ResilientStateStore>();

        public IServer Server => _admin.GetServer(_admin.GetEndPoints()[0]);

        public static async Task<Bed> StartAsync(string connectionString)
        {
            var upstream = await FakeUpstreamServer.StartAsync();
            GatewayHost? gateway = null;
            try
            {
                gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c =>
                {
                    c["ConnectionStrings:Redis"] = connectionString;
                    c["Gateway:Quotas:RedisRetryInterval"] = "00:00:00.200";
                });
                var admin = await ConnectionMultiplexer.ConnectAsync(connectionString + ",allowAdmin=true");
                var bed = new Bed(upstream, gateway, admin);
                using var probe = new HttpClient { BaseAddress = gateway.RootUrl };
                await Eventually.UntilAsync(
                    async () => JsonDocument.Parse(await probe.GetStringAsync("/readyz")).RootElement.GetProperty("store_state").GetString() == "up",
                    "Redis is up for the gateway");
                return bed;
            }
            catch
            {
                if (gateway is not null)
                {
                    await gateway.DisposeAsync();
                }

                await upstream.DisposeAsync();
                throw;
            }
        }

        /// <summary>This minute's request counter of the tenant, as Redis holds it.</summary>
        public async Task<long> RequestsCountedAsync(string tenant = TestKeys.TenantA)
        {
            var minute = (DateTimeOffset.UtcNow.ToUnixTimeSeconds() / 60).ToString(CultureInfo.InvariantCulture);
            return (long)await _admin.GetDatabase().StringGetAsync($"gw:{{t:{tenant}}}:r:{minute}");
        }

        /// <summary>One JSON create, returned once its usage event is written (its settle and ownership record answered).</summary>
        public async Task CreateAndFinishAsync(HttpClient? client = null)
        {
            using var response = await (client ?? A).PostAsync("responses", Json("""{"model":"gpt-4o-mini","input":"Hello"}"""));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            await Gateway.Logs.SingleUsageEventAsync(GatewayRequestId(response));
        }

        public async ValueTask DisposeAsync()
        {
            A.Dispose();
            await _admin.DisposeAsync();
            await Gateway.DisposeAsync();
            await _upstream.DisposeAsync();
        }
    }
}
