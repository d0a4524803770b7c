using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net;
using Gateway.Tests.Infrastructure;
using OpenAI;
using OpenAI.Chat;
using static Gateway.Tests.Isolation.Tenants;

namespace Gateway.Tests.Isolation;

/// <summary>Stored chat completions: only <c>store: true</c> creates something to own; the cross-tenant listing is refused.</summary>
public sealed class ChatCompletionIsolationTests : TwoTenantBed
{
    private const string ListingMessage =
        "Listing stored chat completions is not available through this gateway: the upstream list spans every tenant sharing the API key. " +
        "Retrieve your completions by id instead.";

    [Theory]
    [InlineData("chat/completions")]
    [InlineData("chat/completions?model=gpt-4o-mini&limit=5&order=desc")]
    [InlineData("chat/completions/")]
    public async Task Listing_RefusedForEveryTenantWithoutReachingUpstream(string path)
    {
        await CreateStoredChatCompletionAsync(A);
        await CreateStoredChatCompletionAsync(B);

        foreach (var client in new[] { A, B })
        {
            using var refused = await client.GetAsync(path);
            await AssertErrorAsync(refused, HttpStatusCode.Forbidden, ListingMessage, code: "listing_not_supported");
            var usage = await Gateway.Logs.SingleUsageEventAsync(GatewayRequestId(refused));
            Assert.Equal("rejected", usage.GetProperty("Outcome").GetString());
            Assert.Equal(403, usage.GetProperty("StatusCode").GetInt32());
        }

        Assert.DoesNotContain(Upstream.Requests, r => r.Method == "GET");
    }

    [Fact]
    public async Task Listing_WithTheOfficialSdk_ThrowsPermissionDenied()
    {
        var options = new OpenAIClientOptions { Endpoint = Gateway.BaseUrl };
        options.AddPolicy(new AddHeaderPolicy(CallerHeader, TestKeys.TenantA), PipelinePosition.PerCall);
        var chat = new ChatClient("gpt-4o-mini", new ApiKeyCredential(TestKeys.KeyA), options);

        var error = await Assert.ThrowsAsync<ClientResultException>(async () =>
        {
            await foreach (var _ in chat.GetChatCompletionsAsync())
            {
            }
        });

        Assert.Equal(403, error.Status);
        AssertEnvelope(error.GetRawResponse()!.Content.ToString(), ListingMessage, null, "listing_not_supported");
        Assert.Empty(UpstreamRequestsFrom(TestKeys.TenantA));
    }

    [Fact]
    public async Task NotStored_IdIsNotRecorded_SoItIsUnknownEvenToItsCreator()
    {
        // Without store:true OpenAI keeps nothing, so there is nothing to own: the gateway answers the id as unknown,
        // exactly as the upstream would have.
        using var created = await A.PostAsync("chat/completions", Json("""{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}"""));
        var id = (await ReadJsonAsync(created)).GetProperty("id").GetString()!;

        using var owner = await A.GetAsync($"chat/completions/{id}");
        await AssertErrorAsync(owner, HttpStatusCode.NotFound, $"No chat completion found with id '{id}'.");
        using var direct = Direct(Upstream);
        using var upstream = await direct.GetAsync($"chat/completions/{id}");
        Assert.Equal(await ShapeAsync(upstream, id), await ShapeAsync(owner, id));
        Assert.Single(UpstreamRequestsFrom(TestKeys.TenantA)); // the create only
    }

    [Fact]
    public async Task Stored_WithTheOfficialSdk_OwnerReadsItBackOtherTenantCannot()
    {
        var options = new OpenAIClientOptions { Endpoint = Gateway.BaseUrl };
        var chatA = new ChatClient("gpt-4o-mini", new ApiKeyCredential(TestKeys.KeyA), options);
        var completion = (await chatA.CompleteChatAsync([new UserChatMessage("Hello")], new ChatCompletionOptions { StoredOutputEnabled = true })).Value;

        using var owner = await A.GetAsync($"chat/completions/{completion.Id}");
        Assert.Equal(completion.Id, (await ReadJsonAsync(owner)).GetProperty("id").GetString());
        using var refused = await B.DeleteAsync($"chat/completions/{completion.Id}");
        await AssertErrorAsync(refused, HttpStatusCode.NotFound, $"No chat completion found with id '{completion.Id}'.");
        Assert.Empty(UpstreamRequestsFrom(TestKeys.TenantB));
    }
}
