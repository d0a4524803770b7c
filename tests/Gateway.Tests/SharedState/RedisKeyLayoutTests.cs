using System.Text.RegularExpressions;
using FakeUpstream;
using Gateway.Tests.Infrastructure;
using StackExchange.Redis;
using static Gateway.Tests.Quotas.QuotaTestKit;

namespace Gateway.Tests.SharedState;

/// <summary>
/// What the gateway leaves in Redis, read back with StackExchange.Redis from the test's own redis-server: every key
/// has the configured prefix and a TTL (nothing lives forever but a conversation's owner), and all keys of a tenant share the hash tag
/// <c>{t:tenant}</c>, so each Lua script touches a single Redis Cluster slot.
/// </summary>
public sealed partial class RedisKeyLayoutTests
{
    [SkippableFact]
    public async Task EveryKeyHasATtl_TenantKeysShareOneHashTag()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c =>
        {
            Limits(c, TestKeys.TenantA, rpm: 100, tpm: 100_000, tpd: 1_000_000, tpmo: 10_000_000, concurrent: 5);
            Limits(c, TestKeys.TenantB, rpm: 100);
            c["ConnectionStrings:Redis"] = redis.ConnectionString;
            c["Gateway:Quotas:RedisKeyPrefix"] = "llmgw";
        });
        await WaitForStoreAsync(gateway);
        using var a = gateway.CreateClient();
        using var b = gateway.CreateClient(TestKeys.KeyB);

        using (var completed = await SendAndSettleAsync(gateway, a, CreateResponse(stream: true)))          // counters, counted mark, owner
        using (var background = await SendAndSettleAsync(gateway, a, CreateResponse(background: true, headers: [("x-fake-background-ms", "600000")]))) // held reservation
        using (var other = await SendAndSettleAsync(gateway, b, CreateResponse()))
        {
            Assert.All(new[] { completed, background, other }, r => Assert.True(r.IsSuccessStatusCode));
        }

        string conversationId;
        using (var conversation = await SendAndSettleAsync(gateway, a, Post("conversations", "{}")))                   // an owner without expiry
        {
            conversationId = System.Text.Json.JsonDocument.Parse(await conversation.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString()!;
        }

        using (var turn = await SendAndSettleAsync(gateway, a, Post("responses", $$"""{"model":"gpt-4o-mini","input":"hi","conversation":"{{conversationId}}"}"""))) // the conversation's context size
        {
            Assert.True(turn.IsSuccessStatusCode);
        }

        var inFlight = await StartGatedStreamAsync(a, "in-flight");                                        // a live lease

        await using var connection = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var server = connection.GetServer(connection.GetEndPoints()[0]);
        var database = connection.GetDatabase();
        var keys = new List<string>();
        await foreach (var key in server.KeysAsync(pattern: "*"))
        {
            keys.Add(key.ToString());
        }

        Assert.All(keys, key => Assert.StartsWith("llmgw:", key, StringComparison.Ordinal));

        // The one documented key without a TTL: the data-loss marker (RedisDataLossMonitor), one per installation.
        await Eventually.UntilAsync(() => database.KeyExistsAsync("llmgw:instance-marker"), "the instance marker exists");
        keys.Remove("llmgw:instance-marker");
        Assert.Null(await database.KeyTimeToLiveAsync("llmgw:instance-marker"));
        var tenantA = keys.Where(k => k.StartsWith("llmgw:{t:tenant-a}:", StringComparison.Ordinal)).ToList();
        var tenantB = keys.Where(k => k.StartsWith("llmgw:{t:tenant-b}:", StringComparison.Ordinal)).ToList();
        var owners = keys.Where(k => k.StartsWith("llmgw:own:", StringComparison.Ordinal)).ToList();
        Assert.Equal(keys.Count, tenantA.Count + tenantB.Count + owners.Count);

        // tenant-a: requests, tokens per minute/day/month, leases, a counted mark and a held background reservation.
        var kinds = tenantA.Select(k =>
        {
            var match = TenantKey().Match(k);
            Assert.True(match.Success, $"unexpected key {k}");
            return match.Groups["kind"].Value;
        }).ToHashSet();
        // ud/umo: dollars spent per day/month (micro-dollars), counted for every tenant like its tokens.
        Assert.Equal(["counted", "ctx", "held", "leases", "r", "td", "tm", "tmo", "ud", "umo"], kinds.Order(StringComparer.Ordinal));
        Assert.Single(tenantA.Select(k => connection.HashSlot(k)).Distinct());                         // one cluster slot per tenant
        // tenant-b has no token limits or concurrency cap: no leases and nothing held, but its real usage is still counted.
        Assert.Equal(["counted", "r", "td", "tm", "tmo", "ud", "umo"], tenantB.Select(k => TenantKey().Match(k).Groups["kind"].Value).Distinct().Order(StringComparer.Ordinal));
        Assert.NotEmpty(owners);

        foreach (var key in keys)
        {
            var ttl = await database.KeyTimeToLiveAsync(key);
            if (key == "llmgw:own:" + conversationId)
            {
                Assert.Null(ttl); // conversations are owned for as long as they exist: the one kind of key without a TTL
                continue;
            }

            Assert.True(ttl is not null, $"{key} has no TTL");
            var kind = key.StartsWith("llmgw:own:", StringComparison.Ordinal) ? "own" : TenantKey().Match(key).Groups["kind"].Value;
            var max = kind switch
            {
                "r" or "tm" => TimeSpan.FromMinutes(3),
                "td" or "ud" => TimeSpan.FromDays(2),
                "umo" => TimeSpan.FromDays(63),
                "tmo" => TimeSpan.FromDays(63),
                "leases" => TimeSpan.FromMinutes(15),   // ConcurrencyLeaseTimeout
                "held" => TimeSpan.FromHours(1) + TimeSpan.FromDays(45), // BackgroundReservationTimeout, then kept as a tombstone for Retention
                _ => TimeSpan.FromDays(45),              // counted marks, context sizes and owners: Isolation:Retention
            };
            Assert.InRange(ttl.Value, TimeSpan.FromTicks(1), max);
        }

        upstream.ReleaseGate("in-flight");
        await DrainAsync(inFlight);
    }

    [GeneratedRegex(@"^llmgw:\{t:tenant-[ab]\}:(?<kind>r|tm|td|tmo|ud|umo|leases|counted|held|ctx)(:.+)?$")]
    private static partial Regex TenantKey();
}
