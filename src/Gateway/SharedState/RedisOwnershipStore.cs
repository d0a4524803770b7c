using StackExchange.Redis;

namespace Gateway.SharedState;

/// <summary>
/// Object ownership in Redis: one string key per object id, <c>{prefix}:own:{id}</c>, holding the owning tenant and,
/// with an upstream pool, the upstream that holds the object (<c>tenant@upstream</c>; tenant ids and upstream names never
/// contain <c>@</c>; a record without it is a tenant alone, as earlier versions wrote it), written by one-key scripts
/// (first writer wins; the owner may lengthen, never shorten, the record). Part of <see cref="RedisStateStore"/>; kept
/// apart from the quota ledger, with which it shares no key.
/// </summary>
internal sealed class RedisOwnershipStore(IConnectionMultiplexer redis, string keyPrefix)
{
    private const char UpstreamSeparator = '@';

    // KEYS: 1 owner; ARGV: 1 tenant 2 ttlMs, or -1 for ever 3 the record (tenant, or tenant@upstream). First writer wins;
    // the owner may lengthen (never shorten) the record, and give a record without an upstream this one (never change it).
    // Its first step is the SET NX that RecordOwnerAsync sends as a plain command first: the script runs only when that
    // finds a record, and then (a record that expired in between) its own SET NX writes it as the plain command would.
    internal const string RecordOwnerScriptText = """
        local created
        if ARGV[2] == '-1' then created = redis.call('SET', KEYS[1], ARGV[3], 'NX') else created = redis.call('SET', KEYS[1], ARGV[3], 'NX', 'PX', ARGV[2]) end
        if created then return 1 end
        local record = redis.call('GET', KEYS[1])
        local at = string.find(record, '@', 1, true)
        if (at and string.sub(record, 1, at - 1) or record) ~= ARGV[1] then return 0 end
        if not at and ARGV[3] ~= ARGV[1] then redis.call('SET', KEYS[1], ARGV[3], 'KEEPTTL') end
        if ARGV[2] == '-1' then
          redis.call('PERSIST', KEYS[1])
        else
          local ttl = redis.call('PTTL', KEYS[1])
          if ttl >= 0 and ttl < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
        end
        return 1
        """;

    // KEYS: 1 owner; ARGV: 1 tenant 2 keepForMs. The owner's record expires after keepFor at the latest.
    private const string ExpireOwnerScriptText = """
        local record = redis.call('GET', KEYS[1])
        if not record then return 0 end
        local at = string.find(record, '@', 1, true)
        if (at and string.sub(record, 1, at - 1) or record) == ARGV[1] then
          local ttl = redis.call('PTTL', KEYS[1])
          if ttl < 0 or ttl > tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
        end
        return 0
        """;

    private readonly RedisScript _recordOwnerScript = new(RecordOwnerScriptText);
    private readonly RedisScript _expireOwnerScript = new(ExpireOwnerScriptText);

    /// <summary>
    /// A new id (nearly every call) is one plain <c>SET NX</c>: Redis runs it for a fraction of a script call's CPU
    /// (issue #15: on the bench's one core Redis' CPU is the gateway's). Only a record already there (the owner
    /// recording again, or another tenant's) runs the script, which decides what may change.
    /// </summary>
    public async ValueTask RecordOwnerAsync(string objectId, string tenantId, string? upstream, TimeSpan retention)
    {
        var database = redis.GetDatabase();
        var key = OwnerKey(objectId);
        var record = upstream is null ? tenantId : string.Concat(tenantId, "@", upstream);
        var ttlMs = retention == Timeout.InfiniteTimeSpan ? -1 : Math.Max(1, (long)retention.TotalMilliseconds);
        if (await database.StringSetAsync(key, record, ttlMs < 0 ? null : TimeSpan.FromMilliseconds(ttlMs), When.NotExists))
        {
            return;
        }

        await _recordOwnerScript.EvaluateAsync(database, [key], [tenantId, ttlMs, record]);
    }

    public async ValueTask ExpireOwnerAsync(string objectId, string tenantId, TimeSpan keepFor) =>
        await _expireOwnerScript.EvaluateAsync(redis.GetDatabase(), [OwnerKey(objectId)], [tenantId, Math.Max(1, (long)keepFor.TotalMilliseconds)]);

    public async ValueTask<ObjectOwner?> GetOwnerAsync(string objectId) => Parse(await redis.GetDatabase().StringGetAsync(OwnerKey(objectId)));

    /// <summary>A stored record: <c>tenant</c> (no upstream known) or <c>tenant@upstream</c>.</summary>
    internal static ObjectOwner? Parse(RedisValue value)
    {
        if (value.IsNull)
        {
            return null;
        }

        var record = (string)value!;
        var at = record.IndexOf(UpstreamSeparator, StringComparison.Ordinal);
        return at < 0 ? new ObjectOwner(record, null) : new ObjectOwner(record[..at], at + 1 < record.Length ? record[(at + 1)..] : null);
    }

    private string OwnerKey(string objectId) => string.Concat(keyPrefix, ":own:", objectId);
}
