using System.Net;
using static Gateway.Tests.Quotas.QuotaTestKit;

namespace Gateway.Tests.Quotas;

/// <summary>
/// MaxConcurrentRequests: a slot is taken at admission and given back when the request ends, however it ends
/// (success, upstream error, client abort, upstream drop), in memory and in Redis.
/// </summary>
public sealed class ConcurrencyTests
{
    [SkippableTheory]
    [InlineData("memory")]
    [InlineData("redis")]
    public async Task SlotTaken_NextRequestRefusedWithOneSecondRetryHint_AdmittedOnceTheStreamCompleted(string store)
    {
        await using var bed = await QuotaBed.StartAsync(store, c => Limits(c, concurrent: 1), MidMinuteClock());
        using var client = bed.Gateway.CreateClient();
        var holder = await StartGatedStreamAsync(client, "slot");

        using (var refused = await client.SendAsync(CreateResponse()))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            var error = await ErrorAsync(refused);
            Assert.Equal("requests", error.GetProperty("type").GetString());
            Assert.Equal("rate_limit_exceeded", error.GetProperty("code").GetString());
            Assert.Equal("Too many concurrent requests: Limit 1, In flight 1. Please try again when a request has finished.", error.GetProperty("message").GetString());
            Assert.Equal("1", Header(refused, "retry-after"));
            Assert.Equal("1000", Header(refused, "retry-after-ms"));
        }

        Assert.Equal(1, Used(await QuotaAsync(client), "concurrent_requests"));
        bed.Upstream.ReleaseGate("slot");
        var holderId = RequestId(holder)!;
        await DrainAsync(holder);
        Assert.Equal("completed", (await bed.Gateway.Logs.SingleUsageEventAsync(holderId)).GetProperty("Outcome").GetString());

        Assert.Equal(0, Used(await QuotaAsync(client), "concurrent_requests"));
        using var admitted = await client.SendAsync(CreateResponse());
        Assert.Equal(HttpStatusCode.OK, admitted.StatusCode);
    }

    [SkippableTheory]
    [InlineData("memory")]
    [InlineData("redis")]
    public async Task UpstreamError_ReleasesTheSlot(string store)
    {
        await using var bed = await QuotaBed.StartAsync(store, c => Limits(c, concurrent: 1), MidMinuteClock());
        using var client = bed.Gateway.CreateClient();

        using var failed = await SendAndSettleAsync(bed.Gateway, client, CreateResponse(headers: [("x-fake-status", "500")]));

        Assert.Equal(HttpStatusCode.InternalServerError, failed.StatusCode);
        Assert.Equal(0, Used(await QuotaAsync(client), "concurrent_requests"));
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(CreateResponse())).StatusCode);
    }

    [SkippableTheory]
    [InlineData("memory")]
    [InlineData("redis")]
    public async Task ClientAbortsMidStream_ReleasesTheSlot(string store)
    {
        await using var bed = await QuotaBed.StartAsync(store, c => Limits(c, concurrent: 1), MidMinuteClock());
        using var client = bed.Gateway.CreateClient();
        var holder = await StartGatedStreamAsync(client, "never-released");
        var holderId = RequestId(holder)!;

        holder.Dispose(); // the client goes away while the upstream is still generating

        var usage = await bed.Gateway.Logs.SingleUsageEventAsync(holderId);
        Assert.Equal("client_aborted", usage.GetProperty("Outcome").GetString());
        Assert.Equal(0, Used(await QuotaAsync(client), "concurrent_requests"));
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(CreateResponse())).StatusCode);
    }

    [SkippableTheory]
    [InlineData("memory")]
    [InlineData("redis")]
    public async Task UpstreamDropsMidStream_ReleasesTheSlot(string store)
    {
        await using var bed = await QuotaBed.StartAsync(store, c => Limits(c, concurrent: 1), MidMinuteClock());
        using var client = bed.Gateway.CreateClient();

        using var dropped = await SendAndSettleAsync(bed.Gateway, client, CreateResponse(stream: true, headers: [("x-fake-drop-after", "3")]));

        Assert.Equal(HttpStatusCode.OK, dropped.StatusCode); // the stream had started; it ends with an error event
        Assert.Equal("upstream_error", (await bed.Gateway.Logs.SingleUsageEventAsync(RequestId(dropped)!)).GetProperty("Outcome").GetString());
        Assert.Equal(0, Used(await QuotaAsync(client), "concurrent_requests"));
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(CreateResponse())).StatusCode);
    }
}
