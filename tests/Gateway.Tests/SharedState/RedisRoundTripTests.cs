using System.Diagnostics;
using System.Net;
using System.Text.Json;
using FakeUpstream;
using Gateway.Tests.Infrastructure;
using static Gateway.Tests.Isolation.Tenants;

namespace Gateway.Tests.SharedState;

/// <summary>
/// Redis round trips a request waits for before its first byte (issue #15), counted by time: the gateway talks to a real
/// redis-server through a proxy that delays every answer by <see cref="Latency"/>, so each awaited round trip costs that
/// much while everything else on loopback costs far less. A create waits for one (admission); the ownership record of the
/// id it returns travels without holding the id back; a request naming previous_response_id and conversation waits for
/// two (the owner lookups and the hidden-context read together, then admission).
/// </summary>
public sealed class RedisRoundTripTests
{
    private static readonly TimeSpan Latency = TimeSpan.FromMilliseconds(600);

    [SkippableFact]
    public async Task StreamedCreate_FirstEventAfterOneRedisRoundTrip()
    {
        await using var bed = await Bed.StartAsync();

        var (firstEvent, traffic) = await bed.TimeToFirstEventAsync("""{"model":"gpt-4o-mini","input":"Hello","stream":true}""");

        AssertRoundTrips(firstEvent, 0.9, 1.9, traffic);
    }

    [SkippableFact]
    public async Task JsonCreate_FirstByteAfterOneRedisRoundTrip()
    {
        await using var bed = await Bed.StartAsync();

        var stopwatch = Stopwatch.StartNew();
        using var request = new HttpRequestMessage(HttpMethod.Post, "responses") { Content = Json("""{"model":"gpt-4o-mini","input":"Hello"}""") };
        using var response = await bed.A.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        await using var body = await response.Content.ReadAsStreamAsync();
        Assert.NotEqual(-1, body.ReadByte());
        var firstByte = stopwatch.Elapsed;

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.InRange(firstByte, Latency * 0.9, Latency * 1.9);
    }

    [SkippableFact]
    public async Task StreamedCreateNamingPreviousResponseAndConversation_FirstEventAfterTwoRedisRoundTrips()
    {
        await using var bed = await Bed.StartAsync();
        var conversation = await CreateConversationAsync(bed.A);
        var previous = await CreateResponseAsync(bed.A);
        await bed.UntilFinishedAsync(3);

        var (firstEvent, traffic) = await bed.TimeToFirstEventAsync(
            $$"""{"model":"gpt-4o-mini","input":"And then?","stream":true,"previous_response_id":"{{previous}}","conversation":"{{conversation}}"}""");

        // Before: an owner lookup per id, the hidden-context read and admission, one after the other, then the record (5).
        AssertRoundTrips(firstEvent, 1.9, 2.9, traffic);
    }

    [SkippableFact]
    public async Task StreamedCreate_OwnershipRecordInFlight_UsageEventWaitsForIt_RecordReadableEverywhere()
    {
        await using var bed = await Bed.StartAsync();

        using var response = await bed.A.PostAsync("responses", Json("""{"model":"gpt-4o-mini","input":"Hello","stream":true}"""));
        var events = await new SseReader(await response.Content.ReadAsStreamAsync()).ReadAllAsync();
        var id = JsonDocument.Parse(events[0].Data).RootElement.GetProperty("response").GetProperty("id").GetString()!;

        // The request finished only once the record was answered: the key is there when the usage event is.
        var usage = await bed.Gateway.Logs.SingleUsageEventAsync(GatewayRequestId(response));
        Assert.Equal(id, usage.GetProperty("ResponseId").GetString());
        await using var redis = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(bed.Redis.ConnectionString);
        Assert.Equal(TestKeys.TenantA, (string?)await redis.GetDatabase().StringGetAsync($"gw:own:{id}"));
        Assert.Empty(bed.Gateway.Logs.Named("OwnershipNotRecorded"));
    }

    /// <summary>The time in round trips of <see cref="Latency"/>; out of range, the failure lists what crossed the proxy meanwhile.</summary>
    private static void AssertRoundTrips(TimeSpan elapsed, double atLeast, double atMost, IReadOnlyList<string> traffic) =>
        Assert.True(elapsed >= Latency * atLeast && elapsed <= Latency * atMost,
            $"First event after {elapsed.TotalMilliseconds:F0} ms, expected {atLeast}-{atMost} x {Latency.TotalMilliseconds} ms. Redis traffic meanwhile:\n" +
            string.Join('\n', traffic));

    private sealed class Bed : IAsyncDisposable
    {
        private Bed(RedisServer redis, DelayingTcpProxy proxy, FakeUpstreamServer upstream, GatewayHost gateway)
        {
            Redis = redis;
            Proxy = proxy;
            Upstream = upstream;
            Gateway = gateway;
            A = Client(gateway, TestKeys.KeyA, TestKeys.TenantA);
        }

        public RedisServer Redis { get; }

        public DelayingTcpProxy Proxy { get; }

        public FakeUpstreamServer Upstream { get; }

        public GatewayHost Gateway { get; }

        public HttpClient A { get; }

        public static async Task<Bed> StartAsync()
        {
            var redis = await RedisServer.StartAsync();
            var proxy = DelayingTcpProxy.Start(redis.Port, TimeSpan.Zero, Latency);
            var upstream = await FakeUpstreamServer.StartAsync();
            var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c =>
            {
                c["ConnectionStrings:Redis"] = proxy.RedisConnectionString;
                c["Gateway:Quotas:RedisTimeout"] = "00:00:10";
                c["Gateway:Tenants:tenant-a:Limits:TokensPerMinute"] = "1000000";
                c["Gateway:Tenants:tenant-a:Limits:MaxConcurrentRequests"] = "10";
            });
            var bed = new Bed(redis, proxy, upstream, gateway);
            try
            {
                using var probe = new HttpClient { BaseAddress = gateway.RootUrl };
                await Eventually.UntilAsync(
                    async () => JsonDocument.Parse(await probe.GetStringAsync("/readyz")).RootElement.GetProperty("store_state").GetString() == "up",
                    "Redis is up for the gateway");

                // The first use of each script and command may cost more (script load); the timed requests follow it.
                await CreateResponseAsync(bed.A);
                await bed.UntilFinishedAsync(1);
                return bed;
            }
            catch
            {
                await bed.DisposeAsync();
                throw;
            }
        }

        /// <summary>
        /// Waits until <paramref name="requests"/> requests in all have ended (their usage events are written): a keep-alive
        /// connection takes its next request only then, so a timed request must not start behind another's settle.
        /// </summary>
        public Task UntilFinishedAsync(int requests) =>
            Eventually.UntilAsync(() => Gateway.Logs.UsageEvents.Count >= requests, $"{requests} requests finished");

        public async Task<(TimeSpan Elapsed, IReadOnlyList<string> Traffic)> TimeToFirstEventAsync(string body)
        {
            var trafficBefore = Proxy.Traffic.Count;
            // The upstream holds the rest of the stream after its first event, as a model generating would.
            var gate = "round-trips-" + Guid.NewGuid().ToString("N");
            var finished = Gateway.Logs.UsageEvents.Count;
            using var request = new HttpRequestMessage(HttpMethod.Post, "responses") { Content = Json(body) };
            request.Headers.Add("x-fake-gate", gate);
            var sentAt = Proxy.Elapsed;
            var stopwatch = Stopwatch.StartNew();
            using var response = await A.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            var reader = new SseReader(await response.Content.ReadAsStreamAsync());
            var first = await reader.NextAsync();
            var elapsed = stopwatch.Elapsed;
            Upstream.ReleaseGate(gate);
            Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode}: {first?.Data}");
            Assert.Equal("response.created", SseReader.TypeOf(first!.Value.Data));
            await reader.ReadAllAsync();
            await UntilFinishedAsync(finished + 1);
            return (elapsed, [$"(request sent at {sentAt.TotalMilliseconds:F0} ms)", .. Proxy.Traffic.Skip(trafficBefore)]);
        }

        public async ValueTask DisposeAsync()
        {
            A.Dispose();
            await Gateway.DisposeAsync();
            await Upstream.DisposeAsync();
            await Proxy.DisposeAsync();
            await Redis.DisposeAsync();
        }
    }
}
