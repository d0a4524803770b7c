using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using FakeUpstream;

namespace Gateway.Tests.Upstreams;

/// <summary>Several fakes in one test, each told how to behave as a whole, whatever the request headers say.</summary>
public sealed class FakeUpstreamModeTests : IAsyncLifetime
{
    private FakeUpstreamServer _first = null!;
    private FakeUpstreamServer _second = null!;

    public async Task InitializeAsync()
    {
        _first = await FakeUpstreamServer.StartAsync();
        _second = await FakeUpstreamServer.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _first.DisposeAsync();
        await _second.DisposeAsync();
    }

    [Fact]
    public async Task SetMode_FailOnOneInstance_OtherInstanceUnaffected()
    {
        _first.SetMode(FakeUpstreamMode.Fail(503));

        using var failed = await PostResponseAsync(_first);
        using var fine = await PostResponseAsync(_second);

        Assert.Equal(HttpStatusCode.ServiceUnavailable, failed.StatusCode);
        Assert.Contains("\"type\":\"service_unavailable_error\"", await failed.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, fine.StatusCode);
        Assert.Single(_first.Requests); // still recorded: tests count attempts per upstream
    }

    [Fact]
    public async Task ModeRoute_Throttle_429WithRetryAfterAndRetryAfterMs()
    {
        using var control = new HttpClient { BaseAddress = _first.RootUrl };
        using var set = await control.PostAsJsonAsync("/_fake/mode", new { mode = "throttle", retryAfter = 2, retryAfterMs = 1500 });
        Assert.Equal(HttpStatusCode.NoContent, set.StatusCode);

        using var throttled = await PostResponseAsync(_first);

        Assert.Equal(HttpStatusCode.TooManyRequests, throttled.StatusCode);
        Assert.Equal("2", throttled.Headers.GetValues("retry-after").Single());
        Assert.Equal("1500", throttled.Headers.GetValues("retry-after-ms").Single());
        Assert.Contains("rate_limit_exceeded", await throttled.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        using var reset = await control.PostAsJsonAsync("/_fake/mode", new { mode = "normal" });
        using var normal = await PostResponseAsync(_first);
        Assert.Equal(HttpStatusCode.OK, normal.StatusCode);
    }

    [Fact]
    public async Task ModeRoute_Hang_NoHeadersUntilTheClientGivesUp()
    {
        using var control = new HttpClient { BaseAddress = _first.RootUrl };
        using var set = await control.PostAsJsonAsync("/_fake/mode", new { mode = "hang" });

        using var client = new HttpClient { Timeout = TimeSpan.FromMilliseconds(500) };
        var started = TimeProvider.System.GetTimestamp();
        await Assert.ThrowsAsync<TaskCanceledException>(() => client.PostAsync(new Uri(_first.BaseUrl, "v1/responses"), Body()));

        Assert.True(TimeProvider.System.GetElapsedTime(started) >= TimeSpan.FromMilliseconds(450));
        Assert.Single(_first.Requests);
    }

    [Fact]
    public async Task ModeRoute_Stop_ListenerClosedConnectionsRefused()
    {
        using var control = new HttpClient { BaseAddress = _first.RootUrl };
        using var stopped = await control.PostAsJsonAsync("/_fake/mode", new { mode = "stop" });
        Assert.Equal(HttpStatusCode.NoContent, stopped.StatusCode);

        // The listener closes right after answering; wait on the condition (a refused connect), not a fixed pause.
        HttpRequestException? refused = null;
        var deadline = TimeProvider.System.GetTimestamp();
        while (refused is null && TimeProvider.System.GetElapsedTime(deadline) < TimeSpan.FromSeconds(10))
        {
            using var fresh = new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.Zero });
            try
            {
                using var _ = await fresh.PostAsync(new Uri(_first.BaseUrl, "v1/responses"), Body());
                await Task.Yield();
            }
            catch (HttpRequestException ex) when (ex.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionRefused })
            {
                refused = ex;
            }
            catch (HttpRequestException)
            {
                // Still shutting down: the connection was accepted, then reset.
            }
        }

        Assert.NotNull(refused);
        using var other = await PostResponseAsync(_second);
        Assert.Equal(HttpStatusCode.OK, other.StatusCode);
    }

    [Fact]
    public async Task ModeRoute_UnknownMode_400Envelope()
    {
        using var control = new HttpClient { BaseAddress = _first.RootUrl };

        using var response = await control.PostAsJsonAsync("/_fake/mode", new { mode = "explode" });

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("\"param\":\"mode\"", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    private static async Task<HttpResponseMessage> PostResponseAsync(FakeUpstreamServer upstream)
    {
        using var client = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(upstream.BaseUrl, "v1/responses")) { Content = Body() };
        request.Headers.TryAddWithoutValidation("Authorization", "Bearer sk-test");
        return await client.SendAsync(request);
    }

    private static StringContent Body() => new("""{"model":"gpt-4o-mini","input":"hi"}""", Encoding.UTF8, "application/json");
}
