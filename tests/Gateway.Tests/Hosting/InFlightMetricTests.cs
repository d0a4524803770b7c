using FakeUpstream;
using Gateway.Tests.Infrastructure;
using static Gateway.Tests.Quotas.QuotaTestKit;

namespace Gateway.Tests.Hosting;

/// <summary>
/// The signal the production HPA scales on (deploy/components/in-flight-autoscaling): http_server_active_requests
/// on /metrics counts open streams while they wait on the upstream, when CPU says nothing.
/// </summary>
[Collection(MetricsTestGroup.Name)]
public sealed class InFlightMetricTests
{
    [Fact]
    public async Task ActiveRequests_OpenStreams_CountedUntilTheyEnd()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl);
        using var client = gateway.CreateClient();
        var gate = "in-flight-" + Guid.NewGuid().ToString("N");

        var streams = new[] { await StartGatedStreamAsync(client, gate), await StartGatedStreamAsync(client, gate) };

        // The scrape itself is an active request too.
        await Eventually.UntilAsync(async () => await MetricAsync(gateway, "http_server_active_requests") >= 3,
            "http_server_active_requests counts the two open streams");

        upstream.ReleaseGate(gate);
        foreach (var stream in streams)
        {
            await DrainAsync(stream);
        }

        await Eventually.UntilAsync(async () => await MetricAsync(gateway, "http_server_active_requests") == 1,
            "http_server_active_requests drops back once the streams ended");
    }
}
