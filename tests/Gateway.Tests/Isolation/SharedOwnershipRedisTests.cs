using System.Net;
using System.Text.Json;
using FakeUpstream;
using Gateway.Tests.Infrastructure;
using StackExchange.Redis;
using static Gateway.Tests.Isolation.Tenants;

namespace Gateway.Tests.Isolation;

/// <summary>
/// Two gateway replicas sharing one real redis-server: ownership recorded by one replica is enforced by the other,
/// for both tenants and in both directions, including while the creating stream is still running on the first.
/// And what happens to ownership checks when Redis goes away (<c>Gateway:Quotas:OnStoreFailure</c>).
/// </summary>
public sealed class SharedOwnershipRedisTests
{
    [SkippableFact]
    public async Task OwnershipRecordedByOneReplica_EnforcedByTheOther_InBothDirections()
    {
        await using var cluster = await Cluster.StartAsync();

        // Recorded on replica 1, checked on replica 2.
        var response = await CreateResponseAsync(cluster.A1);
        var chat = await CreateStoredChatCompletionAsync(cluster.A1);
        using (var served = await cluster.A2.GetAsync($"responses/{response}"))
        {
            Assert.Equal(response, (await ReadJsonAsync(served)).GetProperty("id").GetString());
        }

        using (var served = await cluster.A2.GetAsync($"chat/completions/{chat}"))
        {
            Assert.Equal(HttpStatusCode.OK, served.StatusCode);
        }

        using (var refused = await cluster.B2.GetAsync($"responses/{response}"))
        {
            await AssertErrorAsync(refused, HttpStatusCode.NotFound, $"Response with id '{response}' not found.");
        }

        using (var refused = await cluster.B2.PostAsync("responses", Json($$"""{"model":"gpt-4o-mini","input":"x","previous_response_id":"{{response}}"}""")))
        {
            await BodyIdIsolationTests.AssertRefusalAsync(refused, BodyIdIsolationTests.Field.PreviousResponse, response);
        }

        using (var refused = await cluster.B2.DeleteAsync($"chat/completions/{chat}"))
        {
            await AssertErrorAsync(refused, HttpStatusCode.NotFound, $"No chat completion found with id '{chat}'.");
        }

        // Recorded on replica 2, checked on replica 1; and tenant B's objects, too.
        var conversation = await CreateConversationAsync(cluster.A2);
        var ofB = await CreateResponseAsync(cluster.B2);
        using (var served = await cluster.A1.GetAsync($"conversations/{conversation}/items"))
        {
            Assert.Equal(HttpStatusCode.OK, served.StatusCode);
        }

        using (var served = await cluster.B1.GetAsync($"responses/{ofB}"))
        {
            Assert.Equal(HttpStatusCode.OK, served.StatusCode);
        }

        using (var refused = await cluster.B1.PostAsync("responses", Json($$"""{"model":"gpt-4o-mini","input":"x","conversation":"{{conversation}}"}""")))
        {
            await BodyIdIsolationTests.AssertRefusalAsync(refused, BodyIdIsolationTests.Field.Conversation, conversation);
        }

        using (var refused = await cluster.A1.GetAsync($"responses/{ofB}"))
        {
            await AssertErrorAsync(refused, HttpStatusCode.NotFound, $"Response with id '{ofB}' not found.");
        }

        // Of B's requests only its own create (on 2) and its own read (on 1) were forwarded; of A's none naming B's id.
        Assert.Equal("/v1/responses", Assert.Single(RequestsFrom(cluster.Upstream, "b@2")).PathAndQuery);
        Assert.Equal($"/v1/responses/{ofB}", Assert.Single(RequestsFrom(cluster.Upstream, "b@1")).PathAndQuery);
        Assert.DoesNotContain(RequestsFrom(cluster.Upstream, "a@1"), r => r.PathAndQuery.Contains(ofB, StringComparison.Ordinal));
    }

    [SkippableFact]
    public async Task StreamedCreateOnOneReplica_GetOnTheOtherWhileTheStreamIsHeld_Served()
    {
        await using var cluster = await Cluster.StartAsync();
        var gate = "redis-stream-" + Guid.NewGuid().ToString("N");
        using var request = new HttpRequestMessage(HttpMethod.Post, "responses") { Content = Json("""{"model":"gpt-4o-mini","input":"Stream to me","stream":true}""") };
        request.Headers.Add("x-fake-gate", gate);
        using var stream = await cluster.A1.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var reader = new SseReader(await stream.Content.ReadAsStreamAsync());
        var created = await reader.NextAsync();
        var id = JsonDocument.Parse(created!.Value.Data).RootElement.GetProperty("response").GetProperty("id").GetString()!;

        using (var served = await cluster.A2.GetAsync($"responses/{id}"))
        {
            Assert.Equal(id, (await ReadJsonAsync(served)).GetProperty("id").GetString());
        }

        using (var refused = await cluster.B2.GetAsync($"responses/{id}"))
        {
            await AssertErrorAsync(refused, HttpStatusCode.NotFound, $"Response with id '{id}' not found.");
        }

        cluster.Upstream.ReleaseGate(gate);
        Assert.Equal("response.completed", SseReader.TypeOf((await reader.ReadAllAsync())[^1].Data));
        Assert.Empty(RequestsFrom(cluster.Upstream, "b@2"));
    }

    [SkippableTheory]
    [InlineData(null, 45 * 24)]
    [InlineData("3.00:00:00", 3 * 24)]
    public async Task OwnershipRecord_ResponseExpiresInRedisWithTheRetention_ConversationNever(string? retention, int hours)
    {
        await using var cluster = await Cluster.StartAsync(c =>
        {
            if (retention is not null)
            {
                c["Gateway:Isolation:Retention"] = retention;
            }
        });
        var response = await CreateResponseAsync(cluster.A1);
        var conversation = await CreateConversationAsync(cluster.A2);

        await using var redis = await ConnectionMultiplexer.ConnectAsync(cluster.Redis.ConnectionString);
        var db = redis.GetDatabase();
        Assert.Equal(TestKeys.TenantA, (string?)await db.StringGetAsync($"gw:own:{response}"));
        var ttl = await db.KeyTimeToLiveAsync($"gw:own:{response}");
        Assert.NotNull(ttl);
        Assert.InRange(ttl.Value, TimeSpan.FromHours(hours) - TimeSpan.FromMinutes(5), TimeSpan.FromHours(hours));

        // Conversations do not expire upstream, so neither does their record, however they were created.
        Assert.Equal(TestKeys.TenantA, (string?)await db.StringGetAsync($"gw:own:{conversation}"));
        Assert.Null(await db.KeyTimeToLiveAsync($"gw:own:{conversation}"));
    }

    [SkippableFact]
    public async Task RedisDown_OnStoreFailureAllow_ChecksUseEachReplicasOwnMemory()
    {
        // A long retry interval keeps both replicas on their fallback for the rest of the test.
        await using var cluster = await Cluster.StartAsync(c => c["Gateway:Quotas:RedisRetryInterval"] = "01:00:00");
        var beforeOutage = await CreateResponseAsync(cluster.A1);

        await cluster.Redis.StopProcessAsync();
        var duringOutage = await CreateResponseAsync(cluster.A1);

        // Replica 1 recorded it in its memory: its owner is served there, the other tenant refused.
        using (var served = await cluster.A1.GetAsync($"responses/{duringOutage}"))
        {
            Assert.Equal(HttpStatusCode.OK, served.StatusCode);
        }

        using (var refused = await cluster.B1.GetAsync($"responses/{duringOutage}"))
        {
            await AssertErrorAsync(refused, HttpStatusCode.NotFound, $"Response with id '{duringOutage}' not found.");
        }

        // Ids recorded elsewhere (on the other replica's memory, or in Redis before the outage) are unknown now and
        // follow UnknownIds (Deny): refused even to their owner, never forwarded.
        using (var unknownHere = await cluster.A2.GetAsync($"responses/{duringOutage}"))
        {
            await AssertErrorAsync(unknownHere, HttpStatusCode.NotFound, $"Response with id '{duringOutage}' not found.");
        }

        using (var recordedInRedis = await cluster.A1.GetAsync($"responses/{beforeOutage}"))
        {
            await AssertErrorAsync(recordedInRedis, HttpStatusCode.NotFound, $"Response with id '{beforeOutage}' not found.");
        }

        Assert.Empty(RequestsFrom(cluster.Upstream, "a@2"));
        Assert.Empty(RequestsFrom(cluster.Upstream, "b@1"));
        Assert.NotEmpty(cluster.One.Logs.Named("StoreDown"));
        Assert.DoesNotContain(RequestsFrom(cluster.Upstream, "a@1"), r => r.Method == "GET" && r.PathAndQuery.Contains(beforeOutage, StringComparison.Ordinal));
    }

    [SkippableFact]
    public async Task RedisBack_OwnershipRecordedDuringTheOutage_WrittenBackAndEnforcedByEveryReplica()
    {
        await using var cluster = await Cluster.StartAsync(c => c["Gateway:Quotas:RedisRetryInterval"] = "00:00:00.200");
        await cluster.Redis.StopProcessAsync();
        var duringOutage = await CreateResponseAsync(cluster.A1); // recorded in replica 1's fallback memory only

        await cluster.Redis.StartProcessAsync(); // an empty Redis: it never saw the record
        await WaitForStoreUpAsync(cluster.One);
        await WaitForStoreUpAsync(cluster.Two);

        // The owner's first use on replica 1 finds the record in the fallback and writes it back to Redis...
        using (var served = await cluster.A1.GetAsync($"responses/{duringOutage}"))
        {
            Assert.Equal(HttpStatusCode.OK, served.StatusCode);
        }

        // ...so the other replica knows it: served to its owner, refused to the other tenant.
        using (var served = await cluster.A2.GetAsync($"responses/{duringOutage}"))
        {
            Assert.Equal(HttpStatusCode.OK, served.StatusCode);
        }

        using (var refused = await cluster.B2.GetAsync($"responses/{duringOutage}"))
        {
            await AssertErrorAsync(refused, HttpStatusCode.NotFound, $"Response with id '{duringOutage}' not found.");
        }

        Assert.Empty(RequestsFrom(cluster.Upstream, "b@2"));
    }

    /// <summary>
    /// StackExchange.Redis reconnects in the background; /readyz pings Redis and reports when it answers again. That
    /// ping goes through the resilient store, whose success ends its degraded state, so requests use Redis from then on.
    /// </summary>
    private static async Task WaitForStoreUpAsync(GatewayHost gateway)
    {
        using var probe = new HttpClient { BaseAddress = gateway.RootUrl };
        await Eventually.UntilAsync(
            async () => JsonDocument.Parse(await probe.GetStringAsync("/readyz")).RootElement.GetProperty("store_state").GetString() == "up",
            "Redis is back for the gateway");
    }

    [SkippableFact]
    public async Task RedisDown_OnStoreFailureDeny_IdChecksAnswer503WithoutReachingUpstream()
    {
        await using var cluster = await Cluster.StartAsync(c => c["Gateway:Quotas:OnStoreFailure"] = "Deny");
        var response = await CreateResponseAsync(cluster.A1);

        await cluster.Redis.StopProcessAsync();
        using var unavailable = await cluster.A1.GetAsync($"responses/{response}");

        Assert.Equal(HttpStatusCode.ServiceUnavailable, unavailable.StatusCode);
        var error = JsonDocument.Parse(await unavailable.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("server_error", error.GetProperty("type").GetString());
        Assert.Equal("quota_store_unavailable", error.GetProperty("code").GetString());
        Assert.DoesNotContain(RequestsFrom(cluster.Upstream, "a@1"), r => r.Method == "GET");
    }

    /// <summary>One redis-server, one fake upstream, two gateway replicas; clients named tenant@replica (a@1, b@2, ...).</summary>
    private sealed class Cluster : IAsyncDisposable
    {
        private Cluster(RedisServer redis, FakeUpstreamServer upstream, GatewayHost one, GatewayHost two)
        {
            Redis = redis;
            Upstream = upstream;
            One = one;
            Two = two;
            A1 = Client(one, TestKeys.KeyA, "a@1");
            B1 = Client(one, TestKeys.KeyB, "b@1");
            A2 = Client(two, TestKeys.KeyA, "a@2");
            B2 = Client(two, TestKeys.KeyB, "b@2");
        }

        public RedisServer Redis { get; }

        public FakeUpstreamServer Upstream { get; }

        public GatewayHost One { get; }

        public GatewayHost Two { get; }

        public HttpClient A1 { get; }

        public HttpClient B1 { get; }

        public HttpClient A2 { get; }

        public HttpClient B2 { get; }

        public static async Task<Cluster> StartAsync(Action<Dictionary<string, string?>>? configure = null)
        {
            var redis = await RedisServer.StartAsync();
            var upstream = await FakeUpstreamServer.StartAsync();
            void Configure(Dictionary<string, string?> c)
            {
                c["ConnectionStrings:Redis"] = redis.ConnectionString;
                configure?.Invoke(c);
            }

            var one = await GatewayHost.StartAsync(upstream.BaseUrl, Configure);
            var two = await GatewayHost.StartAsync(upstream.BaseUrl, Configure);

            // The Redis connection is made in the background: a request before it is served by the memory fallback,
            // and its ownership record never reaches Redis (this raced under load: the record read back was null).
            var cluster = new Cluster(redis, upstream, one, two);
            try
            {
                await WaitForStoreUpAsync(one);
                await WaitForStoreUpAsync(two);
                return cluster;
            }
            catch
            {
                await cluster.DisposeAsync();
                throw;
            }
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var client in new[] { A1, B1, A2, B2 })
            {
                client.Dispose();
            }

            await One.DisposeAsync();
            await Two.DisposeAsync();
            await Upstream.DisposeAsync();
            await Redis.DisposeAsync();
        }
    }
}
