using StackExchange.Redis;

namespace Gateway.SharedState;

/// <summary>
/// Object ownership in Redis: one string key per object id, <c>{prefix}:own:{id}</c>, holding the owning tenant,
/// written by one-key scripts (first writer wins; the owner may lengthen, never shorten, the record). Part of
/// <see cref="RedisStateStore"/>; kept apart from the quota ledger, with which it shares no key.
/// </summary>
internal sealed class RedisOwnershipStore(IConnectionMultiplexer redis, string keyPrefix)
{
    // KEYS: 1 owner; ARGV: 1 tenant 2 ttlMs, or -1 for ever. First writer wins; the owner may lengthen (never shorten) the record.
    private const string RecordOwnerScript = """
        local owner = redis.call('GET', KEYS[1])
        if not owner then
          if ARGV[2] == '-1' then redis.call('SET', KEYS[1], ARGV[1]) else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
          return 1
        end
        if owner ~= ARGV[1] then return 0 end
        if ARGV[2] == '-1' then
          redis.call('PERSIST', KEYS[1])
        else
          local ttl = redis.call('PTTL', KEYS[1])
          if ttl >= 0 and ttl < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
        end
        return 1
        """;

    // KEYS: 1 owner; ARGV: 1 tenant 2 keepForMs. The owner's record expires after keepFor at the latest.
    private const string ExpireOwnerScript = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then
          local ttl = redis.call('PTTL', KEYS[1])
          if ttl < 0 or ttl > tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
        end
        return 0
        """;

    public async ValueTask RecordOwnerAsync(string objectId, string tenantId, TimeSpan retention) =>
        await redis.GetDatabase().ScriptEvaluateAsync(RecordOwnerScript, [OwnerKey(objectId)],
            [tenantId, retention == Timeout.InfiniteTimeSpan ? -1 : Math.Max(1, (long)retention.TotalMilliseconds)]);

    public async ValueTask ExpireOwnerAsync(string objectId, string tenantId, TimeSpan keepFor) =>
        await redis.GetDatabase().ScriptEvaluateAsync(ExpireOwnerScript, [OwnerKey(objectId)], [tenantId, Math.Max(1, (long)keepFor.TotalMilliseconds)]);

    public async ValueTask<string?> GetOwnerAsync(string objectId) => await redis.GetDatabase().StringGetAsync(OwnerKey(objectId));

    private string OwnerKey(string objectId) => string.Concat(keyPrefix, ":own:", objectId);
}
