using System.Globalization;
using System.Net;
using System.Text.Json;
using FakeUpstream;
using Gateway.Tests.Infrastructure;
using StackExchange.Redis;
using static Gateway.Tests.Isolation.Tenants;

namespace Gateway.Tests.SharedState;

/// <summary>
/// What a request costs Redis itself (issue #15): on one core Redis' CPU competes with the gateway's, and nearly all of
/// it goes to the commands its scripts run, each one a call through Lua. Counted on a real redis-server with
/// <c>INFO commandstats</c> around real creates through the gateway.
/// </summary>
public sealed class RedisCommandCostTests
{
    private const int Creates = 10;

    [SkippableFact]
    public async Task JsonCreate_AdmissionRecordAndSettle_TwoScriptsAndOnePlainSet()
    {
        await using var bed = await Bed.StartAsync();
        await using var admin = await ConnectionMultiplexer.ConnectAsync(bed.Redis.ConnectionString + ",allowAdmin=true");
        var server = admin.GetServer(admin.GetEndPoints()[0]);
        await server.ExecuteAsync("CONFIG", "RESETSTAT");

        for (var i = 0; i < Creates; i++)
        {
            await bed.CreateAndFinishAsync();
        }

        // Two scripts per create (admission, settle) and what they run, and the ownership record of a new id as one plain
        // SET NX (#15, sixth pass; it was a third script): 21. Before: 38 (a GET per counter, an INCRBY and a PEXPIRE per
        // counter written, the held reservation read twice, the owner key read before written).
        var commands = DataCommands(await server.InfoAsync("commandstats"));
        var summary = $"{commands.Values.Sum() / (double)Creates:F1} commands per create: {string.Join(", ", commands.Select(c => $"{c.Key}={c.Value}"))}";
        Assert.True(commands.Values.Sum() <= Creates * 21, summary); // 22 with the record's script (its SET NX is counted either way)
        Assert.True(Creates * 2 == commands.GetValueOrDefault("evalsha"), summary);
    }

    [SkippableFact]
    public async Task Create_RedisLostItsScripts_AdmittedCountedAndRecorded()
    {
        await using var bed = await Bed.StartAsync();
        await using var admin = await ConnectionMultiplexer.ConnectAsync(bed.Redis.ConnectionString + ",allowAdmin=true");
        var server = admin.GetServer(admin.GetEndPoints()[0]);
        // This minute's and the next one's request counters: the create may land in either (a minute boundary).
        var minute = DateTimeOffset.UtcNow.ToUnixTimeSeconds() / 60;
        RedisKey[] requestCounters = [$"gw:{{t:{TestKeys.TenantA}}}:r:{minute}", $"gw:{{t:{TestKeys.TenantA}}}:r:{minute + 1}"];
        var before = (await admin.GetDatabase().StringGetAsync(requestCounters)).Sum(v => (long)v);

        // A restarted or failed-over Redis has none of the scripts the gateway runs by hash (EVALSHA answers NOSCRIPT).
        await server.ScriptFlushAsync();
        var id = await bed.CreateAndFinishAsync();

        Assert.Equal(before + 1, (await admin.GetDatabase().StringGetAsync(requestCounters)).Sum(v => (long)v));
        Assert.Equal(TestKeys.TenantA, (string?)await admin.GetDatabase().StringGetAsync($"gw:own:{id}"));
        Assert.Empty(bed.Gateway.Logs.Named("OwnershipNotRecorded"));
    }

    /// <summary>Calls per data command since the last reset (the client library's own PING, INFO, CONFIG and the like left out).</summary>
    private static Dictionary<string, long> DataCommands(IGrouping<string, KeyValuePair<string, string>>[] info)
    {
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (name, value) in info.SelectMany(g => g))
        {
            var command = name.Replace("cmdstat_", "", StringComparison.Ordinal);
            if (command is "info" or "ping" or "echo" or "hello" or "select" or "subscribe" or "cluster" or "role" || command.StartsWith("config", StringComparison.Ordinal) ||
                command.StartsWith("client", StringComparison.Ordinal) || command.StartsWith("script", StringComparison.Ordinal))
            {
                continue;
            }

            var calls = value.Split(',')[0]; // calls=N,usec=...
            counts[command] = long.Parse(calls["calls=".Length..], CultureInfo.InvariantCulture);
        }

        return counts;
    }

    private sealed class Bed : IAsyncDisposable
    {
        private Bed(RedisServer redis, FakeUpstreamServer upstream, GatewayHost gateway)
        {
            Redis = redis;
            Upstream = upstream;
            Gateway = gateway;
            A = Client(gateway, TestKeys.KeyA, TestKeys.TenantA);
        }

        public RedisServer Redis { get; }

        public FakeUpstreamServer Upstream { get; }

        public GatewayHost Gateway { get; }

        public HttpClient A { get; }

        public static async Task<Bed> StartAsync()
        {
            var redis = await RedisServer.StartAsync();
            var upstream = await FakeUpstreamServer.StartAsync();
            var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c =>
            {
                c["ConnectionStrings:Redis"] = redis.ConnectionString;
                c["Gateway:Tenants:tenant-a:Limits:RequestsPerMinute"] = "100000";
                c["Gateway:Tenants:tenant-a:Limits:TokensPerMinute"] = "100000000";
                c["Gateway:Tenants:tenant-a:Limits:MaxConcurrentRequests"] = "10";
                c["Gateway:Quotas:RedisDataLossCheckInterval"] = "01:00:00"; // its periodic check would be counted too
            });
            var bed = new Bed(redis, upstream, gateway);
            try
            {
                using var probe = new HttpClient { BaseAddress = gateway.RootUrl };
                await Eventually.UntilAsync(
                    async () => JsonDocument.Parse(await probe.GetStringAsync("/readyz")).RootElement.GetProperty("store_state").GetString() == "up",
                    "Redis is up for the gateway");
                await bed.CreateAndFinishAsync(); // loads the scripts; the counted requests follow
                return bed;
            }
            catch
            {
                await bed.DisposeAsync();
                throw;
            }
        }

        /// <summary>One JSON create, returned once its usage event is written (its settle and ownership record answered).</summary>
        public async Task<string> CreateAndFinishAsync()
        {
            using var response = await A.PostAsync("responses", Json("""{"model":"gpt-4o-mini","input":"Hello"}"""));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var id = (await ReadJsonAsync(response)).GetProperty("id").GetString()!;
            await Gateway.Logs.SingleUsageEventAsync(GatewayRequestId(response));
            return id;
        }

        public async ValueTask DisposeAsync()
        {
            A.Dispose();
            await Gateway.DisposeAsync();
            await Upstream.DisposeAsync();
            await Redis.DisposeAsync();
        }
    }
}
