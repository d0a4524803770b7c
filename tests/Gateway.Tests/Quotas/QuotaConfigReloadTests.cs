using System.Net;
using FakeUpstream;
using Gateway.Tests.Infrastructure;
using static Gateway.Tests.Quotas.QuotaTestKit;

namespace Gateway.Tests.Quotas;

/// <summary>Limits, model lists and output caps are read from the watched configuration file: edits apply without a restart.</summary>
public sealed class QuotaConfigReloadTests
{
    [Fact]
    public async Task ConfigFile_LimitsRaisedThenLowered_TakeEffectWithoutRestart()
    {
        var directory = Directory.CreateTempSubdirectory("gateway-quota-reload-");
        var file = Path.Combine(directory.FullName, "limits.json");
        await File.WriteAllTextAsync(file, LimitsJson(rpm: 2, models: "\"gpt-4o-mini\""));
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, configure: null, UseClock(MidMinuteClock()), configFile: file);
        using var client = gateway.CreateClient();

        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(CreateResponse())).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(CreateResponse())).StatusCode);
        Assert.Equal(HttpStatusCode.TooManyRequests, (await client.SendAsync(CreateResponse())).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.SendAsync(CreateResponse(model: "gpt-4o"))).StatusCode);

        // Raised: the same minute now has room for two more, and the new model is allowed. (Refusals count nothing.)
        await File.WriteAllTextAsync(file, LimitsJson(rpm: 4, models: "\"gpt-4o-mini\",\"gpt-4o\""));
        await Eventually.UntilAsync(async () => (await QuotaAsync(client)).GetProperty("limits").GetProperty("requests_per_minute").GetInt64() == 4,
            "the raised limit applies");
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(CreateResponse(model: "gpt-4o"))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(CreateResponse())).StatusCode);
        using (var refused = await client.SendAsync(CreateResponse()))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            Assert.Contains("Limit 4, Used 4", (await ErrorAsync(refused)).GetProperty("message").GetString(), StringComparison.Ordinal);
        }

        // Removed: no limit at all.
        await File.WriteAllTextAsync(file, LimitsJson(rpm: 0, models: ""));
        await Eventually.UntilAsync(async () => (await QuotaAsync(client)).GetProperty("limits").GetProperty("requests_per_minute").ValueKind == System.Text.Json.JsonValueKind.Null,
            "the removed limit no longer applies");
        using (var unlimited = await client.SendAsync(CreateResponse()))
        {
            Assert.Equal(HttpStatusCode.OK, unlimited.StatusCode);
            Assert.Null(Header(unlimited, "x-ratelimit-limit-requests"));
        }

        Assert.Equal(5, upstream.RequestCount);
        directory.Delete(recursive: true);
    }

    private static string LimitsJson(long rpm, string models) =>
        "{\"Gateway\":{\"Tenants\":{\"tenant-a\":{\"Limits\":{\"RequestsPerMinute\":" + rpm + "},\"Models\":[" + models + "]}}}}";
}
