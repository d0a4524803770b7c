using System.ClientModel;
using Gateway.Tests.Infrastructure;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Responses;

namespace Gateway.Tests.Forwarding;

/// <summary>An unmodified official OpenAI .NET SDK works through the gateway by base URL and key alone.</summary>
public sealed class OfficialSdkTests : GatewayTestBed
{
    private ResponsesClient Responses(string key = TestKeys.KeyA) =>
        new(new ApiKeyCredential(key), new ResponsesClientOptions { Endpoint = Gateway.BaseUrl });

    [Fact]
    public async Task CreateResponse_Plain_ReturnsUpstreamAnswerAndUpstreamSawOnlyTheRealKey()
    {
        var result = await Responses().CreateResponseAsync("gpt-4o-mini", "Say hello to the gateway");

        Assert.Equal(ResponseStatus.Completed, result.Value.Status);
        Assert.False(string.IsNullOrWhiteSpace(result.Value.GetOutputText()));
        Assert.Equal(8, result.Value.Usage.OutputTokenCount);
        var upstream = Assert.Single(Upstream.Requests);
        Assert.Equal($"Bearer {TestKeys.UpstreamKey}", upstream.Header("Authorization"));
        Assert.DoesNotContain(TestKeys.KeyA, string.Join('\n', upstream.Headers.SelectMany(h => h.Value)));
    }

    [Fact]
    public async Task CreateResponse_Streamed_DeliversEveryDeltaAndTheCompletedResponse()
    {
        var text = new System.Text.StringBuilder();
        ResponseResult? completed = null;
        await foreach (var update in await Responses().CreateResponseStreamingAsync("gpt-4o-mini", "Stream to me"))
        {
            if (update is StreamingResponseOutputTextDeltaUpdate delta)
            {
                text.Append(delta.Delta);
            }
            else if (update is StreamingResponseCompletedUpdate done)
            {
                completed = done.Response;
            }
        }

        Assert.NotNull(completed);
        Assert.Equal(completed.GetOutputText(), text.ToString());
        Assert.Equal(8, completed.Usage.OutputTokenCount);
        Assert.Equal($"Bearer {TestKeys.UpstreamKey}", Assert.Single(Upstream.Requests).Header("Authorization"));
    }

    [Fact]
    public async Task ChatCompletion_PlainAndStreamed_Work()
    {
        var chat = new ChatClient("gpt-4o-mini", new ApiKeyCredential(TestKeys.KeyA), new OpenAIClientOptions { Endpoint = Gateway.BaseUrl });
        var plain = await chat.CompleteChatAsync([new UserChatMessage("Hello")]);
        Assert.False(string.IsNullOrEmpty(plain.Value.Content[0].Text));

        var streamed = new System.Text.StringBuilder();
        ChatTokenUsage? usage = null;
        await foreach (var update in chat.CompleteChatStreamingAsync([new UserChatMessage("Hello")]))
        {
            foreach (var part in update.ContentUpdate)
            {
                streamed.Append(part.Text);
            }

            usage ??= update.Usage;
        }

        Assert.False(string.IsNullOrEmpty(streamed.ToString()));
        Assert.NotNull(usage); // the .NET SDK asks for include_usage itself, so it must still get the usage chunk
    }

    [Fact]
    public async Task CreateResponse_UnknownKey_ThrowsAuthenticationErrorAndNothingReachesUpstream()
    {
        var error = await Assert.ThrowsAsync<ClientResultException>(() => Responses("gwk_not_a_key").CreateResponseAsync("gpt-4o-mini", "hi"));
        Assert.Equal(401, error.Status);
        Assert.Empty(Upstream.Requests);
    }
}
