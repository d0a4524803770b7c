using System.Net;
using System.Net.Http.Headers;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Serilog.Core;

namespace Gateway.Tests.Infrastructure;

/// <summary>
/// The real gateway (its Program, its whole pipeline) on a real Kestrel bound to 127.0.0.1:0, configured in
/// front of a fake upstream. Tenants A and B exist unless the test replaces them.
/// </summary>
public sealed class GatewayHost : IAsyncDisposable
{
    private readonly Factory _factory;

    private GatewayHost(Factory factory, Uri root)
    {
        _factory = factory;
        RootUrl = root;
        BaseUrl = new Uri(root, "/v1/");
    }

    public Uri RootUrl { get; }

    /// <summary><c>http://127.0.0.1:port/v1/</c>, what an SDK is given as its base URL.</summary>
    public Uri BaseUrl { get; }

    public LogCapture Logs => _factory.Logs;

    public IServiceProvider Services => _factory.Services;

    public static Task<GatewayHost> StartAsync(Uri upstreamBaseUrl, Action<Dictionary<string, string?>>? configure = null,
        Action<IServiceCollection>? services = null, string? configFile = null)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Gateway:Upstream:BaseUrl"] = upstreamBaseUrl.ToString().TrimEnd('/'),
            ["Gateway:Upstream:ApiKey"] = TestKeys.UpstreamKey,
            ["Gateway:Tenants:tenant-a:KeyHashes:0"] = TestKeys.Hash(TestKeys.KeyA),
            ["Gateway:Tenants:tenant-b:KeyHashes:0"] = TestKeys.Hash(TestKeys.KeyB),
            ["Gateway:Shutdown:DrainDelay"] = "00:00:00",
            ["Gateway:Shutdown:DrainTimeout"] = "00:00:05",
            // Metrics tests scrape the API port; production keeps /metrics off there (MetricsExposureTests remove this).
            ["Gateway:Metrics:Public"] = "true",
            // The start-up warm-up costs seconds per host; StartupWarmupTests turn it on.
            ["Gateway:Warmup:Enabled"] = "false",
            ["Serilog:MinimumLevel:Default"] = "Information",
            // The capture sink gets every event; the console only fatal ones (keeps test output readable).
            ["Serilog:WriteTo:0:Name"] = "Console",
            ["Serilog:WriteTo:0:Args:restrictedToMinimumLevel"] = "Fatal",
        };
        configure?.Invoke(settings);
        var factory = new Factory(settings, services, configFile);
        factory.UseKestrel(k => k.Listen(IPAddress.Loopback, 0));
        factory.StartServer();
        var addresses = factory.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
        return Task.FromResult(new GatewayHost(factory, new Uri(addresses.First().Replace("[::1]", "127.0.0.1", StringComparison.Ordinal))));
    }

    /// <summary>An HttpClient for the gateway with a tenant key (or none).</summary>
    public HttpClient CreateClient(string? key = TestKeys.KeyA)
    {
        var client = new HttpClient { BaseAddress = BaseUrl, Timeout = TimeSpan.FromSeconds(60) };
        if (key is not null)
        {
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        }

        return client;
    }

    public ValueTask DisposeAsync() => _factory.DisposeAsync();

    private sealed class Factory(Dictionary<string, string?> settings, Action<IServiceCollection>? services, string? configFile) : WebApplicationFactory<Program>
    {
        public LogCapture Logs { get; } = new();

        protected override void ConfigureWebHost(IWebHostBuilder builder)
        {
            builder.UseEnvironment("Production");

            // Also as host settings: those are visible while Program registers its services (e.g. the Redis store is
            // chosen from ConnectionStrings:Redis at that point), whereas ConfigureAppConfiguration sources are only
            // added when the host is built.
            foreach (var (key, value) in settings)
            {
                builder.UseSetting(key, value);
            }

            builder.ConfigureAppConfiguration((_, config) =>
            {
                config.AddInMemoryCollection(settings);
                if (configFile is not null)
                {
                    config.AddJsonFile(configFile, optional: false, reloadOnChange: true);
                }
            });
            builder.ConfigureServices(s =>
            {
                s.AddSingleton<ILogEventSink>(Logs);
                services?.Invoke(s);
            });
        }
    }
}
