using System.Net;
using Gateway.Tests.Infrastructure;
using static Gateway.Tests.Isolation.Tenants;

namespace Gateway.Tests.Isolation;

/// <summary>
/// <c>Gateway:Isolation:UnknownIds = Allow</c>, the migration switch for objects created before the gateway: ids the
/// gateway never saw go through (the upstream answers for them), while ids it knows stay with their owner.
/// </summary>
public sealed class UnknownIdsAllowTests() : TwoTenantBed(c => c["Gateway:Isolation:UnknownIds"] = "Allow")
{
    [Theory]
    [InlineData("responses/{id}", "resp")]
    [InlineData("responses/{id}/input_items", "resp")]
    [InlineData("conversations/{id}", "conv")]
    [InlineData("conversations/{id}/items", "conv")]
    [InlineData("chat/completions/{id}", "chat")]
    public async Task NeverSeenPathId_ForwardedAndAnsweredByTheUpstream(string template, string kind)
    {
        var unknown = kind switch { "resp" => NeverSeen.Response(), "conv" => NeverSeen.Conversation(), _ => NeverSeen.ChatCompletion() };
        var path = template.Replace("{id}", unknown, StringComparison.Ordinal);

        using var answer = await B.GetAsync(path);
        using var direct = Direct(Upstream);
        using var upstream = await direct.GetAsync(path);

        Assert.Equal(HttpStatusCode.NotFound, answer.StatusCode);
        Assert.Equal(await ShapeAsync(upstream, unknown), await ShapeAsync(answer, unknown));
        Assert.Single(UpstreamRequestsFrom(TestKeys.TenantB), r => r.PathAndQuery == "/v1/" + path);
    }

    [Fact]
    public async Task PreExistingResponse_ReachableByIdAndAsPreviousResponse()
    {
        // A response created with the real key before the gateway was deployed.
        using var direct = Direct(Upstream);
        using var created = await direct.PostAsync("responses", Json("""{"model":"gpt-4o-mini","input":"Before the gateway"}"""));
        var id = (await ReadJsonAsync(created)).GetProperty("id").GetString()!;

        using var fetched = await A.GetAsync($"responses/{id}");
        Assert.Equal(id, (await ReadJsonAsync(fetched)).GetProperty("id").GetString());
        using var continued = await A.PostAsync("responses", Json($$"""{"model":"gpt-4o-mini","input":"After","previous_response_id":"{{id}}"}"""));
        Assert.Equal(id, (await ReadJsonAsync(continued)).GetProperty("previous_response_id").GetString());
        Assert.Equal(2, UpstreamRequestsFrom(TestKeys.TenantA).Count(r => r.PathAndQuery == $"/v1/responses/{id}" || r.BodyText.Contains(id, StringComparison.Ordinal)));
    }

    [Fact]
    public async Task OtherTenantsKnownIds_StillRefusedEverywhere()
    {
        var response = await CreateResponseAsync(A);
        var conversation = await CreateConversationAsync(A);
        var chat = await CreateStoredChatCompletionAsync(A);

        using (var r = await B.GetAsync($"responses/{response}"))
        {
            await AssertErrorAsync(r, HttpStatusCode.NotFound, $"Response with id '{response}' not found.");
        }

        using (var r = await B.DeleteAsync($"responses/{response}"))
        {
            await AssertErrorAsync(r, HttpStatusCode.NotFound, $"Response with id '{response}' not found.");
        }

        using (var r = await B.PostAsync("responses", Json($$"""{"model":"gpt-4o-mini","input":"x","previous_response_id":"{{response}}"}""")))
        {
            await BodyIdIsolationTests.AssertRefusalAsync(r, BodyIdIsolationTests.Field.PreviousResponse, response);
        }

        using (var r = await B.GetAsync($"conversations/{conversation}/items"))
        {
            await AssertErrorAsync(r, HttpStatusCode.NotFound, $"Conversation with id '{conversation}' not found.");
        }

        using (var r = await B.PostAsync("responses", Json($$$"""{"model":"gpt-4o-mini","input":"x","conversation":{"id":"{{{conversation}}}"}}""")))
        {
            await BodyIdIsolationTests.AssertRefusalAsync(r, BodyIdIsolationTests.Field.Conversation, conversation);
        }

        using (var r = await B.GetAsync($"chat/completions/{chat}"))
        {
            await AssertErrorAsync(r, HttpStatusCode.NotFound, $"No chat completion found with id '{chat}'.");
        }

        Assert.Empty(UpstreamRequestsFrom(TestKeys.TenantB));
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public async Task PreExistingConversation_NamedInAResponse_BecomesThatTenantsConversation(bool stream, bool background)
    {
        // A conversation created before the gateway: unknown to it, so first allowed to anyone...
        using var direct = Direct(Upstream);
        using var created = await direct.PostAsync("conversations", Json("""{"metadata":{"topic":"legacy"}}"""));
        var conversation = (await ReadJsonAsync(created)).GetProperty("id").GetString()!;

        // ...until a response of A's names it: the answer (JSON, stream, queued background) carries the conversation,
        // and the gateway records it as A's before passing it on.
        using var response = await A.PostAsync("responses", Json(
            $$"""{"model":"gpt-4o-mini","input":"Hi","conversation":"{{conversation}}","stream":{{Lower(stream)}},"background":{{Lower(background)}}}"""));
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        Assert.Contains(conversation, body, StringComparison.Ordinal);

        using (var refused = await B.GetAsync($"conversations/{conversation}"))
        {
            await AssertErrorAsync(refused, HttpStatusCode.NotFound, $"Conversation with id '{conversation}' not found.");
        }

        using (var refused = await B.PostAsync("responses", Json($$"""{"model":"gpt-4o-mini","input":"Hi","conversation":"{{conversation}}"}""")))
        {
            await BodyIdIsolationTests.AssertRefusalAsync(refused, BodyIdIsolationTests.Field.Conversation, conversation);
        }

        using (var served = await A.GetAsync($"conversations/{conversation}/items"))
        {
            Assert.Equal(HttpStatusCode.OK, served.StatusCode);
        }

        Assert.Empty(UpstreamRequestsFrom(TestKeys.TenantB));
    }

    [Fact]
    public async Task PreExistingResponse_ReadByATenant_IsNotClaimedByIt()
    {
        // Reading is not creating: only ids in the answers of creating requests are recorded.
        using var direct = Direct(Upstream);
        using var created = await direct.PostAsync("responses", Json("""{"model":"gpt-4o-mini","input":"Before the gateway"}"""));
        var id = (await ReadJsonAsync(created)).GetProperty("id").GetString()!;

        using (var first = await A.GetAsync($"responses/{id}"))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        }

        using var second = await B.GetAsync($"responses/{id}");
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
    }

    private static string Lower(bool value) => value ? "true" : "false";
}
