using Gateway.Configuration;

namespace Gateway.Upstreams;

/// <summary>
/// Chooses the upstreams for one request. Among the upstreams that serve the model and are not cooling for it: the
/// lowest <c>Priority</c> group first, ordered within the group by weighted random choice; then the next group, and
/// so on (the failover order). A pinned request (its object lives on one upstream) goes there only, even while it
/// cools. A model with a single candidate is always returned: cooldown only steers among candidates.
/// </summary>
internal sealed class UpstreamRouter(UpstreamPool pool, UpstreamHealth health, Random? random = null)
{
    private readonly Random _random = random ?? Random.Shared;

    public UpstreamChoice Choose(string? model, string? pinnedUpstream = null) => Choose(pool.Current, model, pinnedUpstream);

    public UpstreamChoice Choose(UpstreamPoolSnapshot snapshot, string? model, string? pinnedUpstream)
    {
        if (pinnedUpstream is not null)
        {
            return snapshot.Find(pinnedUpstream) is { } pinned
                ? new UpstreamChoice(UpstreamChoiceKind.Candidates, snapshot, [pinned], null)
                : new UpstreamChoice(UpstreamChoiceKind.PinnedUpstreamGone, snapshot, [], null);
        }

        if (snapshot.SoleChoice is { } sole)
        {
            return sole; // the single-upstream case allocates nothing
        }

        var serving = new List<PoolUpstream>(snapshot.Upstreams.Count);
        foreach (var upstream in snapshot.Upstreams)
        {
            if (upstream.Serves(model))
            {
                serving.Add(upstream);
            }
        }

        if (serving.Count == 0)
        {
            return new UpstreamChoice(UpstreamChoiceKind.NoUpstreamServesModel, snapshot, [], null);
        }

        if (serving.Count == 1)
        {
            return new UpstreamChoice(UpstreamChoiceKind.Candidates, snapshot, serving, null);
        }

        var available = new List<PoolUpstream>(serving.Count);
        var soonest = DateTimeOffset.MaxValue;
        foreach (var upstream in serving)
        {
            var availability = health.Availability(upstream.Name, model);
            if (availability.IsAvailable)
            {
                available.Add(upstream);
            }
            else if (availability.RecoversAt < soonest)
            {
                soonest = availability.RecoversAt;
            }
        }

        if (available.Count == 0)
        {
            var wait = soonest - health.Time.GetUtcNow();
            return new UpstreamChoice(UpstreamChoiceKind.AllCoolingDown, snapshot, [], wait > TimeSpan.Zero ? wait : TimeSpan.Zero);
        }

        return new UpstreamChoice(UpstreamChoiceKind.Candidates, snapshot, OrderByPriorityAndWeight(available), null);
    }

    /// <summary>
    /// /readyz: ready while at least one upstream of the current pool takes traffic. <c>Gateway:Upstream</c> alone
    /// leaves readiness alone, as before pools: with nowhere else to send, an unready replica helps no one.
    /// </summary>
    public bool IsAnyUsable()
    {
        var snapshot = pool.Current;
        if (snapshot.IsSingleUpstream)
        {
            return true;
        }

        foreach (var upstream in snapshot.Upstreams)
        {
            if (health.IsUsable(upstream.Name))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary><paramref name="upstreams"/> come sorted by priority (the snapshot's order).</summary>
    private List<PoolUpstream> OrderByPriorityAndWeight(List<PoolUpstream> upstreams)
    {
        var ordered = new List<PoolUpstream>(upstreams.Count);
        var start = 0;
        while (start < upstreams.Count)
        {
            var end = start;
            while (end < upstreams.Count && upstreams[end].Priority == upstreams[start].Priority)
            {
                end++;
            }

            // Weighted choice without replacement: the first pick follows the weights, the rest are the fallback order.
            var group = upstreams.GetRange(start, end - start);
            var total = group.Sum(u => (long)u.Weight);
            while (group.Count > 0)
            {
                var ticket = _random.NextInt64(total);
                var index = 0;
                while (ticket >= group[index].Weight)
                {
                    ticket -= group[index].Weight;
                    index++;
                }

                ordered.Add(group[index]);
                total -= group[index].Weight;
                group.RemoveAt(index);
            }

            start = end;
        }

        return ordered;
    }
}

internal enum UpstreamChoiceKind
{
    /// <summary>Try <see cref="UpstreamChoice.Candidates"/> in order, up to <see cref="RoutingOptions.MaxAttempts"/>.</summary>
    Candidates,

    /// <summary>Every upstream serving the model is cooling: answer 429 with <see cref="UpstreamChoice.RetryAfter"/>.</summary>
    AllCoolingDown,

    /// <summary>No upstream serves the model: answer 404 model_not_found as OpenAI would.</summary>
    NoUpstreamServesModel,

    /// <summary>The object's upstream was removed from the configuration: answer 404 as OpenAI would for an unknown id, and log it.</summary>
    PinnedUpstreamGone,
}

/// <param name="Snapshot">The pool this choice was made from; use it (not a newer one) for every attempt of the request.</param>
internal sealed record UpstreamChoice(UpstreamChoiceKind Kind, UpstreamPoolSnapshot Snapshot, IReadOnlyList<PoolUpstream> Candidates, TimeSpan? RetryAfter);
