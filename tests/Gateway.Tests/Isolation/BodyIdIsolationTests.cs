using System.Net;
using System.Net.Http.Headers;
using Gateway.Tests.Infrastructure;
using static Gateway.Tests.Isolation.Tenants;

namespace Gateway.Tests.Isolation;

/// <summary>
/// Ids named in request bodies: <c>previous_response_id</c> (create, streamed create, input_tokens, compact) and
/// <c>conversation</c> as a string or as <c>{"id": …}</c> (create, input_tokens). B naming A's id gets OpenAI's
/// answer for an id that does not exist, identical to the answer for an id nobody created, and nothing is forwarded;
/// A naming its own id is forwarded with the body untouched.
/// </summary>
public sealed class BodyIdIsolationTests : TwoTenantBed
{
    private static readonly Dictionary<string, BodyCase> Cases = new BodyCase[]
    {
        new("responses previous_response_id", Field.PreviousResponse, "responses",
            """{"model":"gpt-4o-mini","input":"And another one","previous_response_id":"{id}"}"""),
        new("responses previous_response_id stream", Field.PreviousResponse, "responses",
            """{"model":"gpt-4o-mini","input":"And another one","stream":true,"previous_response_id":"{id}"}"""),
        new("responses previous_response_id background", Field.PreviousResponse, "responses",
            """{"model":"gpt-4o-mini","background":true,"previous_response_id":"{id}","input":"And another one"}"""),
        new("input_tokens previous_response_id", Field.PreviousResponse, "responses/input_tokens",
            """{"model":"gpt-4o-mini","input":"How long is this?","previous_response_id":"{id}"}"""),
        new("compact previous_response_id", Field.PreviousResponse, "responses/compact",
            """{"model":"gpt-4o-mini","previous_response_id":"{id}"}"""),
        new("responses conversation string", Field.Conversation, "responses",
            """{"model":"gpt-4o-mini","input":"Continue","conversation":"{id}"}"""),
        new("responses conversation object", Field.Conversation, "responses",
            """{"model":"gpt-4o-mini","conversation":{"id":"{id}"},"input":"Continue"}"""),
        new("responses conversation object stream", Field.Conversation, "responses",
            """{"model":"gpt-4o-mini","input":"Continue","stream":true,"conversation":{"id":"{id}"}}"""),
        new("input_tokens conversation", Field.Conversation, "responses/input_tokens",
            """{"model":"gpt-4o-mini","input":"How long is this?","conversation":"{id}"}"""),
    }.ToDictionary(c => c.Name);

    public enum Field
    {
        PreviousResponse,
        Conversation,
    }

    public static TheoryData<string> Bodies => [.. Cases.Keys];

    [Theory]
    [MemberData(nameof(Bodies))]
    public async Task BodyId_OwnerForwarded_OtherTenantGetsOpenAIsNotFoundWithoutReachingUpstream(string name)
    {
        var c = Cases[name];
        var id = c.Field == Field.PreviousResponse ? await CreateResponseAsync(A) : await CreateConversationAsync(A);

        using var refused = await B.PostAsync(c.Path, Json(c.Body(id)));
        await AssertRefusalAsync(refused, c.Field, id);
        Assert.Empty(UpstreamRequestsFrom(TestKeys.TenantB));

        var unknown = c.Field == Field.PreviousResponse ? NeverSeen.Response() : NeverSeen.Conversation();
        using var unknownAnswer = await A.PostAsync(c.Path, Json(c.Body(unknown)));
        Assert.Equal(await ShapeAsync(refused, id), await ShapeAsync(unknownAnswer, unknown));
        Assert.DoesNotContain(UpstreamRequestsFrom(TestKeys.TenantA), r => r.BodyText.Contains(unknown, StringComparison.Ordinal));

        using var served = await A.PostAsync(c.Path, Json(c.Body(id)));
        Assert.True(served.IsSuccessStatusCode, $"{(int)served.StatusCode}: {await served.Content.ReadAsStringAsync()}");
        var forwarded = Assert.Single(UpstreamRequestsFrom(TestKeys.TenantA), r => r.BodyText.Contains(id, StringComparison.Ordinal) && r.PathAndQuery == "/v1/" + c.Path);
        Assert.Equal(c.Body(id), forwarded.BodyText);
    }

    [Fact]
    public async Task StreamedCreate_OtherTenantsPreviousResponseId_RefusedAsJsonBeforeAnyStreamStarts()
    {
        var id = await CreateResponseAsync(A);
        using var request = new HttpRequestMessage(HttpMethod.Post, "responses")
        {
            Content = Json($$"""{"model":"gpt-4o-mini","input":"hi","stream":true,"previous_response_id":"{{id}}"}"""),
        };
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/event-stream"));

        using var refused = await B.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);

        await AssertRefusalAsync(refused, Field.PreviousResponse, id);
        Assert.Empty(UpstreamRequestsFrom(TestKeys.TenantB));
    }

    [Fact]
    public async Task PreviousResponseAndConversation_OwnPreviousButOtherTenantsConversation_Refused()
    {
        var own = await CreateResponseAsync(B);
        var others = await CreateConversationAsync(A);

        using var refused = await B.PostAsync("responses",
            Json($$"""{"model":"gpt-4o-mini","input":"hi","previous_response_id":"{{own}}","conversation":"{{others}}"}"""));

        await AssertRefusalAsync(refused, Field.Conversation, others);
        Assert.Single(UpstreamRequestsFrom(TestKeys.TenantB)); // only B's own create
    }

    [Fact]
    public async Task DuplicateMember_RefusedWhicheverOneAParserWouldRead()
    {
        var own = await CreateResponseAsync(B);
        var others = await CreateResponseAsync(A);

        using var refused = await B.PostAsync("responses",
            Json($$"""{"model":"gpt-4o-mini","input":"hi","previous_response_id":"{{own}}","previous_response_id":"{{others}}"}"""));

        // Parsers disagree on which duplicate counts: the gateway refuses the body rather than guess (docs/isolation.md).
        await AssertErrorAsync(refused, HttpStatusCode.BadRequest,
            "Duplicate parameter 'previous_response_id': each parameter may be sent only once.", "previous_response_id", "duplicate_parameter");
        Assert.Single(UpstreamRequestsFrom(TestKeys.TenantB));
    }

    [Fact]
    public async Task EscapedMemberNameAndValue_StillRecognisedAsOtherTenantsId()
    {
        var others = await CreateResponseAsync(A);
        var escaped = others.Replace("_", "\\u005f", StringComparison.Ordinal);

        using var refused = await B.PostAsync("responses",
            Json($$"""{"model":"gpt-4o-mini","input":"hi","previous\u005fresponse_id":"{{escaped}}"}"""));

        await AssertRefusalAsync(refused, Field.PreviousResponse, others);
        Assert.Empty(UpstreamRequestsFrom(TestKeys.TenantB));
    }

    internal static Task AssertRefusalAsync(HttpResponseMessage response, Field field, string id) => field == Field.PreviousResponse
        ? AssertErrorAsync(response, HttpStatusCode.BadRequest, $"Previous response with id '{id}' not found.", "previous_response_id", "previous_response_not_found")
        : AssertErrorAsync(response, HttpStatusCode.NotFound, $"Conversation with id '{id}' not found.", "conversation");

    private sealed record BodyCase(string Name, Field Field, string Path, string Template)
    {
        public string Body(string id) => Template.Replace("{id}", id, StringComparison.Ordinal);
    }
}
