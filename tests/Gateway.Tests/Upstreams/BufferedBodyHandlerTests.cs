using System.Globalization;
using System.Net;
using System.Text;
using FakeUpstream;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Upstreams;

/// <summary>
/// The body the gateway holds (read whole and edited before admission) reaches the upstream in the same send as the
/// request headers (issue #15: YARP's streaming copy flushed the headers alone first, so the upstream woke twice per
/// request, on the way to the first byte). A TCP relay between the gateway and the fake upstream records each read.
/// </summary>
public sealed class BufferedBodyHandlerTests : IAsyncLifetime
{
    private FakeUpstreamServer _upstream = null!;
    private DelayingTcpProxy _relay = null!;
    private GatewayHost _gateway = null!;

    public async Task InitializeAsync()
    {
        _upstream = await FakeUpstreamServer.StartAsync();
        _relay = DelayingTcpProxy.Start(_upstream.BaseUrl.Port, TimeSpan.Zero, TimeSpan.Zero);
        _gateway = await GatewayHost.StartAsync(new Uri($"http://127.0.0.1:{_relay.Port}/v1"), c =>
            c["Gateway:Tenants:tenant-a:MaxOutputTokens"] = "512"); // an edit: the body forwarded is the gateway's own copy
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _relay.DisposeAsync();
        await _upstream.DisposeAsync();
    }

    [Fact]
    public async Task ForwardedCreates_BodyHeldByTheGateway_EachReachesTheUpstreamInOneSendWithItsHeaders()
    {
        // Many requests, because one send is seen as one read only when the relay reads in between two sends: with the
        // headers flushed alone, some reads would still catch both, but not all of them.
        const int Requests = 24;
        using var client = _gateway.CreateClient();
        for (var i = 0; i < Requests; i++)
        {
            var body = $$"""{"model":"gpt-4o-mini","input":"Write a short greeting.","stream":{{(i % 2 == 0 ? "true" : "false")}}}""";
            using var response = await client.PostAsync("responses", new StringContent(body, Encoding.UTF8, "application/json"));
            var answer = await response.Content.ReadAsStringAsync();
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Contains("\"total_tokens\"", answer, StringComparison.Ordinal);
        }

        var forwarded = _upstream.Requests;
        Assert.Equal(Requests, forwarded.Count);
        Assert.All(forwarded, request =>
        {
            Assert.Contains("\"max_output_tokens\":512", request.BodyText, StringComparison.Ordinal);
            Assert.Equal(request.Body.Length.ToString(CultureInfo.InvariantCulture), request.Header("Content-Length"));
        });

        // Each request was one read of the relay: headers and body together, never the headers alone first.
        var reads = _relay.Traffic.Where(chunk => chunk.Contains(" -> ", StringComparison.Ordinal)).ToList();
        Assert.Equal(Requests, reads.Count);
        Assert.All(reads, read => Assert.Contains("POST /v1/responses", read, StringComparison.Ordinal));
    }
}
