using System.Net;
using System.Text;
using System.Text.Json;
using Gateway.Tests.Infrastructure;
using Gateway.Usage;

namespace Gateway.Tests.Usage;

/// <summary>
/// Streams that end without the upstream's usage (the client hangs up, the upstream connection drops) still produce
/// exactly one usage event, marked <c>UsageSource: "estimated"</c>: input counted from the request body with
/// o200k_base, output = the tokens of the text deltas already forwarded. Each fake delta is one o200k token.
/// Tolerances asserted: upstream drop (the forwarded deltas are known exactly): exact; client abort: between the
/// deltas the client had read and two more (deltas the gateway forwarded while the hang-up travelled, at most one per
/// 250 ms of latency).
/// </summary>
public sealed class CutStreamUsageTests() : GatewayTestBed
{
    private const string Prompt = "Write a long story about lighthouses and the keepers who tend them through winter storms";

    // Events before the first text delta: response.created, response.in_progress, output_item.added, content_part.added.
    private const int ResponsesEventsBeforeDeltas = 4;

    private static readonly TokenCounter Tokens = new();

    public static TheoryData<string> Routes() => new() { "responses", "chat/completions" };

    [Theory]
    [MemberData(nameof(Routes))]
    public async Task Stream_ClientAbortsAfterSomeDeltas_OneEstimatedEventWithForwardedOutput(string route)
    {
        const int deltasToRead = 5;
        using var client = HangUpClient();
        using var request = StreamRequest(route);
        request.Headers.Add("x-fake-deltas", "200");
        request.Headers.Add("x-fake-delay-ms", "250");
        var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var requestId = response.Headers.GetValues("x-gateway-request-id").Single();

        var reader = new SseReader(await response.Content.ReadAsStreamAsync());
        var read = 0;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (read < deltasToRead)
        {
            var next = await reader.NextAsync(timeout.Token);
            Assert.NotNull(next);
            read += IsTextDelta(next.Value.Data) ? 1 : 0;
        }

        response.Dispose(); // hang up mid-stream

        var usage = await Gateway.Logs.SingleUsageEventAsync(requestId);
        UsageEvents.AssertWellFormed(usage);
        Assert.Equal("client_aborted", UsageEvents.Text(usage, "Outcome"));
        Assert.Equal("estimated", UsageEvents.Text(usage, "UsageSource"));
        var output = UsageEvents.Long(usage, "OutputTokens")!.Value;
        Assert.InRange(output, deltasToRead, deltasToRead + 2);
        AssertInputEstimated(usage);
        Assert.Equal(UsageEvents.Long(usage, "InputTokens") + output, UsageEvents.Long(usage, "TotalTokens"));
        Assert.Null(UsageEvents.Long(usage, "CachedInputTokens"));
        Assert.Null(UsageEvents.Long(usage, "ReasoningTokens"));
        Assert.True(usage.GetProperty("Stream").GetBoolean());
        Assert.NotNull(UsageEvents.Text(usage, "ResponseId"));
        Assert.NotNull(UsageEvents.Double(usage, "TimeToFirstByteMs"));

        // The upstream never finished, so it never delivered usage: the estimate is all there is.
        Assert.Equal(0, Upstream.Ledger.ResponsesWithUsage);
        Assert.Single(Gateway.Logs.UsageEvents);
    }

    [Theory]
    [InlineData("responses", null)]
    [InlineData("responses", "gzip")]
    [InlineData("responses", "br")]
    [InlineData("chat/completions", null)]
    public async Task Stream_UpstreamDropsMidStream_ClientGetsErrorEventAndCleanEndAndOneEstimatedEvent(string route, string? encoding)
    {
        const int deltas = 6;
        var isChat = route.StartsWith("chat", StringComparison.Ordinal);
        using var client = Gateway.CreateClient();
        using var request = StreamRequest(route);
        request.Headers.Add("x-fake-deltas", "50");
        request.Headers.Add("x-fake-drop-after", ((isChat ? 1 : ResponsesEventsBeforeDeltas) + deltas).ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (encoding is not null)
        {
            request.Headers.Add("x-fake-encoding", encoding);
        }

        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        // Read to the end as an SDK would: the stream must end cleanly (no exception), with an error event last.
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var events = await new SseReader(await response.Content.ReadAsStreamAsync()).ReadAllAsync(timeout.Token);
        Assert.Equal(deltas, events.Count(e => IsTextDelta(e.Data)));
        var last = JsonDocument.Parse(events[^1].Data).RootElement;
        var nested = last.GetProperty("error");
        Assert.Equal("server_error", nested.GetProperty("type").GetString());
        Assert.False(string.IsNullOrEmpty(nested.GetProperty("message").GetString()));
        Assert.True(nested.TryGetProperty("code", out _));
        if (isChat)
        {
            Assert.Null(events[^1].Event); // chat streams have data-only events; the SDKs raise on a top-level "error"
            Assert.DoesNotContain(events, e => e.Data == "[DONE]");
        }
        else
        {
            // Flat (the spec's ResponseErrorEvent, read by .NET) and nested (production, raised by Node/Python) at once.
            Assert.Equal("error", events[^1].Event);
            Assert.Equal("error", last.GetProperty("type").GetString());
            Assert.Equal(nested.GetProperty("message").GetString(), last.GetProperty("message").GetString());
            Assert.True(last.TryGetProperty("code", out _));
            Assert.True(last.TryGetProperty("param", out _));
            var previous = JsonDocument.Parse(events[^2].Data).RootElement.GetProperty("sequence_number").GetInt64();
            Assert.Equal(previous + 1, last.GetProperty("sequence_number").GetInt64());
        }

        var usage = await UsageEvents.OfAsync(Gateway, response);
        Assert.Equal("upstream_error", UsageEvents.Text(usage, "Outcome"));
        Assert.Equal("estimated", UsageEvents.Text(usage, "UsageSource"));
        Assert.Equal(deltas, UsageEvents.Long(usage, "OutputTokens"));
        AssertInputEstimated(usage);
        Assert.Equal(200, UsageEvents.Long(usage, "StatusCode"));
        Assert.Equal(0, Upstream.Ledger.ResponsesWithUsage);
        Assert.Single(Gateway.Logs.UsageEvents);
    }

    [Fact]
    public async Task Json_ClientGivesUpBeforeTheUpstreamAnswers_OneEstimatedEventWithInputOnly()
    {
        using var client = Gateway.CreateClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, "responses") { Content = Json($$"""{"model":"gpt-4o-mini","input":"{{Prompt}}"}""") };
        request.Headers.Add("x-fake-first-byte-delay-ms", "60000");
        using var cancel = new CancellationTokenSource();
        var send = client.SendAsync(request, cancel.Token);

        // Once the upstream holds the request, the client gives up.
        await Eventually.UntilAsync(() => Upstream.RequestCount > 0, "the upstream holds the request");

        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => send);

        var usage = Assert.Single(await Gateway.Logs.WaitForUsageEventsAsync(1));
        UsageEvents.AssertWellFormed(usage);
        Assert.Equal("client_aborted", UsageEvents.Text(usage, "Outcome"));
        Assert.Equal("estimated", UsageEvents.Text(usage, "UsageSource"));
        Assert.Equal(0, UsageEvents.Long(usage, "OutputTokens"));
        AssertInputEstimated(usage);
        Assert.False(usage.GetProperty("Stream").GetBoolean());
        Assert.Null(UsageEvents.Double(usage, "TimeToFirstByteMs"));
        await Task.Delay(200);
        Assert.Single(Gateway.Logs.UsageEvents);
    }

    [Theory]
    [InlineData(false, 500)]
    [InlineData(true, 500)]
    [InlineData(true, 503)]
    public async Task UpstreamErrorStatus_OneEventUpstreamErrorWithoutUsage(bool stream, int status)
    {
        using var client = Gateway.CreateClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, "responses")
        {
            Content = Json($$"""{"model":"gpt-4o-mini","input":"{{Prompt}}","stream":{{(stream ? "true" : "false")}}}"""),
        };
        request.Headers.Add("x-fake-status", status.ToString(System.Globalization.CultureInfo.InvariantCulture));
        using var response = await client.SendAsync(request);

        Assert.Equal(status, (int)response.StatusCode);
        Assert.True(JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.TryGetProperty("error", out _));
        var usage = await UsageEvents.OfAsync(Gateway, response);
        Assert.Equal("upstream_error", UsageEvents.Text(usage, "Outcome"));
        UsageEvents.AssertNoTokens(usage);
        Assert.Equal(status, UsageEvents.Long(usage, "StatusCode"));
        Assert.Equal("gpt-4o-mini", UsageEvents.Text(usage, "RequestedModel"));
        Assert.NotNull(UsageEvents.Text(usage, "UpstreamRequestId"));
        Assert.Single(Gateway.Logs.UsageEvents);
    }

    [Fact]
    public async Task Json_UpstreamDropsMidBody_OneUpstreamErrorEvent()
    {
        // A JSON answer cut in half: the client sees a broken body; the gateway still writes one event. Only streams
        // are estimated (see docs/usage-events.md), so this one carries no tokens.
        using var client = Gateway.CreateClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, "responses") { Content = Json($$"""{"model":"gpt-4o-mini","input":"{{Prompt}}"}""") };
        request.Headers.Add("x-fake-drop-after", "1");
        var requestId = "";
        try
        {
            using var response = await client.SendAsync(request);
            requestId = response.Headers.GetValues("x-gateway-request-id").Single();
            await response.Content.ReadAsByteArrayAsync();
        }
        catch (HttpRequestException)
        {
        }

        var usage = Assert.Single(await Gateway.Logs.WaitForUsageEventsAsync(1));
        UsageEvents.AssertWellFormed(usage);
        Assert.True(requestId.Length == 0 || requestId == UsageEvents.Text(usage, "RequestId"));
        Assert.Equal("upstream_error", UsageEvents.Text(usage, "Outcome"));
        await Task.Delay(200);
        Assert.Single(Gateway.Logs.UsageEvents);
    }

    /// <summary>The input estimate: at least the prompt's own o200k tokens, and not wildly more (the JSON around it is not counted).</summary>
    private static void AssertInputEstimated(JsonElement usage)
    {
        var input = UsageEvents.Long(usage, "InputTokens")!.Value;
        var promptTokens = Tokens.Count(Prompt);
        Assert.InRange(input, promptTokens, promptTokens + 16);
    }

    /// <summary>
    /// A client whose hang-up closes the connection at once. HttpClient's default drains an unfinished response (up to
    /// 1 MB or 2 s) to reuse the connection, which would keep the stream flowing after Dispose.
    /// </summary>
    private HttpClient HangUpClient()
    {
        var handler = new SocketsHttpHandler { MaxResponseDrainSize = 0, ResponseDrainTimeout = TimeSpan.Zero };
        var client = new HttpClient(handler) { BaseAddress = Gateway.BaseUrl, Timeout = TimeSpan.FromSeconds(60) };
        client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", TestKeys.KeyA);
        return client;
    }

    private static HttpRequestMessage StreamRequest(string route) => new(HttpMethod.Post, route)
    {
        Content = Json(route == "responses"
            ? $$"""{"model":"gpt-4o-mini","input":"{{Prompt}}","stream":true}"""
            : $$"""{"model":"gpt-4o-mini","messages":[{"role":"user","content":"{{Prompt}}"}],"stream":true}"""),
    };

    private static bool IsTextDelta(string data)
    {
        if (!data.StartsWith('{'))
        {
            return false;
        }

        var root = JsonDocument.Parse(data).RootElement;
        if (root.TryGetProperty("type", out var type))
        {
            return type.GetString() == "response.output_text.delta";
        }

        return root.TryGetProperty("choices", out var choices) && choices.GetArrayLength() > 0
            && choices[0].GetProperty("delta").TryGetProperty("content", out var content) && content.GetString()!.Length > 0;
    }

    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");
}
