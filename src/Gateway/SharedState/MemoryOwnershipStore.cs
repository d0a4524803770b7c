namespace Gateway.SharedState;

/// <summary>
/// Object ownership in process: which tenant created each response or conversation id. First writer wins; the owner
/// may lengthen its record, and shortens it only by deleting the object. Bounded like every kind of memory record.
/// Part of <see cref="MemoryStateStore"/>, which sweeps it; kept apart from the quota ledger it shares no state with.
/// </summary>
internal sealed class MemoryOwnershipStore(TimeProvider time, Func<int> capacity, Action onEvicted)
{
    private readonly ExpiringRecords<string, string> _owners = new(capacity, onEvicted);

    public ValueTask RecordOwnerAsync(string objectId, string tenantId, TimeSpan retention)
    {
        var now = time.GetUtcNow();
        _owners.AddOrExtend(objectId, tenantId, retention == Timeout.InfiniteTimeSpan ? DateTimeOffset.MaxValue : now + retention, now);
        return ValueTask.CompletedTask;
    }

    public ValueTask ExpireOwnerAsync(string objectId, string tenantId, TimeSpan keepFor)
    {
        var now = time.GetUtcNow();
        _owners.ExpireNoLaterThan(objectId, tenantId, now + keepFor, now);
        return ValueTask.CompletedTask;
    }

    public ValueTask<string?> GetOwnerAsync(string objectId) =>
        ValueTask.FromResult(_owners.TryGet(objectId, time.GetUtcNow(), out var owner, out _) ? owner : null);

    public bool TryGetOwnerRecord(string objectId, out string tenantId, out DateTimeOffset expiresAt) =>
        _owners.TryGet(objectId, time.GetUtcNow(), out tenantId, out expiresAt);

    public void RemoveExpired(DateTimeOffset now) => _owners.RemoveExpired(now);
}
