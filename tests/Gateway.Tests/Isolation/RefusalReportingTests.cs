using System.Net;
using System.Text.Json;
using Gateway.Tests.Infrastructure;
using static Gateway.Tests.Isolation.Tenants;

namespace Gateway.Tests.Isolation;

/// <summary>
/// What a refusal leaves behind: one usage event with Outcome <c>rejected</c>, and one <c>IsolationRefused</c> log line
/// naming the refused tenant and the owner, with the object id but without any prompt or output text.
/// </summary>
public sealed class RefusalReportingTests : TwoTenantBed
{
    private const string SecretOfA = "Recipe-of-tenant-A-q7Zr";
    private const string SecretOfB = "Question-of-tenant-B-k3Wp";

    [Theory]
    [InlineData("path", "responses.retrieve", 404)]
    [InlineData("previous_response_id", "responses.create", 400)]
    [InlineData("conversation", "responses.create", 404)]
    public async Task Refusal_OneRejectedUsageEventAndOneIsolationRefusedLine_NamingBothTenantsAndNoContent(string where, string endpoint, int status)
    {
        var id = where == "conversation" ? await CreateConversationAsync(A) : await CreateResponseAsync(A, $$""","instructions":"{{SecretOfA}}" """);
        using var refused = where switch
        {
            "path" => await B.GetAsync($"responses/{id}"),
            "previous_response_id" => await B.PostAsync("responses", Json($$"""{"model":"gpt-4o-mini","input":"{{SecretOfB}}","previous_response_id":"{{id}}"}""")),
            _ => await B.PostAsync("responses", Json($$"""{"model":"gpt-4o-mini","input":"{{SecretOfB}}","conversation":"{{id}}"}""")),
        };
        Assert.Equal(status, (int)refused.StatusCode);
        var requestId = GatewayRequestId(refused);
        Assert.Equal(requestId, refused.Headers.GetValues("x-request-id").Single());

        var usage = await Gateway.Logs.SingleUsageEventAsync(requestId);
        Assert.Equal(TestKeys.TenantB, usage.GetProperty("Tenant").GetString());
        Assert.Equal(endpoint, usage.GetProperty("Endpoint").GetString());
        Assert.Equal("rejected", usage.GetProperty("Outcome").GetString());
        Assert.Equal(status, usage.GetProperty("StatusCode").GetInt32());
        Assert.Equal("none", usage.GetProperty("UsageSource").GetString());
        Assert.Equal(JsonValueKind.Null, usage.GetProperty("TotalTokens").ValueKind);
        Assert.Equal(JsonValueKind.Null, usage.GetProperty("UpstreamRequestId").ValueKind);

        var line = Assert.Single(RefusalLines(), l => l.GetProperty("RequestId").GetString() == requestId);
        Assert.Equal("Warning", line.GetProperty("@l").GetString());
        Assert.Equal(TestKeys.TenantB, line.GetProperty("Tenant").GetString());
        Assert.Equal(TestKeys.TenantA, line.GetProperty("OwnerTenant").GetString());
        Assert.Equal(id, line.GetProperty("ObjectId").GetString());
        Assert.Equal(where == "conversation" ? "Conversation" : "Response", line.GetProperty("ObjectKind").GetString());
        Assert.Equal(where, line.GetProperty("Where").GetString());

        var logs = Gateway.Logs.AllText;
        Assert.DoesNotContain(SecretOfA, logs, StringComparison.Ordinal);
        Assert.DoesNotContain(SecretOfB, logs, StringComparison.Ordinal);
        Assert.DoesNotContain(TestKeys.KeyB, logs, StringComparison.Ordinal);
        Assert.Empty(UpstreamRequestsFrom(TestKeys.TenantB));
    }

    [Fact]
    public async Task UnknownIdRefusal_LogLineNamesNoOwner()
    {
        var unknown = NeverSeen.Response();

        using var refused = await B.GetAsync($"responses/{unknown}/input_items");

        await AssertErrorAsync(refused, HttpStatusCode.NotFound, $"Response with id '{unknown}' not found.");
        var line = Assert.Single(RefusalLines(), l => l.GetProperty("RequestId").GetString() == GatewayRequestId(refused));
        Assert.Equal(TestKeys.TenantB, line.GetProperty("Tenant").GetString());
        Assert.Equal("(unknown)", line.GetProperty("OwnerTenant").GetString());
        var usage = await Gateway.Logs.SingleUsageEventAsync(GatewayRequestId(refused));
        Assert.Equal("rejected", usage.GetProperty("Outcome").GetString());
        Assert.Equal(unknown, usage.GetProperty("ResponseId").GetString());
    }

    [Fact]
    public async Task OwnersOwnRequest_LeavesNoRefusalLine()
    {
        var id = await CreateResponseAsync(A);

        using var served = await A.GetAsync($"responses/{id}");

        Assert.Equal(HttpStatusCode.OK, served.StatusCode);
        var usage = await Gateway.Logs.SingleUsageEventAsync(GatewayRequestId(served));
        Assert.Equal("completed", usage.GetProperty("Outcome").GetString());
        Assert.Empty(RefusalLines());
    }

    private IReadOnlyList<JsonElement> RefusalLines() => Gateway.Logs.Named("IsolationRefused");
}
