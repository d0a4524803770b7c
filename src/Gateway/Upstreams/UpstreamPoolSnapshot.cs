using System.Collections.Frozen;
using Gateway.Configuration;

namespace Gateway.Upstreams;

/// <summary>
/// The pool as one configuration made it: immutable, so a request that took it keeps a consistent view (names,
/// invokers, credentials, model maps) for all its attempts while a reload builds the next one.
/// </summary>
internal sealed class UpstreamPoolSnapshot
{
    private readonly FrozenDictionary<string, PoolUpstream> _byName;

    public UpstreamPoolSnapshot(IReadOnlyList<PoolUpstream> upstreams, RoutingOptions routing, bool isSingleUpstream = false)
    {
        Upstreams = upstreams;
        Routing = routing;
        IsSingleUpstream = isSingleUpstream;
        _byName = upstreams.ToFrozenDictionary(u => u.Name, StringComparer.OrdinalIgnoreCase);
        // One upstream serving every model: every unpinned request gets the same choice, made once here.
        SoleChoice = upstreams is [{ Models: null }] ? new UpstreamChoice(UpstreamChoiceKind.Candidates, this, upstreams, null) : null;
    }

    /// <summary>Built from <c>Gateway:Upstream</c> alone (its only member is <c>default</c>).</summary>
    public bool IsSingleUpstream { get; }

    /// <summary>The choice for any unpinned request when the pool is one upstream without a model map, else null.</summary>
    public UpstreamChoice? SoleChoice { get; }

    /// <summary>Ordered by priority, then name.</summary>
    public IReadOnlyList<PoolUpstream> Upstreams { get; }

    public RoutingOptions Routing { get; }

    public PoolUpstream? Find(string name) => _byName.GetValueOrDefault(name);
}

/// <summary>One upstream of a <see cref="UpstreamPoolSnapshot"/>.</summary>
/// <param name="Models">Client model → upstream model or deployment; null when the upstream serves every model.</param>
internal sealed record PoolUpstream(
    string Name,
    string BaseUrl,
    int Priority,
    int Weight,
    FrozenDictionary<string, string>? Models,
    decimal PriceMultiplier,
    string? Organization,
    string? Project,
    UpstreamAuthHeader AuthHeader,
    UpstreamTransport Transport,
    IUpstreamCredentialSource Credentials)
{
    /// <summary>Whether this upstream takes requests for <paramref name="model"/> (a request without a model goes anywhere).</summary>
    public bool Serves(string? model) => Models is null || model is null || Models.ContainsKey(model);

    /// <summary>The name this upstream expects for <paramref name="model"/>: its deployment when mapped, else the model itself.</summary>
    public string? UpstreamModel(string? model) =>
        model is not null && Models is not null && Models.TryGetValue(model, out var mapped) ? mapped : model;

    /// <summary>Longest an attempt can take before headers: past it a probe that never reported is given up.</summary>
    public TimeSpan AttemptTimeout => Transport.Key.ConnectTimeout + Transport.Key.ActivityTimeout;
}
