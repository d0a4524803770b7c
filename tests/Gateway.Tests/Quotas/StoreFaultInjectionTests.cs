using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using FakeUpstream;
using Gateway.Tests.Infrastructure;
using Gateway.Tests.Usage;
using Xunit.Abstractions;
using static Gateway.Tests.Quotas.QuotaTestKit;

namespace Gateway.Tests.Quotas;

/// <summary>
/// Two replicas on one real Redis under mixed load (good JSON and streams, cut streams, clients that hang up, upstream
/// 500/429, a silent upstream, bad bodies) while Redis stalls (CLIENT PAUSE), drops every connection (CLIENT KILL) and
/// loses its data (FLUSHALL). Whatever the store does: one usage event per request, the upstream's exact numbers
/// wherever it reported them (against the fake's ledger), and both replicas ready afterwards.
/// </summary>
[Collection(MetricsTestGroup.Name)]
public sealed class StoreFaultInjectionTests(ITestOutputHelper output)
{
    private const int Workers = 8;

    private enum Kind
    {
        Json,
        Stream,
        Chat,
        Cut,
        ClientAbort,
        UpstreamError,
        Silent,
        BadBody,
    }

    private sealed record Sent(string RequestId, int Replica, Kind Kind, JsonElement? Usage);

    [SkippableFact]
    public async Task RedisStallsDropsAndFlushesUnderMixedLoad_OneExactEventPerRequest_BothReplicasReady()
    {
        var started = DateTime.UtcNow;
        await using var redis = await RedisServer.StartAsync();
        await using var upstream = await FakeUpstreamServer.StartAsync();
        void Configure(Dictionary<string, string?> c)
        {
            Limits(c, rpm: 1_000_000, tpm: 100_000_000, tpd: 1_000_000_000, concurrent: 500);
            c["ConnectionStrings:Redis"] = redis.ConnectionString;
            c["Gateway:Quotas:RedisRetryInterval"] = "00:00:00.200";
            // Short, for the silent upstream; above the longest stall, which a creating stream waits out before its id goes on.
            c["Gateway:Upstream:ActivityTimeout"] = "00:00:03";
        }

        await using var first = await GatewayHost.StartAsync(upstream.BaseUrl, Configure);
        await using var second = await GatewayHost.StartAsync(upstream.BaseUrl, Configure);
        GatewayHost[] replicas = [first, second];
        await WaitForStoreAsync(first);
        await WaitForStoreAsync(second);
        HttpClient[][] clients = [[first.CreateClient(TestKeys.KeyA), first.CreateClient(TestKeys.KeyB)], [second.CreateClient(TestKeys.KeyA), second.CreateClient(TestKeys.KeyB)]];

        var sent = new ConcurrentBag<Sent>();
        var next = -1;
        using var stop = new CancellationTokenSource();
        var load = Enumerable.Range(0, Workers).Select(_ => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                // Every kind on both replicas for both tenants.
                var i = Interlocked.Increment(ref next);
                var replica = i % 2;
                sent.Add(await SendAsync(clients[replica][i / 16 % 2], replica, (Kind)(i / 2 % 8)));
            }
        })).ToArray();

        // The faults, one after the other while the load runs.
        await Task.Delay(400);
        await RedisCommandAsync(redis.Port, "CLIENT", "PAUSE", "2000", "ALL");   // stall: every command waits past RedisTimeout
        await Task.Delay(2500);
        await RedisCommandAsync(redis.Port, "CLIENT", "KILL", "TYPE", "normal"); // every connection dropped
        await Task.Delay(800);
        await RedisCommandAsync(redis.Port, "FLUSHALL");                         // every counter, mark and owner lost
        await Task.Delay(800);
        await RedisCommandAsync(redis.Port, "CLIENT", "PAUSE", "1500", "ALL");
        await Task.Delay(2000);
        await stop.CancelAsync();
        await Task.WhenAll(load);

        // One event per request id, on the replica that served it, and nothing else.
        var requests = sent.ToArray();
        var expected = requests.GroupBy(s => s.Replica).ToDictionary(g => g.Key, g => g.Count());
        var events = new List<JsonElement>();
        for (var r = 0; r < 2; r++)
        {
            events.AddRange(await replicas[r].Logs.WaitForUsageEventsAsync(expected.GetValueOrDefault(r), TimeSpan.FromSeconds(20)));
        }

        await Task.Delay(300); // a second event for a request would be a defect: give it the chance to show
        events = [.. replicas.SelectMany(g => g.Logs.UsageEvents)];
        Assert.Equal(requests.Length, events.Count);
        var byId = events.ToDictionary(e => UsageEvents.Text(e, "RequestId")!); // throws on a duplicate id
        Assert.All(requests, s => Assert.True(byId.ContainsKey(s.RequestId), $"no usage event for {s.Kind} request {s.RequestId}"));
        Assert.All(events, UsageEvents.AssertWellFormed);
        Assert.All(Enum.GetValues<Kind>(), kind => Assert.True(requests.Count(s => s.Kind == kind) >= 3, $"too few {kind} requests"));

        // Exact where the upstream reported usage: per request against the answer the client got, and in total against the ledger.
        foreach (var s in requests.Where(s => s.Usage is not null))
        {
            UsageEvents.AssertEqualsUpstream(s.Usage!.Value, byId[s.RequestId]);
        }

        var billed = events.Where(e => UsageEvents.Text(e, "UsageSource") == "upstream").ToArray();
        var sums = UsageEvents.Sum(billed);
        var ledger = upstream.Ledger;
        Assert.Equal(ledger.ResponsesWithUsage, billed.Length);
        Assert.Equal((ledger.InputTokens, ledger.OutputTokens, ledger.TotalTokens), (sums.Input, sums.Output, sums.Total));
        Assert.All(requests.Where(s => s.Kind is Kind.Cut or Kind.ClientAbort),
            s => Assert.True(UsageEvents.Text(byId[s.RequestId], "UsageSource") == "estimated", $"{s.Kind}: {byId[s.RequestId]}"));
        Assert.All(requests.Where(s => s.Kind is Kind.UpstreamError or Kind.Silent or Kind.BadBody), s => UsageEvents.AssertNoTokens(byId[s.RequestId]));

        // The faults did hit: each replica lost the store at least once (and came back, below).
        Assert.All(replicas, r => Assert.NotEmpty(r.Logs.Named("StoreDown")));
        output.WriteLine($"{requests.Length} requests ({string.Join(", ", requests.GroupBy(s => s.Kind).Select(g => $"{g.Key} {g.Count()}"))}); " +
            $"StoreDown {replicas.Sum(r => r.Logs.Named("StoreDown").Count)}, StoreBack {replicas.Sum(r => r.Logs.Named("StoreBack").Count)}; ledger {ledger}");

        foreach (var replica in replicas)
        {
            await Eventually.UntilAsync(async () =>
            {
                using var http = new HttpClient { BaseAddress = replica.RootUrl };
                using var ready = await http.GetAsync("/readyz");
                return ready.StatusCode == HttpStatusCode.OK
                    && JsonDocument.Parse(await ready.Content.ReadAsStringAsync()).RootElement.GetProperty("store_state").GetString() == "up";
            }, "the replica reports ready with the store up", TimeSpan.FromSeconds(10));
        }

        foreach (var client in clients.SelectMany(c => c))
        {
            client.Dispose();
        }

        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(45), $"took {DateTime.UtcNow - started}");
    }

    private static async Task<Sent> SendAsync(HttpClient client, int replica, Kind kind)
    {
        const string Input = "Tell me about lighthouses";
        switch (kind)
        {
            case Kind.Json:
            case Kind.Chat:
            {
                using var request = kind == Kind.Json
                    ? Post("responses", $$"""{"model":"gpt-4o-mini","input":"{{Input}}"}""")
                    : Post("chat/completions", $$"""{"model":"gpt-4o-mini","messages":[{"role":"user","content":"{{Input}}"}]}""");
                using var response = await client.SendAsync(request);
                var body = await response.Content.ReadAsStringAsync();
                Assert.True(response.IsSuccessStatusCode, body);
                return new Sent(RequestId(response)!, replica, kind, JsonDocument.Parse(body).RootElement.GetProperty("usage").Clone());
            }

            case Kind.Stream:
            {
                using var request = Post("responses", $$"""{"model":"gpt-4o-mini","input":"{{Input}}","stream":true}""", ("x-fake-deltas", "5"));
                using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                var events = await new SseReader(await response.Content.ReadAsStreamAsync()).ReadAllAsync();
                var completed = JsonDocument.Parse(events.Single(e => e.Event == "response.completed").Data).RootElement;
                return new Sent(RequestId(response)!, replica, kind, completed.GetProperty("response").GetProperty("usage").Clone());
            }

            case Kind.Cut:
            {
                // Paced: a reset that arrives before the gateway read the first body byte discards the unread bytes, and the
                // client gets a 502 instead of a cut stream (a different case, seen under CPU load with unpaced events).
                using var request = Post("responses", $$"""{"model":"gpt-4o-mini","input":"{{Input}}","stream":true}""", ("x-fake-deltas", "30"), ("x-fake-drop-after", "6"), ("x-fake-delay-ms", "30"));
                using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                await new SseReader(await response.Content.ReadAsStreamAsync()).ReadAllAsync();
                return new Sent(RequestId(response)!, replica, kind, null);
            }

            case Kind.ClientAbort:
            {
                using var request = Post("responses", $$"""{"model":"gpt-4o-mini","input":"{{Input}}","stream":true}""", ("x-fake-deltas", "400"), ("x-fake-delay-ms", "20"));
                var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                var reader = new SseReader(await response.Content.ReadAsStreamAsync());
                for (var read = 0; read < 6; read++)
                {
                    Assert.NotNull(await reader.NextAsync());
                }

                var requestId = RequestId(response)!;
                response.Dispose(); // hang up mid-stream
                return new Sent(requestId, replica, kind, null);
            }

            case Kind.UpstreamError:
            {
                using var request = Post("responses", $$"""{"model":"gpt-4o-mini","input":"{{Input}}"}""", ("x-fake-status", replica == 0 ? "500" : "429"));
                using var response = await client.SendAsync(request);
                Assert.True((int)response.StatusCode is 500 or 429);
                return new Sent(RequestId(response)!, replica, kind, null);
            }

            case Kind.Silent:
            {
                using var request = Post("responses", $$"""{"model":"gpt-4o-mini","input":"{{Input}}"}""", ("x-fake-first-byte-delay-ms", "8000"));
                using var response = await client.SendAsync(request);
                Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
                return new Sent(RequestId(response)!, replica, kind, null);
            }

            default:
            {
                using var request = Post("responses", """{"model":"gpt-4o-mini","input":""");
                using var response = await client.SendAsync(request);
                Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
                Assert.Equal("invalid_request_error", (await ErrorAsync(response)).GetProperty("type").GetString());
                return new Sent(RequestId(response)!, replica, kind, null);
            }
        }
    }

    /// <summary>One command on a fresh connection (RESP), so the fault does not depend on the gateway's client library.</summary>
    private static async Task RedisCommandAsync(int port, params string[] args)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, port);
        var command = new StringBuilder().Append('*').Append(args.Length).Append("\r\n");
        foreach (var arg in args)
        {
            command.Append('$').Append(Encoding.UTF8.GetByteCount(arg)).Append("\r\n").Append(arg).Append("\r\n");
        }

        var stream = tcp.GetStream();
        await stream.WriteAsync(Encoding.UTF8.GetBytes(command.ToString()));
        var reply = new byte[256];
        var read = await stream.ReadAsync(reply);
        var text = Encoding.UTF8.GetString(reply, 0, read);
        Assert.True(text.StartsWith('+') || text.StartsWith(':'), $"redis {string.Join(' ', args)}: {text}");
    }
}
