using System.Globalization;
using System.Text;
using FakeUpstream;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Forwarding;

/// <summary>
/// The published gateway with inline socket completions on one socket engine thread (as the image ships them): the
/// CPU-heavy stages that follow an upstream read (the estimate of a large body when a stream is cut, observing a
/// large read) must run on the thread pool, never on the epoll thread that serves every connection. What thread a
/// stage ran on is read from <c>gateway_large_input_stages_total</c> on /metrics.
/// </summary>
[Collection(MetricsTestGroup.Name)]
public sealed class ThreadPoolHopTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task CutStream_LargeBodyWithInlineCompletions_EstimatesOnThreadPool()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await StartAsync(upstream);
        using var client = gateway.CreateClient();

        using var request = CreateResponse(LargeInput(8 * 1024), stream: true);
        request.Headers.Add("x-fake-deltas", "20");
        request.Headers.Add("x-fake-drop-after", "4");
        using var response = await client.SendAsync(request);
        await response.Content.ReadAsStringAsync();

        var usage = Assert.Single(await gateway.WaitForEventsAsync("Usage", Timeout));
        Assert.Equal("estimated", usage.GetProperty("UsageSource").GetString());
        var stages = await ScrapeStagesAsync(gateway, "accounting");
        Assert.Equal(1, stages.OnThreadPool);
        Assert.Equal(0, stages.OnOtherThreads);
    }

    [Fact]
    public async Task LargeAnswer_InlineCompletions_ObservedOnThreadPool()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await StartAsync(upstream);
        using var client = gateway.CreateClient();

        // A JSON answer of ~60 KB written at once: the usage tee gets reads far above ThreadPoolHop.ObserveAboveBytes.
        using var request = CreateResponse("Hello", stream: false);
        request.Headers.Add("x-fake-deltas", "10000");
        using var response = await client.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();

        Assert.True(response.IsSuccessStatusCode, body);
        var usage = Assert.Single(await gateway.WaitForEventsAsync("Usage", Timeout));
        Assert.Equal("upstream", usage.GetProperty("UsageSource").GetString());
        var stages = await ScrapeStagesAsync(gateway, "usage_tee");
        Assert.True(stages.OnThreadPool >= 1, $"no large read was observed on the thread pool ({body.Length} bytes answered)");
        Assert.Equal(0, stages.OnOtherThreads);
    }

    private static async Task<GatewayProcess> StartAsync(FakeUpstreamServer upstream)
    {
        var gateway = GatewayProcess.Start(await PublishedGateway.DirectoryAsync(), new Dictionary<string, string>
        {
            ["DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS"] = "1",
            ["DOTNET_SYSTEM_NET_SOCKETS_THREAD_COUNT"] = "1",
            ["Gateway__Upstream__BaseUrl"] = upstream.BaseUrl.ToString().TrimEnd('/'),
            ["OPENAI_API_KEY"] = TestKeys.UpstreamKey,
            ["Gateway__Tenants__tenant-a__KeyHashes__0"] = TestKeys.Hash(TestKeys.KeyA),
            ["Gateway__Tenants__tenant-a__Limits__TokensPerMinute"] = "10000000",
            // /metrics on the API port (the shipped appsettings.json puts it on 9464, which parallel runs would share).
            ["Gateway__Metrics__Port"] = "",
            ["Gateway__Metrics__Public"] = "true",
        });
        await gateway.WaitUntilListeningAsync(Timeout);
        return gateway;
    }

    private static HttpRequestMessage CreateResponse(string input, bool stream) =>
        new(HttpMethod.Post, "responses")
        {
            Content = new StringContent(
                $$"""{"model":"gpt-4o-mini","stream":{{(stream ? "true" : "false")}},"input":"{{input}}"}""", Encoding.UTF8, "application/json"),
        };

    private static string LargeInput(int bytes)
    {
        var text = new StringBuilder(bytes + 16);
        while (text.Length < bytes)
        {
            text.Append("the gateway estimates what a cut stream read ");
        }

        return text.ToString();
    }

    /// <summary>The <c>gateway_large_input_stages_total</c> series of <paramref name="stage"/>, by thread kind.</summary>
    private static async Task<(long OnThreadPool, long OnOtherThreads)> ScrapeStagesAsync(GatewayProcess gateway, string stage)
    {
        using var http = new HttpClient { BaseAddress = gateway.RootUrl };
        var text = await http.GetStringAsync("/metrics");
        long pool = 0, other = 0;
        foreach (var line in text.Split('\n'))
        {
            if (!line.StartsWith("gateway_large_input_stages_total{", StringComparison.Ordinal) || !line.Contains($"stage=\"{stage}\"", StringComparison.Ordinal))
            {
                continue;
            }

            var value = long.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
            if (line.Contains("thread=\"thread_pool\"", StringComparison.Ordinal))
            {
                pool += value;
            }
            else
            {
                other += value;
            }
        }

        return (pool, other);
    }
}
