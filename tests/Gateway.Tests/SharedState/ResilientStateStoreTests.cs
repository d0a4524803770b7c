using System.Diagnostics.Metrics;
using Gateway.Configuration;
using Gateway.Observability;
using Gateway.SharedState;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using StackExchange.Redis;

namespace Gateway.Tests.SharedState;

/// <summary>
/// <see cref="ResilientStateStore"/> on its own, in front of a real redis-server that the test stops and starts:
/// Redis first; on failure the memory fallback (Allow) or a refusal (Deny), counted once per operation; after a
/// failure Redis is left alone until RedisRetryInterval has passed on the injected clock, then used again; a ping
/// that succeeds ends the degraded state at once; an owner recorded by the fallback is written back to Redis.
/// </summary>
public sealed class ResilientStateStoreTests
{
    private static readonly TimeSpan RetryInterval = TimeSpan.FromSeconds(30);

    private static readonly TenantLimitsOptions Limits = new() { RequestsPerMinute = 1_000 };

    private sealed class Bed : IAsyncDisposable
    {
        private readonly ServiceProvider _services;
        private readonly MeterListener _failures = new();
        private readonly List<string> _failureModes = [];

        private Bed(RedisServer redis, ConnectionMultiplexer connection, StoreFailureMode mode)
        {
            Redis = redis;
            Connection = connection;
            Primary = new RedisStateStore(connection, "rs" + Guid.NewGuid().ToString("N")[..12] + ":");
            Fallback = new MemoryStateStore(Time);
            _services = new ServiceCollection().AddMetrics().BuildServiceProvider();
            var meters = _services.GetRequiredService<IMeterFactory>();

            // Only this bed's meter: other tests in the process record the same instrument.
            _failures.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Name == "gateway.quota.store_failures" && ReferenceEquals(instrument.Meter.Scope, meters))
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _failures.SetMeasurementEventCallback<long>((_, _, tags, _) =>
            {
                lock (_failureModes)
                {
                    _failureModes.Add(tags.ToArray().Single(t => t.Key == "mode").Value?.ToString() ?? "");
                }
            });
            _failures.Start();

            var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["Gateway:Upstream:BaseUrl"] = "http://127.0.0.1:9/v1",
                ["Gateway:Upstream:ApiKey"] = TestKeys.UpstreamKey,
                ["Gateway:Quotas:OnStoreFailure"] = mode.ToString(),
                ["Gateway:Quotas:RedisRetryInterval"] = RetryInterval.ToString(),
            }).Build();
            Settings = new GatewaySettings(configuration, new GatewayOptionsValidator(configuration), NullLogger<GatewaySettings>.Instance);
            Store = new ResilientStateStore(Primary, Fallback, Settings, new GatewayMetrics(meters), Time, NullLogger<ResilientStateStore>.Instance);
        }

        /// <summary>Early in a minute: waiting out <see cref="RetryInterval"/> stays in the same request window.</summary>
        public FakeTimeProvider Time { get; } = new(new DateTimeOffset(2031, 3, 12, 10, 15, 5, TimeSpan.Zero));

        public RedisServer Redis { get; }

        public ConnectionMultiplexer Connection { get; }

        public RedisStateStore Primary { get; }

        public MemoryStateStore Fallback { get; }

        public GatewaySettings Settings { get; }

        public ResilientStateStore Store { get; }

        public IReadOnlyList<string> FailureModes
        {
            get
            {
                lock (_failureModes)
                {
                    return [.. _failureModes];
                }
            }
        }

        public static async Task<Bed> StartAsync(StoreFailureMode mode = StoreFailureMode.Allow)
        {
            var redis = await RedisServer.StartAsync(); // skips (locally) or fails (CI=true) without redis-server
            // As the gateway connects (GatewayServiceExtensions): no abort on connect failure, RedisTimeout's 500 ms.
            var options = ConfigurationOptions.Parse(redis.ConnectionString);
            options.SyncTimeout = options.AsyncTimeout = 500;
            return new Bed(redis, await ConnectionMultiplexer.ConnectAsync(options), mode);
        }

        public Task<AdmissionResult> AdmitAsync() =>
            Store.AdmitAsync(new AdmissionRequest(TestKeys.TenantA, Limits, 0, QuotaWindows.At(Time.GetUtcNow()), "", TimeSpan.FromMinutes(1)), CancellationToken.None).AsTask();

        public async Task<long> RequestsCountedAsync(ISharedStateStore store) =>
            (await store.ReadCountersAsync(TestKeys.TenantA, QuotaWindows.At(Time.GetUtcNow()), CancellationToken.None)).Requests;

        /// <summary>Redis answers again and the multiplexer has reconnected to it (in the background, on its own schedule).</summary>
        public async Task RestartRedisAsync()
        {
            await Redis.StartProcessAsync();
            await Eventually.UntilAsync(() => Connection.IsConnected, "the multiplexer reconnected to Redis");
        }

        public async ValueTask DisposeAsync()
        {
            _failures.Dispose();
            Fallback.Dispose();
            Settings.Dispose();
            await Connection.DisposeAsync();
            await Redis.DisposeAsync();
            await _services.DisposeAsync();
        }
    }

    [SkippableFact]
    public async Task Admit_RedisUp_CountedInRedisNotInTheFallback()
    {
        await using var bed = await Bed.StartAsync();

        var result = await bed.AdmitAsync();

        Assert.Equal(AdmissionDecision.Admitted, result.Decision);
        Assert.False(result.ByFallback);
        Assert.False(bed.Store.IsDegraded);
        Assert.Equal(1, await bed.RequestsCountedAsync(bed.Primary));
        Assert.Equal(0, await bed.RequestsCountedAsync(bed.Fallback));
        Assert.Empty(bed.FailureModes);
    }

    [SkippableFact]
    public async Task Admit_RedisDownInAllowMode_ServedAndCountedByTheFallback()
    {
        await using var bed = await Bed.StartAsync();
        await bed.Redis.StopProcessAsync();

        var first = await bed.AdmitAsync();
        var second = await bed.AdmitAsync(); // degraded: straight to the fallback, Redis not tried again

        Assert.True(first.ByFallback);
        Assert.True(second.ByFallback);
        Assert.True(bed.Store.IsDegraded);
        Assert.Equal(2, await bed.RequestsCountedAsync(bed.Fallback));
        Assert.Equal(["Allow", "Allow"], bed.FailureModes); // once per operation, mode named
    }

    [SkippableFact]
    public async Task Admit_RedisDownInDenyMode_RefusedAndNothingCountedAnywhere()
    {
        await using var bed = await Bed.StartAsync(StoreFailureMode.Deny);
        await bed.Redis.StopProcessAsync();

        await Assert.ThrowsAsync<StoreUnavailableException>(bed.AdmitAsync);
        await Assert.ThrowsAsync<StoreUnavailableException>(bed.AdmitAsync);

        Assert.True(bed.Store.IsDegraded);
        Assert.Equal(0, await bed.RequestsCountedAsync(bed.Fallback));
        Assert.Equal(["Deny", "Deny"], bed.FailureModes);
    }

    [SkippableFact]
    public async Task Admit_RedisBackBeforeTheRetryInterval_StaysOnTheFallbackUntilItPasses()
    {
        await using var bed = await Bed.StartAsync();
        await bed.Redis.StopProcessAsync();
        Assert.True((await bed.AdmitAsync()).ByFallback);
        await bed.RestartRedisAsync();

        bed.Time.Advance(RetryInterval - TimeSpan.FromSeconds(1));
        Assert.True((await bed.AdmitAsync()).ByFallback); // Redis answers, but is left alone for the interval
        Assert.Equal(0, await bed.RequestsCountedAsync(bed.Primary));

        bed.Time.Advance(TimeSpan.FromSeconds(1));
        var back = await bed.AdmitAsync();

        Assert.False(back.ByFallback);
        Assert.False(bed.Store.IsDegraded);
        Assert.Equal(1, await bed.RequestsCountedAsync(bed.Primary));
        Assert.Equal(2, await bed.RequestsCountedAsync(bed.Fallback));
    }

    [SkippableFact]
    public async Task Ping_RedisBack_EndsTheDegradedStateAtOnce()
    {
        await using var bed = await Bed.StartAsync();
        await bed.Redis.StopProcessAsync();
        Assert.True((await bed.AdmitAsync()).ByFallback);
        Assert.False(await bed.Store.PingAsync(CancellationToken.None));
        Assert.True(bed.Store.IsDegraded);

        await bed.RestartRedisAsync();

        // What /readyz does: a ping that succeeds puts Redis back in use without waiting out the retry interval.
        Assert.True(await bed.Store.PingAsync(CancellationToken.None));
        Assert.False(bed.Store.IsDegraded);
        Assert.False((await bed.AdmitAsync()).ByFallback);
    }

    [SkippableFact]
    public async Task GetOwner_RecordedByTheFallbackDuringTheOutage_WrittenBackToRedisOnceItAnswers()
    {
        await using var bed = await Bed.StartAsync();
        await bed.Redis.StopProcessAsync(); // and its data with it: the restarted Redis is empty
        await bed.Store.RecordOwnerAsync("resp_outage", TestKeys.TenantA, "east", TimeSpan.FromHours(1), CancellationToken.None);
        Assert.Equal(new ObjectOwner(TestKeys.TenantA, "east"), await bed.Fallback.GetOwnerAsync("resp_outage", CancellationToken.None));

        await bed.RestartRedisAsync();
        bed.Time.Advance(RetryInterval);
        Assert.Null(await bed.Primary.GetOwnerAsync("resp_outage", CancellationToken.None));

        // The upstream the object lives on is written back with its owner.
        Assert.Equal(new ObjectOwner(TestKeys.TenantA, "east"), await bed.Store.GetOwnerAsync("resp_outage", CancellationToken.None));
        Assert.Equal(new ObjectOwner(TestKeys.TenantA, "east"), await bed.Primary.GetOwnerAsync("resp_outage", CancellationToken.None));
        Assert.False(bed.Store.IsDegraded);
    }
}
