using System.Diagnostics;
using System.Diagnostics.Metrics;
using Gateway.Observability;

namespace Gateway.Upstreams;

/// <summary>
/// <c>gateway.upstream.requests</c>{upstream,status_class}, <c>gateway.upstream.cooldowns</c>{upstream,reason} and
/// <c>gateway.upstream.available</c>{upstream} (1/0), on the gateway's meter (exported as
/// <c>gateway_upstream_requests_total</c>, <c>gateway_upstream_cooldowns_total</c>, <c>gateway_upstream_available</c>).
/// Upstream names come from configuration, so the label sets are bounded.
/// </summary>
internal sealed class UpstreamMetrics
{
    private readonly Counter<long> _requests;
    private readonly Counter<long> _cooldowns;
    private volatile Func<IEnumerable<Measurement<int>>> _availability = static () => [];

    public UpstreamMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(GatewayMetrics.MeterName);
        _requests = meter.CreateCounter<long>("gateway.upstream.requests", "{request}", "Attempts sent to each upstream, by status class (2xx…5xx, connect_failure, timeout).");
        _cooldowns = meter.CreateCounter<long>("gateway.upstream.cooldowns", "{cooldown}", "Cooldowns started, by upstream and reason (rate_limit, failures, auth).");
        meter.CreateObservableGauge("gateway.upstream.available", () => _availability(), "{upstream}", "1 while the upstream takes traffic, 0 while it cools down as a whole.");
    }

    public void RecordAttempt(string upstream, string statusClass) =>
        _requests.Add(1, new TagList { { "upstream", upstream }, { "status_class", statusClass } });

    public void RecordCooldown(string upstream, string reason) =>
        _cooldowns.Add(1, new TagList { { "upstream", upstream }, { "reason", reason } });

    /// <summary>Wires the gauge to the current pool (set once by whoever owns the pool and the health state).</summary>
    public void ObserveAvailability(UpstreamPool pool, UpstreamHealth health) =>
        _availability = () => pool.Current.Upstreams.Select(u => new Measurement<int>(health.IsUsable(u.Name) ? 1 : 0, new KeyValuePair<string, object?>("upstream", u.Name)));
}
