using System.Runtime.CompilerServices;

namespace Gateway.Reporting;

/// <summary>The dimensions a report can group by, in output order.</summary>
[Flags]
internal enum ReportDimensions
{
    None = 0,
    Tenant = 1,
    Model = 2,
    Day = 4,
    Upstream = 8,
    Endpoint = 16,
}

/// <summary>One group's key: the selected dimensions' values (null for the others).</summary>
internal readonly record struct ReportKey(string? Tenant, string? Model, string? Day, string? Upstream, string? Endpoint);

/// <summary>
/// Compares keys by string identity: every value comes from the parser's interner (or is a literal, interned by the
/// runtime), so equal text is the same instance, and the per-line lookup hashes five references instead of five strings.
/// </summary>
internal sealed class InternedKeyComparer : IEqualityComparer<ReportKey>
{
    public static readonly InternedKeyComparer Instance = new();

    public bool Equals(ReportKey x, ReportKey y) =>
        ReferenceEquals(x.Tenant, y.Tenant) && ReferenceEquals(x.Model, y.Model) && ReferenceEquals(x.Day, y.Day)
        && ReferenceEquals(x.Upstream, y.Upstream) && ReferenceEquals(x.Endpoint, y.Endpoint);

    public int GetHashCode(ReportKey key) => HashCode.Combine(
        RuntimeHelpers.GetHashCode(key.Tenant), RuntimeHelpers.GetHashCode(key.Model), RuntimeHelpers.GetHashCode(key.Day),
        RuntimeHelpers.GetHashCode(key.Upstream), RuntimeHelpers.GetHashCode(key.Endpoint));
}

/// <summary>One group's totals.</summary>
internal sealed class ReportRow
{
    public long Requests { get; set; }

    public long InputTokens { get; set; }

    public long CachedInputTokens { get; set; }

    public long OutputTokens { get; set; }

    public long ReasoningTokens { get; set; }

    public decimal CostUsd { get; set; }

    public long Errors { get; set; }

    /// <summary>Requests whose usage the gateway estimated (UsageSource "estimated").</summary>
    public long Estimated { get; set; }

    public DurationHistogram Durations { get; } = new();

    /// <summary>Share of the requests whose usage was estimated, 0..1.</summary>
    public double EstimatedShare => Requests == 0 ? 0 : (double)Estimated / Requests;

    public void Add(in UsageRecord record)
    {
        Requests++;
        InputTokens += record.InputTokens;
        CachedInputTokens += record.CachedInputTokens;
        OutputTokens += record.OutputTokens;
        ReasoningTokens += record.ReasoningTokens;
        CostUsd += record.CostUsd;
        if (IsError(record))
        {
            Errors++;
        }

        if (record.UsageSource == "estimated")
        {
            Estimated++;
        }

        if (record.HasDuration)
        {
            Durations.Add(record.DurationMs);
        }
    }

    /// <summary>An error: an error status, or a stream that failed after a 200 (outcome upstream_error or failed).</summary>
    public static bool IsError(in UsageRecord record) =>
        record.StatusCode >= 400 || record.Outcome is "upstream_error" or "failed";
}

/// <summary>
/// Aggregates usage events into groups: streaming (one line at a time), counting every request once by RequestId across
/// all inputs (several replicas' logs, overlapping files), within an optional [from, to) UTC range.
/// </summary>
internal sealed class UsageReport(ReportDimensions dimensions, DateTime? from, DateTime? to)
{
    public const string DefaultUpstream = "default";

    private readonly Dictionary<ReportKey, ReportRow> _rows = new(InternedKeyComparer.Instance);
    private readonly RequestIdSet _seen = new();

    public ReportDimensions Dimensions => dimensions;

    public long Lines { get; private set; }

    public long Counted { get; private set; }

    public long Duplicates { get; private set; }

    /// <summary>Lines that are not usage events (other log lines, broken JSON, truncated lines).</summary>
    public long Skipped { get; private set; }

    public long OutsideRange { get; private set; }

    public IReadOnlyDictionary<ReportKey, ReportRow> Rows => _rows;

    public bool NeedsTimestamps => from is not null || to is not null;

    public void Add(in UsageRecord record, bool isUsageEvent)
    {
        Lines++;
        if (!isUsageEvent)
        {
            Skipped++;
            return;
        }

        if (NeedsTimestamps && (!record.HasTimestamp || record.Timestamp < from || record.Timestamp >= to))
        {
            OutsideRange++;
            return;
        }

        // An event without a RequestId cannot be deduplicated; it is counted (the gateway always writes one).
        if (record.HasRequestId && !_seen.Add(record.RequestIdHash))
        {
            Duplicates++;
            return;
        }

        Counted++;
        var key = new ReportKey(
            dimensions.HasFlag(ReportDimensions.Tenant) ? record.Tenant ?? "" : null,
            dimensions.HasFlag(ReportDimensions.Model) ? record.Model ?? record.RequestedModel ?? "" : null,
            dimensions.HasFlag(ReportDimensions.Day) ? record.Day ?? "" : null,
            dimensions.HasFlag(ReportDimensions.Upstream) ? record.Upstream ?? DefaultUpstream : null,
            dimensions.HasFlag(ReportDimensions.Endpoint) ? record.Endpoint ?? "" : null);
        if (!_rows.TryGetValue(key, out var row))
        {
            row = new ReportRow();
            _rows[key] = row;
        }

        row.Add(record);
    }

    /// <summary>The groups in dimension order (ordinal).</summary>
    public IEnumerable<KeyValuePair<ReportKey, ReportRow>> Sorted() => _rows
        .OrderBy(r => r.Key.Tenant, StringComparer.Ordinal)
        .ThenBy(r => r.Key.Model, StringComparer.Ordinal)
        .ThenBy(r => r.Key.Day, StringComparer.Ordinal)
        .ThenBy(r => r.Key.Upstream, StringComparer.Ordinal)
        .ThenBy(r => r.Key.Endpoint, StringComparer.Ordinal);
}
