using System.Buffers;
using System.Diagnostics.Metrics;
using System.Text;
using BenchmarkDotNet.Attributes;
using Gateway.Configuration;
using Gateway.Requests;
using Gateway.Upstreams;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;

namespace Gateway.Benchmarks;

/// <summary>What the pool adds per request once wired: one choice, one attempt begun and reported, one model rewrite.</summary>
[MemoryDiagnoser]
public class UpstreamPoolBenchmarks
{
    private readonly byte[] _body = Encoding.UTF8.GetBytes("{\"model\":\"gpt-4.1-mini\",\"input\":\"" + new string('x', 900) + "\",\"stream\":true,\"store\":false}");
    private ServiceProvider _services = null!;
    private GatewaySettings _settings = null!;
    private UpstreamPool _pool = null!;
    private UpstreamHealth _health = null!;
    private UpstreamRouter _router = null!;
    private GatewaySettings _singleSettings = null!;
    private UpstreamPool _singlePool = null!;
    private UpstreamRouter _singleRouter = null!;

    [GlobalSetup]
    public void Setup()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Gateway:Upstream:ApiKey"] = "sk-single",
            ["Gateway:Upstreams:a:BaseUrl"] = "http://127.0.0.1:9/v1",
            ["Gateway:Upstreams:a:ApiKey"] = "sk-a",
            ["Gateway:Upstreams:a:Weight"] = "3",
            ["Gateway:Upstreams:a:Models:gpt-4.1-mini"] = "mini-a",
            ["Gateway:Upstreams:b:BaseUrl"] = "http://127.0.0.2:9/v1",
            ["Gateway:Upstreams:b:ApiKey"] = "sk-b",
        }).Build();
        _services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        _settings = new GatewaySettings(configuration, new GatewayOptionsValidator(configuration), NullLogger<GatewaySettings>.Instance);
        _pool = new UpstreamPool(_settings, configuration, TimeProvider.System, NullLogger<UpstreamPool>.Instance);
        _health = new UpstreamHealth(TimeProvider.System, new UpstreamMetrics(_services.GetRequiredService<IMeterFactory>()), NullLogger<UpstreamHealth>.Instance);
        _router = new UpstreamRouter(_pool, _health);

        // Gateway:Upstream alone: the pool's only member, "default" (the one request path of every single-upstream deployment).
        var single = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["Gateway:Upstream:ApiKey"] = "sk-single" }).Build();
        _singleSettings = new GatewaySettings(single, new GatewayOptionsValidator(single), NullLogger<GatewaySettings>.Instance);
        _singlePool = new UpstreamPool(_singleSettings, single, TimeProvider.System, NullLogger<UpstreamPool>.Instance);
        _singleRouter = new UpstreamRouter(_singlePool, _health);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _pool.Dispose();
        _settings.Dispose();
        _singlePool.Dispose();
        _singleSettings.Dispose();
        _services.Dispose();
    }

    [Benchmark]
    public async ValueTask<string> ChooseAttemptReport()
    {
        var choice = _router.Choose("gpt-4.1-mini");
        var upstream = choice.Candidates[0];
        var attempt = _health.TryBeginAttempt(upstream, "gpt-4.1-mini")!;
        var credential = await upstream.Credentials.GetAsync(default);
        _health.Report(attempt, UpstreamAttemptOutcome.Answered(200), choice.Snapshot.Routing);
        return credential.Value;
    }

    [Benchmark]
    public async ValueTask<string> SingleUpstreamChooseAttemptReport()
    {
        var choice = _singleRouter.Choose("gpt-4.1-mini");
        var upstream = choice.Candidates[0];
        var attempt = _health.TryBeginAttempt(upstream, "gpt-4.1-mini", soleCandidate: true)!;
        var credential = await upstream.Credentials.GetAsync(default);
        _health.Report(attempt, UpstreamAttemptOutcome.Answered(200), choice.Snapshot.Routing);
        return credential.Value;
    }

    [Benchmark]
    public int RewriteModel()
    {
        var buffer = ArrayPool<byte>.Shared.Rent(_body.Length);
        _body.CopyTo(buffer, 0);
        using var body = new PooledBody(buffer, _body.Length);
        UpstreamModelRewriter.Rewrite(body, "mini-a");
        return body.Length;
    }
}
