using System.Collections.Concurrent;
using Gateway.Configuration;

namespace Gateway.Upstreams;

/// <summary>
/// Cooldowns, per replica (not shared through Redis: each replica learns from its own traffic, as Azure APIM's
/// circuit breakers do). A 429 cools (upstream, model); <see cref="RoutingOptions.FailuresBeforeCooldown"/>
/// consecutive failures, or one 401/403, cool the whole upstream. When a cooldown's time is up the upstream is
/// half-open: <see cref="TryBeginAttempt"/> lets exactly one probe through until that probe's outcome is reported.
/// State is keyed by upstream name, so it survives a reload that keeps the name.
/// </summary>
internal sealed class UpstreamHealth(TimeProvider time, UpstreamMetrics metrics, ILogger<UpstreamHealth> logger)
{
    /// <summary>Model key of requests that name no model (GET /v1/models, files…).</summary>
    private const string NoModel = "";

    private readonly ConcurrentDictionary<string, UpstreamState> _states = new(StringComparer.OrdinalIgnoreCase);

    public TimeProvider Time => time;

    /// <summary>Whether <paramref name="upstream"/> could take a request for <paramref name="model"/> now
    /// (not cooling, or half-open with its probe not yet taken); otherwise when it is expected back.</summary>
    public UpstreamAvailability Availability(string upstream, string? model)
    {
        if (!_states.TryGetValue(upstream, out var state) || !state.MayBeCooling)
        {
            return UpstreamAvailability.Available;
        }

        var now = time.GetUtcNow();
        lock (state)
        {
            var recovery = DateTimeOffset.MinValue;
            foreach (var cooldown in state.Applicable(model ?? NoModel))
            {
                if (now < cooldown.Until)
                {
                    recovery = Max(recovery, cooldown.Until);
                }
                else if (cooldown.ProbeUntil is { } probe && now < probe)
                {
                    recovery = Max(recovery, now + TimeSpan.FromSeconds(1)); // a probe is deciding right now
                }
            }

            return recovery == DateTimeOffset.MinValue ? UpstreamAvailability.Available : new UpstreamAvailability(false, recovery);
        }
    }

    /// <summary>Whether the upstream as a whole (not per model) takes traffic: for /readyz and the availability gauge.</summary>
    public bool IsUsable(string upstream)
    {
        if (!_states.TryGetValue(upstream, out var state) || !state.MayBeCooling)
        {
            return true;
        }

        lock (state)
        {
            return state.Whole is not { } whole || time.GetUtcNow() >= whole.Until;
        }
    }

    /// <summary>
    /// Call right before sending to <paramref name="upstream"/>. Null when its cooldown is over but another request
    /// is already probing it (skip to the next candidate). A still-cooling upstream is let through (the caller only
    /// sends there when it is pinned or the model's only candidate). A <paramref name="soleCandidate"/> (pinned, or
    /// the model's only upstream) is never skipped: with nowhere else to go, the request goes there as it would
    /// without a pool, beside the probe.
    /// </summary>
    public UpstreamAttempt? TryBeginAttempt(PoolUpstream upstream, string? model, bool soleCandidate = false)
    {
        var modelKey = model ?? NoModel;
        var state = _states.GetOrAdd(upstream.Name, static _ => new UpstreamState());
        if (!state.MayBeCooling)
        {
            return new UpstreamAttempt(upstream.Name, modelKey, IsProbe: false);
        }

        var now = time.GetUtcNow();
        lock (state)
        {
            var probing = false;
            foreach (var cooldown in state.Applicable(modelKey))
            {
                if (now < cooldown.Until)
                {
                    continue;
                }

                if (cooldown.ProbeUntil is { } probe && now < probe)
                {
                    if (soleCandidate)
                    {
                        continue;
                    }

                    return null;
                }

                cooldown.ProbeUntil = now + upstream.AttemptTimeout; // given up if the outcome is never reported
                probing = true;
            }

            return new UpstreamAttempt(upstream.Name, modelKey, probing);
        }
    }

    /// <summary>
    /// For a pinned request (its object lives on <paramref name="upstream"/>; no other upstream can serve it): always an
    /// attempt, cooling or not, even while another request probes the upstream (then it is not the probe).
    /// </summary>
    public UpstreamAttempt BeginPinnedAttempt(PoolUpstream upstream, string? model) =>
        TryBeginAttempt(upstream, model) ?? new UpstreamAttempt(upstream.Name, model ?? NoModel, IsProbe: false);

    /// <summary>Call once per attempt with what came back before the first byte reached the client.</summary>
    public void Report(UpstreamAttempt attempt, UpstreamAttemptOutcome outcome, RoutingOptions routing)
    {
        metrics.RecordAttempt(attempt.Upstream, outcome.StatusClass);
        var state = _states.GetOrAdd(attempt.Upstream, static _ => new UpstreamState());
        var now = time.GetUtcNow();
        lock (state)
        {
            switch (outcome.Kind)
            {
                case UpstreamOutcomeKind.Answered:
                    state.ConsecutiveFailures = 0;
                    var recovered = false;
                    if (state.Whole is not null)
                    {
                        state.Whole = null; // it answered: reachable and our key works
                        recovered = true;
                    }

                    if (state.ByModel.TryGetValue(attempt.Model, out var modelCooldown) && now >= modelCooldown.Until)
                    {
                        state.ByModel.Remove(attempt.Model);
                        recovered = true;
                    }

                    if (recovered)
                    {
                        state.Refresh();
                        UpstreamLog.Recovered(logger, attempt.Upstream, attempt.Model);
                    }

                    break;

                case UpstreamOutcomeKind.Forbidden:
                    state.ByModel[attempt.Model] = new Cooldown(now + routing.CooldownWithoutHint);
                    PruneExpired(state, now);
                    state.Refresh();
                    metrics.RecordCooldown(attempt.Upstream, "auth");
                    UpstreamLog.AuthFailed(logger, attempt.Upstream, outcome.StatusCode, routing.CooldownWithoutHint.TotalSeconds);
                    break;

                case UpstreamOutcomeKind.RateLimited:
                    var wait = outcome.RetryHint ?? routing.CooldownWithoutHint;
                    if (state.Whole is { } whole && now >= whole.Until)
                    {
                        state.Whole = null; // it answered, so it is reachable and our key works: only the model is out
                    }

                    state.ByModel[attempt.Model] = new Cooldown(now + wait);
                    PruneExpired(state, now);
                    state.Refresh();
                    metrics.RecordCooldown(attempt.Upstream, "rate_limit");
                    UpstreamLog.CoolingDown(logger, attempt.Upstream, attempt.Model, "rate_limit", wait.TotalSeconds);
                    break;

                case UpstreamOutcomeKind.Unavailable:
                    state.ConsecutiveFailures++;
                    var failedProbe = state.Whole is { ProbeUntil: not null };
                    if (failedProbe || state.ConsecutiveFailures >= routing.FailuresBeforeCooldown)
                    {
                        state.ConsecutiveFailures = 0;
                        var cool = outcome.RetryHint ?? routing.CooldownWithoutHint;
                        state.Whole = new Cooldown(now + cool);
                        state.Refresh();
                        metrics.RecordCooldown(attempt.Upstream, "failures");
                        UpstreamLog.CoolingDown(logger, attempt.Upstream, "*", "failures", cool.TotalSeconds);
                    }
                    else if (state.ByModel.TryGetValue(attempt.Model, out var probed) && probed.ProbeUntil is not null)
                    {
                        probed.ProbeUntil = null; // the model's probe did not decide; let the next request probe
                    }

                    break;

                case UpstreamOutcomeKind.AuthFailure:
                    state.Whole = new Cooldown(now + routing.CooldownWithoutHint);
                    state.Refresh();
                    metrics.RecordCooldown(attempt.Upstream, "auth");
                    UpstreamLog.AuthFailed(logger, attempt.Upstream, outcome.StatusCode, routing.CooldownWithoutHint.TotalSeconds);
                    break;
            }
        }
    }

    /// <summary>The attempt ended without an outcome (the client went away first): free its probe for the next request.</summary>
    public void Abandon(UpstreamAttempt attempt)
    {
        if (!attempt.IsProbe || !_states.TryGetValue(attempt.Upstream, out var state))
        {
            return;
        }

        lock (state)
        {
            foreach (var cooldown in state.Applicable(attempt.Model))
            {
                cooldown.ProbeUntil = null;
            }
        }
    }

    /// <summary>Model names come from tenants: past a few entries, drop expired ones so the map cannot grow without bound.</summary>
    private static void PruneExpired(UpstreamState state, DateTimeOffset now)
    {
        if (state.ByModel.Count <= 32)
        {
            return;
        }

        foreach (var (model, cooldown) in state.ByModel)
        {
            if (now >= cooldown.Until && (cooldown.ProbeUntil is null || now >= cooldown.ProbeUntil))
            {
                state.ByModel.Remove(model);
            }
        }
    }

    private static DateTimeOffset Max(DateTimeOffset a, DateTimeOffset b) => a > b ? a : b;

    /// <summary>Mutable, guarded by locking the instance.</summary>
    private sealed class UpstreamState
    {
        private volatile bool _mayBeCooling;

        public Cooldown? Whole { get; set; }

        public Dictionary<string, Cooldown> ByModel { get; } = new(StringComparer.Ordinal);

        public int ConsecutiveFailures { get; set; }

        /// <summary>Read without the lock: false means no cooldown at all (the common case costs no lock).</summary>
        public bool MayBeCooling => _mayBeCooling;

        public void Refresh() => _mayBeCooling = Whole is not null || ByModel.Count > 0;

        public IEnumerable<Cooldown> Applicable(string model)
        {
            if (Whole is not null)
            {
                yield return Whole;
            }

            if (ByModel.TryGetValue(model, out var cooldown))
            {
                yield return cooldown;
            }
        }
    }

    private sealed class Cooldown(DateTimeOffset until)
    {
        public DateTimeOffset Until { get; } = until;

        /// <summary>Set while a probe request is out after <see cref="Until"/>; others skip the upstream until then.</summary>
        public DateTimeOffset? ProbeUntil { get; set; }
    }
}

/// <summary>One attempt in progress; hand it back to <see cref="UpstreamHealth.Report"/>.</summary>
internal sealed record UpstreamAttempt(string Upstream, string Model, bool IsProbe);

internal readonly record struct UpstreamAvailability(bool IsAvailable, DateTimeOffset RecoversAt)
{
    public static UpstreamAvailability Available => new(true, DateTimeOffset.MinValue);
}
