using System.Net;
using System.Text;
using FakeUpstream;
using Gateway.Tenants;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Tenants;

public sealed class TenantKeyTests
{
    [Fact]
    public void NewKeyCommand_PrintsAKeyAndItsSha256()
    {
        var output = new StringWriter();
        Assert.True(GatewayKeyCommand.TryRun(["new-key"], TextReader.Null, output, out var exitCode));
        Assert.Equal(0, exitCode);
        var lines = output.ToString().Split('\n');
        var key = lines.Single(l => l.StartsWith("key:", StringComparison.Ordinal))[4..].Trim();
        var hash = lines.Single(l => l.StartsWith("hash:", StringComparison.Ordinal))[5..].Trim();
        Assert.StartsWith("gwk_", key, StringComparison.Ordinal);
        Assert.True(key.Length >= 40);
        Assert.Equal(TestKeys.Hash(key), hash);
    }

    [Fact]
    public async Task ConfigFile_KeyAddedThenRemoved_TakesEffectWithoutRestart()
    {
        var directory = Directory.CreateTempSubdirectory("gateway-keys-");
        var file = Path.Combine(directory.FullName, "tenants.json");
        const string NewKey = "gwk_rotated_key_for_hot_reload_test_000000";
        await File.WriteAllTextAsync(file, TenantsJson(TestKeys.Hash(TestKeys.KeyA)));
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c =>
        {
            c.Remove("Gateway:Tenants:tenant-a:KeyHashes:0");
            c.Remove("Gateway:Tenants:tenant-b:KeyHashes:0");
        }, configFile: file);
        using var client = gateway.CreateClient(NewKey);

        Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync("models")).StatusCode);

        await File.WriteAllTextAsync(file, TenantsJson(TestKeys.Hash(TestKeys.KeyA), TestKeys.Hash(NewKey)));
        await Eventually.UntilAsync(async () => (await client.GetAsync("models")).StatusCode == HttpStatusCode.OK, "the added key is accepted", TimeSpan.FromSeconds(15));

        await File.WriteAllTextAsync(file, TenantsJson(TestKeys.Hash(TestKeys.KeyA)));
        await Eventually.UntilAsync(async () => (await client.GetAsync("models")).StatusCode == HttpStatusCode.Unauthorized, "the removed key is refused", TimeSpan.FromSeconds(15));

        // A broken edit is rejected and the last good configuration stays in force.
        await File.WriteAllTextAsync(file, TenantsJson("not-a-sha256"));
        Assert.NotEmpty(await gateway.Logs.WaitForEventsAsync("ConfigurationReloadRejected"));
        using var clientA = gateway.CreateClient(TestKeys.KeyA);
        Assert.Equal(HttpStatusCode.OK, (await clientA.GetAsync("models")).StatusCode);
        directory.Delete(recursive: true);
    }

    private static string TenantsJson(params string[] hashes) =>
        "{\"Gateway\":{\"Tenants\":{\"tenant-a\":{\"KeyHashes\":[" + string.Join(",", hashes.Select(h => "\"" + h + "\"")) + "]}}}}";
}
