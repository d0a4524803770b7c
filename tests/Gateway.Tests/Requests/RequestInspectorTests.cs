using System.Text;
using Gateway.Errors;
using Gateway.Requests;
using Gateway.Routing;

namespace Gateway.Tests.Requests;

/// <summary>
/// <see cref="RequestInspector"/> on its own, example by example (BodyReadingPropertyTests covers the combinations):
/// the facts it reads are the upstream's reading of the body, and every refusal is a 400 naming the parameter.
/// </summary>
public sealed class RequestInspectorTests
{
    private static RequestFacts Facts(string json, ApiRoute? route = null)
    {
        var facts = RequestInspector.Inspect(Encoding.UTF8.GetBytes(json), route ?? ApiRouteTable.ResponsesCreate, out var error);
        Assert.Null(error);
        return Assert.IsType<RequestFacts>(facts);
    }

    private static OpenAIError Refusal(string json, ApiRoute? route = null) => Refusal(Encoding.UTF8.GetBytes(json), route);

    private static OpenAIError Refusal(byte[] body, ApiRoute? route = null)
    {
        var facts = RequestInspector.Inspect(body, route ?? ApiRouteTable.ResponsesCreate, out var error);
        Assert.Null(facts);
        Assert.NotNull(error);
        Assert.Equal(400, error.StatusCode);
        Assert.Equal("invalid_request_error", error.Type);
        return error;
    }

    [Fact]
    public void Inspect_ResponsesBody_ReadsEveryPolicyField()
    {
        var facts = Facts("""{"input":[{"role":"user","content":"hi"}],"model":"gpt-4o-mini","stream":true,"background":false,"store":false,"previous_response_id":"resp_1","conversation":{"id":"conv_9"},"max_output_tokens":77}""");

        Assert.Equal("gpt-4o-mini", facts.Model);
        Assert.True(facts.Stream);
        Assert.False(facts.Background);
        Assert.False(facts.Store);
        Assert.Equal("resp_1", facts.PreviousResponseId);
        Assert.Equal("conv_9", facts.ConversationId);
        Assert.Equal(77, facts.OutputLimit);
        Assert.Equal(77, facts.MaxOutputTokens);
        Assert.Equal("max_output_tokens", facts.MaxOutputTokensParam);
        Assert.Equal(0, facts.RootObjectStart);
    }

    [Fact]
    public void Inspect_EscapedKeyAndValue_ReadAsTheUpstreamReadsThem()
    {
        var facts = Facts("""{"m\u006fdel":"g\u0070t-4o","str\u0065am":true}""");

        Assert.Equal("gpt-4o", facts.Model);
        Assert.True(facts.Stream);
    }

    [Theory]
    [InlineData("""{"model":"a","model":"b"}""", "model")]
    [InlineData("""{"model":"a","m\u006fdel":"b"}""", "model")]
    [InlineData("""{"stream":false,"stream":true}""", "stream")]
    [InlineData("""{"max_output_tokens":1,"max_output_tokens":null}""", "max_output_tokens")]
    public void Inspect_PolicyKeyTwice_RefusedAsDuplicate(string json, string param)
    {
        var error = Refusal(json);

        Assert.Equal("duplicate_parameter", error.Code);
        Assert.Equal(param, error.Param);
    }

    [Fact]
    public void Inspect_UnknownKeyTwice_Accepted()
    {
        Assert.Equal("gpt-4o", Facts("""{"metadata":{},"metadata":{},"model":"gpt-4o"}""").Model);
    }

    [Theory]
    [InlineData("""{"stream":"yes"}""", "stream")]
    [InlineData("""{"model":5}""", "model")]
    [InlineData("""{"max_output_tokens":"100"}""", "max_output_tokens")]
    [InlineData("""{"max_output_tokens":1.5}""", "max_output_tokens")]
    [InlineData("""{"previous_response_id":["resp_1"]}""", "previous_response_id")]
    public void Inspect_WrongTypedPolicyValue_RefusedAsInvalidType(string json, string param)
    {
        var error = Refusal(json);

        Assert.Equal("invalid_type", error.Code);
        Assert.Equal(param, error.Param);
    }

    [Fact]
    public void Inspect_NullPolicyValues_ReadAsAbsentWithTheirPositionKept()
    {
        const string json = """{"max_output_tokens":null,"previous_response_id":null,"store":null}""";
        var facts = Facts(json);

        Assert.Null(facts.OutputLimit);
        Assert.Null(facts.MaxOutputTokens);
        Assert.Null(facts.PreviousResponseId);
        Assert.Null(facts.Store);
        Assert.True(facts.OutputLimitSlot.IsNull);
        Assert.Equal("null", json.Substring(facts.OutputLimitSlot.Start, facts.OutputLimitSlot.Length));
    }

    [Fact]
    public void Inspect_ChatBody_LargerOfTheTwoLimitsIsTheOneThatCounts()
    {
        var facts = Facts("""{"model":"gpt-4o","max_completion_tokens":10,"max_tokens":40,"n":3,"stream":true,"stream_options":{"include_usage":false}}""", ApiRouteTable.ChatCompletionsCreate);

        Assert.Equal(10, facts.OutputLimit);
        Assert.Equal(40, facts.LegacyOutputLimit);
        Assert.Equal(40, facts.MaxOutputTokens);
        Assert.Equal("max_tokens", facts.MaxOutputTokensParam);
        Assert.Equal(3, facts.Choices);
        Assert.False(facts.IncludeUsage);
        Assert.True(facts.IncludeUsageSlot.IsPresent);
    }

    [Fact]
    public void Inspect_ChatKeysOnTheResponsesRoute_NotPolicyKeys()
    {
        var facts = Facts("""{"max_tokens":5,"max_tokens":6,"n":0}""");

        Assert.Null(facts.LegacyOutputLimit);
        Assert.Null(facts.Choices);
    }

    [Theory]
    [InlineData(0, "integer_below_min_value")]
    [InlineData(RequestInspector.MaxChoices + 1, "integer_above_max_value")]
    public void Inspect_ChatChoicesOutOfBounds_Refused(int n, string code)
    {
        var error = Refusal($$"""{"n":{{n}}}""", ApiRouteTable.ChatCompletionsCreate);

        Assert.Equal(code, error.Code);
        Assert.Equal("n", error.Param);
    }

    [Fact]
    public void Inspect_ModelLongerThanTheBound_Refused()
    {
        var error = Refusal($$"""{"model":"{{new string('m', RequestInspector.MaxIdLength + 1)}}"}""");

        Assert.Equal("string_above_max_length", error.Code);
        Assert.Equal("model", error.Param);
    }

    [Theory]
    [InlineData("""[1,2]""")]
    [InlineData("""   "model" """)]
    public void Inspect_BodyNotAnObject_Refused(string json)
    {
        Assert.Equal("The request body must be a JSON object.", Refusal(json).Message);
    }

    [Theory]
    [InlineData("""{"model":"gpt-4o",}""")]
    [InlineData("""{"model":"gpt-4o"} {}""")]
    [InlineData("""{"model":"gpt-4o\""")]
    public void Inspect_MalformedJson_RefusedWithoutAParam(string json)
    {
        var error = Refusal(json);

        Assert.Null(error.Param);
        Assert.NotEqual("invalid_text", error.Code);
    }

    [Fact]
    public void Inspect_InvalidUtf8AnywhereInTheBody_RefusedAsInvalidText()
    {
        var body = Encoding.UTF8.GetBytes("""{"model":"gpt-4o","input":"ab"}""");
        body[^4] = 0xC3; // a lead byte followed by 'b': not UTF-8

        Assert.Equal("invalid_text", Refusal(body).Code);
    }

    [Theory]
    [InlineData("""{"input":"\ud800"}""", null)]
    [InlineData("""{"input":"\udc00x"}""", null)]
    [InlineData("""{"model":"\ud83d"}""", "model")]
    public void Inspect_UnpairedSurrogateEscape_RefusedAsInvalidText(string json, string? param)
    {
        var error = Refusal(json);

        Assert.Equal("invalid_text", error.Code);
        if (param is not null)
        {
            Assert.Equal(param, error.Param);
        }
    }

    [Fact]
    public void Inspect_PairedSurrogateEscape_Accepted()
    {
        Assert.Equal("gpt-\U0001F600", Facts("""{"model":"gpt-\ud83d\ude00","input":"\ud83d\ude00"}""").Model);
    }

    [Theory]
    [InlineData("""{"max_output_tokens":1e3}""")]
    [InlineData("""{"max_output_tokens":99999999999999999999}""")]
    [InlineData("""{"max_output_tokens":true}""")]
    public void Inspect_OutputLimitNotAnInt64_RefusedRatherThanCoerced(string json)
    {
        var error = Refusal(json);

        Assert.Equal("invalid_type", error.Code);
        Assert.Equal("max_output_tokens", error.Param);
    }

    [Fact]
    public void Inspect_PolicyKeysNestedInOtherObjects_NotReadAsTheTopLevelOnes()
    {
        var facts = Facts("""{"metadata":{"model":"gpt-x","max_output_tokens":999999,"stream":"yes"},"text":{"stream":true},"model":"gpt-4o"}""");

        Assert.Equal("gpt-4o", facts.Model);
        Assert.False(facts.Stream);
        Assert.Null(facts.OutputLimit);
    }
}
