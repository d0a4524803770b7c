namespace Gateway.Tests.Architecture;

/// <summary>
/// The folders depend one way: Hosting → Pipeline → features (Requests, Routing, Tenants, Quotas, Usage, Isolation,
/// Forwarding, Pricing, Observability, Health, Reporting) → SharedState / Errors / Configuration. Every edge the
/// compiled gateway has must be listed here, and the listed edges must form no cycle, so a new dependency is a
/// decision someone writes down, and a new cycle fails the build.
/// </summary>
public sealed class FolderDependencyTests
{
    /// <summary>Folder → the folders it may reference. Order is only for reading.</summary>
    private static readonly Dictionary<string, string[]> Allowed = new()
    {
        ["Hosting"] = ["Pipeline", "Forwarding", "Upstreams", "Health", "Isolation", "Observability", "Pricing", "Quotas", "Reporting", "Requests", "Tenants", "Usage", "SharedState", "Errors", "Configuration"],
        ["Pipeline"] = ["Forwarding", "Isolation", "Quotas", "Usage", "Requests", "Routing", "Tenants", "SharedState", "Errors", "Configuration"],
        // Upstreams (issue #12, upstream pools) sits beside Forwarding: Forwarding may take a target from it, never the reverse; it edits the request body (Requests.PooledBody).
        ["Upstreams"] = ["Requests", "Observability", "SharedState", "Errors", "Configuration"],
        ["Forwarding"] = ["Upstreams", "Isolation", "Quotas", "Usage", "Requests", "Routing", "Tenants", "Observability", "Errors", "Configuration"],
        ["Isolation"] = ["Requests", "Routing", "Tenants", "SharedState", "Errors", "Configuration"],
        ["Quotas"] = ["Usage", "Pricing", "Requests", "Routing", "Tenants", "SharedState", "Errors", "Configuration"],
        ["Usage"] = ["Pricing", "Observability", "Requests", "Routing", "Tenants", "SharedState", "Configuration"],
        ["Requests"] = ["Routing", "Tenants", "Errors"],
        // /readyz asks the upstream pool whether any upstream takes traffic.
        ["Health"] = ["Upstreams", "SharedState", "Configuration"],
        ["Pricing"] = ["SharedState", "Configuration"],
        ["Observability"] = ["Tenants"],
        ["Tenants"] = ["Errors", "Configuration"],
        ["Routing"] = [],
        ["Reporting"] = [],
        ["Errors"] = [],
        // SharedState reports store health through GatewayMetrics; a base layer should not (part 2 of issue #13 splits the store).
        ["SharedState"] = ["Observability", "Configuration"],
        ["Configuration"] = [],
    };

    /// <summary>
    /// Cycles tolerated while they are being removed. Empty: the last two (SharedState↔Quotas through QuotaReservation,
    /// Configuration↔Pricing through PricingOptions) are gone. Never add one.
    /// </summary>
    private static readonly (string From, string To)[] KnownCycleEdges =
    [
    ];

    private static readonly string[] Features =
        ["Forwarding", "Upstreams", "Isolation", "Quotas", "Usage", "Requests", "Routing", "Tenants", "Pricing", "Observability", "Health", "Reporting"];

    [Fact]
    public void GatewayAssembly_EveryFolderEdge_IsAllowed()
    {
        var edges = FolderDependencies.Edges(typeof(Gateway.Pipeline.GatewayRequestHandler).Assembly);

        var unexpected = edges
            .Where(e => !IsAllowed(e.Key.From, e.Key.To) && !KnownCycleEdges.Contains(e.Key))
            .Select(e => $"{e.Key.From} → {e.Key.To} (e.g. {e.Value})")
            .ToList();

        Assert.True(unexpected.Count == 0, "Folder dependencies not in the allowed list (add the edge deliberately, or move the type):\n" + string.Join("\n", unexpected));
    }

    [Fact]
    public void AllowedEdges_FormNoCycle()
    {
        var cycle = FindCycle(Allowed.SelectMany(a => a.Value.Select(to => (a.Key, to))));

        Assert.True(cycle is null, "The allowed folder edges form a cycle: " + string.Join(" → ", cycle ?? []));
    }

    [Fact]
    public void Features_DependOnNeitherPipelineNorHosting()
    {
        foreach (var feature in Features)
        {
            Assert.DoesNotContain("Pipeline", Allowed[feature]);
            Assert.DoesNotContain("Hosting", Allowed[feature]);
        }

        Assert.DoesNotContain("Hosting", Allowed["Pipeline"]);
    }

    [Fact]
    public void KnownCycleEdges_StillExist_SoTheListOnlyShrinks()
    {
        var edges = FolderDependencies.Edges(typeof(Gateway.Pipeline.GatewayRequestHandler).Assembly);

        foreach (var known in KnownCycleEdges)
        {
            Assert.True(edges.ContainsKey(known), $"{known.From} → {known.To} is gone: delete it from {nameof(KnownCycleEdges)}.");
        }
    }

    [Fact]
    public void FindCycle_EdgesThatLoop_ReturnsTheLoop()
    {
        var cycle = FindCycle([("Quotas", "Usage"), ("Usage", "Isolation"), ("Isolation", "Quotas"), ("Usage", "Routing")]);

        Assert.NotNull(cycle);
        Assert.Equal(cycle[0], cycle[^1]);
        Assert.Equal(["Isolation", "Quotas", "Usage"], cycle.Distinct().Order());
    }

    [Fact]
    public void Edges_ReferenceOnlyInsideAMethodBody_IsFound()
    {
        // Probe.Caller names Probe.Target only in IL (a call in an async method's state machine): no field, no signature.
        var edges = FolderDependencies.Edges(typeof(FolderDependencyTests).Assembly);

        Assert.Contains(("ProbeCaller", "ProbeTarget"), edges.Keys);
        Assert.DoesNotContain(("ProbeTarget", "ProbeCaller"), edges.Keys);
    }

    [Fact]
    public void GatewayAssembly_OwnTypesInHttpContextFeatures_None()
    {
        var uses = FolderDependencies.FeatureUsesOfOwnTypes(typeof(Gateway.Pipeline.GatewayRequestHandler).Assembly);

        Assert.True(uses.Count == 0, "Per-request state reached through HttpContext.Features (pass it as a stage result instead):\n" + string.Join("\n", uses));
    }

    [Fact]
    public void FeatureUsesOfOwnTypes_ProbeThatStoresItsStateInFeatures_IsFound()
    {
        var uses = FolderDependencies.FeatureUsesOfOwnTypes(typeof(FolderDependencyTests).Assembly);

        Assert.Contains(uses, u => u.Contains("Features.Set<Gateway.ProbeTarget.Target>", StringComparison.Ordinal));
        Assert.Contains(uses, u => u.Contains("Features.Get<Gateway.ProbeTarget.Target>", StringComparison.Ordinal));
    }

    private static bool IsAllowed(string from, string to) => Allowed.TryGetValue(from, out var targets) && targets.Contains(to);

    /// <summary>A cycle (first node repeated at the end) in the directed graph, or null.</summary>
    internal static List<string>? FindCycle(IEnumerable<(string From, string To)> edges)
    {
        var graph = edges.GroupBy(e => e.From).ToDictionary(g => g.Key, g => g.Select(e => e.To).ToList());
        var state = new Dictionary<string, int>(); // 1 on the current path, 2 done
        var path = new List<string>();

        List<string>? Visit(string node)
        {
            state[node] = 1;
            path.Add(node);
            foreach (var next in graph.GetValueOrDefault(node) ?? [])
            {
                if (state.GetValueOrDefault(next) == 1)
                {
                    return [.. path[path.IndexOf(next)..], next];
                }

                if (state.GetValueOrDefault(next) == 0 && Visit(next) is { } found)
                {
                    return found;
                }
            }

            path.RemoveAt(path.Count - 1);
            state[node] = 2;
            return null;
        }

        foreach (var node in graph.Keys.Order(StringComparer.Ordinal))
        {
            if (state.GetValueOrDefault(node) == 0 && Visit(node) is { } cycle)
            {
                return cycle;
            }
        }

        return null;
    }
}
