using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using FakeUpstream;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Usage;

/// <summary>
/// A streamed chat completion has usage only when the request asks for it (<c>stream_options.include_usage</c>).
/// The gateway asks on the client's behalf, logs the usage, and hides what the client did not ask for: the final
/// <c>choices: []</c> usage chunk and the <c>"usage":null</c> member OpenAI adds to every other chunk once
/// include_usage is on. A client that asked for usage itself gets the stream untouched.
/// </summary>
public sealed partial class ChatStreamUsageTests() : GatewayTestBed(c => c["Gateway:Isolation:UnknownIds"] = "Allow")
{
    private const string Recording = "ChatTests/StreamingStructuredRefusalWorks.json";

    [Fact]
    public async Task RecordedStream_ClientWithoutIncludeUsage_GetsUpstreamBytesMinusUsageChunkAndNullUsage()
    {
        var exchange = Recordings.All().Single(e => e.File == Recording);
        var upstreamBytes = Encoding.UTF8.GetString(FakeUpstreamServer.RecordedBody(Recordings.Root, exchange.File, exchange.Index));
        Assert.Contains("\"usage\":null", upstreamBytes, StringComparison.Ordinal); // the recording was made with include_usage on

        // The same request as recorded, minus stream_options: the client did not ask for usage.
        var body = JsonDocument.Parse(exchange.RequestBody!).RootElement;
        var withoutUsage = $$"""{"messages":{{body.GetProperty("messages").GetRawText()}},"model":"gpt-4o-2024-08-06","stream":true}""";

        using var client = Gateway.CreateClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, "chat/completions") { Content = Json(withoutUsage) };
        request.Headers.Add("x-fake-replay", exchange.ToString());
        using var response = await client.SendAsync(request);
        var received = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(WithoutUsage(upstreamBytes), received);
        Assert.DoesNotContain("\"usage\"", received, StringComparison.Ordinal);
        Assert.EndsWith("data: [DONE]\n\n", received, StringComparison.Ordinal);

        AssertUpstreamAskedForUsage();
        var usage = await UsageEvents.OfAsync(Gateway, response);
        UsageEvents.AssertEqualsUpstream(Recordings.RecordedUsage(exchange)!.Value, usage);
        Assert.Equal("chat.completions", UsageEvents.Text(usage, "Endpoint"));
        Assert.True(usage.GetProperty("Stream").GetBoolean());
    }

    [Fact]
    public async Task RecordedStream_ClientAskedForUsage_GetsEveryByteIncludingTheUsageChunk()
    {
        var exchange = Recordings.All().Single(e => e.File == Recording);
        using var client = Gateway.CreateClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, "chat/completions") { Content = Json(exchange.RequestBody!) };
        request.Headers.Add("x-fake-replay", exchange.ToString());
        using var response = await client.SendAsync(request);
        var received = await response.Content.ReadAsStringAsync();

        Assert.Equal(Encoding.UTF8.GetString(FakeUpstreamServer.RecordedBody(Recordings.Root, exchange.File, exchange.Index)), received);
        Assert.Equal(exchange.RequestBody, Assert.Single(Upstream.Requests).BodyText); // nothing edited
        UsageEvents.AssertEqualsUpstream(Recordings.RecordedUsage(exchange)!.Value, await UsageEvents.OfAsync(Gateway, response));
    }

    [Theory]
    [InlineData("""{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Name three rivers"}],"stream":true}""", null)]
    [InlineData("""{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":false},"messages":[{"role":"user","content":"Name three rivers"}]}""", null)]
    [InlineData("""{"stream_options":{"include_obfuscation":false},"model":"gpt-4o-mini","messages":[{"role":"user","content":"Name three rivers"}],"stream":true}""", null)]
    [InlineData("""{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Name three rivers"}],"stream":true,"stream_options":{}}""", null)]
    [InlineData("""{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Name three rivers"}],"stream":true}""", "gzip")]
    [InlineData("""{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Name three rivers"}],"stream":true}""", "br")]
    public async Task FakeStream_ClientWithoutIncludeUsage_StreamAsUpstreamSentItMinusUsageAndUsageLogged(string requestBody, string? upstreamEncoding)
    {
        using var client = Gateway.CreateClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, "chat/completions") { Content = Json(requestBody) };
        if (upstreamEncoding is not null)
        {
            request.Headers.Add("x-fake-encoding", upstreamEncoding); // compressed although identity was asked for
        }

        request.Headers.Add("x-fake-deltas", "12");
        request.Headers.Add("x-fake-cached-tokens", "3");
        request.Headers.Add("x-fake-reasoning-tokens", "2");
        using var response = await client.SendAsync(request);
        var received = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Empty(response.Content.Headers.ContentEncoding);

        AssertUpstreamAskedForUsage();
        var forwarded = Assert.Single(Upstream.Requests);
        var original = JsonDocument.Parse(requestBody).RootElement;
        var sent = JsonDocument.Parse(forwarded.BodyText).RootElement;
        if (original.TryGetProperty("stream_options", out var options) && options.TryGetProperty("include_obfuscation", out var obfuscation))
        {
            Assert.Equal(obfuscation.GetBoolean(), sent.GetProperty("stream_options").GetProperty("include_obfuscation").GetBoolean());
        }

        var usage = await UsageEvents.OfAsync(Gateway, response);
        Assert.Equal("upstream", UsageEvents.Text(usage, "UsageSource"));
        Assert.Equal(14, UsageEvents.Long(usage, "OutputTokens"));
        Assert.Equal(2, UsageEvents.Long(usage, "ReasoningTokens"));
        Assert.Equal(3, UsageEvents.Long(usage, "CachedInputTokens"));
        Assert.Equal(Upstream.Ledger.InputTokens, UsageEvents.Long(usage, "InputTokens"));
        Assert.Equal(Upstream.Ledger.TotalTokens, UsageEvents.Long(usage, "TotalTokens"));
        Assert.Equal("completed", UsageEvents.Text(usage, "Outcome"));
        Assert.NotNull(UsageEvents.Double(usage, "TimeToFirstByteMs"));

        // What the upstream sends for the gateway's request (include_usage on), taken straight from the fake; ids and
        // timestamps differ per completion, so both sides are normalised.
        var upstreamSent = await DirectFromUpstreamAsync(forwarded.BodyText, deltas: 12, cached: 3, reasoning: 2);
        Assert.Contains("\"usage\":null", upstreamSent, StringComparison.Ordinal);
        Assert.Equal(Normalise(WithoutUsage(upstreamSent)), Normalise(received));
        Assert.DoesNotContain("\"usage\"", received, StringComparison.Ordinal);
        Assert.Equal(12, ContentDeltas(received));
    }

    [Fact]
    public async Task FakeStream_ClientAskedForUsage_ReceivesUsageChunkAndNullUsageMembersUntouched()
    {
        const string body = """{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Name three rivers"}],"stream":true,"stream_options":{"include_usage":true}}""";
        using var client = Gateway.CreateClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, "chat/completions") { Content = Json(body) };
        request.Headers.Add("x-fake-deltas", "5");
        using var response = await client.SendAsync(request);
        var received = await response.Content.ReadAsStringAsync();

        Assert.Equal(body, Assert.Single(Upstream.Requests).BodyText);
        var events = await new SseReader(new MemoryStream(Encoding.UTF8.GetBytes(received))).ReadAllAsync();
        var usageChunk = JsonDocument.Parse(events[^2].Data).RootElement;
        Assert.Equal(0, usageChunk.GetProperty("choices").GetArrayLength());
        var usage = await UsageEvents.OfAsync(Gateway, response);
        UsageEvents.AssertEqualsUpstream(usageChunk.GetProperty("usage"), usage);

        var upstreamSent = await DirectFromUpstreamAsync(body, deltas: 5, cached: 0, reasoning: 0);
        Assert.Equal(Normalise(upstreamSent), Normalise(received));
    }

    [Fact]
    public async Task OfficialSdk_StreamingChat_UsageTheSdkReportsEqualsTheLoggedUsage()
    {
        // The .NET SDK asks for include_usage itself, so it must get the usage chunk (and the gateway logs the same numbers).
        var chat = new OpenAI.Chat.ChatClient("gpt-4o-mini", new System.ClientModel.ApiKeyCredential(TestKeys.KeyA),
            new OpenAI.OpenAIClientOptions { Endpoint = Gateway.BaseUrl });
        OpenAI.Chat.ChatTokenUsage? reported = null;
        var text = new StringBuilder();
        await foreach (var update in chat.CompleteChatStreamingAsync("Name three rivers"))
        {
            reported ??= update.Usage;
            foreach (var part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }
        }

        Assert.NotNull(reported);
        Assert.True(text.Length > 0);
        var usage = Assert.Single(await Gateway.Logs.WaitForUsageEventsAsync(1));
        UsageEvents.AssertWellFormed(usage);
        Assert.Equal(reported.InputTokenCount, UsageEvents.Long(usage, "InputTokens"));
        Assert.Equal(reported.OutputTokenCount, UsageEvents.Long(usage, "OutputTokens"));
        Assert.Equal(reported.TotalTokenCount, UsageEvents.Long(usage, "TotalTokens"));
    }

    private void AssertUpstreamAskedForUsage()
    {
        var sent = JsonDocument.Parse(Upstream.Requests[0].BodyText).RootElement;
        Assert.True(sent.GetProperty("stream_options").GetProperty("include_usage").GetBoolean());
    }

    /// <summary>Sends <paramref name="body"/> straight to the fake (no gateway) and returns the raw SSE text.</summary>
    private async Task<string> DirectFromUpstreamAsync(string body, int deltas, int cached, int reasoning)
    {
        using var direct = new HttpClient { BaseAddress = new Uri(Upstream.BaseUrl + "/") };
        using var request = new HttpRequestMessage(HttpMethod.Post, "chat/completions") { Content = Json(body) };
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", "direct");
        request.Headers.Add("x-fake-deltas", deltas.ToString(System.Globalization.CultureInfo.InvariantCulture));
        request.Headers.Add("x-fake-cached-tokens", cached.ToString(System.Globalization.CultureInfo.InvariantCulture));
        request.Headers.Add("x-fake-reasoning-tokens", reasoning.ToString(System.Globalization.CultureInfo.InvariantCulture));
        using var response = await direct.SendAsync(request);
        return await response.Content.ReadAsStringAsync();
    }

    /// <summary>
    /// The expected client stream, built independently of the gateway's filter: drop every event whose chunk has
    /// <c>"choices":[]</c> and a usage object, and remove the top-level <c>"usage":null</c> member from the others.
    /// </summary>
    private static string WithoutUsage(string sse)
    {
        var output = new StringBuilder();
        foreach (var rawEvent in sse.Split("\n\n", StringSplitOptions.RemoveEmptyEntries))
        {
            var data = rawEvent["data: ".Length..];
            if (data != "[DONE]")
            {
                var chunk = JsonDocument.Parse(data).RootElement;
                if (chunk.GetProperty("choices").GetArrayLength() == 0 && chunk.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object)
                {
                    continue;
                }

                Assert.Equal(1, CountOf(data, "\"usage\":null"));
                data = data.Replace(",\"usage\":null", "", StringComparison.Ordinal);
            }

            output.Append("data: ").Append(data).Append("\n\n");
        }

        return output.ToString();
    }

    private static string Normalise(string sse) =>
        CreatedPattern().Replace(IdPattern().Replace(sse, "\"id\":\"chatcmpl-X\""), "\"created\":0");

    private static int ContentDeltas(string sse) => sse.Split("\n\n").Count(e => e.Contains("\"delta\":{\"content\":\" ", StringComparison.Ordinal));

    private static int CountOf(string text, string value)
    {
        var count = 0;
        for (var i = text.IndexOf(value, StringComparison.Ordinal); i >= 0; i = text.IndexOf(value, i + value.Length, StringComparison.Ordinal))
        {
            count++;
        }

        return count;
    }

    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    [GeneratedRegex("\"id\":\"chatcmpl-[A-Za-z0-9]+\"")]
    private static partial Regex IdPattern();

    [GeneratedRegex("\"created\":[0-9]+")]
    private static partial Regex CreatedPattern();
}
