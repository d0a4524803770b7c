using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Net;
using Gateway.Configuration;
using Gateway.Observability;
using Gateway.Tenants;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using static Gateway.Tests.Quotas.QuotaTestKit;

namespace Gateway.Tests.Requests;

/// <summary>A model a tenant may not use never becomes a metric label of its own (issue #11, item 6).</summary>
public sealed class ModelLabelTests() : GatewayTestBed(c => c["Gateway:Tenants:tenant-a:Models:0"] = "gpt-4o-mini")
{
    [Theory]
    [InlineData("ResponsesTests/MaxTokens.json#0", "gpt-4o-mini-2024-07-18")] // a dated snapshot of the listed model
    [InlineData("ResponsesTests/TwoTurnCrossModel.json#1", "other")] // the upstream answered with a model not in the list
    public async Task TokensMetric_ModelLabel_TheUpstreamsModelOnlyWhenTheTenantMayUseIt(string replay, string label)
    {
        var labels = new ConcurrentBag<string>();
        var meters = Gateway.Services.GetRequiredService<IMeterFactory>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter.Scope, meters) && instrument.Name == "gateway.tokens")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, _, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == "model")
                {
                    labels.Add((string)tag.Value!);
                }
            }
        });
        listener.Start();
        using var client = Gateway.CreateClient();

        using var response = await client.SendAsync(Post("responses", """{"model":"gpt-4o-mini","input":"hi"}""", ("x-fake-replay", replay)));
        await Gateway.Logs.SingleUsageEventAsync(RequestId(response)!);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.NotEmpty(labels);
        Assert.All(labels, l => Assert.Equal(label, l));
    }

    [Theory]
    [InlineData(null, "gpt-4o-mini", "gpt-4o-mini")]
    [InlineData(null, "anything-a-compatible-upstream-says", "anything-a-compatible-upstream-says")]
    [InlineData("gpt-4o-mini", "gpt-4o-mini", "gpt-4o-mini")]
    [InlineData("gpt-4o-mini", "gpt-4o-mini-2024-07-18", "gpt-4o-mini-2024-07-18")]
    [InlineData("gpt-4o", "gpt-4o-mini-2024-07-18", "other")]
    [InlineData("gpt-4o-mini", "gpt-4o-mini-", "other")]
    [InlineData("gpt-4o-mini", "gpt-4o", "other")]
    [InlineData("gpt-4o-mini", null, "")]
    public void ModelLabel_ListedModelOrItsSnapshot_ElseOther(string? listed, string? model, string label)
    {
        var tenant = new Tenant("t", new TenantOptions { Models = listed is null ? [] : [listed] });

        Assert.Equal(label, GatewayMetrics.ModelLabel(tenant, model));
    }

    [Fact]
    public void ModelLabel_Over256Characters_Other()
    {
        var tenant = new Tenant("t", new TenantOptions());

        Assert.Equal("other", GatewayMetrics.ModelLabel(tenant, new string('m', 257)));
    }
}
