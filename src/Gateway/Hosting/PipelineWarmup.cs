using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Http.Headers;
using System.Runtime;
using System.Security.Cryptography;
using System.Text;
using Gateway.Configuration;
using Gateway.Observability;
using Gateway.Tenants;
using Gateway.Usage;
using OpenTelemetry.Metrics;
using Serilog;
using Serilog.Configuration;

namespace Gateway.Hosting;

/// <summary>Where the warm-up's canned upstream listens: loopback, a port the OS picks. Replaceable in tests.</summary>
internal sealed record WarmupBinding(IPEndPoint CannedUpstream)
{
    public static WarmupBinding Loopback { get; } = new(new IPEndPoint(IPAddress.Loopback, 0));
}

internal sealed record WarmupResult(int Requests, int Failures, TimeSpan Elapsed, long MethodsCompiled, bool JitSettled);

/// <summary>
/// Drives the whole request pipeline with synthetic requests before the real port opens, so that the first real
/// requests find Kestrel, authentication, admission, YARP, the usage tee and the usage event already compiled at
/// tier 1 (compiled code is per process: the real gateway reuses it). The requests go to a private copy of the
/// gateway, built with the same service registration (<see cref="GatewayServiceExtensions.AddGatewayServices"/>)
/// and <see cref="GatewayEndpointExtensions.MapGateway"/>, but with its own in-memory configuration only: the
/// in-process store, one synthetic tenant with every limit set (so admission does all its work), a synthetic
/// upstream key, a canned upstream on loopback, logs formatted and dropped, meters renamed out of every real
/// exporter's sight. Nothing reaches the real upstream, the shared store, the usage log or <c>/metrics</c>, and the
/// copy is disposed before the real server starts.
/// </summary>
internal static class PipelineWarmup
{
    public const string TenantId = "gateway-warmup";

    /// <summary>Enough connections to exercise the pools and the thread pool, few enough for one CPU.</summary>
    private const int ConcurrentLoops = 16;

    /// <summary>The JIT counts as settled once fewer than <see cref="SettledBelowMethods"/> methods were compiled in this window.</summary>
    private static readonly TimeSpan SettledWindow = TimeSpan.FromSeconds(1);

    /// <summary>Measured on this gateway: ~500-1,000 methods per second while the hot paths tier up, ~50 after.</summary>
    private const int SettledBelowMethods = 100;

    private static readonly TimeSpan MinimumDuration = TimeSpan.FromSeconds(2);

    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(100);

    private static readonly (string Path, string Body)[] Requests =
    [
        ("responses", """{"model":"gpt-4o-mini","input":"Say hello in five words.","max_output_tokens":64}"""),
        ("responses", """{"model":"gpt-4o-mini","input":"Say hello in five words.","max_output_tokens":64,"stream":true}"""),
        ("chat/completions", """{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello in five words."}],"max_tokens":64}"""),
        ("chat/completions", """{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello in five words."}],"max_tokens":64,"stream":true}"""),
    ];

    public static async Task<WarmupResult> RunAsync(IServiceProvider gatewayServices, WarmupOptions options, CancellationToken cancellationToken)
    {
        // Real time on purpose (not the gateway's TimeProvider): the JIT settles in the process's time.
        var clock = TimeProvider.System;
        var started = clock.GetTimestamp();
        var compiledAtStart = System.Runtime.JitInfo.GetCompiledMethodCount();
        var binding = gatewayServices.GetService<WarmupBinding>() ?? WarmupBinding.Loopback;

        await using var upstream = await WarmupUpstream.StartAsync(binding.CannedUpstream, cancellationToken);
        var key = "gwk_warmup_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));
        var gateway = await StartPrivateGatewayAsync(gatewayServices, upstream.BaseUrl, key, cancellationToken);
        var tally = new Tally();
        try
        {
            using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false, AutomaticDecompression = DecompressionMethods.None })
            {
                BaseAddress = new Uri(gateway.Urls.First().TrimEnd('/') + "/v1/"),
                Timeout = TimeSpan.FromSeconds(30),
            };
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);

            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var loops = Enumerable.Range(0, ConcurrentLoops).Select(loop => DriveAsync(client, loop, tally, stop.Token)).ToArray();
            var settled = await WaitForJitAsync(clock, started, TimeSpan.FromSeconds(options.MaxSeconds), tally, cancellationToken);
            await stop.CancelAsync();
            await Task.WhenAll(loops);
            cancellationToken.ThrowIfCancellationRequested();

            return new WarmupResult(tally.Requests, tally.Failures, clock.GetElapsedTime(started),
                System.Runtime.JitInfo.GetCompiledMethodCount() - compiledAtStart, settled);
        }
        finally
        {
            await gateway.StopAsync(CancellationToken.None);
            await gateway.DisposeAsync();

            // The copy's store, tokenizer buffers and connections are garbage now: give the memory back before serving.
            GCSettings.LargeObjectHeapCompactionMode = GCLargeObjectHeapCompactionMode.CompactOnce;
            GC.Collect();
        }
    }

    private static async Task<bool> WaitForJitAsync(TimeProvider clock, long started, TimeSpan maximum, Tally tally, CancellationToken cancellationToken)
    {
        // (when, methods compiled so far), the last second of them.
        var samples = new Queue<(long Timestamp, long Count)>();
        while (true)
        {
            await Task.Delay(PollInterval, clock, cancellationToken);
            var now = clock.GetTimestamp();
            var count = System.Runtime.JitInfo.GetCompiledMethodCount();
            samples.Enqueue((now, count));
            while (clock.GetElapsedTime(samples.Peek().Timestamp, now) > SettledWindow)
            {
                samples.Dequeue();
            }

            if (clock.GetElapsedTime(started, now) >= maximum)
            {
                return false;
            }

            // A trickle of compilations never stops (rarely taken branches, timers); the hot paths are done once the
            // rate falls from hundreds per second to a few dozen.
            var (oldestTimestamp, oldestCount) = samples.Peek();
            if (tally.Requests > 0 && clock.GetElapsedTime(started, now) >= MinimumDuration
                && clock.GetElapsedTime(oldestTimestamp, now) >= SettledWindow - PollInterval && count - oldestCount < SettledBelowMethods)
            {
                return true;
            }

            // Nothing gets through (a broken copy): more of the same warms nothing.
            if (tally.Failures >= 100 && tally.Requests == tally.Failures)
            {
                return false;
            }
        }
    }

    private static async Task DriveAsync(HttpClient client, int loop, Tally tally, CancellationToken cancellationToken)
    {
        for (var i = loop; !cancellationToken.IsCancellationRequested; i++)
        {
            var (path, body) = Requests[i % Requests.Length];
            var succeeded = false;
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
                using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
                await using var content = await response.Content.ReadAsStreamAsync(cancellationToken);
                await content.CopyToAsync(Stream.Null, cancellationToken);
                succeeded = response.IsSuccessStatusCode;
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (HttpRequestException)
            {
            }

            tally.Add(succeeded);
        }
    }

    private static async Task<WebApplication> StartPrivateGatewayAsync(IServiceProvider gatewayServices, Uri upstreamBaseUrl, string key, CancellationToken cancellationToken)
    {
        var environment = gatewayServices.GetRequiredService<IHostEnvironment>();
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions
        {
            Args = [],
            EnvironmentName = Environments.Production,
            ContentRootPath = environment.ContentRootPath, // where the real gateway finds the price file
        });

        // Only this configuration: no file, environment variable or command line of the real gateway (its upstream,
        // keys, Redis, tenants, Urls) can reach the copy.
        builder.Configuration.Sources.Clear();
        builder.Configuration.AddInMemoryCollection(Configuration(gatewayServices, upstreamBaseUrl, key));
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0));

        // The gateway's own logging, formatted as the real sink formats it, then dropped.
        builder.Services.AddSerilog((_, logger) => logger
            .MinimumLevel.Information()
            .MinimumLevel.Override("Microsoft.AspNetCore", Serilog.Events.LogEventLevel.Warning)
            .MinimumLevel.Override("Microsoft.AspNetCore.Hosting.Diagnostics", Serilog.Events.LevelAlias.Off)
            .MinimumLevel.Override("Yarp", Serilog.Events.LogEventLevel.Error)
            .WriteTo.DroppedClef(), preserveStaticLogger: true);
        builder.AddGatewayServices();
        builder.Services.AddSingleton<IMeterFactory, WarmupMeterFactory>();
        builder.Services.ConfigureOpenTelemetryMeterProvider(metrics => metrics.AddMeter(WarmupMeterFactory.Prefix + "*"));
        // Shared, not built twice: the tokenizer's vocabulary is immutable and takes a few hundred ms to load.
        builder.Services.AddSingleton(gatewayServices.GetRequiredService<TokenCounter>());

        var app = builder.Build();
        app.MapGateway();
        try
        {
            await app.StartAsync(cancellationToken);
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }

        return app;
    }

    private static Dictionary<string, string?> Configuration(IServiceProvider gatewayServices, Uri upstreamBaseUrl, string key)
    {
        const string Tenant = "Gateway:Tenants:" + TenantId;
        const string Large = "1000000000000";
        return new Dictionary<string, string?>
        {
            ["Gateway:Upstream:BaseUrl"] = upstreamBaseUrl.ToString(),
            ["Gateway:Upstream:ApiKey"] = "sk-warmup-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16)),
            [Tenant + ":KeyHashes:0"] = GatewayKeyCommand.Hash(key),
            [Tenant + ":Limits:RequestsPerMinute"] = Large,
            [Tenant + ":Limits:TokensPerMinute"] = Large,
            [Tenant + ":Limits:TokensPerDay"] = Large,
            [Tenant + ":Limits:TokensPerMonth"] = Large,
            [Tenant + ":Limits:MaxConcurrentRequests"] = "100000",
            [Tenant + ":Limits:UsdPerDay"] = "1000000",
            [Tenant + ":Limits:UsdPerMonth"] = "1000000",
            [Tenant + ":MaxOutputTokens"] = "4096",
            ["Gateway:Shutdown:DrainDelay"] = "00:00:00",
            ["Gateway:Shutdown:DrainTimeout"] = "00:00:02",
            ["Gateway:Warmup:Enabled"] = "false",
            // The same price file as the real gateway (a path, nothing secret).
            ["Gateway:Pricing:File"] = gatewayServices.GetRequiredService<GatewaySettings>().Current.Pricing.File,
        };
    }

    private sealed class Tally
    {
        private int _requests;
        private int _failures;

        public int Requests => Volatile.Read(ref _requests);

        public int Failures => Volatile.Read(ref _failures);

        public void Add(bool succeeded)
        {
            Interlocked.Increment(ref _requests);
            if (!succeeded)
            {
                Interlocked.Increment(ref _failures);
            }
        }
    }
}

internal static class DroppedClefSinkExtensions
{
    /// <summary>The real stdout sink's formatting and batching, writing to <see cref="Stream.Null"/>.</summary>
    public static LoggerConfiguration DroppedClef(this LoggerSinkConfiguration sinks) =>
        sinks.Sink(GatewayStdoutSinkExtensions.CreateSink(Stream.Null, bufferingMilliseconds: 100));
}
