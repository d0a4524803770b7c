namespace Gateway.SharedState;

/// <summary>
/// Object ownership in process: which tenant created each response or conversation id, and through which upstream. First
/// writer wins; the owner may lengthen its record (and give it the upstream it lacked), and shortens it only by deleting
/// the object. Bounded like every kind of memory record. Part of <see cref="MemoryStateStore"/>, which sweeps it; kept
/// apart from the quota ledger it shares no state with.
/// </summary>
internal sealed class MemoryOwnershipStore(TimeProvider time, Func<int> capacity, Action onEvicted)
{
    private readonly ExpiringRecords<string, ObjectOwner> _owners = new(capacity, onEvicted);

    public ValueTask RecordOwnerAsync(string objectId, string tenantId, string? upstream, TimeSpan retention)
    {
        var now = time.GetUtcNow();
        _owners.AddOrMerge(objectId, new ObjectOwner(tenantId, upstream), retention == Timeout.InfiniteTimeSpan ? DateTimeOffset.MaxValue : now + retention, now,
            ObjectOwner.Merge);
        return ValueTask.CompletedTask;
    }

    public ValueTask ExpireOwnerAsync(string objectId, string tenantId, TimeSpan keepFor)
    {
        var now = time.GetUtcNow();
        _owners.ExpireNoLaterThan(objectId, new ObjectOwner(tenantId, null), now + keepFor, now, ObjectOwner.SameTenant);
        return ValueTask.CompletedTask;
    }

    public ValueTask<ObjectOwner?> GetOwnerAsync(string objectId) =>
        ValueTask.FromResult(_owners.TryGet(objectId, time.GetUtcNow(), out var owner, out _) ? owner : (ObjectOwner?)null);

    public bool TryGetOwnerRecord(string objectId, out ObjectOwner owner, out DateTimeOffset expiresAt) =>
        _owners.TryGet(objectId, time.GetUtcNow(), out owner, out expiresAt);

    public void RemoveExpired(DateTimeOffset now) => _owners.RemoveExpired(now);
}
