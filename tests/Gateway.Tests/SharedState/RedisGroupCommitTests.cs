using Gateway.Configuration;
using Gateway.SharedState;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using StackExchange.Redis;

namespace Gateway.Tests.SharedState;

/// <summary>
/// Group commit (issue #15): admissions and settles of one tenant made while another of its calls is in flight go to
/// Redis as one script call, and each item gets exactly what it would have had the scripts run one after the other in
/// queue order. "In flight" is made certain by holding the server: <c>CLIENT PAUSE</c> keeps the first call unanswered
/// while the others are made. The reference for "one after the other" is <see cref="MemoryStateStore"/> (the contract
/// suite holds the two stores to the same semantics), fed the same calls in the same order. One Redis and a 3-node cluster.
/// </summary>
public sealed class RedisGroupCommitTests
{
    private const string Tenant = "tenant-g";
    private static readonly TimeSpan Hold = TimeSpan.FromMilliseconds(400);
    private static readonly TimeSpan Retention = TimeSpan.FromDays(45);

    [SkippableTheory]
    [InlineData("single")]
    [InlineData("cluster")]
    public async Task Admissions_LimitsReachedWhileQueued_DecisionsAndCountersAsOneAfterAnother(string topology)
    {
        await using var target = await Target.StartAsync(topology);
        var time = new FakeTimeProvider(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        var redis = new RedisStateStore(target.Connection, "gc" + Guid.NewGuid().ToString("N")[..8]);
        var memory = new MemoryStateStore(time);
        var limits = new TenantLimitsOptions { RequestsPerMinute = 5, TokensPerMinute = 1000, MaxConcurrentRequests = 20 };
        long[] reserves = [300, 300, 600, 300, 100, 0, 0, 0, 0, 0, 0, 0];
        var requests = reserves.Select((reserve, i) =>
            new AdmissionRequest(Tenant, limits, reserve, QuotaWindows.At(time.GetUtcNow()), "lease-" + i, TimeSpan.FromMinutes(15))).ToArray();

        await target.PauseAsync();
        var batched = requests.Select(r => redis.AdmitAsync(r, CancellationToken.None).AsTask()).ToArray();
        var results = await Task.WhenAll(batched);
        var expected = new List<AdmissionResult>();
        foreach (var request in requests)
        {
            expected.Add(await memory.AdmitAsync(request, CancellationToken.None));
        }

        // The first went alone, the other eleven in one call; a limit of 5 requests admits exactly 5 of 12.
        Assert.Equal((1L, requests.Length - 1L), redis.AdmissionBatches);
        Assert.Equal(expected.Select(e => (e.Decision, e.Counters)), results.Select(r => (r.Decision, r.Counters)));
        Assert.Equal([0, 1, 3, 4, 5], results.Index().Where(r => r.Item.Decision == AdmissionDecision.Admitted).Select(r => r.Index));
        Assert.Equal(AdmissionDecision.TokensPerMinute, results[2].Decision);
        Assert.Equal(AdmissionDecision.RequestsPerMinute, results[6].Decision);
    }

    /// <summary>
    /// One batch holding what a settle can be: a claim, an estimated claim and its real usage right behind it (corrected
    /// within the batch), a second claim of a response (not counted again), a claim of a held background reservation
    /// from two minutes earlier (its windows are not the ones named: the held-windows retry), a reservation from the
    /// previous minute (refunded there, charged now), a conversation turn, a refund only, a new hold, dollars.
    /// </summary>
    [SkippableTheory]
    [InlineData("single")]
    [InlineData("cluster")]
    public async Task Settles_QueuedBehindOneInFlight_OneBatchCall_ResultsCountersAndMarksAsOneAfterAnother(string topology)
    {
        await using var target = await Target.StartAsync(topology);
        var time = new FakeTimeProvider(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        var prefix = "gc" + Guid.NewGuid().ToString("N")[..8];
        var redis = new RedisStateStore(target.Connection, prefix);
        var memory = new MemoryStateStore(time);
        ISharedStateStore[] stores = [redis, memory];
        var limits = new TenantLimitsOptions { TokensPerMinute = 100_000, MaxConcurrentRequests = 20 };
        var first = QuotaWindows.At(time.GetUtcNow());

        // Both stores get the same history, one call at a time: reservations in the first minute, a background hold.
        var reservations = new List<QuotaReservation>();
        for (var i = 0; i < 6; i++)
        {
            reservations.Add(await AdmitOnBothAsync(stores, limits, 100 + (10 * i), first, "lease-" + i, microUsd: 5 * i));
        }

        var background = await AdmitOnBothAsync(stores, limits, 300, first, "lease-bg", microUsd: 40);
        foreach (var store in stores)
        {
            await store.SettleAsync(Settle(background, 0, first, hold: "resp_bg"), CancellationToken.None);
        }

        time.Advance(TimeSpan.FromMinutes(1));
        var second = QuotaWindows.At(time.GetUtcNow());
        var previousMinute = await AdmitOnBothAsync(stores, limits, 100, second, "lease-6", microUsd: 7);
        time.Advance(TimeSpan.FromMinutes(1));
        var now = QuotaWindows.At(time.GetUtcNow());

        // The first (alone) writes nothing in this minute, so the batch creates this minute's counter: with its expiry.
        SettleRequest[] settles =
        [
            Settle(reservations[3], 0, now),
            Settle(reservations[0], 80, now, claim: "resp_0", input: 50, microUsd: 11),
            Settle(reservations[1], 120, now, claim: "resp_1", input: 70, estimated: true, microUsd: 13),
            Settle(null, 130, now, claim: "resp_1", input: 70, microUsd: 17),
            Settle(null, 250, now, claim: "resp_bg", input: 200, microUsd: 30),
            Settle(previousMinute, 90, now, claim: "resp_6", input: 40, conversation: "conv_1", microUsd: 9),
            Settle(reservations[2], 60, now, claim: "resp_0", input: 10),
            Settle(reservations[4], 0, now, hold: "resp_bg2"),
            Settle(reservations[5], 55, now, claim: "resp_5", input: 5, conversation: "conv_1", microUsd: 3),
        ];

        await target.PauseAsync();
        var batched = settles.Select(s => redis.SettleAsync(s, CancellationToken.None).AsTask()).ToArray();
        var results = await Task.WhenAll(batched);
        var expected = new List<SettleResult>();
        foreach (var settle in settles)
        {
            expected.Add(await memory.SettleAsync(settle, CancellationToken.None));
        }

        // The first settle went alone, the other eight in one call; the held claim came back for its windows and went again alone.
        Assert.Equal((1L, settles.Length - 1L), redis.SettleBatches);
        Assert.Equal(expected, results);
        Assert.True(results[3].Correction is { TotalTokens: 10 }, "the real usage behind its estimate in the same batch is corrected");
        Assert.False(results[6].First);
        foreach (var windows in new[] { first, second, now })
        {
            Assert.Equal(await memory.ReadCountersAsync(Tenant, windows, CancellationToken.None), await redis.ReadCountersAsync(Tenant, windows, CancellationToken.None));
        }

        foreach (var (response, conversation) in new[] { ("resp_0", "conv_1"), ("resp_1", null), ("resp_6", null), ("resp_bg", null), ("resp_5", null) })
        {
            Assert.Equal(await memory.GetContextTokensAsync(Tenant, response, conversation, CancellationToken.None),
                await redis.GetContextTokensAsync(Tenant, response, conversation, CancellationToken.None));
        }

        var minuteCounter = $"{prefix}:{{t:{Tenant}}}:tm:{now.Minute}";
        Assert.NotEqual(0, (long)await target.Connection.GetDatabase().StringGetAsync(minuteCounter));
        Assert.NotNull(await target.Connection.GetDatabase().KeyTimeToLiveAsync(minuteCounter));

        // The later hold is kept, and its usage is counted once when seen.
        time.Advance(TimeSpan.FromSeconds(10));
        var later = Settle(null, 500, QuotaWindows.At(time.GetUtcNow()), claim: "resp_bg2", input: 100);
        Assert.Equal(await memory.SettleAsync(later, CancellationToken.None), await redis.SettleAsync(later, CancellationToken.None));
        Assert.Equal(await memory.ReadCountersAsync(Tenant, first, CancellationToken.None), await redis.ReadCountersAsync(Tenant, first, CancellationToken.None));
    }

    [SkippableFact]
    public async Task Batch_RedisLostItsScripts_SentAgainWithItsText()
    {
        await using var target = await Target.StartAsync("single");
        var time = new FakeTimeProvider(new DateTimeOffset(2031, 3, 12, 10, 15, 30, TimeSpan.Zero));
        var redis = new RedisStateStore(target.Connection, "gc" + Guid.NewGuid().ToString("N")[..8]);
        var limits = new TenantLimitsOptions { RequestsPerMinute = 7 };
        var windows = QuotaWindows.At(time.GetUtcNow());

        for (var round = 0; round < 2; round++)
        {
            // A restarted or failed-over Redis has none of the scripts, the batch script included (EVALSHA answers NOSCRIPT).
            await target.Servers.Single().ScriptFlushAsync();
            await target.PauseAsync();
            var results = await Task.WhenAll(Enumerable.Range(0, 5).Select(i =>
                redis.AdmitAsync(new AdmissionRequest(Tenant, limits, 0, windows, "", TimeSpan.FromMinutes(1)), CancellationToken.None).AsTask()));

            Assert.Equal((round + 1L, (round + 1L) * 4), redis.AdmissionBatches);
            Assert.Equal(round == 0 ? [1, 2, 3, 4, 5] : [6, 7, 7, 7, 7], results.Select(r => r.Counters.Requests));
        }
    }

    [SkippableFact]
    public async Task Batch_ConnectionLostWhileInFlight_EveryQueuedItemFailsAsAStoreFailure_NoneWaitsForEver()
    {
        await using var server = await RedisServer.StartAsync();
        var proxy = DelayingTcpProxy.Start(server.Port, TimeSpan.Zero, TimeSpan.FromSeconds(1));
        var proxyOpen = true;
        try
        {
            await using var connection = await ConnectionMultiplexer.ConnectAsync(proxy.RedisConnectionString + ",syncTimeout=2000,asyncTimeout=2000");
            var redis = new RedisStateStore(connection, "gc" + Guid.NewGuid().ToString("N")[..8]);
            var windows = QuotaWindows.At(DateTimeOffset.UtcNow);
            var limits = new TenantLimitsOptions { RequestsPerMinute = 100 };
            Task<AdmissionResult> Admit() => redis.AdmitAsync(new AdmissionRequest(Tenant, limits, 0, windows, "", TimeSpan.FromMinutes(1)), CancellationToken.None).AsTask();

            var alone = Admit();
            var inBatch = Enumerable.Range(0, 4).Select(_ => Admit()).ToArray();
            await alone;
            await Eventually.UntilAsync(() => Task.FromResult(redis.AdmissionBatches.Calls == 1), "the batch is sent");
            var behindBatch = Enumerable.Range(0, 3).Select(_ => Admit()).ToArray();

            // The proxy goes away with the batch unanswered: Redis is unreachable, as when its connection breaks.
            await proxy.DisposeAsync();
            proxyOpen = false;

            foreach (var item in inBatch.Concat(behindBatch))
            {
                var failure = await Record.ExceptionAsync(() => item.WaitAsync(TimeSpan.FromSeconds(30)));
                // What ResilientStateStore takes for a store failure (fail open or deny, docs/quotas.md), as for a single call.
                Assert.True(failure is RedisException or TimeoutException, $"{failure?.GetType().Name}: {failure?.Message}");
            }
        }
        finally
        {
            if (proxyOpen)
            {
                await proxy.DisposeAsync();
            }
        }
    }

    /// <summary>
    /// Through the gateway: eight creates of one tenant at once, Redis 500 ms away (DelayingTcpProxy), so each admission
    /// and settle finds the tenant's previous one in flight. Unbatched, each create runs three scripts (admission,
    /// ownership record, settle: 24); batched, the admissions and settles take a few calls. What is counted is the same
    /// as for the same eight creates of another tenant one after the other, each alone.
    /// </summary>
    [SkippableFact]
    public async Task Gateway_ConcurrentCreatesOfOneTenant_FewerScriptCalls_SameCountersAndMarksAsOneAfterAnother()
    {
        const int Creates = 8;
        await using var server = await RedisServer.StartAsync();
        await using var proxy = DelayingTcpProxy.Start(server.Port, TimeSpan.Zero, TimeSpan.FromMilliseconds(500));
        await using var upstream = await FakeUpstream.FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c =>
        {
            c["ConnectionStrings:Redis"] = proxy.RedisConnectionString;
            c["Gateway:Quotas:RedisTimeout"] = "00:00:10";
            c["Gateway:Quotas:RedisDataLossCheckInterval"] = "01:00:00";
            foreach (var tenant in new[] { TestKeys.TenantA, TestKeys.TenantB })
            {
                c[$"Gateway:Tenants:{tenant}:Limits:RequestsPerMinute"] = "100000";
                c[$"Gateway:Tenants:{tenant}:Limits:TokensPerMinute"] = "100000000";
                c[$"Gateway:Tenants:{tenant}:Limits:MaxConcurrentRequests"] = "20";
            }
        });
        using var a = Isolation.Tenants.Client(gateway, TestKeys.KeyA, TestKeys.TenantA);
        using var b = Isolation.Tenants.Client(gateway, TestKeys.KeyB, TestKeys.TenantB);
        await using var admin = await ConnectionMultiplexer.ConnectAsync(server.ConnectionString + ",allowAdmin=true");
        var redisServer = admin.GetServer(admin.GetEndPoints()[0]);
        using (var probe = new HttpClient { BaseAddress = gateway.RootUrl })
        {
            await Eventually.UntilAsync(
                async () => System.Text.Json.JsonDocument.Parse(await probe.GetStringAsync("/readyz")).RootElement.GetProperty("store_state").GetString() == "up",
                "Redis is up for the gateway");
        }

        // Tenant B, one create at a time (each settled before the next): every script call alone.
        for (var i = 0; i < Creates; i++)
        {
            await CreateAndFinishAsync(gateway, b, i);
        }

        var store = gateway.Services.GetRequiredService<RedisStateStore>();
        Assert.Equal((0L, 0L), store.AdmissionBatches);
        Assert.Equal((0L, 0L), store.SettleBatches);
        await redisServer.ExecuteAsync("CONFIG", "RESETSTAT");
        await Task.WhenAll(Enumerable.Range(0, Creates).Select(i => CreateAndFinishAsync(gateway, a, i)));

        var stats = (await redisServer.InfoAsync("commandstats")).SelectMany(g => g).ToDictionary(p => p.Key, p => p.Value);
        long Calls(string command) =>
            stats.TryGetValue("cmdstat_" + command, out var value) ? long.Parse(value.Split(',')[0]["calls=".Length..], System.Globalization.CultureInfo.InvariantCulture) : 0;
        var scriptCalls = Calls("evalsha") + Calls("eval");
        Assert.True(scriptCalls <= 2 * Creates, $"{scriptCalls} script calls for {Creates} creates (unbatched: {3 * Creates})");
        Assert.True(store.AdmissionBatches.Calls >= 1 && store.SettleBatches.Calls >= 1, $"admission batches {store.AdmissionBatches}, settle batches {store.SettleBatches}");

        var windows = QuotaWindows.At(DateTimeOffset.UtcNow);
        var db = admin.GetDatabase();
        foreach (var counter in new[] { "td:" + windows.Day, "tmo:" + windows.Month, "ud:" + windows.Day, "umo:" + windows.Month })
        {
            Assert.Equal((long?)await db.StringGetAsync($"gw:{{t:{TestKeys.TenantB}}}:{counter}"), (long?)await db.StringGetAsync($"gw:{{t:{TestKeys.TenantA}}}:{counter}"));
        }

        Assert.NotNull((long?)await db.StringGetAsync($"gw:{{t:{TestKeys.TenantA}}}:td:{windows.Day}"));
        Assert.Equal(await CountedMarksAsync(redisServer, db, TestKeys.TenantB), await CountedMarksAsync(redisServer, db, TestKeys.TenantA));
        Assert.Equal(Creates, (await CountedMarksAsync(redisServer, db, TestKeys.TenantA)).Count);
        Assert.Equal(0, await db.SortedSetLengthAsync($"gw:{{t:{TestKeys.TenantA}}}:leases"));
    }

    private static async Task CreateAndFinishAsync(GatewayHost gateway, HttpClient client, int i)
    {
        using var response = await client.PostAsync("responses", Isolation.Tenants.Json($$"""{"model":"gpt-4o-mini","input":"Hello number {{i}}"}"""));
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        await gateway.Logs.SingleUsageEventAsync(Isolation.Tenants.GatewayRequestId(response));
    }

    /// <summary>The tenant's counted marks (<c>in:out:usd</c> per response), sorted.</summary>
    private static async Task<List<string>> CountedMarksAsync(IServer server, IDatabase db, string tenant)
    {
        var marks = new List<string>();
        await foreach (var key in server.KeysAsync(pattern: $"gw:{{t:{tenant}}}:counted:*"))
        {
            marks.Add((string)(await db.StringGetAsync(key))!);
        }

        marks.Sort(StringComparer.Ordinal);
        return marks;
    }

    private static async Task<QuotaReservation> AdmitOnBothAsync(ISharedStateStore[] stores, TenantLimitsOptions limits, long reserve, QuotaWindows windows, string lease, long microUsd)
    {
        foreach (var store in stores)
        {
            var result = await store.AdmitAsync(new AdmissionRequest(Tenant, limits, reserve, windows, lease, TimeSpan.FromMinutes(15), ReserveMicroUsd: microUsd), CancellationToken.None);
            Assert.Equal(AdmissionDecision.Admitted, result.Decision);
        }

        return new QuotaReservation(Tenant, reserve, windows.Minute, windows.Day, windows.Month, lease) { ReservedMicroUsd = microUsd };
    }

    private static SettleRequest Settle(QuotaReservation? reservation, long billed, QuotaWindows now, string? claim = null, string? hold = null,
        long input = 0, bool estimated = false, string? conversation = null, long microUsd = 0) =>
        new(Tenant, reservation, billed, claim, hold, Retention, TimeSpan.FromHours(1), now, microUsd)
        {
            InputTokens = input,
            Estimated = estimated,
            ConversationId = conversation,
        };

    /// <summary>One redis-server or a 3-node cluster, a connection for the store and an admin connection that can pause the servers.</summary>
    private sealed class Target : IAsyncDisposable
    {
        private readonly IAsyncDisposable _servers;
        private readonly ConnectionMultiplexer _admin;

        private Target(IAsyncDisposable servers, ConnectionMultiplexer connection, ConnectionMultiplexer admin)
        {
            _servers = servers;
            Connection = connection;
            _admin = admin;
        }

        public ConnectionMultiplexer Connection { get; }

        public IEnumerable<IServer> Servers => _admin.GetServers();

        public static async Task<Target> StartAsync(string topology)
        {
            RedisServer.RequireInstalled();
            IAsyncDisposable servers;
            string connectionString;
            if (topology == "cluster")
            {
                var cluster = await RedisCluster.StartAsync();
                (servers, connectionString) = (cluster, cluster.ConnectionString);
            }
            else
            {
                var server = await RedisServer.StartAsync();
                (servers, connectionString) = (server, server.ConnectionString);
            }

            var connection = await ConnectionMultiplexer.ConnectAsync(connectionString);
            var admin = await ConnectionMultiplexer.ConnectAsync(connectionString + ",allowAdmin=true");
            return new Target(servers, connection, admin);
        }

        /// <summary>Every server holds every client's commands for <see cref="Hold"/>: the first call made meanwhile stays in flight.</summary>
        public async Task PauseAsync()
        {
            foreach (var server in _admin.GetServers())
            {
                await server.ExecuteAsync("CLIENT", "PAUSE", ((long)Hold.TotalMilliseconds).ToString(System.Globalization.CultureInfo.InvariantCulture), "ALL");
            }
        }

        public async ValueTask DisposeAsync()
        {
            await Connection.DisposeAsync();
            await _admin.DisposeAsync();
            await _servers.DisposeAsync();
        }
    }
}
