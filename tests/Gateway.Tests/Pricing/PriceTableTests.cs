using System.Text;
using Gateway.Pricing;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Pricing;

public sealed class PriceTableTests
{
    [Fact]
    public void ShippedPriceFile_HasTheListPricesOfTheIssue()
    {
        var table = PriceTable.Parse(File.ReadAllBytes(RepositoryPaths.File("pricing.json")), "pricing.json");
        var expected = new Dictionary<string, (decimal Input, decimal Cached, decimal Output)>
        {
            ["gpt-4.1"] = (2.00m, 0.50m, 8.00m), ["gpt-4.1-mini"] = (0.40m, 0.10m, 1.60m), ["gpt-4.1-nano"] = (0.10m, 0.025m, 0.40m),
            ["gpt-4o"] = (2.50m, 1.25m, 10.00m), ["gpt-4o-mini"] = (0.15m, 0.075m, 0.60m), ["o3"] = (2.00m, 0.50m, 8.00m),
            ["o4-mini"] = (1.10m, 0.275m, 4.40m), ["gpt-5"] = (1.25m, 0.125m, 10.00m), ["gpt-5-mini"] = (0.25m, 0.025m, 2.00m),
            ["gpt-5-nano"] = (0.05m, 0.005m, 0.40m), ["text-embedding-3-small"] = (0.02m, 0.02m, 0m), ["text-embedding-3-large"] = (0.13m, 0.13m, 0m),
        };

        Assert.Equal(new DateOnly(2025, 8, 7), table.AsOf);
        Assert.Equal(expected.Count, table.Count);
        foreach (var (model, price) in expected)
        {
            Assert.True(table.TryGet(model, out var actual), model);
            Assert.Equal(new ModelPrice(price.Input, price.Cached, price.Output), actual);
        }
    }

    [Theory]
    [InlineData("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini")]
    [InlineData("gpt-4o-2024-08-06", "gpt-4o")]
    [InlineData("gpt-4o-mini", "gpt-4o-mini")]
    public void TryGet_DatedSnapshot_PricesAsItsFamily(string model, string family)
    {
        var table = Table();
        Assert.True(table.TryGet(model, out var price));
        Assert.True(table.TryGet(family, out var familyPrice));
        Assert.Equal(familyPrice, price);
    }

    [Theory]
    [InlineData("gpt-4o-mini-search-preview")] // another model, not a snapshot: no prefix matching
    [InlineData("gpt-4o-mini-2024-07")]
    [InlineData("gpt-4o-mini-2024-07-18-extra")]
    [InlineData("GPT-4O")]
    [InlineData("")]
    [InlineData(null)]
    public void TryGet_NotTheModelOrASnapshotOfIt_HasNoPrice(string? model) => Assert.False(Table().TryGet(model, out _));

    [Theory]
    [InlineData("""{"AsOf":"2025-08-07"}""", "no \"Models\"")]
    [InlineData("""{"Models":{"m":{"Input":-1}}}""", "Models:m")]
    [InlineData("""{"Models":{"m":{"Input":"2.00"}}}""", "Models:m:Input must be a number")]
    [InlineData("""{"Models":{"m":{"Output":1e9}}}""", "between 0 and")]
    [InlineData("""{"AsOf":"yesterday","Models":{}}""", "yyyy-MM-dd")]
    [InlineData("""{"Models":{"m":[]}}""", "must be an object")]
    [InlineData("""{"Models":{"m":{"Input":1}""", "not valid JSON")]
    [InlineData("[]", "must be a JSON object")]
    public void Parse_BadFile_ThrowsNamingTheEntryAtFault(string json, string expected)
    {
        var ex = Assert.Throws<PriceTableException>(() => PriceTable.Parse(Encoding.UTF8.GetBytes(json), "p.json"));
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.Contains("p.json", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_PricesAreReadDigitForDigit()
    {
        var table = PriceTable.Parse("""{"Models":{"m":{"Input":0.1,"CachedInput":0.0000001,"Output":1234.5678901234567890}}}"""u8, "p.json");
        Assert.True(table.TryGet("m", out var price));
        Assert.Equal(new ModelPrice(0.1m, 0.0000001m, 1234.5678901234567890m), price);
    }

    [Fact]
    public void Cost_RoundsHalfAwayFromZeroToMicroDollars()
    {
        var price = new ModelPrice(0.5m, 0.5m, 0m);
        Assert.Equal(0.000001m, price.Cost(1, 0, 0, 1m)); // 0.0000005 → 0.000001
        Assert.Equal(0m, price.Cost(0, 0, 0, 1m));
        // Cached tokens beyond the input (a malformed answer) are capped at the input; negative counts cost nothing.
        Assert.Equal(0m, new ModelPrice(1m, 0m, 0m).Cost(10, 50, -5, 1m));
    }

    private static PriceTable Table() => PriceTable.Parse(File.ReadAllBytes(RepositoryPaths.File("pricing.json")), "pricing.json");
}
