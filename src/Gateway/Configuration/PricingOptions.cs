namespace Gateway.Configuration;

/// <summary>The <c>Gateway:Pricing</c> section: which price file, and single-model overrides on top of it.</summary>
internal sealed class PricingOptions
{
    public const string DefaultFile = "pricing.json";

    /// <summary>The price file; relative paths are resolved against the configuration's directory, then the binary's.</summary>
    public string? File { get; init; }

    /// <summary>Per-model overrides (USD per 1M tokens), e.g. a negotiated price or a model the file lacks.</summary>
    public Dictionary<string, ModelPriceOptions> Models { get; init; } = new(StringComparer.Ordinal);
}

internal sealed class ModelPriceOptions
{
    public decimal? Input { get; init; }

    /// <summary>Absent: cached input costs the input price.</summary>
    public decimal? CachedInput { get; init; }

    public decimal? Output { get; init; }
}
