using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using FakeUpstream;
using Gateway.Tests.Infrastructure;
using Gateway.Tests.Usage;
using Microsoft.Extensions.Time.Testing;
using static Gateway.Tests.Quotas.QuotaTestKit;

namespace Gateway.Tests.Quotas;

/// <summary>
/// "Reserve what can really be spent, count it where it is spent": usage is charged to the window in which the
/// request ended, the hidden context of previous_response_id / conversation is reserved from the last usage recorded
/// for those objects, and a cut stream first charged its estimate is corrected once when its real usage is seen.
/// Memory and Redis stores; the gateway's clock is a FakeTimeProvider.
/// </summary>
public sealed partial class SpentUsageTests
{
    public static TheoryData<string> Stores() => new() { "memory", "redis" };

    [SkippableTheory]
    [MemberData(nameof(Stores))]
    public async Task StreamOpenedInOneMinuteEndingInTheNext_UsageCountsInTheMinuteItEnded(string store)
    {
        var clock = new FakeTimeProvider(new DateTimeOffset(2031, 3, 12, 10, 15, 59, TimeSpan.Zero));
        await using var bed = await QuotaBed.StartAsync(store, c => Limits(c, tpm: 100_000, tpd: 1_000_000), clock);
        using var client = bed.Gateway.CreateClient();
        var stream = await StartGatedStreamAsync(client, "straddle", ("x-fake-input-tokens", "10"), ("x-fake-deltas", "5"));
        var requestId = RequestId(stream)!;

        clock.Advance(TimeSpan.FromSeconds(31)); // 10:16:30: the answer is produced (and billed) in the 10:16 minute
        bed.Upstream.ReleaseGate("straddle");
        await DrainAsync(stream);
        await bed.Gateway.Logs.SingleUsageEventAsync(requestId);

        var quota = await QuotaAsync(client); // read at 10:16:30
        Assert.Equal(15, Used(quota, "tokens_this_minute"));
        Assert.Equal(15, Used(quota, "tokens_today"));
    }

    [SkippableTheory]
    [InlineData("memory", "previous_response_id")]
    [InlineData("memory", "conversation")]
    [InlineData("redis", "previous_response_id")]
    [InlineData("redis", "conversation")]
    public async Task ContinuingRequest_ReservesTheContextTheLastTurnLeft(string store, string field)
    {
        await using var bed = await QuotaBed.StartAsync(store, c => Limits(c, tpm: 1500), MidMinuteClock());
        using var client = bed.Gateway.CreateClient();
        var conversation = field == "conversation" ? await IdOfAsync(client, Post("conversations", "{}")) : null;
        var first = await IdOfAsync(client, Post("responses", Body(conversation is null ? "" : $$""","conversation":"{{conversation}}" """),
            ("x-fake-input-tokens", "1000"), ("x-fake-deltas", "8")));
        var continued = field == "conversation" ? $$""","conversation":"{{conversation}}" """ : $$""","previous_response_id":"{{first}}" """;

        // The first turn billed 1008 tokens; the next one carries those 1008 as hidden input, plus its own body and output.
        using var refused = await client.SendAsync(Post("responses", Body(continued)));

        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        var message = (await ErrorAsync(refused)).GetProperty("message").GetString()!;
        var match = UsedAndRequested().Match(message);
        Assert.True(match.Success, message);
        Assert.Equal(1008, long.Parse(match.Groups["used"].Value, CultureInfo.InvariantCulture));
        Assert.InRange(long.Parse(match.Groups["requested"].Value, CultureInfo.InvariantCulture), 1008 + 16, 1008 + 16 + 40);
    }

    [SkippableTheory]
    [MemberData(nameof(Stores))]
    public async Task CutStreamLaterRetrieved_DifferenceChargedOnceAsACorrectionEvent(string store)
    {
        await using var bed = await QuotaBed.StartAsync(store, c => Limits(c, tpd: 1_000_000), MidMinuteClock());
        using var client = bed.Gateway.CreateClient();
        var (responseId, estimate) = await CutStreamAsync(bed, client);

        using var first = await client.GetAsync($"responses/{responseId}");
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        var correction = await UsageEvents.OfAsync(bed.Gateway, first);
        using var second = await client.GetAsync($"responses/{responseId}?stream=true"); // a replay shows the same usage again
        await second.Content.LoadIntoBufferAsync();
        var again = await UsageEvents.OfAsync(bed.Gateway, second);

        var ledger = bed.Upstream.Ledger;
        Assert.Equal(1, ledger.ResponsesWithUsage);
        Assert.Equal("correction", UsageEvents.Text(correction, "UsageSource"));
        Assert.Equal(ledger.InputTokens - UsageEvents.Long(estimate, "InputTokens"), UsageEvents.Long(correction, "InputTokens"));
        Assert.Equal(ledger.OutputTokens - UsageEvents.Long(estimate, "OutputTokens"), UsageEvents.Long(correction, "OutputTokens"));
        Assert.Equal(ledger.TotalTokens - UsageEvents.Long(estimate, "TotalTokens"), UsageEvents.Long(correction, "TotalTokens"));
        Assert.Equal(responseId, UsageEvents.Text(correction, "ResponseId"));
        UsageEvents.AssertNoTokens(again);
        Assert.Equal(ledger.TotalTokens, Used(await QuotaAsync(client), "tokens_today")); // estimate + correction = what was billed
    }

    [Fact]
    public async Task CutStreamContinuingAResponse_EstimateIncludesTheHiddenContext()
    {
        await using var bed = await QuotaBed.StartAsync("memory", c => Limits(c, tpd: 1_000_000), MidMinuteClock());
        using var client = bed.Gateway.CreateClient();
        var first = await IdOfAsync(client, Post("responses", Body(""), ("x-fake-input-tokens", "1000"), ("x-fake-deltas", "8")));
        using var bodyOnly = await client.SendAsync(Post("responses", """{"model":"gpt-4o-mini","input":"Go on","stream":true}""",
            ("x-fake-deltas", "40"), ("x-fake-drop-after", "7"), ("x-fake-delay-ms", "10")));
        await bodyOnly.Content.LoadIntoBufferAsync();
        var bodyEstimate = UsageEvents.Long(await UsageEvents.OfAsync(bed.Gateway, bodyOnly), "InputTokens")!.Value;

        using var continued = await client.SendAsync(Post("responses", $$"""{"model":"gpt-4o-mini","input":"Go on","stream":true,"previous_response_id":"{{first}}"}""",
            ("x-fake-deltas", "40"), ("x-fake-drop-after", "7"), ("x-fake-delay-ms", "10")));
        await continued.Content.LoadIntoBufferAsync();
        var estimate = await UsageEvents.OfAsync(bed.Gateway, continued);

        Assert.Equal("estimated", UsageEvents.Text(estimate, "UsageSource"));
        Assert.InRange(UsageEvents.Long(estimate, "InputTokens")!.Value - bodyEstimate, 1008, 1008 + 12); // + the id's own tokens in the body
    }

    /// <summary>Two replicas on one Redis, both retrieving the cut response at once: one correction, charged once.</summary>
    [SkippableFact]
    public async Task CutStreamRetrievedThroughTwoReplicasAtOnce_OneCorrection()
    {
        await using var bed = await QuotaBed.StartAsync("redis", c => Limits(c, tpd: 1_000_000), MidMinuteClock());
        await using var replica = await GatewayHost.StartAsync(bed.Upstream.BaseUrl, c =>
        {
            Limits(c, tpd: 1_000_000);
            c["ConnectionStrings:Redis"] = bed.Redis!.ConnectionString;
        }, UseClock(MidMinuteClock()));
        await WaitForStoreAsync(replica);
        using var one = bed.Gateway.CreateClient();
        using var two = replica.CreateClient();
        var (responseId, _) = await CutStreamAsync(bed, one);

        var gets = await Task.WhenAll(Enumerable.Range(0, 6).Select(i => (i % 2 == 0 ? one : two).GetAsync($"responses/{responseId}")));
        var events = new List<JsonElement>();
        for (var i = 0; i < gets.Length; i++)
        {
            using (gets[i])
            {
                Assert.Equal(HttpStatusCode.OK, gets[i].StatusCode);
                events.Add(await (i % 2 == 0 ? bed.Gateway : replica).Logs.SingleUsageEventAsync(RequestId(gets[i])!));
            }
        }

        Assert.Single(events, e => UsageEvents.Text(e, "UsageSource") == "correction");
        Assert.Equal(5, events.Count(e => UsageEvents.Text(e, "UsageSource") == "none"));
        Assert.Equal(bed.Upstream.Ledger.TotalTokens, Used(await QuotaAsync(one), "tokens_today"));
    }

    /// <summary>A Responses stream the upstream drops after three text deltas; returns its id and its estimated usage event.</summary>
    private static async Task<(string ResponseId, JsonElement Estimate)> CutStreamAsync(QuotaBed bed, HttpClient client)
    {
        using var request = Post("responses", """{"model":"gpt-4o-mini","input":"Write a long story about lighthouses","stream":true}""",
            ("x-fake-deltas", "40"), ("x-fake-drop-after", "7"), ("x-fake-input-tokens", "120"), ("x-fake-delay-ms", "10"));
        using var response = await client.SendAsync(request);
        await response.Content.LoadIntoBufferAsync();
        var estimate = await UsageEvents.OfAsync(bed.Gateway, response);
        Assert.Equal("estimated", UsageEvents.Text(estimate, "UsageSource"));
        Assert.Equal(3, UsageEvents.Long(estimate, "OutputTokens"));
        Assert.Equal(0, bed.Upstream.Ledger.ResponsesWithUsage);
        return (UsageEvents.Text(estimate, "ResponseId")!, estimate);
    }

    private static string Body(string extra) => $$"""{"model":"gpt-4o-mini","input":"Go on","max_output_tokens":16{{extra}}}""";

    private static async Task<string> IdOfAsync(HttpClient client, HttpRequestMessage request)
    {
        using (request)
        using (var response = await client.SendAsync(request))
        {
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, text);
            return JsonDocument.Parse(text).RootElement.GetProperty("id").GetString()!;
        }
    }

    [GeneratedRegex(@"Used (?<used>\d+), Requested (?<requested>\d+)")]
    private static partial Regex UsedAndRequested();
}
