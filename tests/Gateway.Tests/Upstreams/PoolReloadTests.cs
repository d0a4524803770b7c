using System.Net;
using System.Text.Json.Nodes;
using FakeUpstream;
using Gateway.Tests.Infrastructure;
using Gateway.Tests.Usage;
using static Gateway.Tests.Quotas.QuotaTestKit;

namespace Gateway.Tests.Upstreams;

/// <summary>
/// The pool is read from the watched configuration file: switching from <c>Gateway:Upstream</c> alone to a pool,
/// adding, removing and re-weighting upstreams apply on reload while streams are in flight, and none is dropped.
/// </summary>
public sealed class PoolReloadTests : IAsyncLifetime
{
    private const string Gate = "hold";
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("gateway-pool-reload-");

    private FakeUpstreamServer _single = null!;
    private FakeUpstreamServer _east = null!;
    private FakeUpstreamServer _west = null!;
    private FakeUpstreamServer _north = null!;

    private string ConfigFile => Path.Combine(_directory.FullName, "upstreams.json");

    public async Task InitializeAsync()
    {
        _single = await FakeUpstreamServer.StartAsync();
        _east = await FakeUpstreamServer.StartAsync();
        _west = await FakeUpstreamServer.StartAsync();
        _north = await FakeUpstreamServer.StartAsync();
    }

    public async Task DisposeAsync()
    {
        foreach (var fake in new[] { _single, _east, _west, _north })
        {
            fake.ReleaseGate(Gate);
            await fake.DisposeAsync();
        }

        _directory.Delete(recursive: true);
    }

    [Fact]
    public async Task Reload_SingleToPoolThenUpstreamAddedRemovedReweighted_EveryInFlightStreamCompletes()
    {
        await File.WriteAllTextAsync(ConfigFile, "{}");
        await using var gateway = await GatewayHost.StartAsync(_single.BaseUrl, configFile: ConfigFile);
        using var client = gateway.CreateClient();
        var held = new List<(HttpResponseMessage Response, string[] Upstreams)>();

        // Gateway:Upstream alone: the pool's "default" member.
        held.Add((await StartGatedStreamAsync(client, Gate), ["default"]));
        held.Add((await StartGatedStreamAsync(client, Gate), ["default"]));

        // Reload to a pool of east and west (1:1): Gateway:Upstream is no longer used, the streams on it go on.
        await File.WriteAllTextAsync(ConfigFile, PoolJson(("east", _east, 1), ("west", _west, 1)));
        await Eventually.UntilAsync(async () => await SendAsync(gateway, client) is "east" or "west", "the reloaded pool takes new requests");
        for (var i = 0; i < 40 && (GatedOn(_east) == 0 || GatedOn(_west) == 0); i++)
        {
            held.Add((await StartGatedStreamAsync(client, Gate), ["east", "west"]));
        }

        Assert.True(GatedOn(_east) > 0 && GatedOn(_west) > 0, "streams are held on both pool members");
        var singleBefore = _single.RequestCount;

        // Reload: east removed (streams on it still open), west re-weighted to 3, north added.
        await File.WriteAllTextAsync(ConfigFile, PoolJson(("west", _west, 3), ("north", _north, 1)));
        await Eventually.UntilAsync(async () => await SendAsync(gateway, client) == "north", "the added upstream takes requests");
        var eastBefore = _east.RequestCount;
        var answered = await Task.WhenAll(Enumerable.Range(0, 24).Select(_ => SendAsync(gateway, client)));
        Assert.All(answered, upstream => Assert.True(upstream is "west" or "north", upstream));
        Assert.Equal(eastBefore, _east.RequestCount);
        Assert.Equal(singleBefore, _single.RequestCount);
        held.Add((await StartGatedStreamAsync(client, Gate), ["west", "north"]));

        foreach (var fake in new[] { _single, _east, _west, _north })
        {
            fake.ReleaseGate(Gate);
        }

        foreach (var (response, upstreams) in held)
        {
            var requestId = RequestId(response)!;
            using (response)
            {
                // The rest of the stream after the first event (read by StartGatedStreamAsync).
                using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
                var rest = await reader.ReadToEndAsync();
                Assert.Contains("response.completed", rest, StringComparison.Ordinal);
            }

            var usage = await gateway.Logs.SingleUsageEventAsync(requestId);
            Assert.Equal("completed", UsageEvents.Text(usage, "Outcome"));
            Assert.Contains(UsageEvents.Text(usage, "Upstream"), upstreams);
            Assert.True(UsageEvents.Long(usage, "OutputTokens") > 0);
        }

        Assert.DoesNotContain(gateway.Logs.Lines, l => l.Contains("ConfigurationReloadRejected", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Reload_WhileRequestsRun_NoneFailsAndEachLandsOnAConfiguredUpstream()
    {
        await File.WriteAllTextAsync(ConfigFile, PoolJson(("east", _east, 1)));
        await using var gateway = await GatewayHost.StartAsync(_single.BaseUrl, configFile: ConfigFile);
        using var client = gateway.CreateClient();

        using var stop = new CancellationTokenSource();
        var load = Enumerable.Range(0, 4).Select(async _ =>
        {
            var upstreams = new List<string?>();
            while (!stop.IsCancellationRequested)
            {
                upstreams.Add(await SendAsync(gateway, client, stream: true));
            }

            return upstreams;
        }).ToList();

        // Each step adds an upstream the previous one lacked: a request reaching it proves the step is in force.
        (string[] Names, string Added)[] steps = [(["east", "west"], "west"), (["west", "north"], "north"), (["north", "east"], "east"), (["west"], "west")];
        foreach (var (names, added) in steps)
        {
            var fakes = names.Select(n => (n, n switch { "east" => _east, "west" => _west, _ => _north }, 1)).ToArray();
            await File.WriteAllTextAsync(ConfigFile, PoolJson(fakes));
            await Eventually.UntilAsync(async () => await SendAsync(gateway, client) == added, $"the pool {string.Join('+', names)} is in force");
        }

        Assert.All(await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => SendAsync(gateway, client))), u => Assert.Equal("west", u));
        await stop.CancelAsync();
        var seen = (await Task.WhenAll(load)).SelectMany(u => u).ToList();
        Assert.NotEmpty(seen);
        Assert.All(seen, upstream => Assert.True(upstream is "east" or "west" or "north", upstream ?? "(none)"));
        Assert.Equal(0, _single.RequestCount);
    }

    /// <summary>How many gated (held) requests <paramref name="fake"/> has received.</summary>
    private static int GatedOn(FakeUpstreamServer fake) => fake.Requests.Count(r => r.Header("x-fake-gate") is not null);

    /// <summary>Sends one request, checks it completed, and returns the upstream its usage event names.</summary>
    private static async Task<string?> SendAsync(GatewayHost gateway, HttpClient client, bool stream = false)
    {
        using var response = await client.SendAsync(CreateResponse("reload", stream: stream));
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {body}");
        Assert.Contains(stream ? "response.completed" : "\"completed\"", body, StringComparison.Ordinal);
        var usage = await UsageEvents.OfAsync(gateway, response);
        Assert.Equal("completed", UsageEvents.Text(usage, "Outcome"));
        return UsageEvents.Text(usage, "Upstream");
    }

    private static string PoolJson(params (string Name, FakeUpstreamServer Fake, int Weight)[] upstreams)
    {
        var pool = new JsonObject();
        foreach (var (name, fake, weight) in upstreams)
        {
            pool[name] = new JsonObject
            {
                ["BaseUrl"] = fake.BaseUrl.ToString().TrimEnd('/'),
                ["ApiKey"] = $"sk-{name}-upstream-key",
                ["Weight"] = weight,
            };
        }

        return new JsonObject { ["Gateway"] = new JsonObject { ["Upstreams"] = pool } }.ToJsonString();
    }
}
