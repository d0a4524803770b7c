using Gateway.Configuration;
using Gateway.Hosting;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Gateway.Tests.Upstreams;

public sealed class UpstreamPoolValidationTests
{
    [Theory]
    [InlineData("Gateway:Upstreams:a:Weight", "0", "Gateway:Upstreams:a:Weight must be a positive whole number", "remove the upstream")]
    [InlineData("Gateway:Upstreams:a:Weight", "-2", "Gateway:Upstreams:a:Weight must be a positive whole number", "priority group")]
    [InlineData("Gateway:Upstreams:a:Priority", "-1", "Gateway:Upstreams:a:Priority must be 0 or more", "lower is tried first")]
    [InlineData("Gateway:Upstreams:a:BaseUrl", "a.openai.azure.com/openai/v1", "Gateway:Upstreams:a:BaseUrl 'a.openai.azure.com/openai/v1' is not an absolute http(s) URL", "https://api.openai.com/v1")]
    [InlineData("Gateway:Upstreams:a:BaseUrl", "https://x/v1?api-version=1", "Gateway:Upstreams:a:BaseUrl must not carry a query string", "query")]
    [InlineData("Gateway:Upstreams:a:ApiKey", "", "Gateway:Upstreams:a has no key", "AzureIdentity")]
    [InlineData("Gateway:Upstreams:a:ApiKeyFile", "/nonexistent/pool/key", "Gateway:Upstreams:a:ApiKeyFile '/nonexistent/pool/key' does not exist", "mount the secret")]
    [InlineData("Gateway:Upstreams:a:ApiKeyEnvironmentVariable", "POOL_TEST_UNSET_VARIABLE", "names 'POOL_TEST_UNSET_VARIABLE', which is not set", "set that variable")]
    [InlineData("Gateway:Upstreams:a:HttpVersion", "3", "Gateway:Upstreams:a:HttpVersion '3' must be", "\"1.1\"")]
    [InlineData("Gateway:Upstreams:a:PriceMultiplier", "-0.5", "Gateway:Upstreams:a:PriceMultiplier must be 0 or more", "PTU")]
    [InlineData("Gateway:Upstreams:a:Models:gpt-4o", "", "Gateway:Upstreams:a:Models:gpt-4o is empty", "deployment name")]
    [InlineData("Gateway:Routing:MaxAttempts", "0", "Gateway:Routing:MaxAttempts must be 1 or more", "1 turns failover off")]
    [InlineData("Gateway:Routing:FailuresBeforeCooldown", "0", "Gateway:Routing:FailuresBeforeCooldown must be 1 or more", "1 or more")]
    [InlineData("Gateway:Routing:CooldownWithoutHint", "00:00:00", "Gateway:Routing:CooldownWithoutHint must be a positive duration", "00:00:10")]
    public void Start_BadPoolSetting_FailsNamingKeyAndFix(string key, string value, string problem, string fix)
    {
        var config = PoolTestKit.Config(["a", "b"], (key, value));
        if (key.EndsWith(":ApiKeyFile", StringComparison.Ordinal) || key.EndsWith(":ApiKeyEnvironmentVariable", StringComparison.Ordinal))
        {
            config.Remove("Gateway:Upstreams:a:ApiKey");
        }

        var failure = Assert.Single(Failures(config), f => f.Contains(problem, StringComparison.Ordinal));
        Assert.Contains(fix, failure, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_NamesDifferingOnlyInCase_Rejected()
    {
        // IConfiguration merges such keys itself; options built another way must still be caught.
        var options = new GatewayOptions { Upstream = new UpstreamOptions { ApiKey = "sk" } };
        options.Upstreams["East"] = new PoolUpstreamOptions { BaseUrl = "https://east/v1", ApiKey = "k1" };
        options.Upstreams["east"] = new PoolUpstreamOptions { BaseUrl = "https://east2/v1", ApiKey = "k2" };

        var result = new GatewayOptionsValidator(new ConfigurationBuilder().Build()).Validate(null, options);

        Assert.Contains(result.Failures!, f => f.Contains("Gateway:Upstreams:east: the name is also used by 'East'", StringComparison.Ordinal));
    }

    [Fact]
    public void Validate_AzureIdentityWithKey_Rejected()
    {
        var failures = Failures(PoolTestKit.Config(["a"], ("Gateway:Upstreams:a:AuthHeader", "AzureIdentity")));

        Assert.Contains(failures, f => f.Contains("Gateway:Upstreams:a: AuthHeader AzureIdentity uses a Microsoft Entra token, not a key", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("api-key", "ApiKey")]
    [InlineData("Authorization", "Authorization")]
    [InlineData("azureidentity", "AzureIdentity")]
    public void Bind_AuthHeaderSpellings_Bound(string text, string expectedName)
    {
        var expected = Enum.Parse<UpstreamAuthHeader>(expectedName);
        var config = PoolTestKit.Config(["a"], ("Gateway:Upstreams:a:AuthHeader", text));
        if (expected == UpstreamAuthHeader.AzureIdentity)
        {
            config.Remove("Gateway:Upstreams:a:ApiKey");
        }

        using var settings = Settings(config);

        Assert.Equal(expected, settings.Current.Upstreams["a"].AuthHeader);
    }

    [Fact]
    public void Start_UnknownAuthHeader_StartupFailureNamesKeyAndChoices()
    {
        // The configuration binder drops a dictionary entry it cannot convert; the pool must not just lose the upstream.
        var exception = Assert.ThrowsAny<Exception>(() => Settings(PoolTestKit.Config(["a", "b"], ("Gateway:Upstreams:a:AuthHeader", "Basic"))));

        var failure = Assert.Single(StartupFailure.Describe(exception)!);
        Assert.Contains("'Basic' at 'Gateway:Upstreams:a:AuthHeader'", failure, StringComparison.Ordinal);
        Assert.Contains("\"api-key\" (Azure OpenAI key) or \"AzureIdentity\"", failure, StringComparison.Ordinal);
    }

    [Fact]
    public void Start_UnreadableDuration_FailsInsteadOfDroppingTheUpstream()
    {
        var failures = Failures(PoolTestKit.Config(["a", "b"], ("Gateway:Upstreams:b:ActivityTimeout", "soon")));

        var failure = Assert.Single(failures);
        Assert.Contains("'soon' at 'Gateway:Upstreams:b:ActivityTimeout'", failure, StringComparison.Ordinal);
        Assert.Contains("stays out of the pool", failure, StringComparison.Ordinal);
    }

    [Fact]
    public void Reload_InvalidPool_RejectedAndPreviousPoolStays()
    {
        var config = PoolTestKit.Config(["a", "b"]);
        using var kit = new PoolTestKit(config);

        kit.ReplaceConfiguration(PoolTestKit.Config(["a", "b"], ("Gateway:Upstreams:b:Weight", "0")));

        Assert.Equal(1, kit.Settings.Current.Upstreams["b"].Weight);
        Assert.Equal(["a", "b"], kit.Pool.Current.Upstreams.Select(u => u.Name));
    }

    [Fact]
    public async Task PublishedGateway_BadPoolWeight_ExitsWithOneNamingKeyAndFix()
    {
        await using var gateway = GatewayProcess.Start(await PublishedGateway.DirectoryAsync(), new Dictionary<string, string>
        {
            ["OPENAI_API_KEY"] = TestKeys.UpstreamKey,
            ["Gateway__Upstreams__eastus__BaseUrl"] = "https://eastus.example/openai/v1",
            ["Gateway__Upstreams__eastus__AuthHeader"] = "api-key",
            ["Gateway__Upstreams__eastus__ApiKey"] = "azure-key",
            ["Gateway__Upstreams__eastus__Weight"] = "0",
        });

        var exitCode = await gateway.WaitForExitAsync(TimeSpan.FromSeconds(60));

        Assert.True(exitCode == 1, $"exit code {exitCode}\nstderr:\n{gateway.Stderr}");
        var failure = Assert.Single(gateway.Stderr.Split('\n'), l => l.Contains("Gateway:Upstreams:eastus:Weight must be a positive whole number", StringComparison.Ordinal));
        Assert.Contains("remove the upstream", failure, StringComparison.Ordinal);
        Assert.DoesNotContain("azure-key", gateway.Stderr, StringComparison.Ordinal);
    }

    private static GatewaySettings Settings(Dictionary<string, string?> config)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(config).Build();
        return new GatewaySettings(configuration, new GatewayOptionsValidator(configuration), NullLogger<GatewaySettings>.Instance);
    }

    private static List<string> Failures(Dictionary<string, string?> config)
    {
        var exception = Assert.Throws<OptionsValidationException>(() => Settings(config));
        return exception.Failures.ToList();
    }
}
