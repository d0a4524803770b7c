using System.Net;
using FakeUpstream;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using static Gateway.Tests.Isolation.Tenants;

namespace Gateway.Tests.Isolation;

/// <summary>
/// Ownership is remembered for <c>Gateway:Isolation:Retention</c> (default 45 days, past OpenAI's 30-day retention of
/// responses), then forgotten: the id is unknown again and, with the default <c>UnknownIds = Deny</c>, refused to everyone.
/// The memory store's clock is a fake one here, moved by the test.
/// </summary>
public sealed class RetentionTests : IAsyncLifetime
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 3, 2, 10, 0, 0, TimeSpan.Zero));
    private FakeUpstreamServer _upstream = null!;
    private readonly List<GatewayHost> _gateways = [];

    public async Task InitializeAsync() => _upstream = await FakeUpstreamServer.StartAsync();

    public async Task DisposeAsync()
    {
        foreach (var gateway in _gateways)
        {
            await gateway.DisposeAsync();
        }

        await _upstream.DisposeAsync();
    }

    [Fact]
    public async Task DefaultRetention_OwnerServedFor45Days_ThenTheIdIsUnknownAndRefused()
    {
        var gateway = await StartAsync(retention: null);
        using var a = Client(gateway, TestKeys.KeyA, TestKeys.TenantA);
        using var b = Client(gateway, TestKeys.KeyB, TestKeys.TenantB);
        var id = await CreateResponseAsync(a);

        _time.Advance(TimeSpan.FromDays(45) - TimeSpan.FromMinutes(1));
        using (var served = await a.GetAsync($"responses/{id}"))
        {
            Assert.Equal(HttpStatusCode.OK, served.StatusCode);
        }

        using (var refused = await b.GetAsync($"responses/{id}"))
        {
            await AssertErrorAsync(refused, HttpStatusCode.NotFound, $"Response with id '{id}' not found.");
        }

        _time.Advance(TimeSpan.FromMinutes(2));
        using (var forgotten = await a.GetAsync($"responses/{id}"))
        {
            await AssertErrorAsync(forgotten, HttpStatusCode.NotFound, $"Response with id '{id}' not found.");
        }

        Assert.Single(RequestsFrom(_upstream, TestKeys.TenantA), r => r.Method == "GET");
        Assert.Empty(RequestsFrom(_upstream, TestKeys.TenantB));
    }

    [Fact]
    public async Task ConfiguredRetention_IsTheOneApplied()
    {
        var gateway = await StartAsync(retention: "02:00:00");
        using var a = Client(gateway, TestKeys.KeyA, TestKeys.TenantA);
        var id = await CreateResponseAsync(a);

        _time.Advance(TimeSpan.FromMinutes(119));
        using (var served = await a.GetAsync($"responses/{id}"))
        {
            Assert.Equal(HttpStatusCode.OK, served.StatusCode);
        }

        _time.Advance(TimeSpan.FromMinutes(2));
        using (var forgotten = await a.GetAsync($"responses/{id}"))
        {
            await AssertErrorAsync(forgotten, HttpStatusCode.NotFound, $"Response with id '{id}' not found.");
        }
    }

    private async Task<GatewayHost> StartAsync(string? retention)
    {
        var gateway = await GatewayHost.StartAsync(_upstream.BaseUrl,
            c =>
            {
                if (retention is not null)
                {
                    c["Gateway:Isolation:Retention"] = retention;
                }
            },
            services: s => s.AddSingleton<TimeProvider>(_time));
        _gateways.Add(gateway);
        return gateway;
    }
}
