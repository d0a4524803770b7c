using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Gateway.Configuration;
using Gateway.Observability;
using Gateway.SharedState;

namespace Gateway.Pricing;

/// <summary>
/// Money and budget metrics, on the gateway's meter: cost per tenant and model, requests whose model has no price, and
/// each tenant's budget limits and use (what the "tenant at 90 % of a budget" alert divides). Use is the value this
/// replica last saw in the shared store (at admission, or on <c>/v1/gateway/quota</c>); across replicas take the max.
/// </summary>
internal sealed class SpendMetrics
{
    private readonly Counter<double> _cost;
    private readonly Counter<long> _unpriced;
    private readonly ConcurrentDictionary<string, BudgetUse> _use = new(StringComparer.Ordinal);
    private readonly GatewaySettings _settings;
    private readonly TimeProvider _time;

    public SpendMetrics(IMeterFactory meterFactory, GatewaySettings settings, TimeProvider time)
    {
        _settings = settings;
        _time = time;
        var meter = meterFactory.Create(GatewayMetrics.MeterName);
        // Units in braces are annotations: the Prometheus names stay gateway_cost_usd_total and gateway_unpriced_requests_total.
        _cost = meter.CreateCounter<double>("gateway.cost_usd", "{USD}", "Cost in USD of the usage counted, by tenant and model (the usage events carry it exactly).");
        _unpriced = meter.CreateCounter<long>("gateway.unpriced_requests", "{request}", "Requests with usage whose model has no price (CostUsd null).");
        meter.CreateObservableGauge("gateway.budget.limit", ObserveLimits, "{budget}", "Budget limits per tenant: window day|month, unit tokens|usd. Absent when unlimited.");
        meter.CreateObservableGauge("gateway.budget.used", ObserveUse, "{budget}", "Budget used per tenant in the current window, as this replica last saw it in the store.");
    }

    public void RecordCost(string tenant, string? model, decimal costUsd)
    {
        if (costUsd > 0)
        {
            _cost.Add((double)costUsd, new TagList { { "tenant", tenant }, { "model", model ?? "" } });
        }
    }

    public void RecordUnpriced(string model) => _unpriced.Add(1, new TagList { { "model", model } });

    /// <summary>Remembers the tenant's day and month counters as the store reported them.</summary>
    public void RecordBudgetUse(string tenant, QuotaCounters counters, QuotaWindows windows) =>
        _use[tenant] = new BudgetUse(windows.Day, windows.Month, counters.DayTokens, counters.MonthTokens, counters.DayMicroUsd, counters.MonthMicroUsd);

    private IEnumerable<Measurement<double>> ObserveLimits()
    {
        foreach (var (tenant, options) in _settings.Current.Tenants)
        {
            var limits = options.Limits;
            if (limits.TokensPerDay > 0)
            {
                yield return Budget(limits.TokensPerDay, tenant, "day", "tokens");
            }

            if (limits.TokensPerMonth > 0)
            {
                yield return Budget(limits.TokensPerMonth, tenant, "month", "tokens");
            }

            if (limits.UsdPerDay > 0)
            {
                yield return Budget((double)limits.UsdPerDay, tenant, "day", "usd");
            }

            if (limits.UsdPerMonth > 0)
            {
                yield return Budget((double)limits.UsdPerMonth, tenant, "month", "usd");
            }
        }
    }

    private IEnumerable<Measurement<double>> ObserveUse()
    {
        var windows = QuotaWindows.At(_time.GetUtcNow());
        var tenants = _settings.Current.Tenants;
        foreach (var (tenant, use) in _use)
        {
            if (!tenants.ContainsKey(tenant))
            {
                continue;
            }

            // A window that has ended reads as 0 until the tenant's next request shows the new one.
            var sameDay = use.Day == windows.Day;
            var sameMonth = use.Month == windows.Month;
            yield return Budget(sameDay ? use.DayTokens : 0, tenant, "day", "tokens");
            yield return Budget(sameMonth ? use.MonthTokens : 0, tenant, "month", "tokens");
            yield return Budget(sameDay ? use.DayMicroUsd / 1_000_000.0 : 0, tenant, "day", "usd");
            yield return Budget(sameMonth ? use.MonthMicroUsd / 1_000_000.0 : 0, tenant, "month", "usd");
        }
    }

    private static Measurement<double> Budget(double value, string tenant, string window, string unit) =>
        new(value, new TagList { { "tenant", tenant }, { "window", window }, { "unit", unit } });

    private sealed record BudgetUse(long Day, long Month, long DayTokens, long MonthTokens, long DayMicroUsd, long MonthMicroUsd);
}
