namespace Gateway.Quotas;

/// <summary>The tenant's per-minute standing after a request was admitted; becomes the x-ratelimit-* headers.</summary>
internal sealed record QuotaStatus(
    long? RequestLimit,
    long RequestRemaining,
    TimeSpan RequestReset,
    long? TokenLimit,
    long TokenRemaining,
    TimeSpan TokenReset);
