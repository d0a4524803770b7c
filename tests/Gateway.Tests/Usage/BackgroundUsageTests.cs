using System.Net;
using System.Text;
using System.Text.Json;
using FakeUpstream;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Usage;

/// <summary>
/// A background response is billed once, by the first answer that shows it completed: the POST (queued) logs no
/// usage, the first retrieval that sees it completed logs the upstream's usage, every later retrieval (JSON or
/// <c>?stream=true</c> replay) logs none. With replicas sharing Redis, that holds across all of them.
/// </summary>
public sealed class BackgroundUsageTests() : GatewayTestBed
{
    private const string CreateBody = """{"model":"gpt-4o-mini","input":"Summarise the annual report","background":true}""";

    [Fact]
    public async Task BackgroundResponse_PostThenGetGetGetStream_CountedOnceByTheFirstCompletedGet()
    {
        using var client = Gateway.CreateClient();
        var (id, post) = await CreateBackgroundAsync(Gateway, client);
        Assert.Equal("none", UsageEvents.Text(post, "UsageSource"));
        Assert.True(post.GetProperty("Background").GetBoolean());
        Assert.Equal(id, UsageEvents.Text(post, "ResponseId"));

        var first = await RetrieveAsync(Gateway, client, id, stream: false);
        Assert.Equal("completed", first.Status);
        Assert.Equal("upstream", UsageEvents.Text(first.Usage, "UsageSource"));
        Assert.Equal(Upstream.Ledger.TotalTokens, UsageEvents.Long(first.Usage, "TotalTokens"));
        Assert.Equal(Upstream.Ledger.InputTokens, UsageEvents.Long(first.Usage, "InputTokens"));
        Assert.Equal(Upstream.Ledger.OutputTokens, UsageEvents.Long(first.Usage, "OutputTokens"));
        Assert.Equal(id, UsageEvents.Text(first.Usage, "ResponseId"));
        Assert.Equal("responses.retrieve", UsageEvents.Text(first.Usage, "Endpoint"));
        Assert.True(first.Usage.GetProperty("Background").GetBoolean());

        var second = await RetrieveAsync(Gateway, client, id, stream: false);
        Assert.Equal("completed", second.Status);
        UsageEvents.AssertNoTokens(second.Usage);

        var replay = await RetrieveAsync(Gateway, client, id, stream: true);
        Assert.Equal("completed", replay.Status);
        UsageEvents.AssertNoTokens(replay.Usage);
        Assert.True(replay.Usage.GetProperty("Stream").GetBoolean());

        var all = Gateway.Logs.UsageEvents;
        Assert.Equal(4, all.Count);
        Assert.Single(all, e => UsageEvents.Text(e, "UsageSource") != "none");
        Assert.Equal(1, Upstream.Ledger.ResponsesWithUsage);
    }

    [Fact]
    public async Task BackgroundResponse_RetrievedWhileQueued_NoneUntilTheFirstRetrievalThatSeesItCompleted()
    {
        using var client = Gateway.CreateClient();
        var (id, _) = await CreateBackgroundAsync(Gateway, client, backgroundMs: 1500);

        // Whatever the machine's speed: every answer showing "queued" logs none, the first showing "completed" the usage.
        var sawQueued = 0;
        var retrieval = await Eventually.ValueAsync(
            async () =>
            {
                var seen = await RetrieveAsync(Gateway, client, id, stream: false);
                if (seen.Status == "queued")
                {
                    UsageEvents.AssertNoTokens(seen.Usage);
                    sawQueued++;
                }

                return seen;
            },
            seen => seen.Status != "queued",
            "a retrieval sees the background response no longer queued",
            TimeSpan.FromSeconds(60));

        Assert.Equal("completed", retrieval.Status);
        Assert.Equal("upstream", UsageEvents.Text(retrieval.Usage, "UsageSource"));
        Assert.Equal(Upstream.Ledger.TotalTokens, UsageEvents.Long(retrieval.Usage, "TotalTokens"));

        var later = await RetrieveAsync(Gateway, client, id, stream: false);
        UsageEvents.AssertNoTokens(later.Usage);
        Assert.Equal(2 + sawQueued + 1, Gateway.Logs.UsageEvents.Count);
    }

    [Fact]
    public async Task BackgroundStream_CompletedWithinThePost_CountedThereAndNotOnRetrieval()
    {
        using var client = Gateway.CreateClient();
        using var post = await client.PostAsync("responses", Json("""{"model":"gpt-4o-mini","input":"Draft a memo","background":true,"stream":true}"""));
        var events = await new SseReader(await post.Content.ReadAsStreamAsync()).ReadAllAsync();
        Assert.Equal("response.completed", events[^1].Event);
        var id = JsonDocument.Parse(events[0].Data).RootElement.GetProperty("response").GetProperty("id").GetString()!;

        var postUsage = await UsageEvents.OfAsync(Gateway, post);
        Assert.Equal("upstream", UsageEvents.Text(postUsage, "UsageSource"));
        Assert.Equal(Upstream.Ledger.TotalTokens, UsageEvents.Long(postUsage, "TotalTokens"));

        UsageEvents.AssertNoTokens((await RetrieveAsync(Gateway, client, id, stream: false)).Usage);
        UsageEvents.AssertNoTokens((await RetrieveAsync(Gateway, client, id, stream: true)).Usage);
    }

    [SkippableFact]
    public async Task BackgroundResponse_TwoInstancesSharingRedis_CountedOnceAcrossBoth()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var a = await StartReplicaAsync(redis);
        await using var b = await StartReplicaAsync(redis);
        using var clientA = a.CreateClient();
        using var clientB = b.CreateClient();

        var (id, post) = await CreateBackgroundAsync(a, clientA);
        Assert.Equal("none", UsageEvents.Text(post, "UsageSource"));

        var first = await RetrieveAsync(b, clientB, id, stream: false);
        Assert.Equal("completed", first.Status);
        Assert.Equal("upstream", UsageEvents.Text(first.Usage, "UsageSource"));

        UsageEvents.AssertNoTokens((await RetrieveAsync(a, clientA, id, stream: false)).Usage);
        UsageEvents.AssertNoTokens((await RetrieveAsync(b, clientB, id, stream: true)).Usage);
        UsageEvents.AssertNoTokens((await RetrieveAsync(a, clientA, id, stream: true)).Usage);

        var all = a.Logs.UsageEvents.Concat(b.Logs.UsageEvents).ToArray();
        Assert.Equal(5, all.Length);
        var counted = Assert.Single(all, e => UsageEvents.Text(e, "UsageSource") != "none");
        Assert.Equal(Upstream.Ledger.TotalTokens, UsageEvents.Long(counted, "TotalTokens"));
        Assert.Equal(1, Upstream.Ledger.ResponsesWithUsage);
    }

    [SkippableFact]
    public async Task BackgroundResponse_ConcurrentRetrievalsOnTwoInstances_ExactlyOneCounts()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var a = await StartReplicaAsync(redis);
        await using var b = await StartReplicaAsync(redis);
        using var clientA = a.CreateClient();
        using var clientB = b.CreateClient();
        var (id, _) = await CreateBackgroundAsync(a, clientA);

        // Every one of these answers shows the response completed with its usage; the claim in Redis lets one count.
        var retrievals = await Task.WhenAll(Enumerable.Range(0, 12).Select(i => i % 2 == 0
            ? RetrieveAsync(a, clientA, id, stream: i % 4 == 0)
            : RetrieveAsync(b, clientB, id, stream: i % 4 == 1)));

        Assert.All(retrievals, r => Assert.Equal("completed", r.Status));
        var counted = Assert.Single(retrievals, r => UsageEvents.Text(r.Usage, "UsageSource") != "none");
        Assert.Equal("upstream", UsageEvents.Text(counted.Usage, "UsageSource"));
        Assert.Equal(Upstream.Ledger.TotalTokens, UsageEvents.Long(counted.Usage, "TotalTokens"));
        Assert.Equal(13, a.Logs.UsageEvents.Count + b.Logs.UsageEvents.Count);
    }

    private async Task<GatewayHost> StartReplicaAsync(RedisServer redis)
    {
        var replica = await GatewayHost.StartAsync(Upstream.BaseUrl, c =>
        {
            c["ConnectionStrings:Redis"] = redis.ConnectionString;
            // With a token budget the POST takes a reservation that waits (held) for the response's usage: the
            // claim must still count the response once.
            c["Gateway:Tenants:tenant-a:Limits:TokensPerDay"] = "1000000";
        });

        // Served by the memory fallback until Redis is connected, a replica would claim usage the other cannot see.
        try
        {
            await Quotas.QuotaTestKit.WaitForStoreAsync(replica);
            return replica;
        }
        catch
        {
            await replica.DisposeAsync();
            throw;
        }
    }

    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    private static async Task<(string Id, JsonElement Usage)> CreateBackgroundAsync(GatewayHost gateway, HttpClient client, int backgroundMs = 0)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "responses") { Content = Json(CreateBody) };
        request.Headers.Add("x-fake-background-ms", backgroundMs.ToString(System.Globalization.CultureInfo.InvariantCulture));
        using var response = await client.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("queued", body.GetProperty("status").GetString());
        var usage = await UsageEvents.OfAsync(gateway, response);
        Assert.Equal("completed", UsageEvents.Text(usage, "Outcome"));
        return (body.GetProperty("id").GetString()!, usage);
    }

    private sealed record Retrieval(string? Status, JsonElement Usage);

    private static async Task<Retrieval> RetrieveAsync(GatewayHost gateway, HttpClient client, string id, bool stream)
    {
        using var response = await client.GetAsync(stream ? $"responses/{id}?stream=true" : $"responses/{id}");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        string? status;
        if (stream)
        {
            var events = await new SseReader(await response.Content.ReadAsStreamAsync()).ReadAllAsync();
            status = JsonDocument.Parse(events[^1].Data).RootElement.GetProperty("response").GetProperty("status").GetString();
        }
        else
        {
            status = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("status").GetString();
        }

        return new Retrieval(status, await UsageEvents.OfAsync(gateway, response));
    }
}
