namespace Gateway.Upstreams;

/// <summary>Registers the pool (phase 2 calls this from Hosting/GatewayServiceExtensions).</summary>
internal static class UpstreamPoolServiceExtensions
{
    public static IServiceCollection AddUpstreamPool(this IServiceCollection services)
    {
        services.AddSingleton<UpstreamMetrics>();
        services.AddSingleton<UpstreamHealth>();
        services.AddSingleton(sp => new UpstreamPool(
            sp.GetRequiredService<Configuration.GatewaySettings>(), sp.GetRequiredService<IConfiguration>(),
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<UpstreamPool>>()));
        services.AddSingleton(sp =>
        {
            var pool = sp.GetRequiredService<UpstreamPool>();
            var health = sp.GetRequiredService<UpstreamHealth>();
            sp.GetRequiredService<UpstreamMetrics>().ObserveAvailability(pool, health);
            return new UpstreamRouter(pool, health);
        });
        return services;
    }
}
