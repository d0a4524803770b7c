using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Usage;

/// <summary>
/// Under load every request still gets exactly one usage event, and nothing is lost or double counted: the
/// upstream-reported events add up to exactly what the upstream delivered (the fake's ledger). Requests cut short
/// never had their usage delivered by the upstream, so they are not in the ledger; they are the estimated events,
/// checked on their own against what their client actually received.
/// </summary>
public sealed class ConcurrentUsageTests() : GatewayTestBed
{
    private const int Total = 300;

    private enum Kind
    {
        ResponsesJson,
        ResponsesStream,
        ChatJson,
        ChatStream,       // no include_usage: the gateway adds it and hides the usage chunk
        Embeddings,
        ClientAborted,    // the client hangs up after the first event (the upstream is parked on a gate)
        UpstreamDropped,  // the upstream drops the connection after one text delta
    }

    private static readonly Kind[] Mix =
    [
        Kind.ResponsesJson, Kind.ResponsesStream, Kind.ChatJson, Kind.ChatStream, Kind.Embeddings,
        Kind.ResponsesStream, Kind.ChatStream, Kind.ResponsesJson, Kind.ClientAborted, Kind.UpstreamDropped,
    ];

    private sealed record Result(int Index, Kind Kind, string RequestId, HttpStatusCode Status, int DeltasReceived);

    [Fact]
    public async Task ThreeHundredConcurrentMixedRequests_ExactlyOneEventEachAndUpstreamTotalsMatchTheLedger()
    {
        // Hang-ups must close the connection at once (HttpClient would otherwise drain the rest of the stream).
        using var handler = new SocketsHttpHandler { MaxResponseDrainSize = 0, ResponseDrainTimeout = TimeSpan.Zero };
        using var client = new HttpClient(handler) { BaseAddress = Gateway.BaseUrl, Timeout = TimeSpan.FromSeconds(120) };

        var results = await Task.WhenAll(Enumerable.Range(0, Total).Select(i => SendAsync(client, i)));

        await Gateway.Logs.WaitForUsageEventsAsync(Total, TimeSpan.FromSeconds(60));
        await Task.Delay(300); // any extra event would be a defect: give it the chance to show
        var events = Gateway.Logs.UsageEvents;
        Assert.Equal(Total, events.Count);
        Assert.Equal(Total, events.Select(e => UsageEvents.Text(e, "RequestId")).Distinct().Count());
        Assert.All(events, UsageEvents.AssertWellFormed);

        var byRequestId = events.ToDictionary(e => UsageEvents.Text(e, "RequestId")!);
        foreach (var result in results)
        {
            var usage = byRequestId[result.RequestId];
            Assert.Equal(result.Index % 2 == 0 ? TestKeys.TenantA : TestKeys.TenantB, UsageEvents.Text(usage, "Tenant"));
            switch (result.Kind)
            {
                case Kind.ClientAborted:
                    Assert.Equal("client_aborted", UsageEvents.Text(usage, "Outcome"));
                    Assert.Equal("estimated", UsageEvents.Text(usage, "UsageSource"));
                    Assert.Equal(0, UsageEvents.Long(usage, "OutputTokens")); // no text delta was forwarded
                    Assert.True(UsageEvents.Long(usage, "InputTokens") > 0);
                    break;
                case Kind.UpstreamDropped when result.Status == HttpStatusCode.BadGateway:
                    // Under this load the fake's reset can overtake its own headers (it aborts 50 ms after its last
                    // flush): the gateway then answers 502 and nothing was generated for the client.
                    Assert.Equal("upstream_error", UsageEvents.Text(usage, "Outcome"));
                    UsageEvents.AssertNoTokens(usage);
                    break;
                case Kind.UpstreamDropped:
                    Assert.Equal("upstream_error", UsageEvents.Text(usage, "Outcome"));
                    Assert.Equal("estimated", UsageEvents.Text(usage, "UsageSource"));
                    Assert.Equal(result.DeltasReceived, UsageEvents.Long(usage, "OutputTokens")); // exactly what was forwarded
                    Assert.True(UsageEvents.Long(usage, "InputTokens") > 0);
                    break;
                default:
                    Assert.Equal(HttpStatusCode.OK, result.Status);
                    Assert.Equal("completed", UsageEvents.Text(usage, "Outcome"));
                    Assert.Equal("upstream", UsageEvents.Text(usage, "UsageSource"));
                    Assert.Equal(InputTokens(result.Index), UsageEvents.Long(usage, "InputTokens"));
                    break;
            }
        }

        var reported = events.Where(e => UsageEvents.Text(e, "UsageSource") == "upstream").ToArray();
        var cut = results.Where(r => r.Kind is Kind.ClientAborted or Kind.UpstreamDropped).ToArray();
        Assert.Equal(Total - cut.Length, reported.Length);
        Assert.Equal(cut.Count(r => r.Status == HttpStatusCode.OK), events.Count(e => UsageEvents.Text(e, "UsageSource") == "estimated"));

        var ledger = Upstream.Ledger;
        Assert.Equal(ledger.ResponsesWithUsage, reported.Length);
        Assert.Equal((ledger.InputTokens, ledger.CachedTokens, ledger.OutputTokens, ledger.ReasoningTokens, ledger.TotalTokens), UsageEvents.Sum(reported));
    }

    private static async Task<Result> SendAsync(HttpClient client, int index)
    {
        var kind = Mix[index % Mix.Length];
        var (path, body) = kind switch
        {
            Kind.ResponsesJson => ("responses", $$"""{"model":"gpt-4o-mini","input":"request {{index}}"}"""),
            Kind.ChatJson => ("chat/completions", $$"""{"model":"gpt-4o-mini","messages":[{"role":"user","content":"request {{index}}"}]}"""),
            Kind.ChatStream => ("chat/completions", $$"""{"model":"gpt-4o-mini","messages":[{"role":"user","content":"request {{index}}"}],"stream":true}"""),
            Kind.Embeddings => ("embeddings", $$"""{"model":"text-embedding-3-small","input":"request {{index}}"}"""),
            _ => ("responses", $$"""{"model":"gpt-4o-mini","input":"request {{index}}","stream":true}"""),
        };

        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", index % 2 == 0 ? TestKeys.KeyA : TestKeys.KeyB);
        var deltas = kind == Kind.UpstreamDropped ? 20 : 1 + index % 9;
        request.Headers.Add("x-fake-deltas", deltas.ToString(CultureInfo.InvariantCulture));
        request.Headers.Add("x-fake-input-tokens", InputTokens(index).ToString(CultureInfo.InvariantCulture));
        request.Headers.Add("x-fake-cached-tokens", (index % 5).ToString(CultureInfo.InvariantCulture));
        request.Headers.Add("x-fake-reasoning-tokens", (index % 3).ToString(CultureInfo.InvariantCulture));
        if (kind == Kind.ClientAborted)
        {
            request.Headers.Add("x-fake-gate", "never-released");
        }
        else if (kind == Kind.UpstreamDropped)
        {
            request.Headers.Add("x-fake-drop-after", "5"); // created, in_progress, item added, part added, one delta
        }

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
        var requestId = response.Headers.GetValues("x-gateway-request-id").Single();
        var stream = await response.Content.ReadAsStreamAsync(timeout.Token);
        if (kind == Kind.ClientAborted)
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var first = await new SseReader(stream).NextAsync(timeout.Token);
            Assert.Equal("response.created", first?.Event);
            return new Result(index, kind, requestId, response.StatusCode, 0); // disposing the response hangs up
        }

        if (kind == Kind.UpstreamDropped)
        {
            if (response.StatusCode == HttpStatusCode.BadGateway)
            {
                return new Result(index, kind, requestId, response.StatusCode, 0);
            }

            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var events = await new SseReader(stream).ReadAllAsync(timeout.Token);
            Assert.Equal("error", events[^1].Event);
            return new Result(index, kind, requestId, response.StatusCode, events.Count(e => IsTextDelta(e.Data)));
        }

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var text = await new StreamReader(stream).ReadToEndAsync(timeout.Token);
        if (kind is Kind.ResponsesJson or Kind.ChatJson or Kind.Embeddings)
        {
            Assert.True(JsonDocument.Parse(text).RootElement.TryGetProperty("usage", out _));
        }
        else if (kind == Kind.ChatStream)
        {
            Assert.DoesNotContain("\"usage\"", text, StringComparison.Ordinal); // hidden from a client that did not ask
        }

        return new Result(index, kind, requestId, response.StatusCode, 0);
    }

    /// <summary>A complete Responses text-delta event (a truncated last event does not parse and was not counted upstream either).</summary>
    private static bool IsTextDelta(string data)
    {
        try
        {
            return JsonDocument.Parse(data).RootElement.GetProperty("type").GetString() == "response.output_text.delta";
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static int InputTokens(int index) => 10 + index % 17;
}
