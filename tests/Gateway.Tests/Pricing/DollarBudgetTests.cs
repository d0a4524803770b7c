using System.Globalization;
using System.Net;
using System.Text.Json;
using Gateway.Tests.Infrastructure;
using Gateway.Tests.Quotas;
using Gateway.Tests.Usage;

namespace Gateway.Tests.Pricing;

/// <summary>
/// Dollar budgets (<c>Gateway:Tenants:{id}:Limits:UsdPerDay</c>, <c>UsdPerMonth</c>) enforced like the token budgets:
/// the estimated cost is reserved before forwarding and settled to the real cost, in micro-dollars, in memory and in
/// Redis; when spent, 429 insufficient_quota with x-should-retry: false; /v1/gateway/quota shows what was spent.
/// <para>
/// Each request below costs exactly <see cref="RequestCost"/> (gpt-4.1: 1000 input tokens at 2.00 and 8 output tokens at
/// 8.00 per 1M) while its reservation (a few input tokens and 8 output tokens) is smaller: with a budget of exactly five
/// requests' cost, five are admitted and the sixth is refused, whichever replica serves which.
/// </para>
/// </summary>
public sealed class DollarBudgetTests
{
    private const decimal RequestCost = 0.002064m;
    private const string Budget = "0.01032"; // 5 × RequestCost

    [SkippableTheory]
    [InlineData("memory", "UsdPerDay")]
    [InlineData("memory", "UsdPerMonth")]
    [InlineData("redis", "UsdPerDay")]
    public async Task DollarBudget_SpentByRealCosts_AdmitsExactlyWhatFitsThenRefusesWithoutRetry(string store, string limit)
    {
        await using var bed = await QuotaBed.StartAsync(store, c => c[$"Gateway:Tenants:tenant-a:Limits:{limit}"] = Budget);
        using var client = bed.Gateway.CreateClient();

        var statuses = new List<HttpStatusCode>();
        HttpResponseMessage? refused = null;
        for (var i = 0; i < 7; i++)
        {
            var response = await SendAsync(bed.Gateway, client);
            statuses.Add(response.StatusCode);
            refused ??= response.StatusCode == HttpStatusCode.TooManyRequests ? response : null;
        }

        Assert.Equal([.. Enumerable.Repeat(HttpStatusCode.OK, 5), HttpStatusCode.TooManyRequests, HttpStatusCode.TooManyRequests], statuses);
        var error = await QuotaTestKit.ErrorAsync(refused!);
        Assert.Equal("insufficient_quota", error.GetProperty("code").GetString());
        Assert.Equal("insufficient_quota", error.GetProperty("type").GetString());
        Assert.Contains(limit == "UsdPerDay" ? "daily dollar budget" : "monthly dollar budget", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal("false", QuotaTestKit.Header(refused!, "x-should-retry"));
        Assert.Null(QuotaTestKit.Header(refused!, "retry-after"));

        // The store holds the real costs, to the micro-dollar: the sum of the usage events' CostUsd.
        var costs = bed.Gateway.Logs.UsageEvents.Select(PricingTestKit.Cost).Where(c => c is not null).Select(c => c!.Value).ToArray();
        Assert.Equal(5, costs.Length);
        Assert.All(costs, c => Assert.Equal(RequestCost, c));
        var quota = await QuotaTestKit.QuotaAsync(client);
        var usage = quota.GetProperty("usage");
        Assert.Equal(5 * RequestCost, usage.GetProperty(limit == "UsdPerDay" ? "usd_today" : "usd_this_month").GetDecimal());
        Assert.Equal(decimal.Parse(Budget, CultureInfo.InvariantCulture),
            quota.GetProperty("limits").GetProperty(limit == "UsdPerDay" ? "usd_per_day" : "usd_per_month").GetDecimal());
        Assert.Equal(JsonValueKind.Null, quota.GetProperty("limits").GetProperty(limit == "UsdPerDay" ? "usd_per_month" : "usd_per_day").ValueKind);

        // Another tenant is not affected.
        using var other = bed.Gateway.CreateClient(TestKeys.KeyB);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(bed.Gateway, other)).StatusCode);
    }

    [SkippableFact]
    public async Task DollarBudget_TwoReplicasOnOneRedis_AdmitExactlyWhatFitsAcrossBoth()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var upstream = await FakeUpstream.FakeUpstreamServer.StartAsync();
        await using var a = await StartReplicaAsync(upstream, redis);
        await using var b = await StartReplicaAsync(upstream, redis);
        using var clientA = a.CreateClient();
        using var clientB = b.CreateClient();

        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 8; i++)
        {
            var (gateway, client) = i % 2 == 0 ? (a, clientA) : (b, clientB);
            statuses.Add((await SendAsync(gateway, client)).StatusCode);
        }

        Assert.Equal([.. Enumerable.Repeat(HttpStatusCode.OK, 5), .. Enumerable.Repeat(HttpStatusCode.TooManyRequests, 3)], statuses);
        var spent = a.Logs.UsageEvents.Concat(b.Logs.UsageEvents).Sum(e => PricingTestKit.Cost(e) ?? 0m);
        Assert.Equal(5 * RequestCost, spent);
        Assert.Equal(spent, (await QuotaTestKit.QuotaAsync(clientA)).GetProperty("usage").GetProperty("usd_today").GetDecimal());
        Assert.Equal(spent, (await QuotaTestKit.QuotaAsync(clientB)).GetProperty("usage").GetProperty("usd_today").GetDecimal());
    }

    [SkippableFact]
    public async Task DollarBudget_ConcurrentBurstOnTwoReplicas_ReservationsNeverExceedTheBudget()
    {
        // Reservations at least as large as the cost (max_output_tokens covers the fake's 8 output tokens, no input override):
        // however the burst interleaves, what is admitted is what the budget holds.
        await using var redis = await RedisServer.StartAsync();
        await using var upstream = await FakeUpstream.FakeUpstreamServer.StartAsync();
        await using var a = await StartReplicaAsync(upstream, redis, "0.001");
        await using var b = await StartReplicaAsync(upstream, redis, "0.001");
        using var clientA = a.CreateClient();
        using var clientB = b.CreateClient();

        var responses = await Task.WhenAll(Enumerable.Range(0, 40).Select(async i =>
        {
            var (gateway, client) = i % 2 == 0 ? (a, clientA) : (b, clientB);
            using var request = QuotaTestKit.CreateResponse("burst", maxOutputTokens: 8, model: "gpt-4.1");
            using var response = await client.SendAsync(request);
            await response.Content.ReadAsByteArrayAsync();
            return response.StatusCode;
        }));

        var events = await WaitForAllEventsAsync(a, b, 40);
        var spent = events.Sum(e => PricingTestKit.Cost(e) ?? 0m);
        var admitted = responses.Count(s => s == HttpStatusCode.OK);
        Assert.Equal(40, admitted + responses.Count(s => s == HttpStatusCode.TooManyRequests));
        Assert.InRange(admitted, 1, 39);
        Assert.True(spent <= 0.001m, $"spent {spent} of a 0.001 budget");
        Assert.Equal(spent, (await QuotaTestKit.QuotaAsync(clientA)).GetProperty("usage").GetProperty("usd_today").GetDecimal());
    }

    [Fact]
    public async Task DollarBudget_UnpricedModel_RefusedBeforeTheUpstreamOnlyForTenantsWithADollarBudget()
    {
        await using var bed = await QuotaBed.StartAsync("memory", c => c["Gateway:Tenants:tenant-a:Limits:UsdPerMonth"] = "100");
        using var a = bed.Gateway.CreateClient();
        using var b = bed.Gateway.CreateClient(TestKeys.KeyB);

        using var refused = await a.SendAsync(QuotaTestKit.CreateResponse(model: "gpt-9-unpriced"));
        var error = await QuotaTestKit.ErrorAsync(refused);
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Equal("model_not_priced", error.GetProperty("code").GetString());
        Assert.Equal("model", error.GetProperty("param").GetString());
        Assert.Equal(0, bed.Upstream.RequestCount);

        using var allowed = await b.SendAsync(QuotaTestKit.CreateResponse(model: "gpt-9-unpriced"));
        Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
        // A priced dated snapshot is fine for the budgeted tenant.
        using var dated = await a.SendAsync(QuotaTestKit.CreateResponse(model: "gpt-4.1-2025-04-14"));
        Assert.Equal(HttpStatusCode.OK, dated.StatusCode);
    }

    private static async Task<HttpResponseMessage> SendAsync(GatewayHost gateway, HttpClient client) =>
        await QuotaTestKit.SendAndSettleAsync(gateway, client,
            QuotaTestKit.CreateResponse("spend", maxOutputTokens: 8, model: "gpt-4.1", headers: [("x-fake-input-tokens", "1000")]));

    private static async Task<GatewayHost> StartReplicaAsync(FakeUpstream.FakeUpstreamServer upstream, RedisServer redis, string budget = Budget)
    {
        var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c =>
        {
            c["ConnectionStrings:Redis"] = redis.ConnectionString;
            c["Gateway:Tenants:tenant-a:Limits:UsdPerDay"] = budget;
        });
        await QuotaTestKit.WaitForStoreAsync(gateway);
        return gateway;
    }

    private static async Task<JsonElement[]> WaitForAllEventsAsync(GatewayHost a, GatewayHost b, int count)
    {
        await Eventually.UntilAsync(() => a.Logs.UsageEvents.Count + b.Logs.UsageEvents.Count >= count, $"{count} usage events across both replicas");
        return [.. a.Logs.UsageEvents, .. b.Logs.UsageEvents];
    }
}
