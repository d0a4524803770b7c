using System.Collections.Concurrent;

namespace Gateway.SharedState;

/// <summary>
/// One kind of record of the memory store (ownership, usage marks, context sizes, held reservations): each expires
/// like a Redis key, and at most <c>capacity()</c> are kept; past that the oldest written is evicted first, so a
/// long-running single instance cannot grow without limit. Reads are lock-free; writes take one short lock that
/// keeps the write order (a queue of (key, sequence); a rewritten key leaves a stale queue entry, skipped on eviction
/// and dropped when the queue is rebuilt). While every record expires in the order it was written (one TTL per kind, the
/// usual case), the sweep pops expired records off the front of that queue and stops at the first live one instead of
/// walking every record; a write that breaks the order (an expiry over a second earlier than one already queued, an
/// expiry moved in place) makes the sweep walk every record, as it always did, until the queue is rebuilt in an order
/// that holds again.
/// </summary>
internal sealed class ExpiringRecords<TKey, TValue>(Func<int> capacity, Action onEvicted)
    where TKey : notnull
{
    private readonly ConcurrentDictionary<TKey, Entry> _entries = new();
    private readonly Lock _gate = new();
    private Queue<(TKey Key, long Sequence)> _order = new();
    private long _sequence;
    private int _live;
    // Writers read the clock before they take the lock, so concurrent writes of one TTL reach the queue a little out of
    // order: an expiry up to this much earlier than the latest queued still counts as in order. The sweep stops at the
    // first live record, so such a record, expired behind a live one, waits for a later sweep (reads never return it).
    private static readonly TimeSpan OrderSlack = TimeSpan.FromSeconds(1);

    private DateTimeOffset _lastQueuedExpiry = DateTimeOffset.MinValue;
    private bool _expiryInWriteOrder = true; // every live record's expiry is that of its queue entry, and never earlier than one before it

    /// <summary>Records held, expired ones not yet swept included.</summary>
    public int Count => Volatile.Read(ref _live);

    public bool TryGet(TKey key, DateTimeOffset now, out TValue value, out DateTimeOffset expiresAt)
    {
        if (_entries.TryGetValue(key, out var entry) && entry.ExpiresAt > now)
        {
            (value, expiresAt) = (entry.Value, entry.ExpiresAt);
            return true;
        }

        (value, expiresAt) = (default!, default);
        return false;
    }

    /// <summary>SET NX: adds, or replaces an expired record; false if a live one exists.</summary>
    public bool TryAdd(TKey key, TValue value, DateTimeOffset expiresAt, DateTimeOffset now)
    {
        lock (_gate)
        {
            var exists = _entries.TryGetValue(key, out var existing);
            if (exists && existing.ExpiresAt > now)
            {
                return false;
            }

            Write(key, value, expiresAt, now, exists);
            return true;
        }
    }

    /// <summary>
    /// Adds the record, or, when a live one exists that <paramref name="merge"/> calls the same (e.g. the same owner),
    /// keeps the value it returns and moves the expiry later (never earlier). A live record it does not call the same
    /// is left alone (false).
    /// </summary>
    public bool AddOrMerge(TKey key, TValue value, DateTimeOffset expiresAt, DateTimeOffset now, Func<TValue, TValue, (bool Same, TValue Kept)> merge)
    {
        lock (_gate)
        {
            var exists = _entries.TryGetValue(key, out var existing);
            if (exists && existing.ExpiresAt > now)
            {
                var (same, kept) = merge(existing.Value, value);
                if (!same)
                {
                    return false;
                }

                if (expiresAt > existing.ExpiresAt || !EqualityComparer<TValue>.Default.Equals(kept, existing.Value))
                {
                    if (expiresAt > existing.ExpiresAt)
                    {
                        _expiryInWriteOrder = false; // moved in place: its queue entry no longer says when it expires
                    }

                    _entries[key] = existing with { Value = kept, ExpiresAt = expiresAt > existing.ExpiresAt ? expiresAt : existing.ExpiresAt };
                }

                return true;
            }

            Write(key, value, expiresAt, now, exists);
            return true;
        }
    }

    /// <summary>Brings a live record that <paramref name="same"/> matches with <paramref name="value"/> to expire no later than <paramref name="expiresAt"/>.</summary>
    public void ExpireNoLaterThan(TKey key, TValue value, DateTimeOffset expiresAt, DateTimeOffset now, Func<TValue, TValue, bool> same)
    {
        lock (_gate)
        {
            if (_entries.TryGetValue(key, out var existing) && existing.ExpiresAt > now && existing.ExpiresAt > expiresAt
                && same(existing.Value, value))
            {
                _expiryInWriteOrder = false; // moved in place: its queue entry no longer says when it expires
                _entries[key] = existing with { ExpiresAt = expiresAt };
            }
        }
    }

    /// <summary>Adds or overwrites (SET).</summary>
    public void Set(TKey key, TValue value, DateTimeOffset expiresAt, DateTimeOffset now)
    {
        lock (_gate)
        {
            Write(key, value, expiresAt, now, _entries.ContainsKey(key));
        }
    }

    public bool TryRemove(TKey key, out TValue value, out DateTimeOffset expiresAt)
    {
        lock (_gate)
        {
            if (_entries.TryRemove(key, out var entry))
            {
                _live--;
                (value, expiresAt) = (entry.Value, entry.ExpiresAt);
                return true;
            }
        }

        (value, expiresAt) = (default!, default);
        return false;
    }

    public void RemoveExpired(DateTimeOffset now)
    {
        if (RemoveExpiredInWriteOrder(now))
        {
            return;
        }

        foreach (var (key, entry) in _entries)
        {
            if (entry.ExpiresAt > now)
            {
                continue;
            }

            lock (_gate)
            {
                if (_entries.TryGetValue(key, out var current) && current.Sequence == entry.Sequence && current.ExpiresAt <= now)
                {
                    _entries.TryRemove(key, out _);
                    _live--;
                }
            }
        }

        lock (_gate)
        {
            CompactIfStale();
        }
    }

    /// <summary>
    /// While expiry follows write order: pops expired records (and stale entries) off the front of the queue, up to the
    /// first live record, in short holds of the lock. False (nothing done) when the order does not hold.
    /// </summary>
    private bool RemoveExpiredInWriteOrder(DateTimeOffset now)
    {
        while (true)
        {
            lock (_gate)
            {
                if (!_expiryInWriteOrder)
                {
                    return false;
                }

                for (var popped = 0; popped < 1024; popped++)
                {
                    if (!_order.TryPeek(out var oldest))
                    {
                        return true;
                    }

                    if (_entries.TryGetValue(oldest.Key, out var entry) && entry.Sequence == oldest.Sequence)
                    {
                        if (entry.ExpiresAt > now)
                        {
                            return true; // everything behind it expires no earlier
                        }

                        _entries.TryRemove(oldest.Key, out _);
                        _live--;
                    }

                    _order.Dequeue();
                }
            }
        }
    }

    // Under _gate. exists: whether the dictionary holds the key (live or expired), as the caller just looked it up.
    private void Write(TKey key, TValue value, DateTimeOffset expiresAt, DateTimeOffset now, bool exists)
    {
        var sequence = ++_sequence;
        if (!exists)
        {
            _live++;
        }

        _entries[key] = new Entry(value, expiresAt, sequence);
        _order.Enqueue((key, sequence));
        NoteQueuedExpiry(expiresAt);

        var max = Math.Max(1, capacity());
        while (_live > max && _order.TryDequeue(out var oldest))
        {
            if (_entries.TryGetValue(oldest.Key, out var entry) && entry.Sequence == oldest.Sequence)
            {
                _entries.TryRemove(oldest.Key, out _);
                _live--;
                if (entry.ExpiresAt > now)
                {
                    onEvicted();
                }
            }
        }

        CompactIfStale();
    }

    // Under _gate: rebuilt, in write order, once rewritten and removed keys make up most of the queue.
    private void CompactIfStale()
    {
        if (_order.Count <= (2 * _live) + 1024)
        {
            return;
        }

        var live = new List<(TKey Key, long Sequence, DateTimeOffset ExpiresAt)>(_live);
        foreach (var (key, entry) in _entries)
        {
            live.Add((key, entry.Sequence, entry.ExpiresAt));
        }

        live.Sort(static (a, b) => a.Sequence.CompareTo(b.Sequence));
        _order = new Queue<(TKey Key, long Sequence)>(live.Count);
        _expiryInWriteOrder = true;
        _lastQueuedExpiry = DateTimeOffset.MinValue;
        foreach (var (key, sequence, expiresAt) in live)
        {
            _order.Enqueue((key, sequence));
            NoteQueuedExpiry(expiresAt);
        }
    }

    // Under _gate: the order holds while no expiry queued is more than OrderSlack earlier than the latest before it.
    private void NoteQueuedExpiry(DateTimeOffset expiresAt)
    {
        if (expiresAt.UtcTicks < _lastQueuedExpiry.UtcTicks - OrderSlack.Ticks)
        {
            _expiryInWriteOrder = false;
        }
        else if (expiresAt > _lastQueuedExpiry)
        {
            _lastQueuedExpiry = expiresAt;
        }
    }

    // A struct: stored inline in the dictionary node, one object fewer per record for the GC to trace.
    private readonly record struct Entry(TValue Value, DateTimeOffset ExpiresAt, long Sequence);
}
