using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Hosting;

/// <summary>
/// A bad setting stops the published gateway at start with exit code 1 and a message that names the key and the fix
/// on stderr: no stack trace, never a listening socket. Settings come from environment variables, as in a cluster.
/// </summary>
public sealed class StartupValidationTests
{
    [Theory]
    [InlineData("Gateway__Tenants__x__KeyHashes__0", "not-a-sha256-digest", "Gateway:Tenants:x:KeyHashes:0 is not a lowercase hex SHA-256 digest", "new-key")]
    [InlineData("Gateway__Shutdown__DrainTimeout", "soon", "Gateway:Shutdown:DrainTimeout has the value 'soon'", "hh:mm:ss")]
    [InlineData("Gateway__Quotas__OnStoreFailure", "Maybe", "Gateway:Quotas:OnStoreFailure has the value 'Maybe'", "Allow, Deny")]
    [InlineData("Gateway__Upstream__BaseUrl", "api.openai.com/v1", "Gateway:Upstream:BaseUrl 'api.openai.com/v1' is not an absolute http(s) URL", "https://api.openai.com/v1")]
    [InlineData("Gateway__Metrics__Port", "70000", "Gateway:Metrics:Port 70000 is not a TCP port", "remove it")]
    [InlineData("Gateway__Limits__MaxConcurrentBodyReadsPerTenant", "0", "Gateway:Limits:MaxConcurrentBodyReadsPerTenant must be a positive number", "e.g. 16")]
    [InlineData("Gateway__Quotas__RedisTimeout", "00:05:00", "Gateway:Quotas:RedisTimeout 00:05:00 is out of range", "\"00:00:00.500\"")]
    [InlineData("Gateway__Quotas__RedisRetryInterval", "-00:00:01", "Gateway:Quotas:RedisRetryInterval -00:00:01 is out of range", "\"00:00:02\"")]
    [InlineData("Gateway__Quotas__ConcurrencyLeaseTimeout", "00:00:00", "Gateway:Quotas:ConcurrencyLeaseTimeout 00:00:00 is out of range", "\"00:15:00\"")]
    [InlineData("Gateway__Quotas__BackgroundReservationTimeout", "400.00:00:00", "Gateway:Quotas:BackgroundReservationTimeout 400.00:00:00 is out of range", "\"01:00:00\"")]
    [InlineData("Gateway__Quotas__RedisDataLossCheckInterval", "00:00:00", "Gateway:Quotas:RedisDataLossCheckInterval 00:00:00 is out of range", "\"00:00:30\"")]
    [InlineData("Gateway__Quotas__TokenizeBodyBytesThreshold", "-1", "Gateway:Quotas:TokenizeBodyBytesThreshold must be 0", "default 65536")]
    [InlineData("Gateway__Warmup__MaxSeconds", "0", "Gateway:Warmup:MaxSeconds must be more than 0", "Gateway:Warmup:Enabled to false")]
    [InlineData("Gateway__Quotas__RedisKeyPrefix", "gw{t:a}", "Gateway:Quotas:RedisKeyPrefix 'gw{t:a}' must be 1-64 letters", "default \"gw\"")]
    public async Task BadSetting_ProcessExitsWithOne_MessageNamesKeyAndFix(string variable, string value, string problem, string fix)
    {
        await using var gateway = GatewayProcess.Start(await PublishedGateway.DirectoryAsync(), new Dictionary<string, string>
        {
            ["OPENAI_API_KEY"] = TestKeys.UpstreamKey,
            [variable] = value,
        });

        var exitCode = await gateway.WaitForExitAsync(TimeSpan.FromSeconds(60));

        AssertReadableConfigurationFailure(gateway, exitCode, problem, fix);
    }

    [Fact]
    public async Task RedisConnectionStringWithoutEndpoint_ProcessExitsWithOne_MessageHidesThePassword()
    {
        await using var gateway = GatewayProcess.Start(await PublishedGateway.DirectoryAsync(), new Dictionary<string, string>
        {
            ["OPENAI_API_KEY"] = TestKeys.UpstreamKey,
            ["ConnectionStrings__Redis"] = "password=hunter2-redis-secret,ssl=true",
        });

        var exitCode = await gateway.WaitForExitAsync(TimeSpan.FromSeconds(60));

        AssertReadableConfigurationFailure(gateway, exitCode, "ConnectionStrings:Redis is not a Redis connection string", "\"host:port\"");
        Assert.DoesNotContain("hunter2-redis-secret", gateway.Stderr + gateway.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UpstreamKeyFileMissing_ProcessExitsWithOne_MessageNamesKeyAndFix()
    {
        // The Secret is not mounted (wrong name, wrong path): say so, rather than start and answer 401s from upstream.
        await using var gateway = GatewayProcess.Start(await PublishedGateway.DirectoryAsync(), new Dictionary<string, string>
        {
            ["Gateway__Upstream__ApiKeyFile"] = "/nonexistent/llm-gateway/api-key",
        });

        var exitCode = await gateway.WaitForExitAsync(TimeSpan.FromSeconds(60));

        AssertReadableConfigurationFailure(gateway, exitCode, "Gateway:Upstream:ApiKeyFile '/nonexistent/llm-gateway/api-key' does not exist", "mount the secret");
    }

    [Fact]
    public async Task NoUpstreamKeyAtAll_ProcessExitsWithOne_MessageListsTheThreeWays()
    {
        await using var gateway = GatewayProcess.Start(await PublishedGateway.DirectoryAsync(), new Dictionary<string, string>());

        var exitCode = await gateway.WaitForExitAsync(TimeSpan.FromSeconds(60));

        AssertReadableConfigurationFailure(gateway, exitCode, "No upstream API key", "Gateway:Upstream:ApiKeyFile");
    }

    private static void AssertReadableConfigurationFailure(GatewayProcess gateway, int exitCode, string problem, string fix)
    {
        Assert.True(exitCode == 1, $"exit code {exitCode}\nstderr:\n{gateway.Stderr}");
        var stderr = gateway.Stderr;
        Assert.StartsWith("The gateway cannot start: the configuration is invalid.", stderr, StringComparison.Ordinal);
        var failure = Assert.Single(stderr.Split('\n'), l => l.Contains(problem, StringComparison.Ordinal));
        Assert.Contains(fix, failure, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain(gateway.StdoutLines, l => l.Contains("ListeningOnAddress", StringComparison.Ordinal));
    }
}
