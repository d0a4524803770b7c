using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using FakeUpstream;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Usage;

/// <summary>
/// Real api.openai.com answers (tests/Fixtures/openai-recordings), replayed by the fake upstream through the gateway:
/// the usage event carries exactly the recorded usage, field for field, whether the upstream sent the body as is or
/// compressed it (gzip, br) although the gateway asked for identity.
/// <para>
/// Counting rule under test: a response's usage counts once per response id. A recording file is one session
/// against the API (POST, then GET of the same id, then <c>?stream=true</c> replay...), so each file is replayed in
/// order through one gateway (one store): the first exchange that shows a response's usage logs it (UsageSource
/// "upstream"), later exchanges showing the same response again log "none" with null tokens. Objects that are not
/// responses (chat completions, compactions, embeddings) have no retrievable usage and count every time.
/// Each test (file × encoding) gets its own fake upstream and gateway, so replaying a file again under another
/// encoding starts from an empty store. The ids in the event come from the upstream's answer, which is why unknown
/// ids are allowed through (they were never created through this gateway).
/// </para>
/// </summary>
public sealed class RecordedUsageTests() : GatewayTestBed(c => c["Gateway:Isolation:UnknownIds"] = "Allow")
{
    private static readonly string[] Encodings = ["identity", "gzip", "br"];

    public static TheoryData<string, string> FilesAndEncodings()
    {
        var data = new TheoryData<string, string>();
        foreach (var file in Recordings.All().Select(e => e.File).Distinct())
        {
            foreach (var encoding in Encodings)
            {
                data.Add(file, encoding);
            }
        }

        return data;
    }

    [Fact]
    public void Recordings_CoverJsonAndSseUsageOfEveryShape()
    {
        // Guards the theory below against silently losing its interesting cases.
        var withUsage = Recordings.All().Where(e => Recordings.RecordedUsage(e) is not null).ToArray();
        Assert.Contains(withUsage, e => e.IsStream && e.PathAndQuery.StartsWith("/v1/responses", StringComparison.Ordinal));
        Assert.Contains(withUsage, e => !e.IsStream && e.PathAndQuery.StartsWith("/v1/responses", StringComparison.Ordinal));
        Assert.Contains(withUsage, e => e.IsStream && e.PathAndQuery.StartsWith("/v1/chat", StringComparison.Ordinal));
        Assert.Contains(withUsage, e => !e.IsStream && e.PathAndQuery.StartsWith("/v1/chat", StringComparison.Ordinal));
        Assert.Contains(withUsage, e => e.PathAndQuery.StartsWith("/v1/responses/compact", StringComparison.Ordinal));
        Assert.Contains(withUsage, e => Recordings.RecordedUsage(e)!.Value.GetProperty(e.PathAndQuery.StartsWith("/v1/chat", StringComparison.Ordinal)
            ? "completion_tokens_details" : "output_tokens_details").GetProperty("reasoning_tokens").GetInt64() > 0);
        Assert.True(withUsage.Length >= 20, $"only {withUsage.Length} recorded exchanges carry usage");
    }

    [Theory]
    [MemberData(nameof(FilesAndEncodings))]
    public async Task ReplayFileInOrder_EachResponsesUsageLoggedExactlyOnceAndBodyIdentity(string file, string encoding)
    {
        var exchanges = Recordings.All().Where(e => e.File == file).OrderBy(e => e.Index).ToArray();
        var counted = new HashSet<string>(StringComparer.Ordinal);
        var upstreamEvents = new List<JsonElement>();
        using var client = Gateway.CreateClient();

        foreach (var exchange in exchanges)
        {
            using var response = await SendReplayAsync(client, exchange, encoding);
            var body = await response.Content.ReadAsByteArrayAsync();

            // The client gets the identity body, byte for byte what the upstream meant, whatever the upstream's encoding.
            Assert.Empty(response.Content.Headers.ContentEncoding);
            if (exchange.StatusCode is 401 or 403)
            {
                // The upstream refused the gateway's own key: the gateway answers for it (UpstreamErrorTests).
                Assert.Equal(502, (int)response.StatusCode);
                Assert.Contains("upstream_auth_failed", Encoding.UTF8.GetString(body), StringComparison.Ordinal);
            }
            else
            {
                Assert.Equal(exchange.StatusCode, (int)response.StatusCode);
                Assert.Equal(Encoding.UTF8.GetString(FakeUpstreamServer.RecordedBody(Recordings.Root, exchange.File, exchange.Index)), Encoding.UTF8.GetString(body));
            }

            var usage = await UsageEvents.OfAsync(Gateway, response);
            var recorded = Recordings.RecordedUsage(exchange);
            var info = RecordedInfo(exchange);
            Assert.Equal(exchange.StatusCode is 401 or 403 ? 502 : exchange.StatusCode, UsageEvents.Long(usage, "StatusCode"));
            Assert.Equal(exchange.Method, UsageEvents.Text(usage, "Method"));
            Assert.Equal(exchange.IsStream, usage.GetProperty("Stream").GetBoolean());
            Assert.Equal(TestKeys.TenantA, UsageEvents.Text(usage, "Tenant"));

            var firstSighting = recorded is not null && (!info.IsResponse || counted.Add(info.Id!));
            if (firstSighting)
            {
                UsageEvents.AssertEqualsUpstream(recorded!.Value, usage);
                Assert.Equal(info.Model, UsageEvents.Text(usage, "Model"));
                Assert.Equal(info.Id, UsageEvents.Text(usage, "ResponseId"));
                Assert.Equal(info.Status == "incomplete" ? "incomplete" : "completed", UsageEvents.Text(usage, "Outcome"));
                upstreamEvents.Add(usage);
            }
            else
            {
                // No usage in the answer, or a response whose usage this gateway already counted.
                UsageEvents.AssertNoTokens(usage);
                Assert.Equal(exchange.StatusCode >= 400 ? "upstream_error" : "completed", UsageEvents.Text(usage, "Outcome"));
            }
        }

        // The gateway asked for identity every time; the fake compressed anyway when told to (x-fake-encoding).
        Assert.All(Upstream.Requests, r => Assert.Equal("identity", r.Header("Accept-Encoding")));
        if (encoding != "identity")
        {
            Assert.All(Upstream.Requests, r => Assert.Equal(encoding, r.Header("x-fake-encoding")));
        }

        // Cross-check with what the upstream delivered (the fake counts each recorded object once).
        var sum = UsageEvents.Sum(upstreamEvents);
        var ledger = Upstream.Ledger;
        Assert.Equal((ledger.InputTokens, ledger.CachedTokens, ledger.OutputTokens, ledger.ReasoningTokens, ledger.TotalTokens), sum);
        Assert.Equal(exchanges.Length, Gateway.Logs.UsageEvents.Count);
    }

    /// <summary>
    /// The other half of the rule: what counts is the first time this gateway's store sees a response's usage, not the
    /// method. A retrieval of a response created before the gateway was deployed (or never seen by it) is counted.
    /// </summary>
    [Theory]
    [InlineData("ResponsesTests/GetResponseNoOptions.json", 1)]
    [InlineData("ResponsesTests/CanStreamBackgroundResponses.json", 1)]
    [InlineData("ResponsesTests/CanStreamBackgroundResponses.json", 2)]
    public async Task ReplayRetrievalAlone_ResponseNotSeenBefore_CountedOnceThenNone(string file, int index)
    {
        var exchange = Recordings.All().Single(e => e.File == file && e.Index == index);
        using var client = Gateway.CreateClient();

        using (var first = await SendReplayAsync(client, exchange, "identity"))
        {
            await first.Content.ReadAsByteArrayAsync();
            var usage = await UsageEvents.OfAsync(Gateway, first);
            UsageEvents.AssertEqualsUpstream(Recordings.RecordedUsage(exchange)!.Value, usage);
            Assert.Equal("responses.retrieve", UsageEvents.Text(usage, "Endpoint"));
        }

        using var again = await SendReplayAsync(client, exchange, "identity");
        await again.Content.ReadAsByteArrayAsync();
        UsageEvents.AssertNoTokens(await UsageEvents.OfAsync(Gateway, again));
    }

    private static async Task<HttpResponseMessage> SendReplayAsync(HttpClient client, Recordings.Exchange exchange, string encoding)
    {
        using var request = new HttpRequestMessage(new HttpMethod(exchange.Method), exchange.PathAndQuery.TrimStart('/')["v1/".Length..]);
        request.Headers.Add("x-fake-replay", exchange.ToString());
        if (encoding != "identity")
        {
            request.Headers.Add("x-fake-encoding", encoding);
        }

        // The client would take compressed bytes; the gateway still answers identity (it decoded them to read the usage).
        request.Headers.AcceptEncoding.ParseAdd("gzip, br");
        if (exchange.RequestBody is not null)
        {
            request.Content = new StringContent(exchange.RequestBody, Encoding.UTF8, new MediaTypeHeaderValue("application/json"));
        }

        return await client.SendAsync(request);
    }

    private sealed record ObjectInfo(string? Id, bool IsResponse, string? Model, string? Status);

    /// <summary>Id, kind, model and status of the object a recorded answer shows (JSON body, or the events of a stream).</summary>
    private static ObjectInfo RecordedInfo(Recordings.Exchange exchange)
    {
        if (!exchange.IsStream)
        {
            var body = exchange.ResponseBody;
            if (body.ValueKind != JsonValueKind.Object || !body.TryGetProperty("id", out var id))
            {
                return new ObjectInfo(null, false, null, null);
            }

            return new ObjectInfo(id.GetString(), Str(body, "object") == "response", Str(body, "model"), Str(body, "status"));
        }

        string? lastId = null, model = null, status = null;
        var isResponse = false;
        var text = string.Concat(exchange.ResponseBody.EnumerateArray().Select(s => s.GetString()));
        foreach (var line in text.Split('\n').Where(l => l.StartsWith("data: {", StringComparison.Ordinal)))
        {
            var owner = JsonDocument.Parse(line[6..]).RootElement;
            if (owner.TryGetProperty("response", out var response) && response.ValueKind == JsonValueKind.Object)
            {
                owner = response;
                isResponse |= Str(owner, "object") == "response";
            }

            lastId = Str(owner, "id") ?? lastId;
            model = Str(owner, "model") ?? model;
            status = Str(owner, "status") ?? status;
        }

        return new ObjectInfo(lastId, isResponse, model, status);
    }

    private static string? Str(JsonElement obj, string name) =>
        obj.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
}
