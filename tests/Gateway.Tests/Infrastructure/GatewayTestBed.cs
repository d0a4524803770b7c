using FakeUpstream;

namespace Gateway.Tests.Infrastructure;

/// <summary>A fake upstream and one gateway in front of it, started per test class.</summary>
public class GatewayTestBed : IAsyncLifetime
{
    private readonly Action<Dictionary<string, string?>>? _configure;

    public GatewayTestBed()
    {
    }

    protected GatewayTestBed(Action<Dictionary<string, string?>> configure) => _configure = configure;

    public FakeUpstreamServer Upstream { get; private set; } = null!;

    public GatewayHost Gateway { get; private set; } = null!;

    public virtual async Task InitializeAsync()
    {
        Upstream = await FakeUpstreamServer.StartAsync();
        Gateway = await GatewayHost.StartAsync(Upstream.BaseUrl, _configure);
    }

    public virtual async Task DisposeAsync()
    {
        await Gateway.DisposeAsync();
        await Upstream.DisposeAsync();
    }
}
