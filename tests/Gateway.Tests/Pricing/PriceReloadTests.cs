using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Pricing;

/// <summary>
/// <c>Gateway:Pricing:File</c> names the price file; an edit applies without a restart, a broken edit is logged and
/// ignored (the last good prices stay), and a configuration override beats the file.
/// </summary>
public sealed class PriceReloadTests : IAsyncLifetime
{
    private readonly string _directory = Directory.CreateTempSubdirectory("gw-prices-").FullName;
    private FakeUpstream.FakeUpstreamServer _upstream = null!;
    private GatewayHost _gateway = null!;

    private string PriceFile => Path.Combine(_directory, "prices.json");

    public async Task InitializeAsync()
    {
        await File.WriteAllTextAsync(PriceFile, Prices("1.00"));
        _upstream = await FakeUpstream.FakeUpstreamServer.StartAsync();
        _gateway = await GatewayHost.StartAsync(_upstream.BaseUrl, c =>
        {
            c["Gateway:Pricing:File"] = PriceFile;
            c["Gateway:Pricing:Models:gpt-4.1:Input"] = "3.00";
        });
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _upstream.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    [Fact]
    public async Task PriceFile_EditedThenBroken_NewPricesApplyThenLastGoodStays()
    {
        using var client = _gateway.CreateClient();
        Assert.Equal(1.00m, await CostOfOneMillionInputTokensAsync(client, "gpt-4o-mini"));
        // The override wins over the file.
        Assert.Equal(3.00m, await CostOfOneMillionInputTokensAsync(client, "gpt-4.1"));

        await File.WriteAllTextAsync(PriceFile, Prices("2.50"));
        await _gateway.Logs.WaitForEventsAsync("PricesReloaded");
        Assert.Equal(2.50m, await CostOfOneMillionInputTokensAsync(client, "gpt-4o-mini"));

        await File.WriteAllTextAsync(PriceFile, """{"Models":{"gpt-4o-mini":{"Input":-7}}}""");
        var rejected = await _gateway.Logs.WaitForEventsAsync("PricesReloadRejected");
        Assert.Contains("Models:gpt-4o-mini", Assert.Single(rejected).GetProperty("Reason").GetString(), StringComparison.Ordinal);
        Assert.Equal(2.50m, await CostOfOneMillionInputTokensAsync(client, "gpt-4o-mini"));
    }

    [Fact]
    public async Task PriceFile_SavedInTwoWrites_ReadWholeWithoutARejection()
    {
        using var client = _gateway.CreateClient();

        // As an editor saves: truncate and write part, then the rest a moment later. Read in between, the file is broken JSON.
        var content = Prices("4.00");
        await using (var file = new FileStream(PriceFile, FileMode.Create, FileAccess.Write, FileShare.ReadWrite))
        {
            await file.WriteAsync(System.Text.Encoding.UTF8.GetBytes(content[..20]));
            await file.FlushAsync();
            await Task.Delay(50);
            await file.WriteAsync(System.Text.Encoding.UTF8.GetBytes(content[20..]));
        }

        await _gateway.Logs.WaitForEventsAsync("PricesReloaded");
        Assert.Empty(_gateway.Logs.Named("PricesReloadRejected"));
        Assert.Equal(4.00m, await CostOfOneMillionInputTokensAsync(client, "gpt-4o-mini"));
    }

    private async Task<decimal?> CostOfOneMillionInputTokensAsync(HttpClient client, string model)
    {
        var usage = await PricingTestKit.PostAsync(_gateway, client, "embeddings", $$"""{"model":"{{model}}","input":"x"}""", ("x-fake-input-tokens", "1000000"));
        return PricingTestKit.Cost(usage);
    }

    private static string Prices(string input) =>
        """{"AsOf":"2026-01-01","Models":{"gpt-4o-mini":{"Input":""" + input + ""","Output":1},"gpt-4.1":{"Input":9,"Output":9}}}""";
}
