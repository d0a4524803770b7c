using System.Net;
using System.Text.Json;
using Gateway.Tests.Infrastructure;
using static Gateway.Tests.Isolation.Tenants;

namespace Gateway.Tests.Isolation;

/// <summary>
/// A streamed create: the id is recorded from the first event before that event is forwarded, so a client that reads
/// the id and calls back at once is served. The fake upstream holds everything after the first event until the test
/// opens its gate (<c>x-fake-gate</c>), so every call below provably happens while the creating stream is still running.
/// </summary>
public sealed class StreamingOwnershipTests : TwoTenantBed
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task StreamedResponse_GetRightAfterResponseCreated_ServedWhileTheStreamIsHeld(bool background)
    {
        var gate = "stream-" + Guid.NewGuid().ToString("N");
        using var stream = await StartGatedStreamAsync("responses",
            $$"""{"model":"gpt-4o-mini","input":"Stream to me","stream":true,"background":{{(background ? "true" : "false")}}}""", gate);
        var reader = new SseReader(await stream.Content.ReadAsStreamAsync());

        var first = await reader.NextAsync();
        Assert.Equal("response.created", first?.Event);
        var id = JsonDocument.Parse(first!.Value.Data).RootElement.GetProperty("response").GetProperty("id").GetString()!;

        // Before reading any further: the owner is served, the other tenant refused.
        using (var fetched = await A.GetAsync($"responses/{id}"))
        {
            Assert.Equal(id, (await ReadJsonAsync(fetched)).GetProperty("id").GetString());
        }

        using (var refused = await B.GetAsync($"responses/{id}"))
        {
            await AssertErrorAsync(refused, HttpStatusCode.NotFound, $"Response with id '{id}' not found.");
        }

        using (var continued = await B.PostAsync("responses", Json($$"""{"model":"gpt-4o-mini","input":"more","previous_response_id":"{{id}}"}""")))
        {
            await BodyIdIsolationTests.AssertRefusalAsync(continued, BodyIdIsolationTests.Field.PreviousResponse, id);
        }

        Upstream.ReleaseGate(gate);
        var rest = await reader.ReadAllAsync();
        var last = JsonDocument.Parse(rest[^1].Data).RootElement;
        Assert.Equal("response.completed", last.GetProperty("type").GetString());
        Assert.Equal(id, last.GetProperty("response").GetProperty("id").GetString());
        Assert.Contains(UpstreamRequestsFrom(TestKeys.TenantA), r => r.Method == "GET" && r.PathAndQuery == $"/v1/responses/{id}");
        Assert.Empty(UpstreamRequestsFrom(TestKeys.TenantB));
    }

    [Fact]
    public async Task StreamedStoredChatCompletion_GetRightAfterFirstChunk_ServedWhileTheStreamIsHeld()
    {
        var gate = "chat-" + Guid.NewGuid().ToString("N");
        using var stream = await StartGatedStreamAsync("chat/completions",
            """{"model":"gpt-4o-mini","store":true,"stream":true,"messages":[{"role":"user","content":"Hello"}]}""", gate);
        var reader = new SseReader(await stream.Content.ReadAsStreamAsync());

        var first = await reader.NextAsync();
        var id = JsonDocument.Parse(first!.Value.Data).RootElement.GetProperty("id").GetString()!;
        Assert.StartsWith("chatcmpl-", id, StringComparison.Ordinal);

        using (var fetched = await A.GetAsync($"chat/completions/{id}"))
        {
            Assert.Equal(id, (await ReadJsonAsync(fetched)).GetProperty("id").GetString());
        }

        using (var refused = await B.GetAsync($"chat/completions/{id}/messages"))
        {
            await AssertErrorAsync(refused, HttpStatusCode.NotFound, $"No chat completion found with id '{id}'.");
        }

        Upstream.ReleaseGate(gate);
        var rest = await reader.ReadAllAsync();
        Assert.Equal("[DONE]", rest[^1].Data);
        Assert.Empty(UpstreamRequestsFrom(TestKeys.TenantB));
    }

    [Fact]
    public async Task StreamedResponseInAConversation_ConversationUsableByOwnerOnly()
    {
        var conversation = await CreateConversationAsync(A);
        var gate = "conv-" + Guid.NewGuid().ToString("N");
        using var stream = await StartGatedStreamAsync("responses",
            $$"""{"model":"gpt-4o-mini","input":"Stream to me","stream":true,"conversation":"{{conversation}}"}""", gate);
        var reader = new SseReader(await stream.Content.ReadAsStreamAsync());
        var first = JsonDocument.Parse((await reader.NextAsync())!.Value.Data).RootElement;
        Assert.Equal(conversation, first.GetProperty("response").GetProperty("conversation").GetProperty("id").GetString());

        using (var refused = await B.GetAsync($"conversations/{conversation}/items"))
        {
            await AssertErrorAsync(refused, HttpStatusCode.NotFound, $"Conversation with id '{conversation}' not found.");
        }

        using (var served = await A.GetAsync($"conversations/{conversation}/items"))
        {
            Assert.Equal(HttpStatusCode.OK, served.StatusCode);
        }

        Upstream.ReleaseGate(gate);
        await reader.ReadAllAsync();
        Assert.Empty(UpstreamRequestsFrom(TestKeys.TenantB));
    }

    private async Task<HttpResponseMessage> StartGatedStreamAsync(string path, string body, string gate)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = Json(body) };
        request.Headers.Add("x-fake-gate", gate);
        var response = await A.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        return response;
    }
}
