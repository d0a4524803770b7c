using System.Collections.Concurrent;
using System.Globalization;
using StackExchange.Redis;

namespace Gateway.SharedState;

/// <summary>
/// Group commit of one script's calls, per tenant (issue #15): Redis spends 10+ µs on every script execution beyond the
/// commands it runs, and under load many calls of one tenant are in flight at once. A call with none of its tenant's in
/// flight is sent at once, alone, as the plain script (no added latency at concurrency 1). Calls made while one is in
/// flight queue; when it answers, the queue goes as ONE call of the batch script, which runs the same script body once
/// per item, in queue order, and returns each item's own result: every item sees exactly what it would have seen had
/// the scripts run one after the other in that order. A batch holds one tenant's items only, so its keys share the
/// tenant's hash slot (<c>{t:tenant}</c>) and the batch runs unchanged on Redis Cluster; it declares every key its items
/// name (each once). A failed batch (timeout, connection loss) fails each of its items with the error a single call
/// would have had; a lost script (NOSCRIPT) is sent again with its text by <see cref="RedisScript"/>.
/// </summary>
internal sealed class RedisGroupCommit
{
    /// <summary>Items per batch at most: bounds the batch's size on the wire and the time Redis is held by one script.</summary>
    public const int MaxBatch = 32;

    private readonly IConnectionMultiplexer _redis;
    private readonly RedisScript _single;
    private readonly RedisScript _batch;
    private readonly int _keysPerItem;
    private readonly int _valuesPerItem;

    // One lane per tenant; tenants come from the configuration (authenticated requests only), so the map stays bounded.
    private readonly ConcurrentDictionary<string, Lane> _lanes = new(StringComparer.Ordinal);

    /// <param name="body">The script: reads its item's <c>KEYS</c> and <c>ARGV</c> and returns its result.</param>
    /// <param name="batch">How a batch differs, if it does: Lua run before the items (whose locals the item body sees),
    /// the item body to run instead of <paramref name="body"/>, and Lua run after the items.</param>
    public RedisGroupCommit(IConnectionMultiplexer redis, string body, int keysPerItem, int valuesPerItem, BatchParts? batch = null)
    {
        _redis = redis;
        _single = new RedisScript(body);
        _batch = new RedisScript(BatchScript(batch ?? new BatchParts("", body, ""), keysPerItem, valuesPerItem));
        _keysPerItem = keysPerItem;
        _valuesPerItem = valuesPerItem;
    }

    /// <summary>Calls made by a batch so far (one per batch of two items or more), for tests and benchmarks.</summary>
    public long BatchCalls => Interlocked.Read(ref _batchCalls);

    /// <summary>Items sent in those batches.</summary>
    public long BatchedItems => Interlocked.Read(ref _batchedItems);

    private long _batchCalls;
    private long _batchedItems;

    /// <summary>
    /// The batch script: the body becomes a Lua function whose parameters shadow <c>KEYS</c> and <c>ARGV</c>, run once per
    /// item. ARGV: 1 item count, then per item the indices (into KEYS) of its keys, then its values.
    /// The item's tables are written out as constructors (<c>{ KEYS[tonumber(ARGV[p])], … }</c>), which Lua sizes once,
    /// rather than filled in a loop, which grows them several times per item.
    /// </summary>
    internal static string BatchScript(BatchParts parts, int keysPerItem, int valuesPerItem)
    {
        var keys = string.Join(", ", Enumerable.Range(0, keysPerItem).Select(j => string.Create(CultureInfo.InvariantCulture, $"KEYS[tonumber(ARGV[p + {j}])]")));
        var values = string.Join(", ", Enumerable.Range(keysPerItem, valuesPerItem).Select(j => string.Create(CultureInfo.InvariantCulture, $"ARGV[p + {j}]")));
        return string.Create(CultureInfo.InvariantCulture, $$"""
            {{parts.Prologue}}
            local function item(KEYS, ARGV)
            {{parts.ItemBody}}
            end
            local results = {}
            local p = 2
            for i = 1, tonumber(ARGV[1]) do
              results[i] = item({ {{keys}} }, { {{values}} })
              p = p + {{keysPerItem + valuesPerItem}}
            end
            {{parts.Epilogue}}
            return results
            """);
    }

    /// <summary>Runs the script for one tenant's item, alone or in a batch with the tenant's other waiting items.</summary>
    public Task<RedisResult> EvaluateAsync(string tenantId, RedisKey[] keys, RedisValue[] values)
    {
        if (keys.Length != _keysPerItem || values.Length != _valuesPerItem)
        {
            throw new ArgumentException($"An item has {_keysPerItem} keys and {_valuesPerItem} values, not {keys.Length} and {values.Length}.", nameof(keys));
        }

        var lane = _lanes.GetOrAdd(tenantId, static _ => new Lane());
        lock (lane)
        {
            if (lane.InFlight)
            {
                var waiting = new Waiting(keys, values);
                lane.Queue.Enqueue(waiting);
                return waiting.Result.Task;
            }

            lane.InFlight = true;
        }

        return RunAloneAsync(lane, keys, values);
    }

    private async Task<RedisResult> RunAloneAsync(Lane lane, RedisKey[] keys, RedisValue[] values)
    {
        RedisResult result;
        try
        {
            result = await _single.EvaluateAsync(_redis.GetDatabase(), keys, values);
        }
        catch (Exception ex)
        {
            SendWaiting(lane, ex);
            throw;
        }

        SendWaiting(lane, null);
        return result;
    }

    /// <summary>
    /// The lane's call answered: sends what queued meanwhile, or marks the lane idle. When the call timed out or lost its
    /// connection, what queued behind it fails at once with the same error (as calls pipelined on that connection would
    /// have), rather than each waiting out another RedisTimeout: a queued item waits for one call at most, then its own.
    /// </summary>
    private void SendWaiting(Lane lane, Exception? failure)
    {
        Waiting[] batch;
        lock (lane)
        {
            if (lane.Queue.Count == 0 || failure is RedisConnectionException or TimeoutException)
            {
                batch = [.. lane.Queue];
                lane.Queue.Clear();
                lane.InFlight = false;
            }
            else
            {
                batch = new Waiting[Math.Min(lane.Queue.Count, MaxBatch)];
                for (var i = 0; i < batch.Length; i++)
                {
                    batch[i] = lane.Queue.Dequeue();
                }

                failure = null;
            }
        }

        if (failure is not null || batch.Length == 0)
        {
            foreach (var waiting in batch)
            {
                waiting.Result.TrySetException(failure!);
            }

            return;
        }

        _ = RunBatchAsync(lane, batch);
    }

    private async Task RunBatchAsync(Lane lane, Waiting[] batch)
    {
        RedisResult[]? results = null;
        Exception? failure = null;
        try
        {
            if (batch.Length == 1)
            {
                results = [await _single.EvaluateAsync(_redis.GetDatabase(), batch[0].Keys, batch[0].Values)];
            }
            else
            {
                var (keys, values) = Pack(batch);
                Interlocked.Increment(ref _batchCalls);
                Interlocked.Add(ref _batchedItems, batch.Length);
                results = (RedisResult[])(await _batch.EvaluateAsync(_redis.GetDatabase(), keys, values))!;
                if (results.Length != batch.Length)
                {
                    throw new InvalidOperationException($"The batch script returned {results.Length} results for {batch.Length} items.");
                }
            }
        }
        catch (Exception ex)
        {
            failure = ex;
        }

        // The next batch leaves before this one's callers resume (their continuations run asynchronously).
        SendWaiting(lane, failure);
        for (var i = 0; i < batch.Length; i++)
        {
            if (failure is null)
            {
                batch[i].Result.TrySetResult(results![i]);
            }
            else
            {
                batch[i].Result.TrySetException(failure);
            }
        }
    }

    private (RedisKey[] Keys, RedisValue[] Values) Pack(Waiting[] batch)
    {
        var keyIndex = new Dictionary<RedisKey, int>(_keysPerItem * 2);
        var keys = new List<RedisKey>(_keysPerItem * 2);
        var values = new RedisValue[1 + (batch.Length * (_keysPerItem + _valuesPerItem))];
        values[0] = batch.Length;
        var p = 1;
        foreach (var item in batch)
        {
            foreach (var key in item.Keys)
            {
                if (!keyIndex.TryGetValue(key, out var index))
                {
                    keys.Add(key);
                    index = keys.Count; // Lua counts from 1
                    keyIndex.Add(key, index);
                }

                values[p++] = index;
            }

            item.Values.CopyTo(values, p);
            p += _valuesPerItem;
        }

        return ([.. keys], values);
    }

    /// <summary>What a batch script runs before its items, per item, and after them.</summary>
    internal sealed record BatchParts(string Prologue, string ItemBody, string Epilogue);

    private sealed class Lane
    {
        public bool InFlight;
        public readonly Queue<Waiting> Queue = new();
    }

    private sealed class Waiting(RedisKey[] keys, RedisValue[] values)
    {
        public RedisKey[] Keys { get; } = keys;

        public RedisValue[] Values { get; } = values;

        public TaskCompletionSource<RedisResult> Result { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
