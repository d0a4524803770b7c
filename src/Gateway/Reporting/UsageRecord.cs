namespace Gateway.Reporting;

/// <summary>The fields of one usage event the report reads. Strings are interned by the parser (one instance per distinct value).</summary>
internal struct UsageRecord
{
    public ulong RequestIdHash;
    public bool HasRequestId;
    public bool IsUsageEvent;

    /// <summary>The <c>@t</c> timestamp's first 10 bytes, <c>YYYY-MM-DD</c>; the full instant only when --from/--to ask for it.</summary>
    public string? Day;
    public DateTime Timestamp;
    public bool HasTimestamp;

    public string? Tenant;
    public string? Model;
    public string? RequestedModel;
    public string? Endpoint;
    public string? Upstream;
    public string? Outcome;
    public string? UsageSource;
    public long StatusCode;
    public long InputTokens;
    public long CachedInputTokens;
    public long OutputTokens;
    public long ReasoningTokens;
    public decimal CostUsd;
    public double DurationMs;
    public bool HasDuration;
}
