using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using FakeUpstream;
using Gateway.Tests.Infrastructure;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;

namespace Gateway.Tests.Hosting;

/// <summary>
/// Where <c>/metrics</c> answers is decided by the port the connection arrived on, never by the Host header: a real
/// Kestrel listens on an API port and a metrics port (both on 127.0.0.1). The metrics port serves only
/// <c>/metrics</c>, <c>/healthz</c> and <c>/readyz</c>; without a metrics port <c>/metrics</c> is off unless public.
/// </summary>
[Collection(MetricsTestGroup.Name)]
public sealed class MetricsExposureTests
{
    [Fact]
    public async Task ApiPort_HostHeaderNamesTheMetricsPort_404EnvelopeWithoutSeries()
    {
        await using var bed = await TwoPortBed.StartAsync();
        await ServeOneRequestAsync(bed); // so there are series to leak

        using var api = new HttpClient { BaseAddress = bed.ApiRoot };
        foreach (var host in new[] { $"x:{bed.MetricsPort}", $"127.0.0.1:{bed.MetricsPort}", $"localhost:{bed.MetricsPort}" })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/metrics");
            request.Headers.Host = host;
            using var response = await api.SendAsync(request);
            await AssertUnknownUrlAsync(response, "GET", "/metrics");
        }

        using var plain = await api.GetAsync("/METRICS/");
        Assert.Equal(HttpStatusCode.NotFound, plain.StatusCode);
        Assert.DoesNotContain("gateway_", await plain.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task MetricsPort_ServesMetricsAndProbes_AndNothingOfTheApi()
    {
        await using var bed = await TwoPortBed.StartAsync();
        await ServeOneRequestAsync(bed);

        using var metrics = new HttpClient { BaseAddress = bed.MetricsRoot };
        Assert.Equal(HttpStatusCode.OK, (await metrics.GetAsync("/healthz")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await metrics.GetAsync("/readyz")).StatusCode);
        await WaitForSeriesAsync(metrics, "gateway_requests_total{");

        // The whole API (and the gateway's own /v1 routes) is absent on the metrics port, with a valid key too.
        using var create = new HttpRequestMessage(HttpMethod.Post, "/v1/responses")
        {
            Content = new StringContent("""{"model":"gpt-4o-mini","input":"hi"}""", Encoding.UTF8, "application/json"),
        };
        create.Headers.Authorization = new("Bearer", TestKeys.KeyA);
        using (var response = await metrics.SendAsync(create))
        {
            await AssertUnknownUrlAsync(response, "POST", "/v1/responses");
        }

        using var quota = new HttpRequestMessage(HttpMethod.Get, "/v1/gateway/quota");
        quota.Headers.Authorization = new("Bearer", TestKeys.KeyA);
        using (var response = await metrics.SendAsync(quota))
        {
            await AssertUnknownUrlAsync(response, "GET", "/v1/gateway/quota");
        }

        Assert.Equal(1, bed.Upstream.RequestCount);
    }

    [Fact]
    public async Task MetricsPort_UpstreamRefusesTheGatewaysKey_CountedForTheAlert()
    {
        await using var bed = await TwoPortBed.StartAsync();
        using var client = new HttpClient { BaseAddress = new Uri(bed.ApiRoot, "/v1/") };
        client.DefaultRequestHeaders.Authorization = new("Bearer", TestKeys.KeyA);
        using var request = new HttpRequestMessage(HttpMethod.Post, "responses")
        {
            Content = new StringContent("""{"model":"gpt-4o-mini","input":"hi"}""", Encoding.UTF8, "application/json"),
        };
        request.Headers.Add("x-fake-status", "401");
        using var response = await client.SendAsync(request);
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);

        using var metrics = new HttpClient { BaseAddress = bed.MetricsRoot };
        await WaitForSeriesAsync(metrics, "gateway_upstream_auth_failures_total{otel_scope_name=\"Gateway\",http_response_status_code=\"401\"} 1");
    }

    [Fact]
    public async Task NoMetricsPort_NotPublic_MetricsOffAndStartupLogSaysSo()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c => c.Remove("Gateway:Metrics:Public"));
        using var root = new HttpClient { BaseAddress = gateway.RootUrl };

        using var response = await root.GetAsync("/metrics");

        await AssertUnknownUrlAsync(response, "GET", "/metrics");
        Assert.Single(gateway.Logs.Named("MetricsOff"));
        Assert.Equal(HttpStatusCode.OK, (await root.GetAsync("/healthz")).StatusCode);
    }

    [Fact]
    public async Task NoMetricsPort_Public_MetricsOnTheApiPortAndStartupWarning()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c => c["Gateway:Metrics:Public"] = "true");
        using var root = new HttpClient { BaseAddress = gateway.RootUrl };

        using var response = await root.GetAsync("/metrics");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var warning = Assert.Single(gateway.Logs.Named("MetricsPublic"));
        Assert.Equal("Warning", warning.GetProperty("@l").GetString());
    }

    private static async Task ServeOneRequestAsync(TwoPortBed bed)
    {
        using var client = new HttpClient { BaseAddress = new Uri(bed.ApiRoot, "/v1/") };
        client.DefaultRequestHeaders.Authorization = new("Bearer", TestKeys.KeyA);
        using var response = await client.PostAsync("responses", new StringContent("""{"model":"gpt-4o-mini","input":"hi"}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await bed.Gateway.Logs.SingleUsageEventAsync(response.Headers.GetValues("x-gateway-request-id").Single());
    }

    private static async Task WaitForSeriesAsync(HttpClient metrics, string series)
    {
        // The exporter may serve a cached scrape for a moment after the first request.
        await Eventually.ValueAsync(
            async () =>
            {
                using var response = await metrics.GetAsync("/metrics");
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                return await response.Content.ReadAsStringAsync();
            },
            text => text.Contains(series, StringComparison.Ordinal),
            $"the scrape shows {series}",
            TimeSpan.FromSeconds(20));
    }

    private static async Task AssertUnknownUrlAsync(HttpResponseMessage response, string method, string path)
    {
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        var body = await response.Content.ReadAsStringAsync();
        Assert.DoesNotContain("gateway_", body, StringComparison.Ordinal);
        var error = JsonDocument.Parse(body).RootElement.GetProperty("error");
        Assert.Equal($"Invalid URL ({method} {path})", error.GetProperty("message").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.True(error.TryGetProperty("param", out _));
        Assert.True(error.TryGetProperty("code", out _));
    }

    /// <summary>The gateway on two real loopback ports: the API port and <c>Gateway:Metrics:Port</c>.</summary>
    private sealed class TwoPortBed : IAsyncDisposable
    {
        public required FakeUpstreamServer Upstream { get; init; }

        public required GatewayHost Gateway { get; init; }

        public required int MetricsPort { get; init; }

        public Uri ApiRoot { get; private init; } = null!;

        public Uri MetricsRoot => new($"http://127.0.0.1:{MetricsPort}/");

        public static async Task<TwoPortBed> StartAsync()
        {
            var upstream = await FakeUpstreamServer.StartAsync();
            // The port must be known to the configuration before Kestrel binds it: take a free one from the OS.
            var metricsPort = FreeLoopbackPort();
            var gateway = await GatewayHost.StartAsync(upstream.BaseUrl,
                c =>
                {
                    c.Remove("Gateway:Metrics:Public");
                    c["Gateway:Metrics:Port"] = metricsPort.ToString(System.Globalization.CultureInfo.InvariantCulture);
                },
                s => s.Configure<KestrelServerOptions>(k => k.Listen(IPAddress.Loopback, metricsPort)));
            var addresses = gateway.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses
                .Select(a => new Uri(a.Replace("[::1]", "127.0.0.1", StringComparison.Ordinal)))
                .ToArray();
            Assert.Equal(2, addresses.Length);
            return new TwoPortBed
            {
                Upstream = upstream,
                Gateway = gateway,
                MetricsPort = metricsPort,
                ApiRoot = addresses.Single(a => a.Port != metricsPort),
            };
        }

        public async ValueTask DisposeAsync()
        {
            await Gateway.DisposeAsync();
            await Upstream.DisposeAsync();
        }

        private static int FreeLoopbackPort()
        {
            using var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            return ((IPEndPoint)listener.LocalEndpoint).Port;
        }
    }
}
