using System.ClientModel;
using System.ClientModel.Primitives;
using Gateway.Tests.Infrastructure;
using OpenAI.Conversations;
using OpenAI.Responses;
using static Gateway.Tests.Isolation.Tenants;

namespace Gateway.Tests.Isolation;

/// <summary>
/// The main Responses and Conversations flows with the unmodified official .NET SDK, as two apps of two tenants would
/// run them: what B's SDK throws is exactly what it throws for an id OpenAI does not have.
/// </summary>
public sealed class OfficialSdkIsolationTests : TwoTenantBed
{
    [Fact]
    public async Task OwnerCreatesRetrievesContinuesAndDeletes_OtherTenantGetsNotFoundThroughout()
    {
        var a = Responses(TestKeys.KeyA, TestKeys.TenantA);
        var b = Responses(TestKeys.KeyB, TestKeys.TenantB);
        var created = (await a.CreateResponseAsync("gpt-4o-mini", "Tell me a joke")).Value;
        var id = created.Id;
        var notFound = $"Response with id '{id}' not found.";

        var get = await Assert.ThrowsAsync<ClientResultException>(() => b.GetResponseAsync(id));
        AssertSdkError(get, 404, notFound, null, null);
        var continued = await Assert.ThrowsAsync<ClientResultException>(() => b.CreateResponseAsync(FollowUp(id)));
        AssertSdkError(continued, 400, $"Previous response with id '{id}' not found.", "previous_response_id", "previous_response_not_found");
        var items = await Assert.ThrowsAsync<ClientResultException>(async () =>
        {
            await foreach (var _ in b.GetResponseInputItemsAsync(id))
            {
            }
        });
        AssertSdkError(items, 404, notFound, null, null);
        var cancel = await Assert.ThrowsAsync<ClientResultException>(() => b.CancelResponseAsync(id));
        AssertSdkError(cancel, 404, notFound, null, null);
        var delete = await Assert.ThrowsAsync<ClientResultException>(() => b.DeleteResponseAsync(id));
        AssertSdkError(delete, 404, notFound, null, null);
        Assert.Empty(UpstreamRequestsFrom(TestKeys.TenantB));

        var fetched = (await a.GetResponseAsync(id)).Value;
        Assert.Equal(id, fetched.Id);
        Assert.Equal(created.GetOutputText(), fetched.GetOutputText());
        var inputItems = new List<ResponseItem>();
        await foreach (var item in a.GetResponseInputItemsAsync(id))
        {
            inputItems.Add(item);
        }

        Assert.NotEmpty(inputItems);
        var next = (await a.CreateResponseAsync(FollowUp(id))).Value;
        Assert.Equal(id, next.PreviousResponseId);
        Assert.True((await a.DeleteResponseAsync(id)).Value.Deleted);

        // After the delete B's answer is unchanged and still never forwarded; A now gets the upstream's own
        // not-found for its deleted response, and the two are the same bytes.
        var afterForB = await Assert.ThrowsAsync<ClientResultException>(() => b.GetResponseAsync(id));
        var afterForA = await Assert.ThrowsAsync<ClientResultException>(() => a.GetResponseAsync(id));
        AssertSdkError(afterForB, 404, notFound, null, null);
        Assert.Equal(afterForA.Status, afterForB.Status);
        Assert.Equal(afterForA.GetRawResponse()!.Content.ToString(), afterForB.GetRawResponse()!.Content.ToString());
        Assert.Equal(2, UpstreamRequestsFrom(TestKeys.TenantA).Count(r => r.Method == "GET" && r.PathAndQuery == $"/v1/responses/{id}"));
        Assert.Empty(UpstreamRequestsFrom(TestKeys.TenantB));
    }

    [Fact]
    public async Task StreamedCreate_GetOfTheNewIdWhileTheRestOfTheStreamIsHeld_Succeeds()
    {
        var gate = "sdk-stream-" + Guid.NewGuid().ToString("N");
        var streaming = Responses(TestKeys.KeyA, TestKeys.TenantA, ("x-fake-gate", gate));
        var a = Responses(TestKeys.KeyA, TestKeys.TenantA);
        var b = Responses(TestKeys.KeyB, TestKeys.TenantB);
        string? id = null;
        ResponseResult? fetchedMidStream = null;
        ResponseResult? completed = null;

        await foreach (var update in await streaming.CreateResponseStreamingAsync("gpt-4o-mini", "Stream to me"))
        {
            switch (update)
            {
                case StreamingResponseCreatedUpdate created:
                    // The upstream holds everything after response.created until the gate opens, so these calls
                    // provably happen while the creating stream is still running.
                    id = created.Response.Id;
                    fetchedMidStream = (await a.GetResponseAsync(id)).Value;
                    var refused = await Assert.ThrowsAsync<ClientResultException>(() => b.GetResponseAsync(id));
                    AssertSdkError(refused, 404, $"Response with id '{id}' not found.", null, null);
                    Upstream.ReleaseGate(gate);
                    break;
                case StreamingResponseCompletedUpdate done:
                    completed = done.Response;
                    break;
            }
        }

        Assert.NotNull(id);
        Assert.Equal(id, fetchedMidStream?.Id);
        Assert.Equal(id, completed?.Id);
        Assert.Empty(UpstreamRequestsFrom(TestKeys.TenantB));
    }

    [Fact]
    public async Task Conversation_OtherTenantCanNeitherReadNorContinueNorDeleteIt()
    {
        var a = Conversations(TestKeys.KeyA, TestKeys.TenantA);
        var b = Conversations(TestKeys.KeyB, TestKeys.TenantB);
        var options = new ConversationCreationOptions();
        options.Metadata["topic"] = "test";
        var conversation = (await a.CreateConversationAsync(options)).Value;
        var notFound = $"Conversation with id '{conversation.Id}' not found.";

        AssertSdkError(await Assert.ThrowsAsync<ClientResultException>(() => b.GetConversationAsync(conversation.Id)), 404, notFound, null, null);
        AssertSdkError(await Assert.ThrowsAsync<ClientResultException>(() => b.DeleteConversationAsync(conversation.Id)), 404, notFound, null, null);
        var continued = await Assert.ThrowsAsync<ClientResultException>(() =>
            Responses(TestKeys.KeyB, TestKeys.TenantB).CreateResponseAsync(InConversation(conversation.Id)));
        AssertSdkError(continued, 404, notFound, "conversation", null);
        Assert.Empty(UpstreamRequestsFrom(TestKeys.TenantB));

        var response = (await Responses(TestKeys.KeyA, TestKeys.TenantA).CreateResponseAsync(InConversation(conversation.Id))).Value;
        Assert.Equal(conversation.Id, response.ConversationOptions?.ConversationId);
        Assert.Equal("test", (await a.GetConversationAsync(conversation.Id)).Value.Metadata["topic"]);
        Assert.True((await a.DeleteConversationAsync(conversation.Id)).Value.Deleted);
        AssertSdkError(await Assert.ThrowsAsync<ClientResultException>(() => b.GetConversationAsync(conversation.Id)), 404, notFound, null, null);
        Assert.Empty(UpstreamRequestsFrom(TestKeys.TenantB));
    }

    private static CreateResponseOptions FollowUp(string previousResponseId) =>
        new("gpt-4o-mini", [ResponseItem.CreateUserMessageItem("Explain it")]) { PreviousResponseId = previousResponseId };

    private static CreateResponseOptions InConversation(string conversationId) =>
        new("gpt-4o-mini", [ResponseItem.CreateUserMessageItem("Continue")]) { ConversationOptions = new ResponseConversationOptions(conversationId) };

    private static void AssertSdkError(ClientResultException error, int status, string message, string? param, string? code)
    {
        Assert.Equal(status, error.Status);
        AssertEnvelope(error.GetRawResponse()!.Content.ToString(), message, param, code);
    }

    private ResponsesClient Responses(string key, string caller, params (string Name, string Value)[] headers)
    {
        var options = new ResponsesClientOptions { Endpoint = Gateway.BaseUrl };
        AddHeaders(options, caller, headers);
        return new ResponsesClient(new ApiKeyCredential(key), options);
    }

    private ConversationClient Conversations(string key, string caller)
    {
        var options = new ConversationClientOptions { Endpoint = Gateway.BaseUrl };
        AddHeaders(options, caller, []);
        return new ConversationClient(new ApiKeyCredential(key), options);
    }

    private static void AddHeaders(ClientPipelineOptions options, string caller, (string Name, string Value)[] headers)
    {
        options.AddPolicy(new AddHeaderPolicy(CallerHeader, caller), PipelinePosition.PerCall);
        foreach (var (name, value) in headers)
        {
            options.AddPolicy(new AddHeaderPolicy(name, value), PipelinePosition.PerCall);
        }
    }
}
