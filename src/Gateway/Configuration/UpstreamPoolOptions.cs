using System.ComponentModel;
using System.Globalization;

namespace Gateway.Configuration;

/// <summary>One entry of <c>Gateway:Upstreams:{name}</c>: an OpenAI or Azure OpenAI endpoint of the pool.</summary>
internal sealed class PoolUpstreamOptions
{
    /// <summary>The upstream's <c>/v1</c> equivalent, e.g. <c>https://a.openai.azure.com/openai/v1</c>.</summary>
    public string? BaseUrl { get; init; }

    public string? ApiKey { get; init; }

    /// <summary>A mounted secret holding the key; re-read every few seconds so a rotated secret applies without restart.</summary>
    public string? ApiKeyFile { get; init; }

    /// <summary>Name of an environment variable holding the key.</summary>
    public string? ApiKeyEnvironmentVariable { get; init; }

    public UpstreamAuthHeader AuthHeader { get; init; } = UpstreamAuthHeader.Authorization;

    public string? Organization { get; init; }

    public string? Project { get; init; }

    /// <summary>Lower first; a higher group only gets traffic when the lower ones cannot take it.</summary>
    public int Priority { get; init; } = 1;

    /// <summary>Share of traffic within the priority group.</summary>
    public int Weight { get; init; } = 1;

    /// <summary>Client model → the model or deployment name this upstream expects. When present, the upstream serves only these models.</summary>
    public Dictionary<string, string>? Models { get; init; }

    /// <summary>Factor on the list price of this upstream's tokens (0 for a provisioned/PTU deployment paid for anyway).</summary>
    public decimal PriceMultiplier { get; init; } = 1m;

    public TimeSpan ActivityTimeout { get; init; } = TimeSpan.FromMinutes(10);

    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary><c>auto</c>, <c>1.1</c> or <c>2</c>, as <c>Gateway:Upstream:HttpVersion</c>.</summary>
    public string HttpVersion { get; init; } = "auto";

    public bool UseSystemProxy { get; init; }
}

/// <summary>How an upstream is authenticated. Written <c>Authorization</c>, <c>api-key</c> or <c>AzureIdentity</c> in configuration.</summary>
[TypeConverter(typeof(UpstreamAuthHeaderConverter))]
internal enum UpstreamAuthHeader
{
    /// <summary><c>Authorization: Bearer key</c> (OpenAI).</summary>
    Authorization,

    /// <summary><c>api-key: key</c> (Azure OpenAI key authentication).</summary>
    ApiKey,

    /// <summary><c>Authorization: Bearer token</c> with a Microsoft Entra token for Cognitive Services (managed identity, workload identity…).</summary>
    AzureIdentity,
}

/// <summary>Binds <c>"api-key"</c> (the header's own spelling, as in <c>Gateway:Upstream:AuthHeader</c>) besides the member names.</summary>
internal sealed class UpstreamAuthHeaderConverter : EnumConverter
{
    public UpstreamAuthHeaderConverter()
        : base(typeof(UpstreamAuthHeader))
    {
    }

    public override object? ConvertFrom(ITypeDescriptorContext? context, CultureInfo? culture, object value) =>
        value is string text ? Parse(text) : base.ConvertFrom(context, culture, value);

    public static UpstreamAuthHeader Parse(string text) => text.Trim().ToUpperInvariant() switch
    {
        "AUTHORIZATION" => UpstreamAuthHeader.Authorization,
        "API-KEY" or "APIKEY" => UpstreamAuthHeader.ApiKey,
        "AZUREIDENTITY" => UpstreamAuthHeader.AzureIdentity,
        _ => throw new FormatException($"'{text}' is not an upstream AuthHeader; use \"Authorization\" (OpenAI), \"api-key\" (Azure OpenAI key) or \"AzureIdentity\" (Microsoft Entra token)."),
    };
}

/// <summary><c>Gateway:Routing</c>: failover and cooldown among the pool's upstreams.</summary>
internal sealed class RoutingOptions
{
    /// <summary>Upstreams one request may be sent to before the gateway gives up (failover happens only before the first byte).</summary>
    public int MaxAttempts { get; init; } = 3;

    /// <summary>How long an upstream cools after a 429 without a reset hint, or after too many failures.</summary>
    public TimeSpan CooldownWithoutHint { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Consecutive 5xx, connect failures or timeouts that cool the whole upstream.</summary>
    public int FailuresBeforeCooldown { get; init; } = 3;
}
