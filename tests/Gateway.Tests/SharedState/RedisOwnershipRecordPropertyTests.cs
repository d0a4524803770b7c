using CsCheck;
using Gateway.SharedState;
using Gateway.Tests.Infrastructure;
using StackExchange.Redis;

namespace Gateway.Tests.SharedState;

/// <summary>
/// The ownership record's plain <c>SET NX</c> first (issue #15) as a property: for generated sequences of records and
/// expiries of one id (two tenants, with and without an upstream, short, long and endless retentions), the record and
/// its expiry after every step are what the record script alone (every call before the change) leaves, on one Redis
/// and on a real three-node cluster.
/// </summary>
public sealed class RedisOwnershipRecordPropertyTests
{
    private const int Sequences = 150;
    private const long TtlToleranceMs = 5_000; // the two keys are written moments apart; retentions differ by a minute or more

    private static readonly string[] Tenants = ["tenant-a", "tenant-b"];
    private static readonly string?[] Upstreams = [null, "east", "west"];
    private static readonly TimeSpan[] Retentions = [TimeSpan.FromMinutes(1), TimeSpan.FromMinutes(10), Timeout.InfiniteTimeSpan];

    private static readonly Gen<Step[]> Steps = Gen.Select(
        Gen.Int[0, Tenants.Length - 1], Gen.Int[0, Upstreams.Length - 1], Gen.Int[0, Retentions.Length - 1], Gen.Int[0, 4],
        (tenant, upstream, retention, kind) => new Step(kind == 0 ? StepKind.Expire : StepKind.Record, Tenants[tenant], Upstreams[upstream], Retentions[retention]))
        .Array[1, 8];

    private enum StepKind
    {
        Record,
        Expire,
    }

    [SkippableFact]
    public async Task RecordOwner_AnySequenceOnOneRedis_LeavesWhatTheScriptAloneLeaves()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var connection = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        await AssertSameAsScriptAsync(connection);
    }

    [SkippableFact]
    public async Task RecordOwner_AnySequenceOnACluster_LeavesWhatTheScriptAloneLeaves()
    {
        RedisServer.RequireInstalled();
        await using var cluster = await RedisCluster.StartAsync();
        await using var connection = await ConnectionMultiplexer.ConnectAsync(cluster.ConnectionString);
        Assert.Equal(ServerType.Cluster, connection.GetServer(connection.GetEndPoints()[0]).ServerType);
        await AssertSameAsScriptAsync(connection);
    }

    private static async Task AssertSameAsScriptAsync(ConnectionMultiplexer connection)
    {
        var database = connection.GetDatabase();
        var store = new RedisOwnershipStore(connection, "new");
        var reference = new RedisOwnershipStore(connection, "ref");
        var created = 0;
        var existing = 0;

        await Steps.SampleAsync(async steps =>
        {
            var id = "resp_" + Guid.NewGuid().ToString("N");
            RedisKey storeKey = $"new:own:{id}";
            RedisKey referenceKey = $"ref:own:{id}";
            foreach (var step in steps)
            {
                if (step.Kind == StepKind.Expire)
                {
                    await store.ExpireOwnerAsync(id, step.Tenant, TimeSpan.FromSeconds(30));
                    await reference.ExpireOwnerAsync(id, step.Tenant, TimeSpan.FromSeconds(30));
                }
                else
                {
                    var existed = await database.KeyExistsAsync(storeKey);
                    await store.RecordOwnerAsync(id, step.Tenant, step.Upstream, step.Retention);
                    await RecordByScriptAloneAsync(database, referenceKey, step);
                    Interlocked.Increment(ref existed ? ref existing : ref created);
                }

                var (record, ttl) = (await database.StringGetAsync(storeKey), await database.KeyTimeToLiveAsync(storeKey));
                var (expectedRecord, expectedTtl) = (await database.StringGetAsync(referenceKey), await database.KeyTimeToLiveAsync(referenceKey));
                var trace = string.Join(" | ", steps.Select(s => s.ToString()));
                Assert.True(record == expectedRecord, $"record {record} vs the script's {expectedRecord} after {trace}");
                Assert.True(ttl.HasValue == expectedTtl.HasValue, $"expiry {ttl} vs the script's {expectedTtl} after {trace}");
                if (ttl is { } left && expectedTtl is { } expectedLeft)
                {
                    Assert.True(Math.Abs((left - expectedLeft).TotalMilliseconds) < TtlToleranceMs, $"expiry {left} vs the script's {expectedLeft} after {trace}");
                }
            }
        }, iter: Sequences, threads: 4);

        // Both paths were taken: new ids (the plain SET) and existing records (the script).
        Assert.True(created > 0 && existing > 0, $"{created} new ids, {existing} existing records");
    }

    /// <summary>What RecordOwnerAsync sent before the change: the script with the same arguments, for every call.</summary>
    private static Task<RedisResult> RecordByScriptAloneAsync(IDatabase database, RedisKey key, Step step) =>
        database.ScriptEvaluateAsync(RedisOwnershipStore.RecordOwnerScriptText, [key],
            [step.Tenant, step.Retention == Timeout.InfiniteTimeSpan ? -1 : (long)step.Retention.TotalMilliseconds,
             step.Upstream is null ? step.Tenant : $"{step.Tenant}@{step.Upstream}"]);

    private sealed record Step(StepKind Kind, string Tenant, string? Upstream, TimeSpan Retention);
}
