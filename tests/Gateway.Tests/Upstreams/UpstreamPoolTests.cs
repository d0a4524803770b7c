using System.Net;
using System.Text;
using FakeUpstream;
using Gateway.Upstreams;
using Microsoft.Extensions.Logging;

namespace Gateway.Tests.Upstreams;

/// <summary>The pool's snapshots against real fake upstreams on loopback: invokers, credentials, reloads.</summary>
public sealed class UpstreamPoolTests : IAsyncLifetime
{
    private FakeUpstreamServer _east = null!;
    private FakeUpstreamServer _west = null!;

    public async Task InitializeAsync()
    {
        _east = await FakeUpstreamServer.StartAsync();
        _west = await FakeUpstreamServer.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _east.DisposeAsync();
        await _west.DisposeAsync();
    }

    [Fact]
    public async Task Send_TwoUpstreams_EachSeesOnlyItsOwnCredentialsAndDeployment()
    {
        using var kit = new PoolTestKit(TwoUpstreams());
        var snapshot = kit.Pool.Current;

        using var eastAnswer = await SendAsync(snapshot.Find("east")!, "gpt-4.1-mini");
        using var westAnswer = await SendAsync(snapshot.Find("west")!, "gpt-4.1-mini");

        Assert.Equal(HttpStatusCode.OK, eastAnswer.StatusCode);
        Assert.Equal(HttpStatusCode.OK, westAnswer.StatusCode);
        var east = Assert.Single(_east.Requests);
        var west = Assert.Single(_west.Requests);
        Assert.Equal("/openai/v1/responses", east.PathAndQuery);
        Assert.Equal("east-key", east.Header("api-key"));
        Assert.Null(east.Header("Authorization"));
        Assert.Contains("\"model\":\"mini-east\"", east.BodyText, StringComparison.Ordinal);
        Assert.Equal("Bearer west-key", west.Header("Authorization"));
        Assert.Null(west.Header("api-key"));
        Assert.Equal("org-west", west.Header("OpenAI-Organization"));
        Assert.Contains("\"model\":\"gpt-4.1-mini\"", west.BodyText, StringComparison.Ordinal);
        Assert.DoesNotContain("west-key", string.Join('\n', east.Headers.Values.SelectMany(v => v)), StringComparison.Ordinal);
        Assert.DoesNotContain("east-key", string.Join('\n', west.Headers.Values.SelectMany(v => v)), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Reload_UpstreamRemoved_InFlightSnapshotStillSendsAndNewSnapshotLacksIt()
    {
        using var kit = new PoolTestKit(TwoUpstreams());
        var before = kit.Pool.Current;

        var edited = TwoUpstreams();
        edited.Remove("Gateway:Upstreams:west:BaseUrl");
        edited.Remove("Gateway:Upstreams:west:ApiKey");
        edited.Remove("Gateway:Upstreams:west:Organization");
        edited["Gateway:Upstreams:east:Weight"] = "5";
        kit.ReplaceConfiguration(edited);

        var after = kit.Pool.Current;
        Assert.Equal(["east"], after.Upstreams.Select(u => u.Name));
        Assert.Equal(5, after.Find("east")!.Weight);
        Assert.Equal(1, before.Find("east")!.Weight);
        Assert.Same(before.Find("east")!.Transport, after.Find("east")!.Transport); // connection pool kept across the re-weighting
        Assert.NotSame(before.Find("east")!.Transport.Invoker, before.Find("west")!.Transport.Invoker);
        Assert.Equal(UpstreamChoiceKind.PinnedUpstreamGone, kit.Router.Choose("gpt-4.1-mini", "west").Kind);

        // A request that took the old snapshot finishes its attempts on it.
        using var answer = await SendAsync(before.Find("west")!, "gpt-4.1-mini");
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        Assert.Single(_west.Requests);
        Assert.Single(kit.Log.Named("UpstreamPoolReloaded"));
    }

    [Fact]
    public async Task NoPool_GatewayUpstreamIsTheUpstreamNamedDefault()
    {
        using var kit = new PoolTestKit(new Dictionary<string, string?>
        {
            ["Gateway:Upstream:BaseUrl"] = _west.BaseUrl.ToString(),
            ["Gateway:Upstream:ApiKey"] = "single-key",
        });

        var only = Assert.Single(kit.Pool.Current.Upstreams);
        using var answer = await SendAsync(only, "gpt-4o-mini");

        Assert.Equal(UpstreamPool.DefaultUpstreamName, only.Name);
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        Assert.Equal("Bearer single-key", Assert.Single(_west.Requests).Header("Authorization"));
        Assert.Empty(kit.Log.Named("UpstreamSettingIgnored"));
    }

    [Fact]
    public void PoolAndSingleUpstreamBothSet_WarnsThatGatewayUpstreamIsNotUsed()
    {
        using var kit = new PoolTestKit(TwoUpstreams());

        var warning = Assert.Single(kit.Log.Named("UpstreamSettingIgnored"));
        Assert.Equal(LogLevel.Warning, warning.Level);
        Assert.Contains("Gateway:Upstream is not used", warning.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(kit.Pool.Current.Upstreams, u => u.Name == UpstreamPool.DefaultUpstreamName);
    }

    [Fact]
    public async Task KeyFile_Rotated_NewKeyUsedAfterTheRereadInterval()
    {
        var keyFile = Path.GetTempFileName();
        try
        {
            await File.WriteAllTextAsync(keyFile, "first-key\n");
            var config = TwoUpstreams();
            config.Remove("Gateway:Upstreams:west:ApiKey");
            config["Gateway:Upstreams:west:ApiKeyFile"] = keyFile;
            using var kit = new PoolTestKit(config);
            var credentials = kit.Pool.Current.Find("west")!.Credentials;

            Assert.Equal("Bearer first-key", (await credentials.GetAsync(default)).Value);
            await File.WriteAllTextAsync(keyFile, "second-key");
            kit.Time.Advance(FileKeyCredentialSource.RereadInterval - TimeSpan.FromMilliseconds(1));
            Assert.Equal("Bearer first-key", (await credentials.GetAsync(default)).Value);
            kit.Time.Advance(TimeSpan.FromMilliseconds(1));
            Assert.Equal("Bearer second-key", (await credentials.GetAsync(default)).Value);

            File.Delete(keyFile);
            kit.Time.Advance(FileKeyCredentialSource.RereadInterval);
            Assert.Equal("Bearer second-key", (await credentials.GetAsync(default)).Value); // unreadable: previous key kept
            var unreadable = Assert.Single(kit.Log.Named("UpstreamKeyFileUnreadable"));
            Assert.DoesNotContain("second-key", unreadable.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(keyFile);
        }
    }

    [Fact]
    public async Task AzureIdentity_TokenCachedAndRefreshedFiveMinutesBeforeExpiry()
    {
        var config = TwoUpstreams();
        config.Remove("Gateway:Upstreams:east:ApiKey");
        config["Gateway:Upstreams:east:AuthHeader"] = "AzureIdentity";
        using var kit = new PoolTestKit(config);
        kit.Entra.Clock = kit.Time;
        var east = kit.Pool.Current.Find("east")!;

        using var first = await SendAsync(east, "gpt-4.1-mini");
        using var second = await SendAsync(east, "gpt-4.1-mini");
        kit.Time.Advance(kit.Entra.Lifetime - EntraTokenCredentialSource.RefreshBeforeExpiry - TimeSpan.FromSeconds(1));
        using var third = await SendAsync(east, "gpt-4.1-mini");
        kit.Time.Advance(TimeSpan.FromSeconds(1));
        using var fourth = await SendAsync(east, "gpt-4.1-mini");

        Assert.Equal(2, kit.Entra.Calls);
        Assert.Equal(
            ["Bearer entra-token-1", "Bearer entra-token-1", "Bearer entra-token-1", "Bearer entra-token-2"],
            _east.Requests.Select(r => r.Header("Authorization")));
        Assert.All(_east.Requests, r => Assert.Null(r.Header("api-key")));
    }

    [Fact]
    public async Task AzureIdentity_RefreshFailsWhileTokenValid_CachedTokenUsedThenErrorOnceExpired()
    {
        var source = new EntraTokenCredentialSource(new FakeEntraCredential(), TimeProvider.System);
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        var credential = new FakeEntraCredential { Clock = time };
        using var cached = new EntraTokenCredentialSource(credential, time);
        source.Dispose();

        Assert.Equal("Bearer entra-token-1", (await cached.GetAsync(default)).Value);
        credential.Fail = true;
        time.Advance(credential.Lifetime - TimeSpan.FromMinutes(1)); // past the refresh point, not expired

        Assert.Equal("Bearer entra-token-1", (await cached.GetAsync(default)).Value);
        time.Advance(TimeSpan.FromMinutes(1));
        await Assert.ThrowsAsync<Azure.Identity.CredentialUnavailableException>(() => cached.GetAsync(default).AsTask());
    }

    private Dictionary<string, string?> TwoUpstreams() => new(StringComparer.OrdinalIgnoreCase)
    {
        ["Gateway:Upstream:ApiKey"] = "sk-single",
        ["Gateway:Upstreams:east:BaseUrl"] = new Uri(_east.RootUrl, "openai/v1").ToString(),
        ["Gateway:Upstreams:east:AuthHeader"] = "api-key",
        ["Gateway:Upstreams:east:ApiKey"] = "east-key",
        ["Gateway:Upstreams:east:Models:gpt-4.1-mini"] = "mini-east",
        ["Gateway:Upstreams:west:BaseUrl"] = _west.BaseUrl.ToString(),
        ["Gateway:Upstreams:west:ApiKey"] = "west-key",
        ["Gateway:Upstreams:west:Organization"] = "org-west",
    };

    /// <summary>What the request path will do per attempt: the upstream's invoker, its credential, its deployment name.</summary>
    private static async Task<HttpResponseMessage> SendAsync(PoolUpstream upstream, string model)
    {
        var json = Encoding.UTF8.GetBytes($"{{\"model\":\"{model}\",\"input\":\"hi\"}}");
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(json.Length);
        json.CopyTo(buffer, 0);
        using var body = new Gateway.Requests.PooledBody(buffer, json.Length);
        UpstreamModelRewriter.Rewrite(body, upstream.UpstreamModel(model)!);
        using var request = new HttpRequestMessage(HttpMethod.Post, upstream.BaseUrl + "/responses")
        {
            Content = new ByteArrayContent(body.Memory.ToArray()),
            Version = upstream.Transport.RequestConfig.Version ?? HttpVersion.Version11,
            VersionPolicy = upstream.Transport.RequestConfig.VersionPolicy ?? HttpVersionPolicy.RequestVersionOrLower,
        };
        request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        var credential = await upstream.Credentials.GetAsync(default);
        request.Headers.TryAddWithoutValidation(credential.HeaderName, credential.Value);
        if (upstream.Organization is { } organization)
        {
            request.Headers.TryAddWithoutValidation("OpenAI-Organization", organization);
        }

        return await upstream.Transport.Invoker.SendAsync(request, default);
    }
}
