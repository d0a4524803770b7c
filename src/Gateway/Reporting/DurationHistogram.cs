namespace Gateway.Reporting;

/// <summary>
/// Durations in log-spaced buckets (32 per doubling, 1 µs to ~4.6 h): percentiles in fixed memory per group, within
/// ±1.1 % of the exact value (the bucket's geometric middle is reported). Exact percentiles would need every duration.
/// </summary>
internal sealed class DurationHistogram
{
    private const int BucketsPerDoubling = 32;
    private const int MinExponent = -10; // 2^-10 ms ≈ 1 µs
    private const int MaxExponent = 24; // 2^24 ms ≈ 4.6 h
    private const int BucketCount = (MaxExponent - MinExponent) * BucketsPerDoubling;

    // int counts: 4 KiB per group; a group would need 2^31 requests in one bucket to overflow.
    private readonly int[] _counts = new int[BucketCount];

    public long Count { get; private set; }

    public void Add(double milliseconds)
    {
        var index = milliseconds <= 0 ? 0 : (int)((Math.Log2(milliseconds) - MinExponent) * BucketsPerDoubling);
        _counts[Math.Clamp(index, 0, BucketCount - 1)]++;
        Count++;
    }

    public void Merge(DurationHistogram other)
    {
        for (var i = 0; i < BucketCount; i++)
        {
            _counts[i] += other._counts[i];
        }

        Count += other.Count;
    }

    /// <summary>The value below which <paramref name="quantile"/> of the durations fall (nearest rank), or null when empty.</summary>
    public double? Percentile(double quantile)
    {
        if (Count == 0)
        {
            return null;
        }

        var rank = Math.Max(1, (long)Math.Ceiling(quantile * Count));
        long seen = 0;
        for (var i = 0; i < BucketCount; i++)
        {
            seen += _counts[i];
            if (seen >= rank)
            {
                return Math.Pow(2, MinExponent + ((i + 0.5) / BucketsPerDoubling));
            }
        }

        return Math.Pow(2, MaxExponent);
    }
}
