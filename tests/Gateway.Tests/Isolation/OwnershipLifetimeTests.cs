using System.Net;
using FakeUpstream;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using StackExchange.Redis;
using static Gateway.Tests.Isolation.Tenants;
using static Gateway.Tests.Quotas.QuotaTestKit;

namespace Gateway.Tests.Isolation;

/// <summary>
/// How long an ownership record lives, whatever created the object: conversations (which OpenAI never expires) are
/// owned until their owner deletes them, then for Retention more; everything else for Retention. The memory store keeps
/// at most MaxRecords of each kind, the oldest evicted first, and an evicted id is unknown (UnknownIds applies).
/// </summary>
[Collection(MetricsTestGroup.Name)]
public sealed class OwnershipLifetimeTests
{
    private static readonly DateTimeOffset Start = new(2026, 3, 2, 10, 0, 0, TimeSpan.Zero);

    [Fact]
    public async Task ConversationCreatedByPostConversations_OwnedPastRetention_UntilDeletedThenForgottenAfterRetention()
    {
        var time = new FakeTimeProvider(Start);
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c => c["Gateway:Isolation:Retention"] = "02:00:00",
            services: s => s.AddSingleton<TimeProvider>(time));
        using var a = Client(gateway, TestKeys.KeyA, TestKeys.TenantA);
        using var b = Client(gateway, TestKeys.KeyB, TestKeys.TenantB);
        var conversation = await CreateConversationAsync(a);

        time.Advance(TimeSpan.FromDays(400)); // far past Retention: the conversation still exists upstream, and is still a's
        using (var served = await a.GetAsync($"conversations/{conversation}"))
        {
            Assert.Equal(HttpStatusCode.OK, served.StatusCode);
        }

        using (var refused = await b.GetAsync($"conversations/{conversation}"))
        {
            await AssertErrorAsync(refused, HttpStatusCode.NotFound, $"Conversation with id '{conversation}' not found.");
        }

        using (var deleted = await a.DeleteAsync($"conversations/{conversation}"))
        {
            Assert.Equal(HttpStatusCode.OK, deleted.StatusCode);
            await gateway.Logs.SingleUsageEventAsync(GatewayRequestId(deleted));
        }

        time.Advance(TimeSpan.FromMinutes(119)); // within Retention of the delete: still refused to others by the gateway
        using (var refused = await b.DeleteAsync($"conversations/{conversation}"))
        {
            await AssertErrorAsync(refused, HttpStatusCode.NotFound, $"Conversation with id '{conversation}' not found.");
        }

        Assert.Empty(RequestsFrom(upstream, TestKeys.TenantB));
        time.Advance(TimeSpan.FromMinutes(2));
        using (var forgotten = await a.GetAsync($"conversations/{conversation}"))
        {
            // Unknown now (UnknownIds: Deny): the gateway answers, the upstream is not asked.
            await AssertErrorAsync(forgotten, HttpStatusCode.NotFound, $"Conversation with id '{conversation}' not found.");
        }

        Assert.Equal(["GET", "DELETE"], RequestsFrom(upstream, TestKeys.TenantA).Where(r => r.PathAndQuery.Contains(conversation, StringComparison.Ordinal)).Select(r => r.Method));
    }

    /// <summary>
    /// Redis: the conversation's record has no TTL (the only ownership key without one), and a record written with a TTL
    /// (by an earlier version of the gateway) is made permanent when its owner's next response names the conversation.
    /// A record of another tenant is never touched.
    /// </summary>
    [SkippableFact]
    public async Task Redis_ConversationRecordsHaveNoTtl_AnOwnersEarlierRecordWithATtlIsUpgraded()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c => c["ConnectionStrings:Redis"] = redis.ConnectionString);
        await WaitForStoreAsync(gateway);
        using var a = Client(gateway, TestKeys.KeyA, TestKeys.TenantA);
        await using var connection = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var database = connection.GetDatabase();

        var created = await CreateConversationAsync(a);
        var response = await CreateResponseAsync(a);
        Assert.Null(await database.KeyTimeToLiveAsync("gw:own:" + created));
        Assert.InRange((await database.KeyTimeToLiveAsync("gw:own:" + response))!.Value, TimeSpan.FromDays(44), TimeSpan.FromDays(45));

        using var direct = Direct(upstream);
        var older = await CreateConversationAsync(direct);
        var foreign = await CreateConversationAsync(direct);
        await database.StringSetAsync("gw:own:" + older, TestKeys.TenantA, TimeSpan.FromDays(45));
        await database.StringSetAsync("gw:own:" + foreign, TestKeys.TenantB, TimeSpan.FromDays(45));

        await CreateResponseAsync(a, $$""","conversation":"{{older}}" """);
        using (var refused = await a.PostAsync("responses", Json($$"""{"model":"gpt-4o-mini","input":"hi","conversation":"{{foreign}}"}""")))
        {
            Assert.Equal(HttpStatusCode.NotFound, refused.StatusCode);
        }

        Assert.Null(await database.KeyTimeToLiveAsync("gw:own:" + older));
        Assert.Equal(TestKeys.TenantA, (string?)await database.StringGetAsync("gw:own:" + older));
        Assert.NotNull(await database.KeyTimeToLiveAsync("gw:own:" + foreign));
        Assert.Equal(TestKeys.TenantB, (string?)await database.StringGetAsync("gw:own:" + foreign));

        using (var deleted = await a.DeleteAsync($"conversations/{created}"))
        {
            Assert.Equal(HttpStatusCode.OK, deleted.StatusCode);
            await gateway.Logs.SingleUsageEventAsync(GatewayRequestId(deleted));
        }

        Assert.InRange((await database.KeyTimeToLiveAsync("gw:own:" + created))!.Value, TimeSpan.FromDays(44), TimeSpan.FromDays(45));
    }

    [Fact]
    public async Task MemoryStore_MoreRecordsThanMaxRecords_OldestEvictedBecomesUnknownAndIsCounted()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c => c["Gateway:Quotas:MemoryStore:MaxRecords"] = "3");
        using var a = Client(gateway, TestKeys.KeyA, TestKeys.TenantA);

        var ids = new List<string>();
        for (var i = 0; i < 5; i++)
        {
            ids.Add(await CreateResponseAsync(a));
        }

        foreach (var (id, expected) in ids.Zip(new[] { HttpStatusCode.NotFound, HttpStatusCode.NotFound, HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK }))
        {
            using var response = await a.GetAsync($"responses/{id}");
            Assert.True(expected == response.StatusCode, $"{id}: expected {expected}, got {response.StatusCode}");
        }

        Assert.Equal(3, upstream.Requests.Count(r => r.Method == "GET")); // the evicted ids were answered by the gateway
        await Eventually.UntilAsync(async () => await OwnerEvictionsAsync(gateway) == 2, "gateway_store_evictions_total{kind=\"owner\"} is 2");
    }

    private static async Task<double> OwnerEvictionsAsync(GatewayHost gateway)
    {
        using var http = new HttpClient { BaseAddress = gateway.RootUrl };
        var text = await http.GetStringAsync("/metrics");
        return text.Split('\n')
            .Where(l => l.StartsWith("gateway_store_evictions_total{", StringComparison.Ordinal) && l.Contains("kind=\"owner\"", StringComparison.Ordinal))
            .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture));
    }
}
