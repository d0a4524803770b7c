using System.Net;
using Gateway.Tests.Infrastructure;
using static Gateway.Tests.Isolation.Tenants;

namespace Gateway.Tests.Isolation;

/// <summary>
/// Every route that names an object in its path, for the three kinds of object the gateway tracks. Tenant A creates
/// the object through the gateway; then tenant B's use of A's id, and anyone's use of an id nobody ever created, get
/// the very answer OpenAI gives for an id it does not have (same status, same bytes as the fake upstream's own
/// not-found answer), and neither request reaches the upstream. A's own request is forwarded and served.
/// </summary>
public sealed class ObjectRouteIsolationTests : TwoTenantBed
{
    private static readonly Dictionary<string, RouteCase> Cases = new RouteCase[]
    {
        new("GET responses/{id}", Kind.Response, "GET", "responses/{id}"),
        new("GET responses/{id}?stream=true", Kind.Response, "GET", "responses/{id}?stream=true"),
        new("GET responses/{id}/input_items", Kind.Response, "GET", "responses/{id}/input_items?limit=10&order=asc"),
        new("POST responses/{id}/cancel", Kind.Response, "POST", "responses/{id}/cancel"),
        new("DELETE responses/{id}", Kind.Response, "DELETE", "responses/{id}"),
        new("GET conversations/{id}", Kind.Conversation, "GET", "conversations/{id}"),
        new("POST conversations/{id}", Kind.Conversation, "POST", "conversations/{id}", """{"metadata":{"topic":"renamed"}}"""),
        new("DELETE conversations/{id}", Kind.Conversation, "DELETE", "conversations/{id}"),
        new("GET conversations/{id}/items", Kind.Conversation, "GET", "conversations/{id}/items?limit=5"),
        new("POST conversations/{id}/items", Kind.Conversation, "POST", "conversations/{id}/items",
            """{"items":[{"type":"message","role":"user","content":"One more thing"}]}"""),
        new("GET conversations/{id}/items/{item}", Kind.Conversation, "GET", "conversations/{id}/items/{item}"),
        new("DELETE conversations/{id}/items/{item}", Kind.Conversation, "DELETE", "conversations/{id}/items/{item}"),
        new("GET chat/completions/{id}", Kind.ChatCompletion, "GET", "chat/completions/{id}"),
        new("POST chat/completions/{id}", Kind.ChatCompletion, "POST", "chat/completions/{id}", """{"metadata":{"topic":"renamed"}}"""),
        new("DELETE chat/completions/{id}", Kind.ChatCompletion, "DELETE", "chat/completions/{id}"),
        new("GET chat/completions/{id}/messages", Kind.ChatCompletion, "GET", "chat/completions/{id}/messages"),
    }.ToDictionary(c => c.Name);

    public enum Kind
    {
        Response,
        Conversation,
        ChatCompletion,
    }

    public static TheoryData<string> Routes => [.. Cases.Keys];

    [Theory]
    [MemberData(nameof(Routes))]
    public async Task PathId_OwnerServed_OtherTenantGetsOpenAIsNotFoundWithoutReachingUpstream(string route)
    {
        var c = Cases[route];
        var (id, item) = await CreateAsOwnerAsync(c.Kind);

        // B with A's id: OpenAI's not-found answer, exactly.
        using var refused = await SendAsync(B, c, id, item);
        await AssertErrorAsync(refused, HttpStatusCode.NotFound, NotFoundMessage(c.Kind, id));
        Assert.Empty(UpstreamRequestsFrom(TestKeys.TenantB));

        // An id nobody created: the gateway answers it the same way (so B learns nothing from the difference)...
        var unknown = NeverSeenId(c.Kind);
        using var unknownAnswer = await SendAsync(A, c, unknown, item);
        Assert.Equal(await ShapeAsync(refused, id), await ShapeAsync(unknownAnswer, unknown));
        Assert.DoesNotContain(UpstreamRequestsFrom(TestKeys.TenantA), r => r.PathAndQuery.Contains(unknown, StringComparison.Ordinal));

        // ...and that is byte for byte what the upstream itself says about an id it does not have.
        using var direct = Direct(Upstream);
        using var upstreamAnswer = await SendAsync(direct, c, unknown, item);
        Assert.Equal(await ShapeAsync(upstreamAnswer, unknown), await ShapeAsync(refused, id));
        Assert.Equal(upstreamAnswer.Content.Headers.ContentType?.MediaType, refused.Content.Headers.ContentType?.MediaType);

        // A with its own id: forwarded and served.
        using var served = await SendAsync(A, c, id, item);
        Assert.True(served.IsSuccessStatusCode, $"{(int)served.StatusCode}: {await served.Content.ReadAsStringAsync()}");
        Assert.Contains(UpstreamRequestsFrom(TestKeys.TenantA), r => r.Method == c.Method && r.PathAndQuery == "/v1/" + c.Path(id, item));
        Assert.Empty(UpstreamRequestsFrom(TestKeys.TenantB));
    }

    [Theory]
    [InlineData("responses/{id}")]
    [InlineData("responses/{id}/")]
    [InlineData("responses/{id}/input_items")]
    public async Task PathId_OtherTenantsIdInAnySpelling_NeverReachesUpstream(string template)
    {
        var id = await CreateResponseAsync(A);

        using var refused = await B.GetAsync(template.Replace("{id}", id, StringComparison.Ordinal));

        await AssertErrorAsync(refused, HttpStatusCode.NotFound, NotFoundMessage(Kind.Response, id));
        Assert.Empty(UpstreamRequestsFrom(TestKeys.TenantB));
    }

    [Theory]
    [InlineData("responses/{id}%2Fcancel")]
    [InlineData("responses/..%2F{id}")]
    [InlineData("responses/{id}%00")]
    public async Task PathId_EncodedTricksAroundOtherTenantsId_NeverReachUpstream(string template)
    {
        var id = await CreateResponseAsync(A);

        using var refused = await B.GetAsync(template.Replace("{id}", id, StringComparison.Ordinal));

        Assert.False(refused.IsSuccessStatusCode); // 404 from the route table, or 400 from Kestrel for %00
        Assert.Empty(UpstreamRequestsFrom(TestKeys.TenantB));
    }

    private async Task<(string Id, string? Item)> CreateAsOwnerAsync(Kind kind)
    {
        switch (kind)
        {
            case Kind.Response:
                // Background, so that cancel is meaningful; stored like every response.
                return (await CreateResponseAsync(A, ""","background":true"""), null);
            case Kind.Conversation:
                var conversation = await CreateConversationAsync(A);
                return (conversation, await FirstItemIdAsync(A, conversation));
            default:
                return (await CreateStoredChatCompletionAsync(A), null);
        }
    }

    private static Task<HttpResponseMessage> SendAsync(HttpClient client, RouteCase c, string id, string? item)
    {
        var request = new HttpRequestMessage(new HttpMethod(c.Method), c.Path(id, item));
        if (c.Body is not null)
        {
            request.Content = Json(c.Body);
        }

        return client.SendAsync(request);
    }

    private static string NeverSeenId(Kind kind) => kind switch
    {
        Kind.Response => NeverSeen.Response(),
        Kind.Conversation => NeverSeen.Conversation(),
        _ => NeverSeen.ChatCompletion(),
    };

    internal static string NotFoundMessage(Kind kind, string id) => kind switch
    {
        Kind.Response => $"Response with id '{id}' not found.",
        Kind.Conversation => $"Conversation with id '{id}' not found.",
        _ => $"No chat completion found with id '{id}'.",
    };

    private sealed record RouteCase(string Name, Kind Kind, string Method, string Template, string? Body = null)
    {
        public string Path(string id, string? item) =>
            Template.Replace("{id}", id, StringComparison.Ordinal).Replace("{item}", item ?? "", StringComparison.Ordinal);
    }
}
