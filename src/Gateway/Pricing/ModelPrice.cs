namespace Gateway.Pricing;

/// <summary>USD per 1M tokens. Cached input is billed at its own price; reasoning tokens are part of the output.</summary>
internal readonly record struct ModelPrice(decimal Input, decimal CachedInput, decimal Output)
{
    private const decimal TokensPerUnit = 1_000_000m;

    /// <summary>Decimal places of every cost the gateway writes (micro-dollars).</summary>
    public const int CostDecimals = 6;

    /// <summary>
    /// The cost of one request: cached input at the cached price, the rest of the input at the input price, the output
    /// at the output price, times the upstream's multiplier, rounded half away from zero to micro-dollars.
    /// </summary>
    public decimal Cost(long input, long cachedInput, long output, decimal multiplier)
    {
        input = Math.Max(0, input);
        cachedInput = Math.Clamp(cachedInput, 0, input);
        output = Math.Max(0, output);
        var perMillion = ((input - cachedInput) * Input) + (cachedInput * CachedInput) + (output * Output);
        return Math.Round(perMillion * multiplier / TokensPerUnit, CostDecimals, MidpointRounding.AwayFromZero);
    }
}
