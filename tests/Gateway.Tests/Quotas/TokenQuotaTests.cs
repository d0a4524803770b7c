using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using FakeUpstream;
using Gateway.Tests.Infrastructure;
using Gateway.Usage;
using static Gateway.Tests.Quotas.QuotaTestKit;

namespace Gateway.Tests.Quotas;

/// <summary>
/// Token quotas end to end: the reservation (input estimate + output limit) held while a stream runs, its
/// replacement by the upstream's real usage, and 429s that follow the remaining tokens to the token.
/// </summary>
public sealed class TokenQuotaTests
{
    private const int DefaultThreshold = 64 * 1024;
    private static readonly TokenCounter Counter = new();

    public static TheoryData<string, int, int, int> ReconcileCases => new()
    {
        { "responses", 300, 20, 500 }, // billed 320, far below the reservation: refund
        { "responses", 900, 10, 16 },  // billed 910, far above it: extra charge
        { "chat", 300, 20, 500 },
        { "chat", 900, 10, 16 },
    };

    [Theory]
    [MemberData(nameof(ReconcileCases))]
    public async Task StreamedUsageReconciled_NextRequestAdmittedOrRefusedExactlyByTheRemainingTokens(string api, int inputTokens, int deltas, int maxOutput)
    {
        const long Tpm = 2000;
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c => Limits(c, tpm: Tpm), UseClock(MidMinuteClock()));
        using var client = gateway.CreateClient();

        // 1. A stream whose real usage differs from its reservation.
        var firstBody = Body(api, "Tell me a story about a quick brown fox that jumps over a lazy dog", maxOutput);
        var firstReservation = Counter.EstimateInput(Encoding.UTF8.GetBytes(firstBody), DefaultThreshold) + maxOutput;
        using (var first = await client.SendAsync(Post(Path(api), firstBody,
            ("x-fake-input-tokens", inputTokens.ToString(CultureInfo.InvariantCulture)), ("x-fake-deltas", deltas.ToString(CultureInfo.InvariantCulture))),
            HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
            Assert.Equal("2000", Header(first, "x-ratelimit-limit-tokens"));
            Assert.Equal((Tpm - firstReservation).ToString(CultureInfo.InvariantCulture), Header(first, "x-ratelimit-remaining-tokens")); // the reservation is held
            await new SseReader(await first.Content.ReadAsStreamAsync()).ReadAllAsync();
            var usage = await gateway.Logs.SingleUsageEventAsync(RequestId(first)!);
            Assert.Equal("upstream", usage.GetProperty("UsageSource").GetString());
            Assert.Equal(inputTokens + deltas, usage.GetProperty("TotalTokens").GetInt64());
        }

        // 2. The reservation was replaced by what the upstream billed.
        long billed = inputTokens + deltas;
        Assert.Equal(billed, Used(await QuotaAsync(client), "tokens_this_minute"));
        var remaining = Tpm - billed;

        // 3. One token more than remains is refused, before anything reaches the upstream...
        var secondInput = "And now a short poem about the good day it was for all of them";
        var estimate = Counter.EstimateInput(Encoding.UTF8.GetBytes(Body(api, secondInput, 1)), DefaultThreshold);
        var upstreamBefore = upstream.RequestCount;
        using (var refused = await client.SendAsync(Post(Path(api), Body(api, secondInput, remaining - estimate + 1))))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            var error = await ErrorAsync(refused);
            Assert.Equal("tokens", error.GetProperty("type").GetString());
            Assert.Equal("rate_limit_exceeded", error.GetProperty("code").GetString());
            Assert.Equal($"Rate limit reached for tokens per minute (TPM): Limit 2000, Used {billed}, Requested {remaining + 1}. Please try again in 29.75s.",
                error.GetProperty("message").GetString());
            Assert.Equal("30", Header(refused, "retry-after"));
            Assert.Equal("29750", Header(refused, "retry-after-ms"));
            Assert.Equal(remaining.ToString(CultureInfo.InvariantCulture), Header(refused, "x-ratelimit-remaining-tokens"));
        }

        Assert.Equal(upstreamBefore, upstream.RequestCount);

        // 4. ...and exactly what remains is admitted.
        using (var admitted = await client.SendAsync(Post(Path(api), Body(api, secondInput, remaining - estimate), ("x-fake-input-tokens", "40"), ("x-fake-deltas", "3")),
            HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(HttpStatusCode.OK, admitted.StatusCode);
            Assert.Equal("0", Header(admitted, "x-ratelimit-remaining-tokens"));
            await new SseReader(await admitted.Content.ReadAsStreamAsync()).ReadAllAsync();
            await gateway.Logs.SingleUsageEventAsync(RequestId(admitted)!);
        }

        Assert.Equal(billed + 43, Used(await QuotaAsync(client), "tokens_this_minute"));
    }

    public static TheoryData<string, string> Budgets => new()
    {
        { "TokensPerDay", "daily" },
        { "TokensPerMonth", "monthly" },
    };

    [Theory]
    [MemberData(nameof(Budgets))]
    public async Task BudgetExhausted_InsufficientQuotaWithoutRetryAfterAndShouldRetryFalse(string limit, string period)
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl,
            c => c[$"Gateway:Tenants:tenant-a:Limits:{limit}"] = "5000", UseClock(MidMinuteClock()));
        using var client = gateway.CreateClient();
        using var spend = await SendAndSettleAsync(gateway, client, CreateResponse(maxOutputTokens: 16, headers: [("x-fake-input-tokens", "4990")]));
        Assert.Equal(HttpStatusCode.OK, spend.StatusCode);

        var body = JsonSerializer.Serialize(new { model = "gpt-4o-mini", input = "One more, please" });
        var requested = Counter.EstimateInput(Encoding.UTF8.GetBytes(body), DefaultThreshold) + 4096; // no output limit: the default reservation
        using var refused = await client.SendAsync(Post("responses", body));

        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        var error = await ErrorAsync(refused);
        Assert.Equal("insufficient_quota", error.GetProperty("type").GetString());
        Assert.Equal("insufficient_quota", error.GetProperty("code").GetString());
        var resets = period == "daily" ? "2031-03-13T00:00:00Z" : "2031-04-01T00:00:00Z";
        Assert.Equal($"You exceeded your {period} token budget: Limit 5000, Used 4998, Requested {requested}. It resets at {resets}; ask your platform team to raise it.",
            error.GetProperty("message").GetString());
        Assert.Equal("false", Header(refused, "x-should-retry"));
        Assert.Null(Header(refused, "retry-after"));
        Assert.Null(Header(refused, "retry-after-ms"));
        Assert.Equal(1, upstream.RequestCount);
        var usage = await gateway.Logs.SingleUsageEventAsync(RequestId(refused)!);
        Assert.Equal("rejected", usage.GetProperty("Outcome").GetString());
        Assert.Equal(429, usage.GetProperty("StatusCode").GetInt32());
    }

    [SkippableTheory]
    [InlineData("memory")]
    [InlineData("redis")]
    public async Task BackgroundResponse_ReservationHeldUntilFirstSeenCompleted_ThenReconciledOnce(string store)
    {
        await using var bed = await QuotaBed.StartAsync(store, c => Limits(c, tpm: 100_000, tpd: 1_000_000), MidMinuteClock());
        using var client = bed.Gateway.CreateClient();
        var body = JsonSerializer.Serialize(new { model = "gpt-4o-mini", input = "Work on this in the background", background = true, max_output_tokens = 500 });

        using var queued = await SendAndSettleAsync(bed.Gateway, client, Post("responses", body, ("x-fake-input-tokens", "70"), ("x-fake-deltas", "12")));
        var id = JsonDocument.Parse(await queued.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString();

        // Queued: no usage yet, so the reservation stays in force.
        Assert.Equal(Estimate(body) + 500, Used(await QuotaAsync(client), "tokens_today"));

        using var completed = await SendAndSettleAsync(bed.Gateway, client, new HttpRequestMessage(HttpMethod.Get, $"responses/{id}"));
        Assert.Equal("completed", JsonDocument.Parse(await completed.Content.ReadAsStringAsync()).RootElement.GetProperty("status").GetString());
        Assert.Equal(82, Used(await QuotaAsync(client), "tokens_today"));
        Assert.Equal(82, Used(await QuotaAsync(client), "tokens_this_minute"));

        using var again = await SendAndSettleAsync(bed.Gateway, client, new HttpRequestMessage(HttpMethod.Get, $"responses/{id}"));
        Assert.Equal("none", (await bed.Gateway.Logs.SingleUsageEventAsync(RequestId(again)!)).GetProperty("UsageSource").GetString());
        Assert.Equal(82, Used(await QuotaAsync(client), "tokens_today"));
    }

    [Fact]
    public async Task RequestLargerThanTokensPerMinute_RefusedAsTooLargeWithShouldRetryFalse()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c => Limits(c, tpm: 1000), UseClock(MidMinuteClock()));
        using var client = gateway.CreateClient();
        var body = JsonSerializer.Serialize(new { model = "gpt-4o-mini", input = "Hi", max_output_tokens = 2000 });

        using var refused = await client.SendAsync(Post("responses", body));

        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        var error = await ErrorAsync(refused);
        Assert.Equal("tokens", error.GetProperty("type").GetString());
        Assert.Equal("rate_limit_exceeded", error.GetProperty("code").GetString());
        var requested = Counter.EstimateInput(Encoding.UTF8.GetBytes(body), DefaultThreshold) + 2000;
        Assert.Equal($"Request too large for tokens per minute (TPM): Limit 1000, Requested {requested}. The input or max_output_tokens must be reduced in order to run successfully.",
            error.GetProperty("message").GetString());
        Assert.Equal("false", Header(refused, "x-should-retry")); // waiting never helps
        Assert.Null(Header(refused, "retry-after"));
        Assert.Equal(0, upstream.RequestCount);
    }

    [Fact]
    public async Task Reservation_InputEstimatePlusOutputLimitOrDefault_EmbeddingsReserveInputOnly()
    {
        const long Tpm = 100_000;
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c =>
        {
            Limits(c, tpm: Tpm);
            c["Gateway:Quotas:DefaultOutputTokenReservation"] = "1234";
        }, UseClock(MidMinuteClock()));
        using var client = gateway.CreateClient();

        var withLimit = JsonSerializer.Serialize(new { model = "gpt-4o-mini", input = "With a limit", max_output_tokens = 321, stream = true });
        var withoutLimit = JsonSerializer.Serialize(new { model = "gpt-4o-mini", input = "Without a limit", stream = true });
        var embeddings = JsonSerializer.Serialize(new { model = "text-embedding-3-small", input = "Embed these words" });

        Assert.Equal(Estimate(withLimit) + 321, await ReservedAsync(withLimit, "responses"));
        Assert.Equal(Estimate(withoutLimit) + 1234, await ReservedAsync(withoutLimit, "responses"));
        Assert.Equal(Estimate(embeddings), await ReservedAsync(embeddings, "embeddings"));

        async Task<long> ReservedAsync(string body, string path)
        {
            // Gated, so the reservation is still held (not yet reconciled) when the headers are read.
            var gate = Guid.NewGuid().ToString("N");
            var before = Used(await QuotaAsync(client), "tokens_this_minute");
            using var response = await client.SendAsync(Post(path, body, ("x-fake-gate", gate)), HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var reserved = Tpm - before - long.Parse(Header(response, "x-ratelimit-remaining-tokens")!, CultureInfo.InvariantCulture);
            upstream.ReleaseGate(gate);
            await response.Content.LoadIntoBufferAsync();
            await gateway.Logs.SingleUsageEventAsync(RequestId(response)!);
            return reserved;
        }
    }

    [Fact]
    public async Task Reservation_BodyAboveTokenizeThreshold_TextEstimatedAtBytesOverFourWithoutTokenizing()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c => Limits(c, tpm: 1000), UseClock(MidMinuteClock()));
        using var client = gateway.CreateClient();
        var input = string.Concat(Enumerable.Repeat("lorem ipsum dolor sit amet ", 3000));
        var body = JsonSerializer.Serialize(new { model = "gpt-4o-mini", input, max_output_tokens = 100 });
        Assert.True(Encoding.UTF8.GetByteCount(body) > DefaultThreshold);

        using var refused = await client.SendAsync(Post("responses", body));

        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        var message = (await ErrorAsync(refused)).GetProperty("message").GetString();
        // 3 priming tokens + the text at bytes/4 (rounded up) + max_output_tokens; the JSON around the text is not counted.
        Assert.Contains($"Requested {3 + (Encoding.UTF8.GetByteCount(input) / 4) + 1 + 100}.", message, StringComparison.Ordinal);
    }

    [Fact]
    public void Estimate_LargeInlineImage_CountsAsOneImageNotAsText()
    {
        var image = "data:image/png;base64," + Convert.ToBase64String(new byte[150_000]);
        var body = JsonSerializer.Serialize(new
        {
            model = "gpt-4o-mini",
            input = new object[] { new { role = "user", content = new object[] { new { type = "input_text", text = "What is in this image?" }, new { type = "input_image", image_url = image } } } },
        });
        Assert.True(Encoding.UTF8.GetByteCount(body) > DefaultThreshold);

        var estimate = Estimate(body);

        Assert.InRange(estimate, TokenCounter.ImageTokens, TokenCounter.ImageTokens + 50);
    }

    [Fact]
    public async Task TenantWithoutTokenLimits_ReservesNothingAndGetsNoTokenHeaders()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c => Limits(c, rpm: 100), UseClock(MidMinuteClock()));
        using var client = gateway.CreateClient();

        using var response = await SendAndSettleAsync(gateway, client, CreateResponse(headers: [("x-fake-input-tokens", "50")]));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("100", Header(response, "x-ratelimit-limit-requests"));
        Assert.Null(Header(response, "x-ratelimit-limit-tokens"));     // the upstream sent its own; they are not passed on
        Assert.Null(Header(response, "x-ratelimit-remaining-tokens"));
        Assert.Equal(58, Used(await QuotaAsync(client), "tokens_this_minute")); // real usage still counts
    }

    private static long Estimate(string body) => Counter.EstimateInput(Encoding.UTF8.GetBytes(body), DefaultThreshold);

    private static string Path(string api) => api == "chat" ? "chat/completions" : "responses";

    private static string Body(string api, string text, long maxOutput) => api == "chat"
        ? JsonSerializer.Serialize(new { model = "gpt-4o-mini", messages = new[] { new { role = "user", content = text } }, stream = true, max_completion_tokens = maxOutput })
        : JsonSerializer.Serialize(new { model = "gpt-4o-mini", input = text, stream = true, max_output_tokens = maxOutput });
}
