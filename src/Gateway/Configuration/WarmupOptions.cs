namespace Gateway.Configuration;

/// <summary>
/// The <c>Gateway:Warmup</c> section: before the port opens, the gateway drives its own pipeline with synthetic
/// requests (a private copy of itself in front of an in-process canned upstream) so the hot paths are compiled to
/// tier 1 before the first real request. Read once at start.
/// </summary>
internal sealed class WarmupOptions
{
    public const double DefaultMaxSeconds = 10;

    public const double LargestMaxSeconds = 120;

    /// <summary>On by default; tests and tools that start many short-lived gateways turn it off.</summary>
    public bool Enabled { get; init; } = true;

    /// <summary>Longest the warm-up may delay the opening of the port; it usually ends earlier, once the JIT settles.</summary>
    public double MaxSeconds { get; init; } = DefaultMaxSeconds;
}
