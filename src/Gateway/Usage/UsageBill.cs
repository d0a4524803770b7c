namespace Gateway.Usage;

/// <summary>Where a usage event's token numbers come from (its <c>UsageSource</c>).</summary>
internal enum UsageSource
{
    None,
    Upstream,
    Estimated,
    Correction,
}

/// <summary>What one request is billed: the upstream's numbers, an estimate, a correction of an earlier estimate, or nothing.</summary>
internal sealed record UsageBill(UsageSource Source, long? InputTokens, long? CachedInputTokens, long? OutputTokens, long? ReasoningTokens, long? TotalTokens, decimal? CostUsd)
{
    public static readonly UsageBill None = new(UsageSource.None, null, null, null, null, null, null);

    public string SourceText => Source switch
    {
        UsageSource.Upstream => "upstream",
        UsageSource.Estimated => "estimated",
        UsageSource.Correction => "correction",
        _ => "none",
    };
}
