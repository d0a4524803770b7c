using System.Collections.Frozen;
using Gateway.Configuration;

namespace Gateway.Tenants;

/// <summary>An authenticated tenant, as configured at the moment its request arrived (immutable).</summary>
internal sealed class Tenant
{
    public Tenant(string id, TenantOptions options)
    {
        Id = id;
        Limits = options.Limits;
        MaxOutputTokens = options.MaxOutputTokens;
        AllowedModels = options.Models.Count == 0 ? null : options.Models.ToFrozenSet(StringComparer.Ordinal);
    }

    public string Id { get; }

    public TenantLimitsOptions Limits { get; }

    public int? MaxOutputTokens { get; }

    /// <summary>Null when every model is allowed.</summary>
    public FrozenSet<string>? AllowedModels { get; }

    public bool IsModelAllowed(string model) => AllowedModels is null || AllowedModels.Contains(model);
}
