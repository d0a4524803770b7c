using System.Net;
using System.Reflection;
using System.Text.Json;
using FakeUpstream;
using Gateway.SharedState;
using Gateway.Tests.Infrastructure;
using Gateway.Tests.Quotas;
using Gateway.Tests.Usage;
using Microsoft.Extensions.DependencyInjection;
using static Gateway.Tests.Quotas.QuotaTestKit;

namespace Gateway.Tests.Hosting;

/// <summary>
/// A fault of the gateway itself is a 500 <c>server_error</c> envelope naming the request id, and it never costs the
/// usage event or the tenant's concurrency slot: accounting settles in a finally, and a step that throws (the
/// estimate, the store's settle) does not skip the others.
/// </summary>
public sealed class GatewayFaultTests
{
    [SkippableTheory]
    [InlineData("memory")]
    [InlineData("redis")]
    public async Task LoneSurrogateInATool_400InvalidTextOneEventAndTheSlotReleased(string store)
    {
        // No token limits: nothing tokenizes the body before forwarding. Text .NET cannot decode used to reach the
        // estimate of a cut stream and throw there (no event, slot held); it is now refused before anything reads it.
        await using var bed = await QuotaBed.StartAsync(store, c => Limits(c, concurrent: 1));
        using var client = bed.Gateway.CreateClient();
        const string loneSurrogateInput = """
            {"model":"gpt-4o-mini","input":"tell me a story","stream":true,
             "tools":[{"type":"function","name":"lookup","description":"bad \ud800 text","parameters":{"type":"object"}}]}
            """;
        using var cut = Post("responses", loneSurrogateInput, ("x-fake-deltas", "40"), ("x-fake-drop-after", "8"));

        using var response = await client.SendAsync(cut);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Equal("invalid_text", error.GetProperty("code").GetString());

        var usage = await UsageEvents.OfAsync(bed.Gateway, response);
        Assert.Equal("rejected", UsageEvents.Text(usage, "Outcome"));

        // The slot is free: at a concurrency limit of 1 the next request is admitted.
        Assert.Equal(0, Used(await QuotaAsync(client), "concurrent_requests"));
        using var next = await SendAndSettleAsync(bed.Gateway, client, CreateResponse());
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
        Assert.Empty(bed.Gateway.Logs.Named("UnhandledError"));
    }

    [Fact]
    public async Task StoreFaultsAtAdmission_500ServerErrorWithRequestIdAndOneGatewayErrorEvent()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        var faults = new StoreFaults { Admit = true };
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c => Limits(c, concurrent: 1), faults.Install);
        using var client = gateway.CreateClient();

        using var response = await client.SendAsync(CreateResponse());

        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        var requestId = RequestId(response)!;
        var body = await response.Content.ReadAsStringAsync();
        var error = JsonDocument.Parse(body).RootElement.GetProperty("error");
        Assert.Equal("server_error", error.GetProperty("type").GetString());
        Assert.Contains(requestId, error.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.True(error.TryGetProperty("param", out _));
        Assert.True(error.TryGetProperty("code", out _));
        Assert.DoesNotContain("injected", body, StringComparison.Ordinal); // no exception text reaches the tenant
        Assert.DoesNotContain(" at ", body, StringComparison.Ordinal);

        var usage = await UsageEvents.OfAsync(gateway, response);
        Assert.Equal("gateway_error", UsageEvents.Text(usage, "Outcome"));
        Assert.Equal(500, UsageEvents.Long(usage, "StatusCode"));
        Assert.Equal(0, upstream.RequestCount);
        var logged = Assert.Single(gateway.Logs.Named("UnhandledError"));
        Assert.Equal(requestId, logged.GetProperty("RequestId").GetString());
    }

    [Fact]
    public async Task StoreFaultsAtSettle_AnswerUnaffectedAndTheUsageEventStillWritten()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        var faults = new StoreFaults { Settle = true };
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c => Limits(c, concurrent: 1), faults.Install);
        using var client = gateway.CreateClient();

        using var response = await client.SendAsync(CreateResponse(headers: [("x-fake-input-tokens", "21")]));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var usage = await UsageEvents.OfAsync(gateway, response);
        Assert.Equal("completed", UsageEvents.Text(usage, "Outcome"));
        Assert.Equal("upstream", UsageEvents.Text(usage, "UsageSource"));
        Assert.Equal(21, UsageEvents.Long(usage, "InputTokens"));
        var step = Assert.Single(await gateway.Logs.WaitForEventsAsync("AccountingStepFailed"));
        Assert.Equal("settle", step.GetProperty("AccountingStep").GetString());
    }

    [Fact]
    public async Task FaultOutsideThePipeline_ReadinessProbeThrows_500EnvelopeNotAnEmptyAnswer()
    {
        await using var upstream = await FakeUpstreamServer.StartAsync();
        var faults = new StoreFaults { Kind = true };
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, services: faults.Install);
        using var root = new HttpClient { BaseAddress = gateway.RootUrl };

        using var response = await root.GetAsync("/readyz");

        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("server_error", error.GetProperty("type").GetString());
        var requestId = response.Headers.GetValues("x-request-id").Single();
        Assert.Contains(requestId, error.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Single(gateway.Logs.Named("UnhandledFault"));
    }

    /// <summary>
    /// The real in-memory store behind a proxy that throws an unexpected exception (a bug, not an outage: not
    /// <c>StoreUnavailableException</c>) from the chosen calls. A proxy, so new store members need no change here.
    /// </summary>
    private sealed class StoreFaults
    {
        public bool Admit { get; init; }

        public bool Settle { get; init; }

        public bool Kind { get; init; }

        public void Install(IServiceCollection services) =>
            services.AddSingleton<ISharedStateStore>(sp => FaultyStore.Create(sp.GetRequiredService<MemoryStateStore>(), this));

        public bool Throws(string method) => method switch
        {
            nameof(ISharedStateStore.AdmitAsync) => Admit,
            nameof(ISharedStateStore.SettleAsync) => Settle,
            "get_" + nameof(ISharedStateStore.Kind) => Kind,
            _ => false,
        };
    }

#pragma warning disable CA1852 // DispatchProxy needs an unsealed proxy type
    internal class FaultyStore : DispatchProxy
#pragma warning restore CA1852
    {
        private ISharedStateStore _inner = null!;
        private StoreFaults _faults = null!;

        public static ISharedStateStore Create(ISharedStateStore inner, object faults)
        {
            var proxy = Create<ISharedStateStore, FaultyStore>();
            var self = (FaultyStore)(object)proxy;
            self._inner = inner;
            self._faults = (StoreFaults)faults;
            return proxy;
        }

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
        {
            if (_faults.Throws(targetMethod!.Name))
            {
                throw new InvalidOperationException($"{targetMethod.Name} fault injected by the test");
            }

            try
            {
                return targetMethod.Invoke(_inner, args);
            }
            catch (TargetInvocationException ex) when (ex.InnerException is not null)
            {
                throw ex.InnerException;
            }
        }
    }
}
