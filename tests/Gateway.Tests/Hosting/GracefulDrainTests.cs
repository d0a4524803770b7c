using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using FakeUpstream;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Hosting;

/// <summary>
/// SIGTERM on the published gateway, run as a real process the way a container runs it (environment variables,
/// upstream key from a mounted file, the shipped appsettings.json with its asynchronous console log sink).
/// </summary>
public sealed class GracefulDrainTests : IAsyncLifetime
{
    private const int StreamCount = 3;
    private const int Deltas = 12;

    private FakeUpstreamServer _upstream = null!;
    private string _secretDirectory = null!;

    public async Task InitializeAsync()
    {
        _upstream = await FakeUpstreamServer.StartAsync();
        _secretDirectory = Directory.CreateTempSubdirectory("gateway-secret-").FullName;
        await File.WriteAllTextAsync(Path.Combine(_secretDirectory, "api-key"), TestKeys.UpstreamKey + "\n");
    }

    public async Task DisposeAsync()
    {
        await _upstream.DisposeAsync();
        Directory.Delete(_secretDirectory, recursive: true);
    }

    [Fact]
    public async Task SigTerm_OpenStreams_CompleteAndAreBilledBeforeExitCodeZero()
    {
        await using var gateway = GatewayProcess.Start(await PublishedGateway.DirectoryAsync(), new Dictionary<string, string>
        {
            ["Gateway__Upstream__BaseUrl"] = _upstream.BaseUrl.ToString(),
            ["Gateway__Upstream__ApiKeyFile"] = Path.Combine(_secretDirectory, "api-key"),
            ["Gateway__Tenants__tenant-a__KeyHashes__0"] = TestKeys.Hash(TestKeys.KeyA),
            // Long enough for this test to act inside it on a loaded machine; the listener's closing marks its end.
            ["Gateway__Shutdown__DrainDelay"] = "00:00:10",
            ["Gateway__Shutdown__DrainTimeout"] = "00:01:00",
        });
        await gateway.WaitUntilListeningAsync();
        var gate = "drain-" + Guid.NewGuid().ToString("N");

        // Streams in flight: each has delivered its first event and waits on the upstream (held at the gate).
        using var streamClient = gateway.CreateClient();
        var streams = new List<(HttpResponseMessage Response, SseReader Reader)>();
        for (var i = 0; i < StreamCount; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "responses")
            {
                Content = new StringContent($$"""{"model":"gpt-4o-mini","input":"drain stream {{i}}","stream":true}""", Encoding.UTF8, "application/json"),
            };
            request.Headers.Add("x-fake-gate", gate);
            request.Headers.Add("x-fake-delay-ms", "20");
            request.Headers.Add("x-fake-deltas", Deltas.ToString(System.Globalization.CultureInfo.InvariantCulture));
            var response = await streamClient.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var reader = new SseReader(await response.Content.ReadAsStreamAsync());
            using var first = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            Assert.Equal("response.created", (await reader.NextAsync(first.Token))?.Event);
            streams.Add((response, reader));
        }

        gateway.Terminate();

        // 1. Not ready at once, still alive.
        using (var probes = new HttpClient { BaseAddress = gateway.RootUrl, Timeout = TimeSpan.FromSeconds(10) })
        {
            var (status, body) = await Eventually.ValueAsync(
                async () =>
                {
                    using var ready = await probes.GetAsync("readyz");
                    return (ready.StatusCode, await ready.Content.ReadAsStringAsync());
                },
                ready => ready.StatusCode == HttpStatusCode.ServiceUnavailable,
                "/readyz answers 503 once SIGTERM arrived");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
            using (var readiness = JsonDocument.Parse(body))
            {
                Assert.True(readiness.RootElement.GetProperty("draining").GetBoolean());
            }

            using var alive = await probes.GetAsync("healthz");
            Assert.Equal(HttpStatusCode.OK, alive.StatusCode);
        }

        // 2. New requests, on new connections, are still served during the drain delay.
        string lateRequestId;
        using (var lateClient = gateway.CreateClient())
        {
            using var late = await lateClient.PostAsync("responses", new StringContent("""{"model":"gpt-4o-mini","input":"arrived while draining"}""", Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.OK, late.StatusCode);
            lateRequestId = late.Headers.GetValues("x-gateway-request-id").Single();
        }

        // 3. After the delay the listener closes; the held streams keep the process alive.
        await WaitUntilConnectionRefusedAsync(gateway.RootUrl.Port, TimeSpan.FromSeconds(60));
        Assert.False(gateway.HasExited);

        // 4. The upstream continues: every open stream runs to its end.
        _upstream.ReleaseGate(gate);
        var completed = new List<(string RequestId, string ResponseId)>();
        foreach (var (response, reader) in streams)
        {
            using var rest = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            var events = await reader.ReadAllAsync(rest.Token);
            Assert.Equal("response.completed", events[^1].Event);
            Assert.Equal(Deltas, events.Count(e => e.Event == "response.output_text.delta"));
            using var last = JsonDocument.Parse(events[^1].Data);
            completed.Add((response.Headers.GetValues("x-gateway-request-id").Single(), last.RootElement.GetProperty("response").GetProperty("id").GetString()!));
            response.Dispose();
        }

        // 5. Exit code 0, and every request's usage event reached stdout before the process ended.
        Assert.Equal(0, await gateway.WaitForExitAsync(TimeSpan.FromSeconds(90)));
        Assert.Empty(gateway.Stderr);
        var usage = gateway.UsageEvents;
        foreach (var (requestId, responseId) in completed)
        {
            var e = Assert.Single(usage, u => u.GetProperty("RequestId").GetString() == requestId);
            Assert.Equal(responseId, e.GetProperty("ResponseId").GetString());
            Assert.Equal("tenant-a", e.GetProperty("Tenant").GetString());
            Assert.Equal("completed", e.GetProperty("Outcome").GetString());
            Assert.Equal("upstream", e.GetProperty("UsageSource").GetString());
            Assert.True(e.GetProperty("Stream").GetBoolean());
            Assert.Equal(Deltas, e.GetProperty("OutputTokens").GetInt64());
        }

        var lateEvent = Assert.Single(usage, u => u.GetProperty("RequestId").GetString() == lateRequestId);
        Assert.Equal("completed", lateEvent.GetProperty("Outcome").GetString());
        Assert.Equal(StreamCount + 1, usage.Count);
        Assert.Contains(gateway.Events, e => GatewayProcess.EventName(e) == "Draining");

        // The upstream key came from the mounted file, trimmed.
        Assert.All(_upstream.Requests, r => Assert.Equal("Bearer " + TestKeys.UpstreamKey, r.Header("Authorization")));
    }

    private static Task WaitUntilConnectionRefusedAsync(int port, TimeSpan timeout) =>
        Eventually.UntilAsync(async () =>
        {
            using var client = new TcpClient();
            try
            {
                await client.ConnectAsync(IPAddress.Loopback, port);
                return false;
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionRefused)
            {
                return true;
            }
        }, "the gateway refuses connections after SIGTERM", timeout);
}
