using Gateway.Tests.Infrastructure;
using Gateway.Tests.Usage;

namespace Gateway.Tests.Pricing;

/// <summary>
/// The usage event's <c>CostUsd</c> through the real pipeline: recorded api.openai.com answers replayed by the fake
/// upstream, priced with the shipped pricing.json, equal to tokens × the list prices exactly (decimal, 6 places).
/// The recordings' reasoning models (gpt-5.6-sol, o3-mini) are not in the shipped table, so this gateway prices them
/// through <c>Gateway:Pricing:Models</c> overrides; no recording has cached tokens, so the cached shape is steered on the fake.
/// </summary>
public sealed class CostTests() : GatewayTestBed(c =>
{
    c["Gateway:Isolation:UnknownIds"] = "Allow";
    c["Gateway:Pricing:Models:gpt-5.6-sol:Input"] = "1.25";
    c["Gateway:Pricing:Models:gpt-5.6-sol:CachedInput"] = "0.125";
    c["Gateway:Pricing:Models:gpt-5.6-sol:Output"] = "10.00";
    c["Gateway:Pricing:Models:o3-mini:Input"] = "1.10";
    c["Gateway:Pricing:Models:o3-mini:CachedInput"] = "0.55";
    c["Gateway:Pricing:Models:o3-mini:Output"] = "4.40";
})
{
    [Theory]
    [InlineData("ResponsesTests/GetResponseNoOptions.json", 0)] // Responses JSON
    [InlineData("ResponsesTests/StreamingResponses.json", 0)] // Responses SSE
    [InlineData("ChatTests/HelloWorldChat.json", 0)] // Chat JSON
    public async Task Cost_RecordedPlainAnswerOfDatedSnapshot_EqualsTokensTimesFamilyListPrice(string file, int index)
    {
        using var client = Gateway.CreateClient();
        var usage = await PricingTestKit.ReplayAsync(Gateway, client, PricingTestKit.Recorded(file, index));

        Assert.StartsWith("gpt-4o-mini-20", UsageEvents.Text(usage, "Model"), StringComparison.Ordinal);
        Assert.True(UsageEvents.Long(usage, "OutputTokens") > 0);
        // gpt-4o-mini: 0.15 / 0.075 / 0.60 USD per 1M tokens.
        Assert.Equal(PricingTestKit.Expected(usage, 0.15m, 0.075m, 0.60m), PricingTestKit.Cost(usage));
    }

    [Fact]
    public async Task Cost_RecordedPlainResponse_IsTheHandComputedAmount()
    {
        // 12 input, 16 output tokens of gpt-4o-mini: (12 × 0.15 + 16 × 0.60) / 1e6 = 0.0000114, written as 0.000011.
        using var client = Gateway.CreateClient();
        var usage = await PricingTestKit.ReplayAsync(Gateway, client, PricingTestKit.Recorded("ResponsesTests/GetResponseNoOptions.json", 0));

        Assert.Equal(0.000011m, PricingTestKit.Cost(usage));
    }

    [Theory]
    [InlineData("ResponsesTests/ResponsesWithReasoning.json", 0, "1.25", "0.125", "10.00")]
    [InlineData("ChatTests/ReasoningTokensWork.json", 0, "1.10", "0.55", "4.40")]
    public async Task Cost_RecordedReasoningAnswer_ReasoningBilledOnceAsPartOfOutput(string file, int index, string input, string cached, string output)
    {
        using var client = Gateway.CreateClient();
        var usage = await PricingTestKit.ReplayAsync(Gateway, client, PricingTestKit.Recorded(file, index));

        Assert.True(UsageEvents.Long(usage, "ReasoningTokens") > 0);
        var (i, c, o) = (decimal.Parse(input, System.Globalization.CultureInfo.InvariantCulture),
            decimal.Parse(cached, System.Globalization.CultureInfo.InvariantCulture), decimal.Parse(output, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(PricingTestKit.Expected(usage, i, c, o), PricingTestKit.Cost(usage));
    }

    [Fact]
    public async Task Cost_CachedInput_CachedTokensAtCachedPriceRestAtInputPrice()
    {
        using var client = Gateway.CreateClient();
        var usage = await PricingTestKit.PostAsync(Gateway, client, "responses", """{"model":"gpt-4.1","input":"hello"}""",
            ("x-fake-input-tokens", "1000000"), ("x-fake-cached-tokens", "400000"), ("x-fake-deltas", "10"));

        Assert.Equal(400000, UsageEvents.Long(usage, "CachedInputTokens"));
        // gpt-4.1: 600k × 2.00 + 400k × 0.50 + 10 × 8.00 per 1M = 1.20 + 0.20 + 0.00008.
        Assert.Equal(1.40008m, PricingTestKit.Cost(usage));
        Assert.Equal(PricingTestKit.Expected(usage, 2.00m, 0.50m, 8.00m), PricingTestKit.Cost(usage));
    }

    [Theory]
    [InlineData("text-embedding-3-small", "0.02")]
    [InlineData("text-embedding-3-large", "0.13")]
    public async Task Cost_Embeddings_InputTokensAtTheEmbeddingPrice(string model, string price)
    {
        using var client = Gateway.CreateClient();
        var usage = await PricingTestKit.PostAsync(Gateway, client, "embeddings", $$"""{"model":"{{model}}","input":"six words of text to embed"}""",
            ("x-fake-input-tokens", "250000"));

        Assert.Equal(250000, UsageEvents.Long(usage, "InputTokens"));
        Assert.Equal(250000m * decimal.Parse(price, System.Globalization.CultureInfo.InvariantCulture) / 1_000_000m, PricingTestKit.Cost(usage));
    }

    [Fact]
    public async Task Cost_RequestWithoutUsage_IsNull()
    {
        using var client = Gateway.CreateClient();
        var usage = await PricingTestKit.PostAsync(Gateway, client, "responses", """{"model":"gpt-4o-mini","input":"x"}""", ("x-fake-status", "500"));

        UsageEvents.AssertNoTokens(usage);
        Assert.Null(PricingTestKit.Cost(usage));
    }

    [Fact]
    public async Task Cost_UnpricedModel_NullAndWarnedOncePerModel()
    {
        // A gateway without the overrides: the recording's gpt-5.6-sol has no price.
        await using var plain = await GatewayHost.StartAsync(Upstream.BaseUrl, c => c["Gateway:Isolation:UnknownIds"] = "Allow");
        using var client = plain.CreateClient();
        var exchange = PricingTestKit.Recorded("ResponsesTests/ResponsesWithReasoning.json", 0);

        var first = await PricingTestKit.ReplayAsync(plain, client, exchange);
        var fakeModel = new List<System.Text.Json.JsonElement>();
        for (var i = 0; i < 3; i++)
        {
            fakeModel.Add(await PricingTestKit.PostAsync(plain, client, "responses", """{"model":"gpt-9-unpriced","input":"x"}"""));
        }

        Assert.Equal("upstream", UsageEvents.Text(first, "UsageSource"));
        Assert.Null(PricingTestKit.Cost(first));
        Assert.All(fakeModel, e => Assert.Null(PricingTestKit.Cost(e)));
        var unpricedAnswerModel = UsageEvents.Text(fakeModel[0], "Model")!;

        // One warning per model (the upstream's name for it), however many requests; the others are only counted.
        var warnings = await plain.Logs.WaitForEventsAsync("ModelUnpriced", 2);
        Assert.Equal(new[] { "gpt-5.6-sol", unpricedAnswerModel }.Order(StringComparer.Ordinal), warnings.Select(w => w.GetProperty("Model").GetString()!).Order(StringComparer.Ordinal));
        Assert.DoesNotContain("x-fake", plain.Logs.AllText, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("1.1")]
    [InlineData("0")]
    public async Task Cost_UpstreamPriceMultiplier_ScalesEveryPrice(string multiplier)
    {
        await using var scaled = await GatewayHost.StartAsync(Upstream.BaseUrl, c => c["Gateway:Upstream:PriceMultiplier"] = multiplier);
        using var client = scaled.CreateClient();
        var usage = await PricingTestKit.PostAsync(scaled, client, "responses", """{"model":"gpt-4o","input":"hello"}""",
            ("x-fake-input-tokens", "1000"), ("x-fake-cached-tokens", "200"), ("x-fake-deltas", "50"));

        var factor = decimal.Parse(multiplier, System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(PricingTestKit.Expected(usage, 2.50m, 1.25m, 10.00m, factor), PricingTestKit.Cost(usage));
    }
}
