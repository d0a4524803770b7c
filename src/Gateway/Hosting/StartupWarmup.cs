using Gateway.Tenants;
using Gateway.Upstreams;
using Gateway.Usage;

namespace Gateway.Hosting;

/// <summary>
/// Builds the expensive singletons at start (the tokenizer's vocabulary takes a few hundred milliseconds to load)
/// so the first request does not pay for them, and so a bad configuration fails the start, not the first request.
/// </summary>
internal sealed class StartupWarmup(IServiceProvider services) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        services.GetRequiredService<TenantDirectory>();
        services.GetRequiredService<UpstreamRouter>(); // the pool: reads the upstream keys
        services.GetRequiredService<TokenCounter>().Count("warm up the o200k_base vocabulary");
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
