using System.Buffers;
using System.Text;
using System.Text.Json;
using Gateway.Configuration;
using Gateway.Requests;
using Gateway.Routing;
using Gateway.Tenants;

namespace Gateway.Tests.Requests;

/// <summary>
/// <see cref="RequestBodyEditor"/> and the edits <see cref="RequestPolicy"/> asks of it, on their own: every byte the
/// gateway does not mean to change stays as the client sent it, and the result is valid JSON the upstream reads as
/// the gateway believes.
/// </summary>
public sealed class RequestBodyEditorTests
{
    private static PooledBody Body(string json)
    {
        var bytes = Encoding.UTF8.GetBytes(json);
        var buffer = ArrayPool<byte>.Shared.Rent(bytes.Length);
        bytes.CopyTo(buffer, 0);
        return new PooledBody(buffer, bytes.Length);
    }

    private static string Text(PooledBody body) => Encoding.UTF8.GetString(body.Span);

    private static string Edited(string json, params BodyEdit[] edits)
    {
        using var body = Body(json);
        RequestBodyEditor.Apply(body, [.. edits]);
        return Text(body);
    }

    [Fact]
    public void Apply_NoEdits_BodyUntouched()
    {
        using var body = Body("""{ "model" : "gpt-4o" }""");
        RequestBodyEditor.Apply(body, null);
        RequestBodyEditor.Apply(body, []);

        Assert.Equal("""{ "model" : "gpt-4o" }""", Text(body));
    }

    [Fact]
    public void Apply_Overwrite_ReplacesExactlyTheSlot()
    {
        const string json = """{"a":1,"max_output_tokens":null,  "z" : 2.50}""";
        var start = json.IndexOf("null", StringComparison.Ordinal);

        Assert.Equal("""{"a":1,"max_output_tokens":500,  "z" : 2.50}""",
            Edited(json, BodyEdit.Overwrite(new JsonValueSlot(start, 4, JsonTokenType.Null), "500"u8)));
    }

    [Theory]
    [InlineData("""{"model":"m"}""", """{"cap":1,"model":"m"}""")]
    [InlineData("""{}""", """{"cap":1}""")]
    [InlineData("""{   }""", """{"cap":1   }""")]
    [InlineData("""{ "model":"m"}""", """{"cap":1, "model":"m"}""")]
    public void Apply_AddMember_CommaOnlyWhenMembersFollow(string json, string expected)
    {
        var edited = Edited(json, BodyEdit.AddMember(0, "\"cap\":1"u8));

        Assert.Equal(expected, edited);
        using var _ = JsonDocument.Parse(edited);
    }

    [Fact]
    public void Apply_TwoMembersAddedToOneObject_JoinedInTheOrderAdded()
    {
        var edited = Edited("""{}""", BodyEdit.AddMember(0, "\"first\":1"u8), BodyEdit.AddMember(0, "\"second\":2"u8));

        Assert.Equal("""{"first":1,"second":2}""", edited);
    }

    [Fact]
    public void Apply_EditsGivenOutOfOrder_AppliedAtTheirPositions()
    {
        const string json = """{"b":null,"s":{"include_usage":null}}""";
        var b = json.IndexOf("null", StringComparison.Ordinal);
        var usage = json.LastIndexOf("null", StringComparison.Ordinal);

        var edited = Edited(json,
            BodyEdit.Overwrite(new JsonValueSlot(usage, 4, JsonTokenType.Null), "true"u8),
            BodyEdit.AddMember(0, "\"cap\":9"u8),
            BodyEdit.Overwrite(new JsonValueSlot(b, 4, JsonTokenType.Null), "12345"u8));

        Assert.Equal("""{"cap":9,"b":12345,"s":{"include_usage":true}}""", edited);
    }

    [Fact]
    public void Apply_LargeBodyAroundTheEdit_EveryOtherByteKept()
    {
        var input = string.Concat(Enumerable.Repeat("é\\u00e9 1.0e3 ", 20_000));
        var json = $$"""{"input":"{{input}}","max_output_tokens":null}""";
        var slot = json.LastIndexOf("null", StringComparison.Ordinal);
        var slotInBytes = Encoding.UTF8.GetByteCount(json.AsSpan(0, slot));

        var edited = Edited(json, BodyEdit.Overwrite(new JsonValueSlot(slotInBytes, 4, JsonTokenType.Null), "64"u8));

        Assert.Equal(json.Replace("\"max_output_tokens\":null", "\"max_output_tokens\":64", StringComparison.Ordinal), edited);
    }

    private static Tenant TenantWith(int? maxOutputTokens = null, params string[] models) =>
        new("tenant-a", new TenantOptions { MaxOutputTokens = maxOutputTokens, Models = [.. models] });

    /// <summary>Inspects, applies the policy and returns the forwarded body, checking the upstream would read what the gateway believes.</summary>
    private static (string Forwarded, RequestFacts Facts, bool HideUsage) Policy(string json, ApiRoute route, Tenant tenant)
    {
        using var body = Body(json);
        var facts = RequestInspector.Inspect(body.Span, route, out var inspectError);
        Assert.Null(inspectError);
        Assert.Null(RequestPolicy.Apply(body, facts!, route, tenant, out var hide));
        var forwarded = Text(body);

        // What the upstream reads from the edited body agrees with the facts the gateway keeps.
        var reread = RequestInspector.Inspect(body.Span, route, out var rereadError);
        Assert.Null(rereadError);
        Assert.Equal(facts!.MaxOutputTokens, reread!.MaxOutputTokens);
        Assert.Equal(facts.IncludeUsage, reread.IncludeUsage);
        return (forwarded, facts, hide);
    }

    [Fact]
    public void Policy_CapAndNoLimitInTheBody_CapAdded()
    {
        var (forwarded, facts, _) = Policy("""{"model":"gpt-4o","input":"hi"}""", ApiRouteTable.ResponsesCreate, TenantWith(maxOutputTokens: 300));

        Assert.Equal("""{"max_output_tokens":300,"model":"gpt-4o","input":"hi"}""", forwarded);
        Assert.Equal(300, facts.MaxOutputTokens);
    }

    [Fact]
    public void Policy_CapAndNullLimit_NullOverwrittenInPlace()
    {
        var (forwarded, _, _) = Policy("""{"model":"gpt-4o","max_output_tokens":null}""", ApiRouteTable.ResponsesCreate, TenantWith(maxOutputTokens: 300));

        Assert.Equal("""{"model":"gpt-4o","max_output_tokens":300}""", forwarded);
    }

    [Fact]
    public void Policy_LimitWithinCap_BodyUntouched()
    {
        const string json = """{"model":"gpt-4o", "max_output_tokens" : 20}""";

        Assert.Equal(json, Policy(json, ApiRouteTable.ResponsesCreate, TenantWith(maxOutputTokens: 300)).Forwarded);
    }

    [Theory]
    [InlineData("""{"max_output_tokens":301}""", "max_output_tokens")]
    public void Policy_LimitAboveCap_RefusedNamingTheParam(string json, string param)
    {
        using var body = Body(json);
        var facts = RequestInspector.Inspect(body.Span, ApiRouteTable.ResponsesCreate, out _)!;

        var error = RequestPolicy.Apply(body, facts, ApiRouteTable.ResponsesCreate, TenantWith(maxOutputTokens: 300), out _);

        Assert.Equal("max_output_tokens_exceeded", error?.Code);
        Assert.Equal(param, error?.Param);
        Assert.Equal(json, Text(body));
    }

    [Fact]
    public void Policy_ChatLegacyLimitAboveCap_RefusedEvenWhenTheOtherIsWithin()
    {
        using var body = Body("""{"max_completion_tokens":10,"max_tokens":1000}""");
        var facts = RequestInspector.Inspect(body.Span, ApiRouteTable.ChatCompletionsCreate, out _)!;

        var error = RequestPolicy.Apply(body, facts, ApiRouteTable.ChatCompletionsCreate, TenantWith(maxOutputTokens: 300), out _);

        Assert.Equal("max_tokens", error?.Param);
    }

    [Theory]
    [InlineData("""{"model":"gpt-4o","stream":true}""", """{"stream_options":{"include_usage":true},"model":"gpt-4o","stream":true}""")]
    [InlineData("""{"stream":true,"stream_options":null}""", """{"stream":true,"stream_options":{"include_usage":true}}""")]
    [InlineData("""{"stream":true,"stream_options":{"include_usage":false}}""", """{"stream":true,"stream_options":{"include_usage":true}}""")]
    [InlineData("""{"stream":true,"stream_options":{"include_usage":null}}""", """{"stream":true,"stream_options":{"include_usage":true}}""")]
    [InlineData("""{"stream":true,"stream_options":{}}""", """{"stream":true,"stream_options":{"include_usage":true}}""")]
    [InlineData("""{"stream":true,"stream_options":{"x":1}}""", """{"stream":true,"stream_options":{"include_usage":true,"x":1}}""")]
    public void Policy_ChatStreamWithoutUsage_UsageAskedForAndHidden(string json, string expected)
    {
        var (forwarded, facts, hide) = Policy(json, ApiRouteTable.ChatCompletionsCreate, TenantWith());

        Assert.Equal(expected, forwarded);
        Assert.True(facts.IncludeUsage);
        Assert.True(hide);
    }

    [Fact]
    public void Policy_ChatStreamAskingForUsage_BodyUntouchedAndUsageShown()
    {
        const string json = """{"stream":true,"stream_options":{"include_usage":true}}""";
        var (forwarded, _, hide) = Policy(json, ApiRouteTable.ChatCompletionsCreate, TenantWith());

        Assert.Equal(json, forwarded);
        Assert.False(hide);
    }

    [Fact]
    public void Policy_ChatStreamWithCapAndNoUsage_BothMembersAddedToTheRoot()
    {
        var (forwarded, facts, _) = Policy("""{"stream":true}""", ApiRouteTable.ChatCompletionsCreate, TenantWith(maxOutputTokens: 50));

        Assert.Equal("""{"stream_options":{"include_usage":true},"max_completion_tokens":50,"stream":true}""", forwarded);
        Assert.Equal(50, facts.MaxOutputTokens);
        Assert.Equal("max_completion_tokens", facts.MaxOutputTokensParam);
    }

    [Fact]
    public void Policy_ModelOutsideTheTenantsList_404ModelNotFound()
    {
        using var body = Body("""{"model":"gpt-4o"}""");
        var facts = RequestInspector.Inspect(body.Span, ApiRouteTable.ResponsesCreate, out _)!;

        var error = RequestPolicy.Apply(body, facts, ApiRouteTable.ResponsesCreate, TenantWith(null, "gpt-4o-mini"), out _);

        Assert.Equal(404, error?.StatusCode);
        Assert.Equal("model_not_found", error?.Code);
    }

    [Fact]
    public void Policy_NoModelWhileTheTenantHasAList_RefusedAsMissing()
    {
        using var body = Body("""{"prompt":{"id":"pmpt_1"}}""");
        var facts = RequestInspector.Inspect(body.Span, ApiRouteTable.ResponsesCreate, out _)!;

        var error = RequestPolicy.Apply(body, facts, ApiRouteTable.ResponsesCreate, TenantWith(null, "gpt-4o-mini"), out _);

        Assert.Equal("missing_required_parameter", error?.Code);
        Assert.Equal("model", error?.Param);
    }

    [Fact]
    public void Policy_CapWithTheLimitOnlyNestedInMetadata_CapAddedAtTheTopLevel()
    {
        var (forwarded, facts, _) = Policy("""{"metadata":{"max_output_tokens":999999},"model":"gpt-4o"}""", ApiRouteTable.ResponsesCreate, TenantWith(maxOutputTokens: 10));

        Assert.Equal("""{"max_output_tokens":10,"metadata":{"max_output_tokens":999999},"model":"gpt-4o"}""", forwarded);
        Assert.Equal(10, facts.MaxOutputTokens);
    }
}
