using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net;
using System.Text.Json;
using FakeUpstream;
using Gateway.Tests.Infrastructure;
using Gateway.Tests.Isolation;
using Gateway.Tests.Pricing;
using Gateway.Tests.Usage;
using OpenAI.Conversations;
using OpenAI.Responses;
using StackExchange.Redis;
using static Gateway.Tests.Isolation.Tenants;

namespace Gateway.Tests.Upstreams;

/// <summary>
/// Stateful ids stay home (issue #12): two fake upstreams in a pool, "east" (priority 1, PriceMultiplier 0.5) and "west"
/// (priority 2, PriceMultiplier 2), from a watched configuration file. Every object is created on east while east takes
/// traffic; once east cools, new creates fail over to west, but every call naming an east object still goes to east.
/// The same tests run on the memory store and on Redis (<see cref="PinnedObjectRedisStoreTests"/>).
/// </summary>
public abstract class PinnedObjectTests : IAsyncLifetime
{
    private const string Model = "gpt-4o-mini";
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("gateway-pins-");

    public FakeUpstreamServer East { get; private set; } = null!;

    public FakeUpstreamServer West { get; private set; } = null!;

    public GatewayHost Gateway { get; private set; } = null!;

    private string ConfigFile => Path.Combine(_directory.FullName, "upstreams.json");

    /// <summary>The store's settings (none for memory; <c>ConnectionStrings:Redis</c> for Redis).</summary>
    private protected abstract Task ConfigureStoreAsync(Dictionary<string, string?> settings);

    public virtual async Task InitializeAsync()
    {
        East = await FakeUpstreamServer.StartAsync();
        West = await FakeUpstreamServer.StartAsync();
        await File.WriteAllTextAsync(ConfigFile, PoolJson(withEast: true));
        Gateway = await StartGatewayAsync();
    }

    public virtual async Task DisposeAsync()
    {
        await Gateway.DisposeAsync();
        await East.DisposeAsync();
        await West.DisposeAsync();
        _directory.Delete(recursive: true);
    }

    private protected async Task<GatewayHost> StartGatewayAsync()
    {
        var store = new Dictionary<string, string?>();
        await ConfigureStoreAsync(store);
        var gateway = await GatewayHost.StartAsync(East.BaseUrl, c =>
        {
            foreach (var (key, value) in store)
            {
                c[key] = value;
            }

            c["Gateway:Tenants:tenant-a:Limits:UsdPerDay"] = "100";
        }, configFile: ConfigFile);
        using var probe = new HttpClient { BaseAddress = gateway.RootUrl };
        // The Redis connection is made in the background: a record written before it would stay in the memory fallback.
        await Eventually.UntilAsync(
            async () => JsonDocument.Parse(await probe.GetStringAsync("/readyz")).RootElement.GetProperty("store_state").GetString() == "up",
            "the gateway's store is up");
        return gateway;
    }

    [SkippableFact]
    public async Task PinnedResponse_ItsUpstreamCoolsAndCreatesFailOver_EveryCallNamingItStillGoesThere()
    {
        var a = Responses(TestKeys.KeyA);
        var created = await a.CreateResponseAsync(Model, "Tell me a joke");
        var pinned = created.Value.Id;
        Assert.Equal("east", UsageEvents.Text(await UsageOfAsync(created), "Upstream"));
        using var raw = Client(Gateway, TestKeys.KeyA, "a");
        var background = await CreateResponseAsync(raw, ""","background":true""");

        // East throttles: a new create fails over to west; the pinned GET goes to east only and relays east's own 429.
        East.SetMode(FakeUpstreamMode.Throttle(retryAfterSeconds: 60));
        var failedOver = await a.CreateResponseAsync(Model, "Another one");
        var failedOverUsage = await UsageOfAsync(failedOver);
        Assert.Equal("west", UsageEvents.Text(failedOverUsage, "Upstream"));
        Assert.Equal(2, UsageEvents.Long(failedOverUsage, "Attempts"));
        var relayed = await Assert.ThrowsAsync<ClientResultException>(() => a.GetResponseAsync(pinned));
        Assert.Equal(429, relayed.Status);
        Assert.Equal("60", relayed.GetRawResponse()!.Headers.TryGetValue("retry-after", out var retryAfter) ? retryAfter : null);

        // East answers again, but this replica still has it cooling for 60 s: creates go to west, pinned calls to east.
        East.SetMode(FakeUpstreamMode.Normal);
        var whileCooling = await a.CreateResponseAsync(Model, "And another");
        Assert.Equal("west", UsageEvents.Text(await UsageOfAsync(whileCooling), "Upstream"));
        Assert.Equal(pinned, (await a.GetResponseAsync(pinned)).Value.Id);
        var continued = await a.CreateResponseAsync(new CreateResponseOptions(Model, [ResponseItem.CreateUserMessageItem("Explain it")]) { PreviousResponseId = pinned });
        Assert.Equal(pinned, continued.Value.PreviousResponseId);
        var continuedUsage = await UsageOfAsync(continued);
        Assert.Equal("east", UsageEvents.Text(continuedUsage, "Upstream"));
        Assert.Equal(1, UsageEvents.Long(continuedUsage, "Attempts"));
        await foreach (var item in a.GetResponseInputItemsAsync(pinned))
        {
            Assert.NotNull(item);
        }

        Assert.Equal(background, (await a.CancelResponseAsync(background)).Value.Id);
        Assert.True((await a.DeleteResponseAsync(pinned)).Value.Deleted);

        var toEast = East.Requests.Where(r => r.PathAndQuery.Contains(pinned, StringComparison.Ordinal) || r.BodyText.Contains(pinned, StringComparison.Ordinal)).ToList();
        Assert.Contains(toEast, r => r.Method == "GET" && r.PathAndQuery == $"/v1/responses/{pinned}");
        Assert.Contains(toEast, r => r.Method == "POST" && r.PathAndQuery == "/v1/responses");
        Assert.Contains(toEast, r => r.Method == "GET" && r.PathAndQuery.StartsWith($"/v1/responses/{pinned}/input_items", StringComparison.Ordinal));
        Assert.Contains(toEast, r => r.Method == "DELETE");
        Assert.Contains(East.Requests, r => r.Method == "POST" && r.PathAndQuery == $"/v1/responses/{background}/cancel");
        Assert.All(toEast, r => Assert.Equal("Bearer sk-east", r.Header("Authorization"))); // east's own key, never west's or the tenant's
        Assert.DoesNotContain(West.Requests, r => r.PathAndQuery.Contains(pinned, StringComparison.Ordinal) || r.BodyText.Contains(pinned, StringComparison.Ordinal)
            || r.PathAndQuery.Contains(background, StringComparison.Ordinal));

        // The response made on west is pinned there (east takes traffic again once its cooldown is over, it stays on west).
        Assert.Equal(failedOver.Value.Id, (await a.GetResponseAsync(failedOver.Value.Id)).Value.Id);
        Assert.Contains(West.Requests, r => r.Method == "GET" && r.PathAndQuery == $"/v1/responses/{failedOver.Value.Id}");
    }

    [SkippableFact]
    public async Task PinnedStoredChatCompletion_ItsUpstreamCools_RetrievalRelaysItsAnswerThenIsServedThere()
    {
        using var a = Client(Gateway, TestKeys.KeyA, "a");
        var completion = await CreateStoredChatCompletionAsync(a);
        East.SetMode(FakeUpstreamMode.Throttle(retryAfterSeconds: 60));
        using var unstored = await a.PostAsync("chat/completions", Json("""{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}]}"""));
        Assert.Equal("west", UsageEvents.Text(await UsageEvents.OfAsync(Gateway, unstored), "Upstream"));

        using (var relayed = await a.GetAsync($"chat/completions/{completion}"))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, relayed.StatusCode); // east's own 429: no failover for a pinned id
        }

        East.SetMode(FakeUpstreamMode.Normal);
        using (var served = await a.GetAsync($"chat/completions/{completion}"))
        {
            Assert.Equal(completion, (await ReadJsonAsync(served)).GetProperty("id").GetString());
        }

        using (var messages = await a.GetAsync($"chat/completions/{completion}/messages"))
        {
            Assert.Equal(HttpStatusCode.OK, messages.StatusCode);
        }

        Assert.Equal(3, East.Requests.Count(r => r.Method == "GET" && r.PathAndQuery.StartsWith($"/v1/chat/completions/{completion}", StringComparison.Ordinal)));
        Assert.DoesNotContain(West.Requests, r => r.PathAndQuery.Contains(completion, StringComparison.Ordinal));
    }

    [SkippableFact]
    public async Task PinnedResponse_OtherTenant_StillGetsNotFoundAndNothingIsForwarded()
    {
        var pinned = (await Responses(TestKeys.KeyA).CreateResponseAsync(Model, "Tell me a joke")).Value.Id;
        East.SetMode(FakeUpstreamMode.Throttle(retryAfterSeconds: 60));
        using var b = Client(Gateway, TestKeys.KeyB, "b");

        using var get = await b.GetAsync($"responses/{pinned}");
        using var previous = await b.PostAsync("responses", Json($$"""{"model":"gpt-4o-mini","input":"x","previous_response_id":"{{pinned}}"}"""));
        // An id taken from another tenant cannot steer B's request to the id's upstream either: refused before routing.
        await AssertErrorAsync(get, HttpStatusCode.NotFound, $"Response with id '{pinned}' not found.");
        await AssertErrorAsync(previous, HttpStatusCode.BadRequest, $"Previous response with id '{pinned}' not found.", "previous_response_id", "previous_response_not_found");
        Assert.Empty(RequestsFrom(East, "b"));
        Assert.Empty(RequestsFrom(West, "b"));
    }

    /// <summary>
    /// Tenant B holds a response of its own on west and knows an id of A's on east; it tries to get a request of its own
    /// sent to east (where A's objects live) or to confuse the pin. Every attempt is refused before any upstream.
    /// </summary>
    [SkippableFact]
    public async Task HostileTenant_ForgedDuplicateForeignOrOverlongIds_NeverSteersARequestToAnotherUpstream()
    {
        var ofA = (await Responses(TestKeys.KeyA).CreateResponseAsync(Model, "Tell me a joke")).Value.Id;
        using var a = Client(Gateway, TestKeys.KeyA, "a");
        var conversationOfA = await CreateConversationAsync(a);
        East.SetMode(FakeUpstreamMode.Throttle(retryAfterSeconds: 60));
        using var b = Client(Gateway, TestKeys.KeyB, "b");
        var ofB = await CreateResponseAsync(b);
        East.SetMode(FakeUpstreamMode.Normal);
        Assert.Single(RequestsFrom(West, "b"));
        var eastSawOfB = RequestsFrom(East, "b").Count; // the create's first, throttled attempt
        var forged = NeverSeen.Response();

        async Task<(HttpStatusCode Status, string Body)> SendAsync(string body)
        {
            using var response = await b.PostAsync("responses", Json(body));
            return (response.StatusCode, await response.Content.ReadAsStringAsync());
        }

        // An id never issued, another tenant's id, the same key twice (the second one A's), and the object form of
        // conversation naming A's conversation: each refused by the gateway (404/400), never routed.
        Assert.Equal(HttpStatusCode.BadRequest, (await SendAsync($$"""{"model":"gpt-4o-mini","input":"x","previous_response_id":"{{forged}}"}""")).Status);
        Assert.Equal(HttpStatusCode.BadRequest, (await SendAsync($$"""{"model":"gpt-4o-mini","input":"x","previous_response_id":"{{ofA}}"}""")).Status);
        var duplicate = await SendAsync($$"""{"model":"gpt-4o-mini","input":"x","previous_response_id":"{{ofB}}","previous_response_id":"{{ofA}}"}""");
        Assert.Equal(HttpStatusCode.BadRequest, duplicate.Status);
        Assert.Contains("duplicate_parameter", duplicate.Body, StringComparison.Ordinal);
        var objectForm = await SendAsync($$$"""{"model":"gpt-4o-mini","input":"x","previous_response_id":"{{{ofB}}}","conversation":{"id":"{{{conversationOfA}}}"}}""");
        Assert.Equal(HttpStatusCode.NotFound, objectForm.Status);
        Assert.Contains($"Conversation with id '{conversationOfA}' not found.", objectForm.Body, StringComparison.Ordinal);
        var twoIds = await SendAsync($$$"""{"model":"gpt-4o-mini","input":"x","conversation":{"id":"{{{conversationOfA}}}","id":"{{{conversationOfA}}}"}}""");
        Assert.Equal(HttpStatusCode.BadRequest, twoIds.Status);

        // Over-long ids, in the body and in the path: refused as OpenAI does, before any store lookup.
        var overlong = "resp_" + new string('a', 300);
        var longBody = await SendAsync($$"""{"model":"gpt-4o-mini","input":"x","previous_response_id":"{{overlong}}"}""");
        Assert.Equal(HttpStatusCode.BadRequest, longBody.Status);
        Assert.Contains("string_above_max_length", longBody.Body, StringComparison.Ordinal);
        using var longPath = await b.GetAsync($"responses/{overlong}");
        Assert.Equal(HttpStatusCode.BadRequest, longPath.StatusCode);
        using var foreignPath = await b.GetAsync($"responses/{ofA}");
        Assert.Equal(HttpStatusCode.NotFound, foreignPath.StatusCode);

        // Its own id still works and stays on west; nothing else of B's reached east.
        Assert.Equal(HttpStatusCode.OK, (await SendAsync($$"""{"model":"gpt-4o-mini","input":"x","previous_response_id":"{{ofB}}"}""")).Status);
        Assert.Equal(eastSawOfB, RequestsFrom(East, "b").Count);
        Assert.Equal(2, RequestsFrom(West, "b").Count);
    }

    [SkippableFact]
    public async Task StoreFalseCreate_NotPinned_GoesWhereverTheRouterSends()
    {
        using var a = Client(Gateway, TestKeys.KeyA, "a");
        East.SetMode(FakeUpstreamMode.Throttle(retryAfterSeconds: 60));

        using var unstored = await a.PostAsync("responses", Json("""{"model":"gpt-4o-mini","input":"x","store":false}"""));
        var id = (await ReadJsonAsync(unstored)).GetProperty("id").GetString()!;
        Assert.Equal("west", UsageEvents.Text(await UsageEvents.OfAsync(Gateway, unstored), "Upstream"));

        // Nothing was recorded for it: with UnknownIds Deny its id is refused like any unknown id, before any upstream.
        using var get = await a.GetAsync($"responses/{id}");
        await AssertErrorAsync(get, HttpStatusCode.NotFound, $"Response with id '{id}' not found.");
        East.SetMode(FakeUpstreamMode.Normal);
        Assert.DoesNotContain(East.Requests.Concat(West.Requests), r => r.PathAndQuery.Contains(id, StringComparison.Ordinal));
    }

    [SkippableFact]
    public async Task PinnedConversation_ContinuedWhileItsUpstreamCools_GoesThere_MixedWithAResponseOfTheOtherUpstream_400()
    {
        var conversations = new ConversationClient(new ApiKeyCredential(TestKeys.KeyA), new ConversationClientOptions { Endpoint = Gateway.BaseUrl });
        var conversation = (await conversations.CreateConversationAsync(new ConversationCreationOptions())).Value.Id;
        var a = Responses(TestKeys.KeyA);
        East.SetMode(FakeUpstreamMode.Throttle(retryAfterSeconds: 60));
        var onWest = (await a.CreateResponseAsync(Model, "Hello")).Value.Id;
        East.SetMode(FakeUpstreamMode.Normal);

        var turn = await a.CreateResponseAsync(new CreateResponseOptions(Model, [ResponseItem.CreateUserMessageItem("Continue")])
        {
            ConversationOptions = new ResponseConversationOptions(conversation),
        });
        Assert.Equal("east", UsageEvents.Text(await UsageOfAsync(turn), "Upstream"));
        using var raw = Client(Gateway, TestKeys.KeyA, "a");
        using var items = await raw.GetAsync($"conversations/{conversation}/items");
        Assert.Equal(HttpStatusCode.OK, items.StatusCode);
        Assert.Contains(RequestsFrom(East, "a"), r => r.Method == "GET" && r.PathAndQuery.StartsWith($"/v1/conversations/{conversation}/items", StringComparison.Ordinal));

        // The conversation lives on east, the response on west: no upstream holds both (OpenAI refuses the pair anyway).
        foreach (var form in new[] { $"\"{conversation}\"", $$"""{"id":"{{conversation}}"}""" })
        {
            using var mixed = await raw.PostAsync("responses", Json($$"""{"model":"gpt-4o-mini","input":"x","previous_response_id":"{{onWest}}","conversation":{{form}}}"""));
            var text = await mixed.Content.ReadAsStringAsync();
            Assert.Equal(HttpStatusCode.BadRequest, mixed.StatusCode);
            Assert.Equal("conversation", JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("param").GetString());
            Assert.Equal("objects_on_different_upstreams", JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("code").GetString());
        }

        Assert.DoesNotContain(East.Requests.Concat(West.Requests), r => r.BodyText.Contains(onWest, StringComparison.Ordinal));
        Assert.DoesNotContain(West.Requests, r => r.PathAndQuery.Contains(conversation, StringComparison.Ordinal) || r.BodyText.Contains(conversation, StringComparison.Ordinal));
    }

    [SkippableFact]
    public async Task PinnedUpstreamRemovedFromConfiguration_IdAnswersNotFoundAsOpenAIWould_AndIsLogged()
    {
        var a = Responses(TestKeys.KeyA);
        var pinned = (await a.CreateResponseAsync(Model, "Tell me a joke")).Value.Id;
        var reloads = Gateway.Logs.Named("UpstreamPoolReloaded").Count;

        await File.WriteAllTextAsync(ConfigFile, PoolJson(withEast: false));
        await Gateway.Logs.WaitForEventsAsync("UpstreamPoolReloaded", reloads + 1);

        using var raw = Client(Gateway, TestKeys.KeyA, "a");
        using var get = await raw.GetAsync($"responses/{pinned}");
        await AssertErrorAsync(get, HttpStatusCode.NotFound, $"Response with id '{pinned}' not found.");
        using var previous = await raw.PostAsync("responses", Json($$"""{"model":"gpt-4o-mini","input":"x","previous_response_id":"{{pinned}}"}"""));
        await AssertErrorAsync(previous, HttpStatusCode.BadRequest, $"Previous response with id '{pinned}' not found.", "previous_response_id", "previous_response_not_found");
        var gone = await Gateway.Logs.WaitForEventsAsync("PinnedUpstreamGone", 2);
        Assert.Equal(2, gone.Count);
        Assert.All(gone, e =>
        {
            Assert.Equal("east", e.GetProperty("Upstream").GetString());
            Assert.Equal(pinned, e.GetProperty("ObjectId").GetString());
            Assert.Equal(TestKeys.TenantA, e.GetProperty("Tenant").GetString());
        });
        Assert.Equal(["path", "previous_response_id"], gone.Select(e => e.GetProperty("Where").GetString()).Order(StringComparer.Ordinal));
        Assert.DoesNotContain(West.Requests, r => r.PathAndQuery.Contains(pinned, StringComparison.Ordinal) || r.BodyText.Contains(pinned, StringComparison.Ordinal));

        // Unpinned traffic is unaffected: new creates go to the remaining upstream.
        using var fresh = await raw.PostAsync("responses", Json("""{"model":"gpt-4o-mini","input":"x"}"""));
        Assert.Equal(HttpStatusCode.OK, fresh.StatusCode);
    }

    [SkippableFact]
    public async Task CostUsd_AndDollarSpend_UseTheAnsweringUpstreamsPriceMultiplier()
    {
        using var a = Client(Gateway, TestKeys.KeyA, "a");
        a.DefaultRequestHeaders.Add("x-fake-input-tokens", "200000");
        a.DefaultRequestHeaders.Add("x-fake-deltas", "50");

        using var onEast = await a.PostAsync("responses", Json("""{"model":"gpt-4o-mini","input":"x"}"""));
        East.SetMode(FakeUpstreamMode.Throttle(retryAfterSeconds: 60));
        using var onWest = await a.PostAsync("responses", Json("""{"model":"gpt-4o-mini","input":"x"}"""));
        var east = await UsageEvents.OfAsync(Gateway, onEast);
        var west = await UsageEvents.OfAsync(Gateway, onWest);

        Assert.Equal("east", UsageEvents.Text(east, "Upstream"));
        Assert.Equal("west", UsageEvents.Text(west, "Upstream"));
        Assert.Equal(PricingTestKit.Expected(east, 0.15m, 0.075m, 0.60m, multiplier: 0.5m), PricingTestKit.Cost(east));
        Assert.Equal(PricingTestKit.Expected(west, 0.15m, 0.075m, 0.60m, multiplier: 2m), PricingTestKit.Cost(west));
        Assert.NotEqual(PricingTestKit.Expected(east, 0.15m, 0.075m, 0.60m), PricingTestKit.Cost(east));
        using var quota = await a.GetAsync("gateway/quota");
        var spent = (await ReadJsonAsync(quota)).GetProperty("usage").GetProperty("usd_today").GetDecimal();
        Assert.Equal(PricingTestKit.Cost(east)!.Value + PricingTestKit.Cost(west)!.Value, spent);
    }

    [SkippableFact]
    public async Task EveryCandidateCooling_Gateway429_UsageEventSaysUpstreamError_LogNamesModelAndRecovery()
    {
        East.SetMode(FakeUpstreamMode.Throttle(retryAfterSeconds: 30));
        West.SetMode(FakeUpstreamMode.Throttle(retryAfterSeconds: 12));
        using var a = Client(Gateway, TestKeys.KeyA, "a");
        using var first = await a.PostAsync("responses", Json("""{"model":"gpt-4o-mini","input":"x"}"""));
        using var cooling = await a.PostAsync("responses", Json("""{"model":"gpt-4o-mini","input":"x"}"""));

        Assert.Equal(HttpStatusCode.TooManyRequests, first.StatusCode);
        Assert.Equal(HttpStatusCode.TooManyRequests, cooling.StatusCode);
        var usage = await UsageEvents.OfAsync(Gateway, cooling);
        Assert.Equal("upstream_error", UsageEvents.Text(usage, "Outcome"));
        Assert.Equal(0, UsageEvents.Long(usage, "Attempts"));
        var lines = await Gateway.Logs.WaitForEventsAsync("NoUpstreamAnswered", 2);
        var line = Assert.Single(lines, l => l.GetProperty("RequestId").GetString() == GatewayRequestId(cooling));
        Assert.Equal(Model, line.GetProperty("Model").GetString());
        Assert.Equal(429, line.GetProperty("StatusCode").GetInt32());
        Assert.InRange(line.GetProperty("RetryAfterSeconds").GetDouble(), 1, 12);
        Assert.Equal(2, East.Requests.Count(r => r.Method == "POST") + West.Requests.Count(r => r.Method == "POST"));
    }

    private protected ResponsesClient Responses(string key, GatewayHost? gateway = null) =>
        new(new ApiKeyCredential(key), new ResponsesClientOptions { Endpoint = (gateway ?? Gateway).BaseUrl, RetryPolicy = new ClientRetryPolicy(maxRetries: 0) });

    private protected async Task<JsonElement> UsageOfAsync(ClientResult result, GatewayHost? gateway = null)
    {
        Assert.True(result.GetRawResponse().Headers.TryGetValue("x-gateway-request-id", out var requestId));
        return await (gateway ?? Gateway).Logs.SingleUsageEventAsync(requestId!);
    }

    private protected string PoolJson(bool withEast)
    {
        var east = $$"""
            "east": { "BaseUrl": "{{East.BaseUrl.ToString().TrimEnd('/')}}", "ApiKey": "sk-east", "Priority": 1, "PriceMultiplier": 0.5 },
            """;
        return $$"""
            { "Gateway": { "Upstreams": {
                {{(withEast ? east : "")}}
                "west": { "BaseUrl": "{{West.BaseUrl.ToString().TrimEnd('/')}}", "ApiKey": "sk-west", "Priority": 2, "PriceMultiplier": 2 }
            } } }
            """;
    }
}

public sealed class PinnedObjectMemoryStoreTests : PinnedObjectTests
{
    private protected override Task ConfigureStoreAsync(Dictionary<string, string?> settings) => Task.CompletedTask;
}

/// <summary>The same on Redis; and the pin is shared: a second replica on the same Redis follows it.</summary>
public sealed class PinnedObjectRedisStoreTests : PinnedObjectTests
{
    private RedisServer? _redis;

    private protected override async Task ConfigureStoreAsync(Dictionary<string, string?> settings)
    {
        _redis ??= await RedisServer.StartAsync();
        settings["ConnectionStrings:Redis"] = _redis.ConnectionString;
    }

    public override async Task InitializeAsync()
    {
        RedisServer.RequireInstalled();
        await base.InitializeAsync();
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        if (_redis is not null)
        {
            await _redis.DisposeAsync();
        }
    }

    [SkippableFact]
    public async Task PinnedRecord_SharedThroughRedis_TheOtherReplicaSendsTheIdToItsUpstream()
    {
        await using var replica = await StartGatewayAsync();
        var created = await Responses(TestKeys.KeyA).CreateResponseAsync("gpt-4o-mini", "Tell me a joke");
        var pinned = created.Value.Id;
        await using (var redis = await ConnectionMultiplexer.ConnectAsync(_redis!.ConnectionString))
        {
            Assert.Equal($"{TestKeys.TenantA}@east", (string?)await redis.GetDatabase().StringGetAsync($"gw:own:{pinned}"));
        }

        // The second replica learns from its own traffic that east throttles, and sends new creates to west...
        var onReplica = Responses(TestKeys.KeyA, replica);
        East.SetMode(FakeUpstreamMode.Throttle(retryAfterSeconds: 60));
        Assert.Equal("west", UsageEvents.Text(await UsageOfAsync(await onReplica.CreateResponseAsync("gpt-4o-mini", "x"), replica), "Upstream"));
        East.SetMode(FakeUpstreamMode.Normal);

        // ...but the id recorded by the first replica goes to east, from the record in Redis.
        Assert.Equal(pinned, (await onReplica.GetResponseAsync(pinned)).Value.Id);
        Assert.Contains(East.Requests, r => r.Method == "GET" && r.PathAndQuery == $"/v1/responses/{pinned}");
        Assert.DoesNotContain(West.Requests, r => r.PathAndQuery.Contains(pinned, StringComparison.Ordinal));
    }
}
