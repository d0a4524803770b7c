using Gateway.Configuration;
using Gateway.Forwarding;
using Gateway.Health;
using Gateway.Isolation;
using Gateway.Observability;
using Gateway.Pipeline;
using Gateway.Pricing;
using Gateway.Quotas;
using Gateway.SharedState;
using Gateway.Tenants;
using Gateway.Upstreams;
using Gateway.Usage;
using OpenTelemetry.Metrics;
using StackExchange.Redis;

namespace Gateway.Hosting;

internal static class GatewayServiceExtensions
{
    /// <summary>Registers the gateway: configuration, tenants, forwarding, usage, quotas, isolation, health, metrics.</summary>
    public static WebApplicationBuilder AddGatewayServices(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.AddServerHeader = false);

        services.AddSingleton<GatewayOptionsValidator>();
        services.AddSingleton<GatewaySettings>();
        services.TryAddSingletonTimeProvider();

        services.AddSingleton<TenantDirectory>();
        services.AddSingleton<TenantAuthenticator>();

        services.AddHttpForwarder();
        services.AddUpstreamPool();
        services.AddSingleton<UpstreamTransformer>();
        services.AddSingleton<ThreadPoolHop>();
        services.AddSingleton<UpstreamForwarder>();

        services.AddSingleton<TokenCounter>();
        services.AddSingleton<UsageObserverFactory>();
        services.AddSingleton<UsageAccounting>();
        services.AddSingleton<UsageEventWriter>();
        services.AddSingleton<GatewayMetrics>();
        services.AddSingleton<SpendMetrics>();
        services.AddSingleton<PriceBook>();

        services.AddSharedStateStore();
        services.AddSingleton<QuotaService>();
        services.AddSingleton<QuotaEndpoint>();
        services.AddSingleton<IsolationGuard>();
        services.AddSingleton<GatewayRequestHandler>();
        services.AddSingleton<Requests.BodyReadLimiter>();

        services.AddSingleton<DrainState>();
        services.AddHostedService<DrainService>();
        services.AddHostedService<StartupWarmup>();
        services.AddOptions<HostOptions>().Configure<GatewaySettings>((host, settings) =>
            host.ShutdownTimeout = settings.Current.Shutdown.DrainDelay + settings.Current.Shutdown.DrainTimeout + TimeSpan.FromSeconds(2));

        services.AddOpenTelemetry().WithMetrics(metrics => metrics
            .AddMeter(GatewayMetrics.MeterName)
            // http_server_active_requests: open requests and streams per pod, what the HPA scales on
            // (deploy/components/in-flight-autoscaling); ASP.NET Core's duration histogram stays out (gen_ai_* covers it).
            .AddMeter("Microsoft.AspNetCore.Hosting")
            .AddView("http.server.request.duration", MetricStreamConfiguration.Drop)
            .AddPrometheusExporter());
        return builder;
    }

    private static void TryAddSingletonTimeProvider(this IServiceCollection services)
    {
        if (!services.Any(d => d.ServiceType == typeof(TimeProvider)))
        {
            services.AddSingleton(TimeProvider.System);
        }
    }

    /// <summary>
    /// Redis when <c>ConnectionStrings:Redis</c> is set, otherwise the in-process store. Decided when the store is first
    /// resolved, from the built configuration: a host that adds configuration sources late (WebApplicationFactory applies
    /// its sources only at Build) must not silently get the memory store.
    /// </summary>
    private static void AddSharedStateStore(this IServiceCollection services)
    {
        services.AddSingleton<MemoryStateStore>();
        services.AddSingleton<IConnectionMultiplexer>(sp =>
        {
            var quotas = sp.GetRequiredService<GatewaySettings>().Current.Quotas;
            var options = ConfigurationOptions.Parse(RedisConnectionString(sp)!);
            options.AbortOnConnectFail = false; // start even if Redis is down; OnStoreFailure decides what happens
            options.ConnectTimeout = (int)Math.Max(1000, quotas.RedisTimeout.TotalMilliseconds * 4);
            options.SyncTimeout = (int)quotas.RedisTimeout.TotalMilliseconds;
            options.AsyncTimeout = (int)quotas.RedisTimeout.TotalMilliseconds;
            options.ClientName ??= "llm-gateway";
            return ConnectionMultiplexer.Connect(options);
        });
        services.AddSingleton(sp => new RedisStateStore(sp.GetRequiredService<IConnectionMultiplexer>(),
            sp.GetRequiredService<GatewaySettings>().Current.Quotas.RedisKeyPrefix));
        services.AddSingleton<ResilientStateStore>();
        services.AddSingleton<ISharedStateStore>(sp => string.IsNullOrWhiteSpace(RedisConnectionString(sp))
            ? sp.GetRequiredService<MemoryStateStore>()
            : sp.GetRequiredService<ResilientStateStore>());
        services.AddHostedService<RedisDataLossMonitor>(); // idle without Redis
    }

    private static string? RedisConnectionString(IServiceProvider services) =>
        services.GetRequiredService<GatewaySettings>().Current.Quotas.RedisConnectionString;
}
