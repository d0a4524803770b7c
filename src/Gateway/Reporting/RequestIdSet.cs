using System.Numerics;

namespace Gateway.Reporting;

/// <summary>
/// The request ids already counted, as 64-bit hashes in one open-addressing table: 8 bytes per distinct request at
/// full load, 16 at worst, instead of a string each. Exact dedupe needs memory per distinct request (no constant-memory
/// way exists); this keeps it small. Two different ids collide with probability about n²/2⁶⁵ (one in ~37 million for a
/// billion requests), in which case one request would be dropped as a duplicate.
/// </summary>
internal sealed class RequestIdSet
{
    // 0 marks an empty slot; the one hash that is 0 is remembered apart.
    private ulong[] _slots = new ulong[1 << 16];
    private bool _hasZero;

    public long Count { get; private set; }

    /// <summary>Adds the hash; false when it was already there.</summary>
    public bool Add(ulong hash)
    {
        if (hash == 0)
        {
            if (_hasZero)
            {
                return false;
            }

            _hasZero = true;
            Count++;
            return true;
        }

        if (Count * 4 >= _slots.Length * 3L)
        {
            Grow();
        }

        if (!Insert(_slots, hash))
        {
            return false;
        }

        Count++;
        return true;
    }

    private static bool Insert(ulong[] slots, ulong hash)
    {
        var mask = slots.Length - 1;
        // The hash is already uniform (xxHash3): its low bits pick the slot; linear probing from there.
        for (var i = (int)(hash & (ulong)mask); ; i = (i + 1) & mask)
        {
            var slot = slots[i];
            if (slot == hash)
            {
                return false;
            }

            if (slot == 0)
            {
                slots[i] = hash;
                return true;
            }
        }
    }

    private void Grow()
    {
        var next = new ulong[BitOperations.RoundUpToPowerOf2((uint)_slots.Length * 2)];
        foreach (var hash in _slots)
        {
            if (hash != 0)
            {
                Insert(next, hash);
            }
        }

        _slots = next;
    }
}
