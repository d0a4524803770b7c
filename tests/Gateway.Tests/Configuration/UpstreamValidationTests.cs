using System.Net;
using FakeUpstream;
using Gateway.Configuration;
using Gateway.Tests.Infrastructure;
using Gateway.Tests.Usage;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using static Gateway.Tests.Quotas.QuotaTestKit;

namespace Gateway.Tests.Configuration;

/// <summary>
/// <c>Gateway:Upstream</c> and each <c>Gateway:Upstreams</c> member are checked by one implementation (same words,
/// each naming its own key), and <c>Gateway:Upstream</c> is not checked at all once the pool has an entry (it is not used).
/// </summary>
public sealed class UpstreamValidationTests
{
    [Theory]
    [InlineData("HttpVersion", "3", "HttpVersion '3' must be \"auto\", \"1.1\" or \"2\".")]
    [InlineData("ActivityTimeout", "00:00:00", "ActivityTimeout must be a positive duration such as \"00:10:00\".")]
    [InlineData("ConnectTimeout", "-00:00:01", "ConnectTimeout must be a positive duration such as \"00:00:10\".")]
    [InlineData("BaseUrl", "api.openai.com/v1", "BaseUrl 'api.openai.com/v1' is not an absolute http(s) URL; use e.g. \"https://api.openai.com/v1\".")]
    [InlineData("BaseUrl", "https://x/v1#top", "BaseUrl must not carry a query string, fragment or user info; give just the /v1 address and put the key in ApiKey or ApiKeyFile.")]
    [InlineData("BaseUrl", "https://user:sk-secret@x/v1", "BaseUrl must not carry a query string, fragment or user info; give just the /v1 address and put the key in ApiKey or ApiKeyFile.")]
    public void Validate_SameBadTransportSetting_SameMessageNamingEachKey(string setting, string value, string message)
    {
        var single = Failures(new() { ["Gateway:Upstream:ApiKey"] = "sk-single", [$"Gateway:Upstream:{setting}"] = value });
        var pool = Failures(new() { ["Gateway:Upstreams:a:BaseUrl"] = "https://a/v1", ["Gateway:Upstreams:a:ApiKey"] = "sk-a", [$"Gateway:Upstreams:a:{setting}"] = value });

        Assert.Equal($"Gateway:Upstream:{message}", Assert.Single(single));
        Assert.Equal($"Gateway:Upstreams:a:{message}", Assert.Single(pool));
        Assert.DoesNotContain("sk-secret", string.Join('\n', single.Concat(pool)), StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_OnlyAPoolWithoutAnyGatewayUpstreamKey_Valid()
    {
        var failures = Failures(new()
        {
            ["Gateway:Upstreams:a:BaseUrl"] = "https://a/v1",
            ["Gateway:Upstreams:a:ApiKey"] = "sk-a",
            // Not used once the pool has an entry, so not judged either.
            ["Gateway:Upstream:BaseUrl"] = "not a url",
            ["Gateway:Upstream:HttpVersion"] = "3",
        });

        Assert.Empty(failures);
    }

    [Fact]
    public void Validate_NoPoolAndNoKeyAnywhere_FailsNamingEveryWayToGiveIt()
    {
        var failure = Assert.Single(Failures(new() { ["Gateway:Upstream:BaseUrl"] = "https://api.openai.com/v1" }));

        Assert.Contains("No upstream API key", failure, StringComparison.Ordinal);
        Assert.Contains("Gateway:Upstream:ApiKey", failure, StringComparison.Ordinal);
        Assert.Contains("OPENAI_API_KEY", failure, StringComparison.Ordinal);
        Assert.Contains("Gateway:Upstream:ApiKeyFile", failure, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Gateway_OnlyGatewayUpstreamsConfigured_StartsAndServesThroughThePool()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c =>
        {
            c.Remove("Gateway:Upstream:BaseUrl");
            c.Remove("Gateway:Upstream:ApiKey");
            c["Gateway:Upstreams:only:BaseUrl"] = upstream.BaseUrl.ToString().TrimEnd('/');
            c["Gateway:Upstreams:only:ApiKey"] = "sk-only-pool-key";
        });
        using var client = gateway.CreateClient();

        using var response = await client.SendAsync(CreateResponse());

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("only", UsageEvents.Text(await UsageEvents.OfAsync(gateway, response), "Upstream"));
        Assert.Equal("Bearer sk-only-pool-key", Assert.Single(upstream.Requests).Header("Authorization"));
        Assert.Empty(gateway.Logs.Named("UpstreamSettingIgnored")); // nothing set under Gateway:Upstream, nothing to warn about
    }

    /// <summary>The failures a start with <paramref name="config"/> reports (none when it starts).</summary>
    private static List<string> Failures(Dictionary<string, string?> config)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(config).Build();
        try
        {
            using var settings = new GatewaySettings(configuration, new GatewayOptionsValidator(configuration), NullLogger<GatewaySettings>.Instance);
            return [];
        }
        catch (OptionsValidationException ex)
        {
            return ex.Failures.ToList();
        }
    }
}
