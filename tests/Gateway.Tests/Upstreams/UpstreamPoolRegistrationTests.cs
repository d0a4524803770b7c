using Gateway.Configuration;
using Gateway.Upstreams;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Gateway.Tests.Upstreams;

/// <summary>The registration phase 2 will call resolves against the gateway's own services.</summary>
public sealed class UpstreamPoolRegistrationTests
{
    [Fact]
    public void AddUpstreamPool_WithGatewaySettings_RouterResolvesOnePoolAndHealth()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(PoolTestKit.Config(["a", "b"])).Build();
        var services = new ServiceCollection()
            .AddSingleton<IConfiguration>(configuration)
            .AddSingleton(TimeProvider.System)
            .AddSingleton<GatewayOptionsValidator>()
            .AddSingleton<GatewaySettings>()
            .AddLogging()
            .AddMetrics();

        using var provider = services.AddUpstreamPool().BuildServiceProvider(new ServiceProviderOptions { ValidateOnBuild = true, ValidateScopes = true });
        var router = provider.GetRequiredService<UpstreamRouter>();

        Assert.Equal(["a", "b"], router.Choose("gpt-4o").Candidates.Select(c => c.Name).Order());
        Assert.Same(provider.GetRequiredService<UpstreamPool>().Current, router.Choose("gpt-4o").Snapshot);
        Assert.True(router.IsAnyUsable());
    }
}
