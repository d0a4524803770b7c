using System.Collections.Concurrent;
using System.Runtime.CompilerServices;

namespace Gateway.Requests;

/// <summary>
/// Bounds, per tenant and per replica, the request bodies being received at once
/// (<c>Gateway:Limits:MaxConcurrentBodyReadsPerTenant</c>). A body is read before the request can be judged whole, so a
/// tenant that opens many slow uploads would otherwise pin connections and growing buffers without limit.
/// </summary>
internal sealed class BodyReadLimiter
{
    private readonly ConcurrentDictionary<string, StrongBox<int>> _reading = new(StringComparer.Ordinal);

    /// <summary>Takes a place for one body of <paramref name="tenantId"/>; false when <paramref name="limit"/> are already being read.</summary>
    public bool TryEnter(string tenantId, int limit)
    {
        var count = _reading.GetOrAdd(tenantId, static _ => new StrongBox<int>());
        if (Interlocked.Increment(ref count.Value) <= limit)
        {
            return true;
        }

        Interlocked.Decrement(ref count.Value);
        return false;
    }

    public void Exit(string tenantId)
    {
        if (_reading.TryGetValue(tenantId, out var count))
        {
            Interlocked.Decrement(ref count.Value);
        }
    }
}
