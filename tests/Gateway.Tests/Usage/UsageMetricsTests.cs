using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Usage;

/// <summary>
/// <c>GET /metrics</c> (Prometheus text) agrees with the usage events: <c>gateway_tokens_total{tenant,model,kind}</c> sums the
/// events' token counts per tenant, response model and kind (input, cached, output, reasoning), and
/// <c>gateway_requests_total{tenant,endpoint,outcome,http_response_status_code}</c> counts the events.
/// </summary>
[Collection(MetricsTestGroup.Name)]
public sealed partial class UsageMetricsTests() : GatewayTestBed
{
    private static readonly (string Kind, string Property)[] Kinds =
    [
        ("input", "InputTokens"), ("cached", "CachedInputTokens"), ("output", "OutputTokens"), ("reasoning", "ReasoningTokens"),
    ];

    [Fact]
    public async Task Metrics_AfterMixedRequests_TokenAndRequestCountersMatchTheUsageEvents()
    {
        using var a = Gateway.CreateClient(TestKeys.KeyA);
        using var b = Gateway.CreateClient(TestKeys.KeyB);
        var fixedUsage = new[] { ("x-fake-input-tokens", "100"), ("x-fake-cached-tokens", "40"), ("x-fake-reasoning-tokens", "3"), ("x-fake-deltas", "7") };

        await SendAsync(a, "responses", """{"model":"gpt-4o-mini","input":"one"}""", HttpStatusCode.OK, fixedUsage);
        await SendAsync(a, "responses", """{"model":"gpt-4o-mini","input":"two","stream":true}""", HttpStatusCode.OK, fixedUsage);
        await SendAsync(a, "chat/completions", """{"model":"gpt-4o-mini","messages":[{"role":"user","content":"three"}],"stream":true}""", HttpStatusCode.OK);
        await SendAsync(a, "responses", """{"model":"gpt-4o-mini","input":"four"}""", HttpStatusCode.InternalServerError, [("x-fake-status", "500")]);
        await SendAsync(b, "responses", """{"model":"gpt-4.1","input":"five"}""", HttpStatusCode.OK, [("x-fake-reasoning-tokens", "11")]);
        await SendAsync(b, "embeddings", """{"model":"text-embedding-3-small","input":"six"}""", HttpStatusCode.OK, [("x-fake-input-tokens", "20")]);
        await SendAsync(b, "files", "{}", HttpStatusCode.NotFound);

        var events = await Gateway.Logs.WaitForUsageEventsAsync(7);
        Assert.Equal(7, events.Count);

        // Expected series, from the events.
        var expectedTokens = new Dictionary<(string Tenant, string Model, string Kind), long>();
        foreach (var e in events)
        {
            foreach (var (kind, property) in Kinds)
            {
                if (UsageEvents.Long(e, property) is long value && value > 0)
                {
                    var key = (UsageEvents.Text(e, "Tenant")!, UsageEvents.Text(e, "Model")!, kind);
                    expectedTokens[key] = expectedTokens.GetValueOrDefault(key) + value;
                }
            }
        }

        var expectedRequests = events
            .GroupBy(e => (UsageEvents.Text(e, "Tenant")!, UsageEvents.Text(e, "Endpoint")!, UsageEvents.Text(e, "Outcome")!, UsageEvents.Long(e, "StatusCode")!.Value.ToString(CultureInfo.InvariantCulture)))
            .ToDictionary(g => g.Key, g => (long)g.Count());

        // Metrics are recorded just after the event is written, and the exporter may serve a cached scrape for a moment:
        // poll until the scrape shows every request (the assertions below then say what differs, if anything).
        using var root = new HttpClient { BaseAddress = Gateway.RootUrl };
        var (tokens, requests) = await Eventually.LastValueAsync(
            async () =>
            {
                var text = await root.GetStringAsync("metrics");
                return (Tokens: Series(text, "gateway_tokens_total").ToDictionary(s => (s.Labels["tenant"], s.Labels["model"], s.Labels["kind"]), s => s.Value),
                    Requests: Series(text, "gateway_requests_total")
                        .ToDictionary(s => (s.Labels["tenant"], s.Labels["endpoint"], s.Labels["outcome"], s.Labels["http_response_status_code"]), s => s.Value));
            },
            scrape => Same(scrape.Tokens, expectedTokens) && Same(scrape.Requests, expectedRequests),
            TimeSpan.FromSeconds(20));

        Assert.Equal(expectedTokens.OrderBy(p => p.Key).ToArray(), tokens.OrderBy(p => p.Key).ToArray());
        Assert.Equal(expectedRequests.OrderBy(p => p.Key).ToArray(), requests.OrderBy(p => p.Key).ToArray());

        // And the numbers themselves, independently of the events.
        const string mini = "gpt-4o-mini-2024-07-18";
        Assert.Equal(80, tokens[(TestKeys.TenantA, mini, "cached")]);
        Assert.Equal(6, tokens[(TestKeys.TenantA, mini, "reasoning")]);
        Assert.Equal(200 + ChatInput(events), tokens[(TestKeys.TenantA, mini, "input")]);
        Assert.Equal(20, tokens[(TestKeys.TenantB, "text-embedding-3-small", "input")]);
        Assert.False(tokens.ContainsKey((TestKeys.TenantB, "text-embedding-3-small", "output"))); // zero is not added
        Assert.Equal(2, requests[(TestKeys.TenantA, "responses.create", "completed", "200")]);
        Assert.Equal(1, requests[(TestKeys.TenantA, "responses.create", "upstream_error", "500")]);
        Assert.Equal(1, requests[(TestKeys.TenantB, "unknown", "rejected", "404")]);
        Assert.Equal(1, requests[(TestKeys.TenantA, "chat.completions", "completed", "200")]);
    }

    private static bool Same<TKey>(Dictionary<TKey, long> actual, Dictionary<TKey, long> expected)
        where TKey : notnull => actual.Count == expected.Count && expected.All(p => actual.TryGetValue(p.Key, out var v) && v == p.Value);

    private static long ChatInput(IEnumerable<JsonElement> events) =>
        events.Where(e => UsageEvents.Text(e, "Endpoint") == "chat.completions").Sum(e => UsageEvents.Long(e, "InputTokens") ?? 0);

    private static async Task SendAsync(HttpClient client, string path, string body, HttpStatusCode expected, (string Name, string Value)[]? headers = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        foreach (var (name, value) in headers ?? [])
        {
            request.Headers.Add(name, value);
        }

        using var response = await client.SendAsync(request);
        await response.Content.ReadAsStringAsync();
        Assert.Equal(expected, response.StatusCode);
    }

    private sealed record Sample(Dictionary<string, string> Labels, long Value);

    /// <summary>The samples of one metric in Prometheus text format.</summary>
    private static IEnumerable<Sample> Series(string text, string name)
    {
        foreach (var line in text.Split('\n'))
        {
            var match = SampleLine().Match(line);
            if (!match.Success || match.Groups["name"].Value != name)
            {
                continue;
            }

            var labels = LabelPair().Matches(match.Groups["labels"].Value).ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value);
            yield return new Sample(labels, (long)double.Parse(match.Groups["value"].Value, CultureInfo.InvariantCulture));
        }
    }

    [GeneratedRegex("""^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?<labels>[^}]*)\} (?<value>\S+)""")]
    private static partial Regex SampleLine();

    [GeneratedRegex("([a-zA-Z_][a-zA-Z0-9_]*)=\"((?:[^\"\\\\]|\\\\.)*)\"")]
    private static partial Regex LabelPair();
}
