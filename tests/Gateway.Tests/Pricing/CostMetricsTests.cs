using Gateway.Tests.Infrastructure;
using Gateway.Tests.Monitoring;
using Gateway.Tests.Usage;

namespace Gateway.Tests.Pricing;

/// <summary>
/// <c>gateway_cost_usd_total{tenant,model}</c> sums the usage events' CostUsd; <c>gateway_unpriced_requests_total{model}</c>
/// counts the events whose model has no price; the budget gauges show limits and use.
/// </summary>
[Collection(MetricsTestGroup.Name)]
public sealed class CostMetricsTests() : GatewayTestBed(c =>
{
    c["Gateway:Tenants:tenant-a:Limits:TokensPerDay"] = "1000000";
    c["Gateway:Tenants:tenant-a:Limits:UsdPerMonth"] = "25.5";
})
{
    [Fact]
    public async Task Metrics_AfterPricedAndUnpricedRequests_CostAndUnpricedCountersMatchTheEvents()
    {
        using var a = Gateway.CreateClient(TestKeys.KeyA);
        using var b = Gateway.CreateClient(TestKeys.KeyB);
        await PricingTestKit.PostAsync(Gateway, a, "responses", """{"model":"gpt-4o-mini","input":"one"}""", ("x-fake-input-tokens", "123456"), ("x-fake-cached-tokens", "1000"));
        await PricingTestKit.PostAsync(Gateway, a, "responses", """{"model":"gpt-4o-mini","input":"two","stream":true}""", ("x-fake-input-tokens", "7777"));
        await PricingTestKit.PostAsync(Gateway, b, "responses", """{"model":"gpt-4.1","input":"three"}""", ("x-fake-reasoning-tokens", "99"));
        await PricingTestKit.PostAsync(Gateway, b, "embeddings", """{"model":"text-embedding-3-large","input":"four"}""", ("x-fake-input-tokens", "5000"));
        await PricingTestKit.PostAsync(Gateway, b, "responses", """{"model":"gpt-9-unpriced","input":"five"}""");
        await PricingTestKit.PostAsync(Gateway, b, "responses", """{"model":"gpt-9-unpriced","input":"six"}""");

        var events = await Gateway.Logs.WaitForUsageEventsAsync(6);
        var expectedCost = events.Where(e => PricingTestKit.Cost(e) is not null)
            .GroupBy(e => (UsageEvents.Text(e, "Tenant")!, UsageEvents.Text(e, "Model")!))
            .ToDictionary(g => g.Key, g => g.Sum(e => PricingTestKit.Cost(e)!.Value));
        Assert.Equal(3, expectedCost.Count); // (a, gpt-4o-mini) twice, (b, gpt-4.1), (b, text-embedding-3-large)
        var unpricedModel = UsageEvents.Text(events.First(e => PricingTestKit.Cost(e) is null), "Model")!;

        using var root = new HttpClient { BaseAddress = Gateway.RootUrl };
        var deadline = DateTime.UtcNow.AddSeconds(20);
        string text;
        do
        {
            text = await root.GetStringAsync("metrics");
            if (PrometheusText.Samples(text, "gateway_cost_usd_total").Count() == expectedCost.Count
                && PrometheusText.Samples(text, "gateway_unpriced_requests_total").Sum(s => s.Value) == 2)
            {
                break;
            }

            await Task.Delay(200);
        }
        while (DateTime.UtcNow < deadline);

        var cost = PrometheusText.Samples(text, "gateway_cost_usd_total").ToDictionary(s => (s.Labels["tenant"], s.Labels["model"]), s => s.Value);
        Assert.Equal(expectedCost.Keys.Order(), cost.Keys.Order());
        foreach (var (key, usd) in expectedCost)
        {
            // The counter is a double; the events are exact. They agree to far below a micro-dollar.
            Assert.Equal((double)usd, cost[key], 1e-9);
        }

        var unpriced = Assert.Single(PrometheusText.Samples(text, "gateway_unpriced_requests_total"));
        Assert.Equal(unpricedModel, unpriced.Labels["model"]);
        Assert.Equal(2, unpriced.Value);

        var limits = PrometheusText.Samples(text, "gateway_budget_limit").ToDictionary(s => (s.Labels["tenant"], s.Labels["window"], s.Labels["unit"]), s => s.Value);
        Assert.Equal(1_000_000, limits[(TestKeys.TenantA, "day", "tokens")]);
        Assert.Equal(25.5, limits[(TestKeys.TenantA, "month", "usd")]);
        Assert.Equal(2, limits.Count);
        var used = PrometheusText.Samples(text, "gateway_budget_used").ToDictionary(s => (s.Labels["tenant"], s.Labels["window"], s.Labels["unit"]), s => s.Value);
        Assert.True(used[(TestKeys.TenantA, "day", "tokens")] > 0);
    }
}
