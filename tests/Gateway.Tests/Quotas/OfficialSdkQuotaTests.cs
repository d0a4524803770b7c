using System.ClientModel;
using System.Net;
using System.Text.Json;
using FakeUpstream;
using Gateway.Tests.Infrastructure;
using OpenAI.Responses;
using static Gateway.Tests.Quotas.QuotaTestKit;

namespace Gateway.Tests.Quotas;

/// <summary>
/// What the official OpenAI .NET SDK (2.15, default retry policy: 3 retries on 408/429/500/502/503/504, Retry-After
/// honoured when longer than its own backoff) does with the gateway's 429s. Requests the gateway saw are counted from its usage events, requests
/// that reached the upstream from the fake's log.
/// </summary>
public sealed class OfficialSdkQuotaTests
{
    [Fact]
    public async Task RateLimited_SdkRetriesAfterRetryAfterAndSucceedsOnceASlotIsFree()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c => Limits(c, concurrent: 1));
        using var raw = gateway.CreateClient();
        var holder = await StartGatedStreamAsync(raw, "busy");
        var holderId = RequestId(holder)!;

        // Free the slot as soon as the gateway has refused the SDK once (a 429 with retry-after: 1).
        var release = Task.Run(async () =>
        {
            await Eventually.UntilAsync(() => Refusals(gateway) > 0, "the gateway refused the SDK's first attempt");
            upstream.ReleaseGate("busy");
            await DrainAsync(holder);
        });
        var sdk = new ResponsesClient(new ApiKeyCredential(TestKeys.KeyA), new ResponsesClientOptions { Endpoint = gateway.BaseUrl });

        var result = await sdk.CreateResponseAsync("gpt-4o-mini", "Retry me");
        await release;

        Assert.Equal(ResponseStatus.Completed, result.Value.Status);
        await gateway.Logs.WaitForUsageEventsAsync(Refusals(gateway) + 2);
        var sdkAttempts = gateway.Logs.UsageEvents.Where(e => e.GetProperty("RequestId").GetString() != holderId).ToList();
        Assert.True(sdkAttempts.Count >= 2, "the SDK did not retry");
        Assert.Single(sdkAttempts, e => e.GetProperty("StatusCode").GetInt32() == 200);
        Assert.All(sdkAttempts.Where(e => e.GetProperty("StatusCode").GetInt32() != 200), e => Assert.Equal(429, e.GetProperty("StatusCode").GetInt32()));
        Assert.Equal(2, upstream.Requests.Count(r => r.Method == "POST")); // the held stream and the successful retry; no refused attempt got through
    }

    /// <summary>
    /// Finding: the .NET SDK ignores <c>x-should-retry: false</c> and retries every 429, insufficient_quota included:
    /// 1 attempt + 3 retries. Without a retry-after header it does not even back off: the OpenAI SDK uses
    /// System.ClientModel 1.16's <c>ClientRetryPolicy.Default</c>, whose initial delay is 0 (a fresh
    /// <c>new ClientRetryPolicy()</c> has 0.8 s), so the four attempts arrive within milliseconds. That is why the
    /// gateway sends no retry-after here: with one, the SDK would sleep until the budget resets (hours or weeks).
    /// All four are refused at the gateway; none reaches the upstream. (Node and Python obey x-should-retry: one attempt.)
    /// </summary>
    [Fact]
    public async Task InsufficientQuota_SdkIgnoresShouldRetryFalse_FourAttemptsAllRefusedNoneReachesUpstream()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c => Limits(c, tpd: 5000));
        using var raw = gateway.CreateClient();
        using var spend = await SendAndSettleAsync(gateway, raw, CreateResponse(maxOutputTokens: 16, headers: [("x-fake-input-tokens", "4990")]));
        Assert.Equal(HttpStatusCode.OK, spend.StatusCode);
        var sdk = new ResponsesClient(new ApiKeyCredential(TestKeys.KeyA), new ResponsesClientOptions { Endpoint = gateway.BaseUrl });

        var error = await Assert.ThrowsAsync<ClientResultException>(() => sdk.CreateResponseAsync("gpt-4o-mini", "One more"));

        Assert.Equal(429, error.Status);
        var body = JsonDocument.Parse(error.GetRawResponse()!.Content.ToString()).RootElement.GetProperty("error");
        Assert.Equal("insufficient_quota", body.GetProperty("code").GetString());
        Assert.True(error.GetRawResponse()!.Headers.TryGetValue("x-should-retry", out var shouldRetry) && shouldRetry == "false");
        await gateway.Logs.WaitForUsageEventsAsync(5);
        await Task.Delay(500); // a fifth attempt would be a change of SDK behaviour: give it the chance to show
        Assert.Equal(4, Refusals(gateway));
        Assert.Equal(1, upstream.RequestCount); // only the request that spent the budget
    }

    private static int Refusals(GatewayHost gateway) => gateway.Logs.UsageEvents.Count(e => e.GetProperty("StatusCode").GetInt32() == 429);
}
