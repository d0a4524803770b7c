using System.Collections.Concurrent;

namespace FakeUpstream;

/// <summary>Id → object store with FIFO eviction beyond a capacity, so a long benchmark run cannot grow memory without bound.</summary>
internal sealed class ObjectStore<T>(int capacity)
    where T : class
{
    private readonly ConcurrentDictionary<string, T> _items = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<string> _order = new();
    private readonly int _capacity = Math.Max(1, capacity);
    private int _count;

    public ICollection<T> Values => _items.Values;

    public void Add(string id, T item)
    {
        if (!_items.TryAdd(id, item))
        {
            return;
        }

        _order.Enqueue(id);
        if (Interlocked.Increment(ref _count) > _capacity || _order.Count > 2 * _capacity)
        {
            EvictOldest();
        }
    }

    public T? Get(string id) => _items.GetValueOrDefault(id);

    public bool TryRemove(string id, out T? item)
    {
        if (_items.TryRemove(id, out item))
        {
            Interlocked.Decrement(ref _count);
            return true;
        }

        return false;
    }

    private void EvictOldest()
    {
        // Ids of already deleted objects are skipped: they no longer count.
        while (_order.TryDequeue(out var oldest))
        {
            if (TryRemove(oldest, out _))
            {
                return;
            }
        }
    }
}
