using Gateway.SharedState;

namespace Gateway.Tests.SharedState;

/// <summary>
/// The memory store's bounded record table: at most <c>capacity</c> records, the oldest written evicted first (and
/// counted), expired records neither counted as evictions nor kept, and rewrites of one key never letting the
/// write-order queue grow without limit.
/// </summary>
public sealed class ExpiringRecordsTests
{
    private static readonly DateTimeOffset Now = new(2031, 3, 12, 10, 15, 30, TimeSpan.Zero);
    private static readonly DateTimeOffset Later = Now.AddDays(45);

    [Fact]
    public void TryAdd_PastCapacity_OldestWrittenEvictedFirstAndCounted()
    {
        var evictions = 0;
        var records = new ExpiringRecords<string, string>(() => 3, () => evictions++);
        foreach (var id in new[] { "a", "b", "c", "d", "e" })
        {
            Assert.True(records.TryAdd(id, "tenant", Later, Now));
        }

        Assert.Equal(3, records.Count);
        Assert.Equal(2, evictions);
        Assert.False(records.TryGet("a", Now, out _, out _));
        Assert.False(records.TryGet("b", Now, out _, out _));
        Assert.True(records.TryGet("c", Now, out _, out _));
        Assert.True(records.TryGet("d", Now, out _, out _));
        Assert.True(records.TryGet("e", Now, out _, out _));
    }

    [Fact]
    public void Set_RewrittenKey_MovesToTheBackOfTheQueue()
    {
        var records = new ExpiringRecords<string, long>(() => 2, () => { });
        records.Set("a", 1, Later, Now);
        records.Set("b", 2, Later, Now);
        records.Set("a", 3, Later, Now); // a is now the newest

        records.Set("c", 4, Later, Now);

        Assert.False(records.TryGet("b", Now, out _, out _));
        Assert.True(records.TryGet("a", Now, out var a, out _));
        Assert.Equal(3, a);
    }

    [Fact]
    public void AddOrMerge_SameOwnerLengthens_OtherOwnerChangesNothing_NeverShortens()
    {
        var records = new ExpiringRecords<string, string>(() => 10, () => { });
        static (bool Same, string Kept) SameOwner(string existing, string incoming) => (existing == incoming, existing);
        static bool IsOwner(string existing, string given) => existing == given;
        Assert.True(records.AddOrMerge("conv", "tenant-a", Now.AddHours(1), Now, SameOwner));

        Assert.False(records.AddOrMerge("conv", "tenant-b", DateTimeOffset.MaxValue, Now, SameOwner));
        Assert.True(records.AddOrMerge("conv", "tenant-a", DateTimeOffset.MaxValue, Now, SameOwner));
        Assert.True(records.AddOrMerge("conv", "tenant-a", Now.AddHours(1), Now, SameOwner));

        Assert.True(records.TryGet("conv", Now.AddYears(5), out var owner, out var expiresAt));
        Assert.Equal(("tenant-a", DateTimeOffset.MaxValue), (owner, expiresAt));

        records.ExpireNoLaterThan("conv", "tenant-b", Now.AddHours(2), Now, IsOwner); // not its owner
        Assert.Equal(DateTimeOffset.MaxValue, records.TryGet("conv", Now, out _, out var unchanged) ? unchanged : default);
        records.ExpireNoLaterThan("conv", "tenant-a", Now.AddHours(2), Now, IsOwner);
        Assert.False(records.TryGet("conv", Now.AddHours(3), out _, out _));
    }

    [Fact]
    public void Write_ExpiredRecordPushedOut_IsNotCountedAsAnEviction()
    {
        var evictions = 0;
        var records = new ExpiringRecords<string, string>(() => 1, () => evictions++);
        records.TryAdd("old", "tenant", Now.AddSeconds(1), Now);

        records.TryAdd("new", "tenant", Later, Now.AddSeconds(2));

        Assert.Equal(0, evictions);
        Assert.Equal(1, records.Count);
    }

    [Fact]
    public void RemoveExpired_AndManyRewrites_CountStaysExactAndEvictionStillOldestFirst()
    {
        var evictions = 0;
        var records = new ExpiringRecords<(string, string), long>(() => 100, () => evictions++);
        for (var i = 0; i < 50_000; i++)
        {
            records.Set(("tenant", "resp_" + (i % 100)), i, Later, Now); // 100 keys rewritten 500 times each
        }

        Assert.Equal(100, records.Count);
        Assert.Equal(0, evictions);

        records.Set(("tenant", "resp_new"), 0, Now.AddSeconds(1), Now);
        Assert.Equal(1, evictions);
        Assert.False(records.TryGet(("tenant", "resp_0"), Now, out _, out _)); // resp_0 was last written longest ago

        records.RemoveExpired(Now.AddSeconds(2));
        Assert.Equal(99, records.Count);
    }

    // The sweep pops expired records off the front of the write-order queue while expiry follows write order (#15);
    // these fail on a sweep that always stops at the first live record in write order.
    private static (bool Same, string Kept) SameOwner(string existing, string incoming) => (existing == incoming, existing);

    [Fact]
    public void RemoveExpired_ExpiryInWriteOrder_RemovesExactlyTheExpired()
    {
        var records = new ExpiringRecords<string, long>(() => 10, () => { });
        records.Set("a", 1, Now.AddSeconds(1), Now);
        records.Set("b", 2, Now.AddSeconds(2), Now);
        records.Set("c", 3, Now.AddSeconds(3), Now);

        records.RemoveExpired(Now.AddSeconds(2));

        Assert.Equal(1, records.Count);
        Assert.True(records.TryGet("c", Now, out var c, out _));
        Assert.Equal(3, c);
    }

    [Fact]
    public void RemoveExpired_KeyRewrittenBeforeItExpired_KeepsTheNewRecord()
    {
        var records = new ExpiringRecords<string, long>(() => 10, () => { });
        records.Set("a", 1, Now.AddSeconds(1), Now);
        records.Set("b", 2, Now.AddSeconds(2), Now);
        records.Set("a", 3, Now.AddSeconds(5), Now); // its first queue entry is now stale

        records.RemoveExpired(Now.AddSeconds(3));

        Assert.Equal(1, records.Count);
        Assert.True(records.TryGet("a", Now.AddSeconds(3), out var a, out var expiresAt));
        Assert.Equal((3, Now.AddSeconds(5)), (a, expiresAt));
        records.RemoveExpired(Now.AddSeconds(5));
        Assert.Equal(0, records.Count);
    }

    [Fact]
    public void RemoveExpired_KeyRemovedAndAddedAgain_KeepsTheNewRecord()
    {
        var records = new ExpiringRecords<string, string>(() => 10, () => { });
        Assert.True(records.TryAdd("a", "tenant-a", Now.AddSeconds(1), Now));
        Assert.True(records.TryRemove("a", out _, out _));
        Assert.True(records.TryAdd("b", "tenant-b", Now.AddSeconds(2), Now));
        Assert.True(records.TryAdd("a", "tenant-c", Now.AddSeconds(10), Now));

        records.RemoveExpired(Now.AddSeconds(3));

        Assert.Equal(1, records.Count);
        Assert.True(records.TryGet("a", Now.AddSeconds(3), out var owner, out _));
        Assert.Equal("tenant-c", owner);
    }

    [Fact]
    public void RemoveExpired_LaterWriteExpiresFirst_StillRemoved()
    {
        // A conversation's record never expires; the responses written after it do.
        var records = new ExpiringRecords<string, string>(() => 10, () => { });
        records.AddOrMerge("conv", "tenant", DateTimeOffset.MaxValue, Now, SameOwner);
        records.AddOrMerge("resp", "tenant", Now.AddSeconds(1), Now, SameOwner);

        records.RemoveExpired(Now.AddSeconds(2));

        Assert.Equal(1, records.Count);
        Assert.True(records.TryGet("conv", Now.AddSeconds(2), out _, out _));
    }

    [Fact]
    public void RemoveExpired_ExpiryLengthenedInPlace_LaterRecordsStillRemoved()
    {
        var records = new ExpiringRecords<string, string>(() => 10, () => { });
        records.AddOrMerge("a", "tenant", Now.AddSeconds(1), Now, SameOwner);
        records.AddOrMerge("b", "tenant", Now.AddSeconds(2), Now, SameOwner);
        records.AddOrMerge("a", "tenant", Later, Now, SameOwner); // lengthened, still first in write order

        records.RemoveExpired(Now.AddSeconds(3));

        Assert.Equal(1, records.Count);
        Assert.True(records.TryGet("a", Now.AddSeconds(3), out _, out _));
    }

    [Fact]
    public void RemoveExpired_ExpiryShortenedInPlace_Removed()
    {
        var records = new ExpiringRecords<string, string>(() => 10, () => { });
        records.AddOrMerge("a", "tenant", Later, Now, SameOwner);
        records.AddOrMerge("b", "tenant", Later, Now, SameOwner);
        records.ExpireNoLaterThan("b", "tenant", Now.AddSeconds(1), Now, static (existing, given) => existing == given);

        records.RemoveExpired(Now.AddSeconds(2));

        Assert.Equal(1, records.Count);
        Assert.True(records.TryGet("a", Now.AddSeconds(2), out _, out _));
    }

    [Fact]
    public void RemoveExpired_ManyExpiredInWriteOrder_AllRemovedInOneSweep()
    {
        // More than one hold of the lock's worth (1,024) of expired records, behind stale entries of rewritten keys.
        var records = new ExpiringRecords<string, long>(() => 100_000, () => { });
        for (var i = 0; i < 5_000; i++)
        {
            records.Set("k" + (i % 3_000), i, Now.AddMilliseconds(i), Now);
        }

        records.RemoveExpired(Now.AddMilliseconds(4_000));

        Assert.Equal(999, records.Count); // keys written last at 4,001..4,999 ms
        records.RemoveExpired(Now.AddSeconds(10));
        Assert.Equal(0, records.Count);
    }

    [Fact]
    public void RemoveExpired_ConcurrentWritesSlightlyOutOfOrder_SweepStaysInWriteOrder()
    {
        // Two writers read the clock, then the later one takes the lock first: 100 ms out of order. Before, any such
        // write switched the store to walking every record on every sweep for good (seen in the bench's profile).
        var records = new ExpiringRecords<string, long>(() => 10, () => { });
        records.Set("a", 1, Now.AddSeconds(2), Now);
        records.Set("b", 2, Now.AddSeconds(1.9), Now);

        records.RemoveExpired(Now.AddSeconds(1.95));
        Assert.Equal(2, records.Count); // b is expired (reads miss it) but waits behind the live a, as a walk would not
        Assert.False(records.TryGet("b", Now.AddSeconds(1.95), out _, out _));

        records.RemoveExpired(Now.AddSeconds(2));
        Assert.Equal(0, records.Count);
    }

    [Fact]
    public void RemoveExpired_WriteFarOutOfOrder_StillRemovedAtOnce()
    {
        var records = new ExpiringRecords<string, long>(() => 10, () => { });
        records.Set("a", 1, Now.AddSeconds(5), Now);
        records.Set("b", 2, Now.AddSeconds(2), Now); // 3 s earlier than a: past the slack, the sweep walks

        records.RemoveExpired(Now.AddSeconds(3));

        Assert.Equal(1, records.Count);
        Assert.True(records.TryGet("a", Now.AddSeconds(3), out _, out _));
    }
}
