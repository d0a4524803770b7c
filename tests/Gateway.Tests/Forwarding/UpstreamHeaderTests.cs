using System.Net;
using System.Text;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Forwarding;

/// <summary>
/// The upstream's organisation headers are dropped from its answer before YARP copies it (issue #15: never added to the
/// client's headers only to be removed again): the client sees the tenant's own <c>x-ratelimit-*</c> once each, and no
/// cookie or organisation header, streamed or not.
/// </summary>
public sealed class UpstreamHeaderTests() : GatewayTestBed(c =>
{
    c["Gateway:Tenants:tenant-a:Limits:RequestsPerMinute"] = "1000";
    c["Gateway:Tenants:tenant-a:Limits:TokensPerMinute"] = "100000";
})
{
    private static readonly string[] RateLimitNames =
    [
        "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
        "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
    ];

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Answer_UpstreamOrganisationHeaders_ReplacedByTheTenantsOwnOnceEach(bool stream)
    {
        using var client = Gateway.CreateClient();
        var body = $$"""{"model":"gpt-4o-mini","input":"hi","stream":{{(stream ? "true" : "false")}}}""";
        using var response = await client.PostAsync("responses", new StringContent(body, Encoding.UTF8, "application/json"));
        await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        foreach (var name in RateLimitNames)
        {
            Assert.Single(response.Headers.GetValues(name)); // the tenant's, not the upstream's beside it
        }

        Assert.Equal("1000", response.Headers.GetValues("x-ratelimit-limit-requests").Single());
        Assert.Equal("100000", response.Headers.GetValues("x-ratelimit-limit-tokens").Single());
        Assert.Equal("999", response.Headers.GetValues("x-ratelimit-remaining-requests").Single());
        Assert.False(response.Headers.Contains("Set-Cookie"));
        Assert.False(response.Headers.Contains("openai-organization"));
        Assert.False(response.Headers.Contains("openai-project"));
        Assert.Equal("2020-10-01", response.Headers.GetValues("openai-version").Single()); // other upstream headers pass
    }
}
