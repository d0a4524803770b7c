using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Pipeline;

/// <summary>The gateway's request id (written in place since issue #15): its documented shape, and a new one per request.</summary>
public sealed partial class RequestIdTests : GatewayTestBed
{
    [Fact]
    public async Task RequestId_EveryRequest_GwAnd24LowercaseHexDigitsAndNeverRepeated()
    {
        using var client = Gateway.CreateClient();
        var ids = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < 20; i++)
        {
            using var response = await client.PostAsync("responses",
                new StringContent("""{"model":"gpt-4o-mini","input":"hi"}""", Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var id = response.Headers.GetValues("x-gateway-request-id").Single();
            Assert.Matches(Shape(), id);
            Assert.True(ids.Add(id), $"{id} was handed out twice");
        }

        // A refusal the gateway answers itself carries the same id as its x-request-id.
        using var refused = await client.GetAsync("no-such-endpoint");
        var refusedId = refused.Headers.GetValues("x-gateway-request-id").Single();
        Assert.Matches(Shape(), refusedId);
        Assert.Equal(refusedId, refused.Headers.GetValues("x-request-id").Single());
    }

    [GeneratedRegex("^gw-[0-9a-f]{24}$")]
    private static partial Regex Shape();
}
