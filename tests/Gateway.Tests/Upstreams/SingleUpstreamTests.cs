using System.Net;
using FakeUpstream;
using Gateway.Tests.Infrastructure;
using Gateway.Tests.Usage;
using Gateway.Upstreams;
using static Gateway.Tests.Quotas.QuotaTestKit;

namespace Gateway.Tests.Upstreams;

/// <summary>
/// <c>Gateway:Upstream</c> alone is the pool's only member, <c>default</c>, on the one request path: it behaves as
/// the single upstream always did (its own 429 relayed, every request forwarded, readiness untouched, the key file
/// re-read and its change logged), and gains the pool's per-upstream metrics.
/// </summary>
[Collection(MetricsTestGroup.Name)] // one test reads /metrics: hosts running beside it export their own "Gateway" meters there too
public sealed class SingleUpstreamTests : IAsyncLifetime
{
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("gateway-single-upstream-");
    private FakeUpstreamServer _upstream = null!;

    public async Task InitializeAsync() => _upstream = await FakeUpstreamServer.StartAsync();

    public async Task DisposeAsync()
    {
        await _upstream.DisposeAsync();
        _directory.Delete(recursive: true);
    }

    [Fact]
    public async Task SingleUpstream_Request_GoesThroughThePoolAsDefaultAndIsCounted()
    {
        await using var gateway = await GatewayHost.StartAsync(_upstream.BaseUrl);
        using var client = gateway.CreateClient();

        using var response = await client.SendAsync(CreateResponse());

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var usage = await UsageEvents.OfAsync(gateway, response);
        Assert.Equal("default", UsageEvents.Text(usage, "Upstream"));
        Assert.Equal(1, UsageEvents.Long(usage, "Attempts"));
        Assert.Equal($"Bearer {TestKeys.UpstreamKey}", Assert.Single(_upstream.Requests).Header("Authorization"));
        using var metrics = new HttpClient { BaseAddress = gateway.RootUrl };
        // OpenTelemetry's meter listener is process-wide and matches meters by name: a gateway running beside this one
        // exports its own "Gateway" meter here as a second series (seen in CI: two lines), hence the serial collection.
        var series = await Eventually.ValueAsync(
            async () => (await metrics.GetStringAsync("/metrics")).Split('\n').Where(l => l.StartsWith("gateway_upstream_requests_total{", StringComparison.Ordinal)
                && l.Contains("upstream=\"default\"", StringComparison.Ordinal) && l.Contains("status_class=\"2xx\"", StringComparison.Ordinal)).ToList(),
            lines => lines.Count > 0, "the default upstream's 2xx series");
        var line = Assert.Single(series);
        Assert.True(long.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture) >= 1, line);
    }

    [Fact]
    public async Task SingleUpstream_HalfOpenWhileAProbeIsOut_ConcurrentRequestStillForwarded()
    {
        var clock = MidMinuteClock();
        await using var gateway = await GatewayHost.StartAsync(_upstream.BaseUrl, services: UseClock(clock));
        using var client = gateway.CreateClient();

        // The upstream's own 429 is relayed (one candidate: nothing to fail over to) and cools the model.
        using (var throttled = await client.SendAsync(CreateResponse(headers: [("x-fake-status", "429"), ("x-fake-retry-after", "1")])))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, throttled.StatusCode);
            Assert.Equal("1", throttled.Headers.RetryAfter?.Delta?.TotalSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        clock.Advance(TimeSpan.FromSeconds(2)); // cooldown over: the next request is the probe
        using var abandon = new CancellationTokenSource();
        var probe = client.SendAsync(CreateResponse(headers: [("x-fake-first-byte-delay-ms", "60000")]), abandon.Token);
        await Eventually.UntilAsync(() => _upstream.RequestCount == 2, "the probe reached the upstream");

        using var beside = await client.SendAsync(CreateResponse());

        Assert.Equal(HttpStatusCode.OK, beside.StatusCode);
        Assert.Equal(3, _upstream.RequestCount);
        await abandon.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => probe);
    }

    [Fact]
    public async Task SingleUpstream_RefusesOurKey_ClientGetsNoUpstreamTextAndReadinessUnchanged()
    {
        await using var gateway = await GatewayHost.StartAsync(_upstream.BaseUrl);
        using var client = gateway.CreateClient();
        using var probe = new HttpClient { BaseAddress = gateway.RootUrl };
        _upstream.SetMode(FakeUpstreamMode.Fail(401));

        using var response = await client.SendAsync(CreateResponse());

        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.DoesNotContain("Incorrect API key", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.NotEmpty(gateway.Logs.Named("UpstreamAuthRejected"));
        // Nowhere else to send: an unready replica would only turn the 502 into a refused connection.
        using var ready = await probe.GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
    }

    [Fact]
    public async Task DefaultKeyFile_MissingThenMounted_FallsBackToOpenAiApiKeyThenReadsTheFile()
    {
        var keyFile = Path.Combine(_directory.FullName, "api-key");
        using var kit = new PoolTestKit(new Dictionary<string, string?>
        {
            ["Gateway:Upstream:BaseUrl"] = _upstream.BaseUrl.ToString(),
            ["Gateway:Upstream:ApiKeyFile"] = keyFile,
            ["OPENAI_API_KEY"] = "environment-key",
        });
        var credentials = Assert.Single(kit.Pool.Current.Upstreams).Credentials;

        Assert.Equal("Bearer environment-key", (await credentials.GetAsync(default)).Value);
        await File.WriteAllTextAsync(keyFile, "mounted-key\n");
        kit.Time.Advance(FileKeyCredentialSource.RereadInterval);

        Assert.Equal("Bearer mounted-key", (await credentials.GetAsync(default)).Value);
        var changed = Assert.Single(kit.Log.Named("UpstreamKeyChanged"));
        Assert.Contains("Gateway:Upstream:ApiKeyFile", changed.Message, StringComparison.Ordinal);
        Assert.Empty(kit.Log.Named("UpstreamKeyFileUnreadable"));
        Assert.DoesNotContain(kit.Log.Events, e => e.Message.Contains("mounted-key", StringComparison.Ordinal) || e.Message.Contains("environment-key", StringComparison.Ordinal));
    }

    [Fact]
    public async Task KeyFile_RotatedThenConfigurationReloaded_ReaderKeptAndChangeLoggedOnce()
    {
        var keyFile = Path.Combine(_directory.FullName, "west-key");
        await File.WriteAllTextAsync(keyFile, "west-key-1");
        var config = PoolTestKit.Config(["east", "west"]);
        config.Remove("Gateway:Upstreams:west:ApiKey");
        config["Gateway:Upstreams:west:ApiKeyFile"] = keyFile;
        using var kit = new PoolTestKit(config);
        var before = kit.Pool.Current.Find("west")!.Credentials;

        await File.WriteAllTextAsync(keyFile, "west-key-2");
        config["Gateway:Upstreams:east:Weight"] = "4";
        kit.ReplaceConfiguration(config); // an unrelated edit: the reader (and what it last read) survives it
        var after = kit.Pool.Current.Find("west")!.Credentials;
        kit.Time.Advance(FileKeyCredentialSource.RereadInterval);

        Assert.Same(before, after);
        Assert.Equal("Bearer west-key-2", (await after.GetAsync(default)).Value);
        var changed = Assert.Single(kit.Log.Named("UpstreamKeyChanged"));
        Assert.Contains("Upstream west key loaded from Gateway:Upstreams:west:ApiKeyFile", changed.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Choose_SingleUpstream_SameChoiceEveryTimeWithoutAllocating()
    {
        using var kit = new PoolTestKit(new Dictionary<string, string?> { ["Gateway:Upstream:ApiKey"] = "sk-single" });
        var first = kit.Router.Choose("gpt-4o-mini");

        var allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            Assert.Same(first, kit.Router.Choose(i % 2 == 0 ? "gpt-4o-mini" : null));
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - allocatedBefore);
        Assert.Equal(UpstreamPool.DefaultUpstreamName, Assert.Single(first.Candidates).Name);
    }
}
