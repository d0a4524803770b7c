using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Gateway.Tests.Infrastructure;
using Gateway.Tests.Quotas;
using static Gateway.Tests.Quotas.QuotaTestKit;

namespace Gateway.Tests.Hosting;

/// <summary>Tests that measure the test process's allocations run alone, so other tests' allocations do not blur them.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public static class AllocationTestGroup
{
    public const string Name = "Measures process allocations (not in parallel)";
}

/// <summary>
/// Request bodies are read as they arrive: the buffer grows with the bytes received, not with the declared
/// Content-Length; a large body takes the tenant's concurrency slot and counts against RPM before it is read (the
/// tokens are reserved once it is read); and a tenant has at most <c>Gateway:Limits:MaxConcurrentBodyReadsPerTenant</c>
/// bodies in transit at once. Slow clients are raw sockets that declare a length and send a trickle.
/// </summary>
[Collection(AllocationTestGroup.Name)]
public sealed class BodyReadTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private const long Declared32MiB = 32L * 1024 * 1024;
    private const string BodyStart = """{"model":"gpt-4o-mini","input":"the start of a long upload""";

    [Fact]
    public async Task SlowUploadsDeclaring32MiB_CostWhatArrived_AndThePerTenantCapRefusesTheExtraOne()
    {
        const int cap = 6;
        await using var bed = await QuotaBed.StartAsync("memory", c =>
        {
            Limits(c, concurrent: 100); // leases make the pre-admitted uploads visible on /v1/gateway/quota
            c["Gateway:Limits:MaxConcurrentBodyReadsPerTenant"] = cap.ToString(CultureInfo.InvariantCulture);
        });
        using var client = bed.Gateway.CreateClient();
        var uploads = new List<TcpClient>();
        try
        {
            var allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
            for (var i = 0; i < cap; i++)
            {
                uploads.Add(await StartUploadAsync(bed.Gateway.RootUrl, TestKeys.KeyA, Declared32MiB, BodyStart));
            }

            await WaitUntilAsync(async () => Used(await QuotaAsync(client), "concurrent_requests") == cap, "every upload admitted and being read");

            using (var extra = await StartUploadAsync(bed.Gateway.RootUrl, TestKeys.KeyA, Declared32MiB, BodyStart))
            {
                var (status, body) = await ReadResponseAsync(extra.GetStream());
                Assert.Equal(429, status);
                var error = JsonDocument.Parse(body).RootElement.GetProperty("error");
                Assert.Equal("requests", error.GetProperty("type").GetString());
                Assert.Equal("rate_limit_exceeded", error.GetProperty("code").GetString());
                Assert.Equal($"Too many request bodies being received at once: Limit {cap}. Please try again when an upload has finished.", error.GetProperty("message").GetString());
            }

            var allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
            output.WriteLine($"allocated while {cap} uploads of 32 MiB were open: {allocated / 1024} KiB");
            // Before: each upload rented its declared 32 MiB at once (6 x 32 MiB). Now: a 16 KiB start each.
            Assert.True(allocated < 24L * 1024 * 1024, $"{allocated / (1024 * 1024)} MiB allocated while {cap} uploads of 32 MiB were declared");

            // The cap is per tenant: tenant B is not held back by A's uploads.
            using var b = bed.Gateway.CreateClient(TestKeys.KeyB);
            using var bResponse = await b.SendAsync(Post("responses", BigBody(100 * 1024)));
            Assert.Equal(HttpStatusCode.OK, bResponse.StatusCode);
        }
        finally
        {
            uploads.ForEach(u => u.Dispose());
        }

        // The uploads hung up: their slots and body-read places come back.
        await WaitUntilAsync(async () => Used(await QuotaAsync(client), "concurrent_requests") == 0, "slots released after the uploads were abandoned");
        using var after = await client.SendAsync(Post("responses", BigBody(100 * 1024)));
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }

    [SkippableTheory]
    [InlineData("memory")]
    [InlineData("redis")]
    public async Task LargeUpload_TenantAtItsConcurrencyLimit_RefusedBeforeTheBodyIsSent(string store)
    {
        await using var bed = await QuotaBed.StartAsync(store, c => Limits(c, concurrent: 1));
        using var client = bed.Gateway.CreateClient();
        var holder = await StartGatedStreamAsync(client, "hold");

        // 1 MiB declared, a few bytes sent: the answer comes without waiting for the rest.
        using (var upload = await StartUploadAsync(bed.Gateway.RootUrl, TestKeys.KeyA, 1024 * 1024, BodyStart))
        {
            var (status, body) = await ReadResponseAsync(upload.GetStream());
            Assert.Equal(429, status);
            Assert.StartsWith("Too many concurrent requests: Limit 1", JsonDocument.Parse(body).RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        }

        bed.Upstream.ReleaseGate("hold");
        await DrainAsync(holder);
        Assert.Equal(1, bed.Upstream.RequestCount);
    }

    [SkippableTheory]
    [InlineData("memory")]
    [InlineData("redis")]
    public async Task LargeBody_PreAdmittedThenOverTheTokenLimit_429CountedOnceAndTheSlotReleased(string store)
    {
        await using var bed = await QuotaBed.StartAsync(store, c => Limits(c, rpm: 10, tpm: 5_000, concurrent: 1), MidMinuteClock());
        using var client = bed.Gateway.CreateClient();

        using var tooLarge = await SendAndSettleAsync(bed.Gateway, client, Post("responses", BigBody(200 * 1024)));

        Assert.Equal(HttpStatusCode.TooManyRequests, tooLarge.StatusCode);
        Assert.StartsWith("Request too large for tokens per minute (TPM): Limit 5000", (await ErrorAsync(tooLarge)).GetProperty("message").GetString(), StringComparison.Ordinal);
        var quota = await QuotaAsync(client);
        Assert.Equal(0, Used(quota, "concurrent_requests"));
        Assert.Equal(1, Used(quota, "requests_this_minute")); // counted at pre-admission, once
        Assert.Equal(0, Used(quota, "tokens_this_minute"));   // nothing reserved, nothing charged

        using var small = await SendAndSettleAsync(bed.Gateway, client, CreateResponse());
        Assert.Equal(HttpStatusCode.OK, small.StatusCode);
        Assert.Equal(2, Used(await QuotaAsync(client), "requests_this_minute"));
        Assert.Equal(1, bed.Upstream.RequestCount);
    }

    [Fact]
    public async Task LargeBody_PreAdmittedThenRefusedByPolicy_SlotReleased()
    {
        await using var bed = await QuotaBed.StartAsync("memory", c =>
        {
            Limits(c, concurrent: 1);
            c["Gateway:Tenants:tenant-a:Models:0"] = "gpt-4o-mini";
        });
        using var client = bed.Gateway.CreateClient();

        using var refused = await SendAndSettleAsync(bed.Gateway, client, Post("responses", BigBody(100 * 1024, model: "gpt-4.1")));
        Assert.Equal(HttpStatusCode.NotFound, refused.StatusCode);

        Assert.Equal(0, Used(await QuotaAsync(client), "concurrent_requests"));
        using var admitted = await SendAndSettleAsync(bed.Gateway, client, Post("responses", BigBody(100 * 1024)));
        Assert.Equal(HttpStatusCode.OK, admitted.StatusCode);
    }

    [Theory]
    [InlineData(100, false)]
    [InlineData(16 * 1024, false)]
    [InlineData(16 * 1024 + 1, false)]
    [InlineData(64 * 1024 + 1, false)]
    [InlineData(300_000, false)]
    [InlineData(100, true)]
    [InlineData(16 * 1024 + 1, true)]
    [InlineData(300_000, true)]
    public async Task Body_AcrossBufferGrowth_ForwardedByteForByte(int size, bool chunked)
    {
        await using var bed = await QuotaBed.StartAsync("memory", c => Limits(c, concurrent: 2));
        using var client = bed.Gateway.CreateClient();
        var prefix = """{"model":"text-embedding-3-small","input":" """;
        var json = Encoding.UTF8.GetBytes(prefix + new string('a', size - prefix.Length - 2) + "\"}");
        Assert.Equal(size, json.Length);
        HttpContent content = chunked ? new StreamContent(new MemoryStream(json)) : new ByteArrayContent(json);
        content.Headers.ContentType = new("application/json");

        using var response = await client.PostAsync("embeddings", content);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(json, Assert.Single(bed.Upstream.Requests).Body);
        Assert.Equal(0, Used(await QuotaAsync(client), "concurrent_requests"));
    }

    private static string BigBody(int bytes, string model = "gpt-4o-mini")
    {
        var text = new StringBuilder(bytes);
        while (text.Length < bytes)
        {
            text.Append("lighthouse keepers tend the lamp through winter storms ");
        }

        return JsonSerializer.Serialize(new { model, input = text.ToString() });
    }

    private static async Task<TcpClient> StartUploadAsync(Uri root, string key, long declaredLength, string firstBytes)
    {
        var client = new TcpClient();
        await client.ConnectAsync(root.Host, root.Port);
        var head = $"POST /v1/responses HTTP/1.1\r\nHost: {root.Authority}\r\nAuthorization: Bearer {key}\r\n" +
            $"Content-Type: application/json\r\nContent-Length: {declaredLength}\r\n\r\n{firstBytes}";
        await client.GetStream().WriteAsync(Encoding.ASCII.GetBytes(head));
        return client;
    }

    private static async Task<(int Status, string Body)> ReadResponseAsync(NetworkStream stream)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var received = new List<byte>();
        var chunk = new byte[4096];
        int headEnd;
        while ((headEnd = IndexOfHeadEnd(received)) < 0)
        {
            var read = await stream.ReadAsync(chunk, timeout.Token);
            Assert.True(read > 0, "connection closed before a response");
            received.AddRange(chunk.AsSpan(0, read));
        }

        var head = Encoding.ASCII.GetString(received.ToArray(), 0, headEnd);
        var status = int.Parse(head.Split(' ')[1], CultureInfo.InvariantCulture);
        var lengthLine = head.Split("\r\n").Single(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
        var length = int.Parse(lengthLine["Content-Length:".Length..].Trim(), CultureInfo.InvariantCulture);
        while (received.Count < headEnd + 4 + length)
        {
            var read = await stream.ReadAsync(chunk, timeout.Token);
            Assert.True(read > 0, "connection closed inside the response body");
            received.AddRange(chunk.AsSpan(0, read));
        }

        return (status, Encoding.UTF8.GetString(received.ToArray(), headEnd + 4, length));

        static int IndexOfHeadEnd(List<byte> bytes)
        {
            for (var i = 0; i + 3 < bytes.Count; i++)
            {
                if (bytes[i] == '\r' && bytes[i + 1] == '\n' && bytes[i + 2] == '\r' && bytes[i + 3] == '\n')
                {
                    return i;
                }
            }

            return -1;
        }
    }

    private static Task WaitUntilAsync(Func<Task<bool>> condition, string what) => Eventually.UntilAsync(condition, what, TimeSpan.FromSeconds(20));
}
