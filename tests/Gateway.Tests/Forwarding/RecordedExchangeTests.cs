using System.Net.Http.Headers;
using System.Text;
using FakeUpstream;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Forwarding;

/// <summary>Every recorded OpenAI exchange, replayed by the fake upstream, reaches the client unchanged through the gateway (an upstream 401/403 becomes the gateway's 502).</summary>
public sealed class RecordedExchangeTests() : GatewayTestBed(c => c["Gateway:Isolation:UnknownIds"] = "Allow")
{
    public static TheoryData<string> Exchanges() => new(Recordings.All().Select(e => e.ToString()));

    [Theory]
    [MemberData(nameof(Exchanges))]
    public async Task Replay_ThroughGateway_StatusAndBodyUnchangedAndOnlyTheRealKeyUpstream(string name)
    {
        var exchange = Recordings.All().Single(e => e.ToString() == name);
        using var client = Gateway.CreateClient();
        using var request = new HttpRequestMessage(new HttpMethod(exchange.Method), exchange.PathAndQuery.TrimStart('/')["v1/".Length..]);
        request.Headers.Add("x-fake-replay", name);
        request.Headers.Add("OpenAI-Organization", "org-of-the-client");
        request.Headers.Add("OpenAI-Project", "proj-of-the-client");
        request.Headers.Add("Cookie", "session=client-cookie");
        if (exchange.RequestBody is not null)
        {
            request.Content = new StringContent(exchange.RequestBody, Encoding.UTF8, new MediaTypeHeaderValue("application/json"));
        }

        using var response = await client.SendAsync(request);
        var body = await response.Content.ReadAsByteArrayAsync();

        if (exchange.StatusCode is 401 or 403)
        {
            // The upstream refused the gateway's own key: the gateway answers for it, without the upstream's text (UpstreamErrorTests).
            Assert.Equal(502, (int)response.StatusCode);
            Assert.Contains("upstream_auth_failed", Encoding.UTF8.GetString(body), StringComparison.Ordinal);
        }
        else
        {
            Assert.Equal(exchange.StatusCode, (int)response.StatusCode);
            var expected = FakeUpstreamServer.RecordedBody(Recordings.Root, exchange.File, exchange.Index);
            Assert.Equal(Encoding.UTF8.GetString(expected), Encoding.UTF8.GetString(body));
        }

        var upstream = Assert.Single(Upstream.Requests);
        Assert.Equal($"Bearer {TestKeys.UpstreamKey}", upstream.Header("Authorization"));
        Assert.Null(upstream.Header("api-key"));
        Assert.Null(upstream.Header("OpenAI-Organization"));
        Assert.Null(upstream.Header("OpenAI-Project"));
        Assert.Null(upstream.Header("Cookie"));
        Assert.DoesNotContain(TestKeys.KeyA, string.Join('\n', upstream.Headers.SelectMany(h => h.Value)));
        Assert.Equal(exchange.PathAndQuery, upstream.PathAndQuery);

        // Organisation-level headers and cookies of the shared key never reach a tenant.
        Assert.False(response.Headers.Contains("Set-Cookie"));
        Assert.False(response.Headers.Contains("openai-organization"));
        Assert.DoesNotContain(response.Headers, h => h.Key.StartsWith("x-ratelimit-", StringComparison.OrdinalIgnoreCase));
        Assert.True(response.Headers.Contains("x-request-id"));
        Assert.True(response.Headers.Contains("x-gateway-request-id"));
    }
}
