using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Gateway.Tests.Infrastructure;
using Gateway.Usage;
using static Gateway.Tests.Quotas.QuotaTestKit;

namespace Gateway.Tests.Requests;

/// <summary>
/// Issue #11, items 1, 2, 4 and 6, as reproduced there: the gateway decides on the value the upstream reads and edits
/// that value, refuses what it cannot read the upstream's way, and never answers odd input with a 5xx.
/// Tenant A: output cap 8192 and a token budget (reservations); tenant B: no limits (the estimate path).
/// </summary>
public sealed class BodyReadingTests() : GatewayTestBed(c =>
{
    c["Gateway:Tenants:tenant-a:MaxOutputTokens"] = "8192";
    c["Gateway:Tenants:tenant-a:Limits:TokensPerMinute"] = "1000000";
})
{
    private static readonly string[] OutputLimitNames = ["max_output_tokens", "max_completion_tokens", "max_tokens"];

    private const string Messages = "\"messages\":[{\"role\":\"user\",\"content\":\"Hello there\"}]";

    public static TheoryData<string> ChatStreamOptions => new()
    {
        "\"stream_options\":null",
        "\"stream_options\":{}",
        "\"stream_options\":{\"include_usage\":null}",
        "\"stream_options\":{\"include_obfuscation\":false,\"include_usage\":false}",
        "\"stream_\\u006Fptions\":null",
    };

    [Theory]
    [MemberData(nameof(ChatStreamOptions))]
    public async Task ChatStream_StreamOptionsWithoutUsage_ChargedTheUpstreamsTokens(string streamOptions)
    {
        using var client = Gateway.CreateClient(TestKeys.KeyB);

        using var response = await client.SendAsync(Post("chat/completions", $$$"""{"model":"gpt-4o-mini",{{{Messages}}},"stream":true,{{{streamOptions}}}}"""));
        var text = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.DoesNotContain("\"prompt_tokens\"", text, StringComparison.Ordinal); // the usage the gateway asked for stays hidden
        var forwarded = LastWins(Assert.Single(Upstream.Requests).BodyText);
        Assert.True(forwarded.GetProperty("stream_options").GetProperty("include_usage").GetBoolean());
        var usage = await Gateway.Logs.SingleUsageEventAsync(RequestId(response)!);
        Assert.Equal("upstream", usage.GetProperty("UsageSource").GetString());
        Assert.Equal(8, usage.GetProperty("OutputTokens").GetInt64());
        Assert.True(usage.GetProperty("TotalTokens").GetInt64() > 8);
    }

    public static TheoryData<string, string, string> RefusedPolicyValues => new()
    {
        // Two stream_options (issue item 1): which one counts depends on the parser, so neither is guessed.
        { "chat/completions", $$"""{"model":"gpt-4o-mini",{{Messages}},"stream":true,"stream_options":{"include_usage":true},"stream_options":null}""", "stream_options" },
        { "chat/completions", $$$"""{"model":"gpt-4o-mini",{{{Messages}}},"stream":true,"stream_options":{"include_usage":true},"stream_\u006fptions":{}}""", "stream_options" },
        { "chat/completions", $$"""{"model":"gpt-4o-mini",{{Messages}},"stream":true,"stream_options":"include_usage"}""", "stream_options" },
        { "chat/completions", $$$"""{"model":"gpt-4o-mini",{{{Messages}}},"stream":true,"stream_options":{"include_usage":"yes"}}""", "stream_options.include_usage" },
        { "chat/completions", $$$"""{"model":"gpt-4o-mini",{{{Messages}}},"stream":true,"stream_options":{"include_usage":true,"include_usage":false}}""", "stream_options.include_usage" },
        { "chat/completions", $$"""{"model":"gpt-4o-mini",{{Messages}},"stream":"yes"}""", "stream" },
        { "chat/completions", $$"""{"model":"gpt-4o-mini",{{Messages}},"stream":false,"stream":true}""", "stream" },
        // Output limits (issue item 2).
        { "responses", """{"model":"gpt-4o-mini","input":"hi","max_output_tokens":100,"max_output_tokens":null}""", "max_output_tokens" },
        { "responses", """{"model":"gpt-4o-mini","input":"hi","max_output_tokens":"9000"}""", "max_output_tokens" },
        { "responses", """{"model":"gpt-4o-mini","input":"hi","max_output_tokens":9000.0}""", "max_output_tokens" },
        { "chat/completions", $$"""{"model":"gpt-4o-mini",{{Messages}},"max_completion_tokens":100,"max_tokens":9000}""", "max_tokens" },
        { "chat/completions", $$"""{"model":"gpt-4o-mini",{{Messages}},"max_tokens":100,"max_tokens":null}""", "max_tokens" },
        // n: read once, an integer from 1 to 128.
        { "chat/completions", $$"""{"model":"gpt-4o-mini",{{Messages}},"n":0}""", "n" },
        { "chat/completions", $$"""{"model":"gpt-4o-mini",{{Messages}},"n":"2"}""", "n" },
        { "chat/completions", $$"""{"model":"gpt-4o-mini",{{Messages}},"n":129}""", "n" },
        { "chat/completions", $$"""{"model":"gpt-4o-mini",{{Messages}},"n":1,"n":4}""", "n" },
        // The rest of the policy keys.
        { "responses", """{"model":"gpt-4o-mini","m\u006fdel":"gpt-4o","input":"hi"}""", "model" },
        { "responses", """{"model":["gpt-4o"],"input":"hi"}""", "model" },
        { "responses", """{"model":"gpt-4o-mini","input":"hi","background":1}""", "background" },
        { "responses", """{"model":"gpt-4o-mini","input":"hi","store":"false"}""", "store" },
        { "responses", """{"model":"gpt-4o-mini","input":"hi","previous_response_id":7}""", "previous_response_id" },
        { "responses", """{"model":"gpt-4o-mini","input":"hi","conversation":["conv_1"]}""", "conversation" },
        { "responses", """{"model":"gpt-4o-mini","input":"hi","conversation":{"id":"conv_1","id":"conv_2"}}""", "conversation.id" },
    };

    [Theory]
    [MemberData(nameof(RefusedPolicyValues))]
    public async Task PolicyValueTwiceOrOfTheWrongType_400NamingIt_NothingForwarded(string path, string body, string param)
    {
        using var client = Gateway.CreateClient();

        using var response = await client.SendAsync(Post(path, body));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = await ErrorAsync(response);
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.Empty(Upstream.Requests);
        Assert.Equal("rejected", (await Gateway.Logs.SingleUsageEventAsync(RequestId(response)!)).GetProperty("Outcome").GetString());
    }

    public static TheoryData<string, string> NullOutputLimits => new()
    {
        { "responses", """{"model":"gpt-4o-mini","input":"hi","max_output_tokens":null}""" },
        { "chat/completions", $$"""{"model":"gpt-4o-mini",{{Messages}},"max_completion_tokens":null}""" },
        { "chat/completions", $$"""{"model":"gpt-4o-mini",{{Messages}},"max_tokens":null}""" },
        { "chat/completions", $$"""{"model":"gpt-4o-mini",{{Messages}},"max_completion_tokens":null,"max_tokens":null}""" },
        { "chat/completions", $$"""{"model":"gpt-4o-mini",{{Messages}},"max_tokens" : null ,"stream":true}""" },
    };

    [Theory]
    [MemberData(nameof(NullOutputLimits))]
    public async Task OutputLimitNull_TheCapIsTheValueTheUpstreamReads_AndStopsThere(string path, string body)
    {
        using var client = Gateway.CreateClient();

        using var response = await client.SendAsync(Post(path, body, ("x-fake-deltas", "9000")));
        await response.Content.LoadIntoBufferAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var estimate = new TokenCounter().EstimateInput(Encoding.UTF8.GetBytes(body), 64 * 1024);
        Assert.Equal((1_000_000 - estimate - 8192).ToString(CultureInfo.InvariantCulture), Header(response, "x-ratelimit-remaining-tokens"));
        var forwarded = LastWins(Assert.Single(Upstream.Requests).BodyText);
        var limits = OutputLimitNames.Where(name => forwarded.TryGetProperty(name, out _)).Select(name => forwarded.GetProperty(name)).ToArray();
        Assert.NotEmpty(limits);
        Assert.All(limits, limit => Assert.Equal(8192, limit.GetInt32()));
        var usage = await Gateway.Logs.SingleUsageEventAsync(RequestId(response)!);
        Assert.Equal(8192, usage.GetProperty("OutputTokens").GetInt64());
    }

    [Fact]
    public async Task ChatN_MultipliesTheOutputReservation()
    {
        using var client = Gateway.CreateClient();
        var body = $$"""{"model":"gpt-4o-mini",{{Messages}},"max_completion_tokens":100,"n":3}""";

        using var response = await client.SendAsync(Post("chat/completions", body));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var estimate = new TokenCounter().EstimateInput(Encoding.UTF8.GetBytes(body), 64 * 1024);
        Assert.Equal((1_000_000 - estimate - 300).ToString(CultureInfo.InvariantCulture), Header(response, "x-ratelimit-remaining-tokens"));
    }

    [Fact]
    public async Task OutputLimitBeyondAnyModel_ReservedClamped_NotOverflowedIntoANegativeReservation()
    {
        await using var bed = await Quotas.QuotaBed.StartAsync("memory", c => Limits(c, TestKeys.TenantB, tpm: 1_000_000));
        using var limited = bed.Gateway.CreateClient(TestKeys.KeyB);

        using var response = await limited.SendAsync(Post("responses", """{"model":"gpt-4o-mini","input":"hi","max_output_tokens":9223372036854775807}"""));

        Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
        Assert.StartsWith("Request too large for tokens per minute", (await ErrorAsync(response)).GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Empty(bed.Upstream.Requests);
    }

    public static TheoryData<string, bool> InvalidText => new()
    {
        { """{"model":"\ud800","input":"hi"}""", false },
        { """{"model":"gpt-4o-mini","input":"\udc00","stream":true}""", false },
        { """{"model":"gpt-4o-mini","input":"ok \ud83d\u0041 then","stream":true}""", false },
        { """{"model":"gpt-4o-mini","m\ud800":1,"input":"hi"}""", false },
        { """{"model":"gpt-4o-mini","input":[{"role":"user","content":[{"type":"input_text","te\udfffxt":"hi"}]}]}""", false },
        { """{"model":"gpt-4o-mini","input":"hi","conversation":{"id":"conv_\ud800"}}""", false },
        { """{"model":"gpt-4o-mini","input":"caf\u00e9 \ud83d\ude00 fine"}""", true },
    };

    [Theory]
    [MemberData(nameof(InvalidText))]
    public async Task UnpairedSurrogateEscape_400InvalidRequest_NeverA500(string body, bool valid)
    {
        using var client = Gateway.CreateClient(TestKeys.KeyB); // no token limits: the cut-stream estimate path

        using var response = await client.SendAsync(Post("responses", body));

        await AssertTextVerdictAsync(response, valid);
    }

    [Theory]
    [InlineData("""{"model":"\ud800","input":"hi"}""", "model")]
    [InlineData("""{"model":"gpt-4o-mini","input":[{"role":"user","content":"\udc00"}]}""", "input")]
    [InlineData("""{"model":"gpt-4o-mini","input":"hi","conversation":{"id":"conv_\ud800"}}""", "conversation")]
    [InlineData("""{"model":"gpt-4o-mini","m\ud800":1}""", null)]
    public async Task UnpairedSurrogateEscape_400NamesTheTopLevelMemberHoldingIt(string body, string? param)
    {
        using var client = Gateway.CreateClient(TestKeys.KeyB);

        using var response = await client.SendAsync(Post("responses", body));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = await ErrorAsync(response);
        Assert.Equal("invalid_text", error.GetProperty("code").GetString());
        Assert.Equal(param, error.GetProperty("param").GetString());
    }

    [Theory]
    [InlineData("model")]
    [InlineData("input")]
    [InlineData("metadata-key")]
    public async Task InvalidUtf8InAString_400InvalidRequest_NeverA500(string where)
    {
        using var client = Gateway.CreateClient(TestKeys.KeyB);
        byte[] bad = [0xC3, 0x28, 0xFF];
        byte[] body = where switch
        {
            "model" => [.. "{\"model\":\"gpt"u8, .. bad, .. "\",\"input\":\"hi\"}"u8],
            "input" => [.. "{\"model\":\"gpt-4o-mini\",\"stream\":true,\"input\":\"h"u8, .. bad, .. "\"}"u8],
            _ => [.. "{\"model\":\"gpt-4o-mini\",\"input\":\"hi\",\"metadata\":{\"k"u8, .. bad, .. "\":\"v\"}}"u8],
        };
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");

        using var response = await client.PostAsync("responses", content);

        await AssertTextVerdictAsync(response, valid: false);
    }

    public static TheoryData<string, string> OverlongIds => new()
    {
        { $$"""{"model":"{{new string('m', 257)}}","input":"hi"}""", "model" },
        { $$"""{"model":"{{new string('m', 43)}}\u{{"006d"}}{{new string('m', 213)}}","input":"hi"}""", "model" },
        { $$"""{"model":"gpt-4o-mini","input":"hi","previous_response_id":"resp_{{new string('a', 252)}}"}""", "previous_response_id" },
        { $$"""{"model":"gpt-4o-mini","input":"hi","conversation":"conv_{{new string('a', 252)}}"}""", "conversation" },
        { $$$"""{"model":"gpt-4o-mini","input":"hi","conversation":{"id":"conv_{{{new string('a', 252)}}}"}}""", "conversation" },
    };

    [Theory]
    [MemberData(nameof(OverlongIds))]
    public async Task IdOver256Characters_400NamingTheParameter(string body, string param)
    {
        using var client = Gateway.CreateClient();

        using var response = await client.SendAsync(Post("responses", body));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = await ErrorAsync(response);
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.Equal("string_above_max_length", error.GetProperty("code").GetString());
        Assert.Empty(Upstream.Requests);
    }

    [Fact]
    public async Task ModelOf256Characters_Forwarded()
    {
        using var client = Gateway.CreateClient(TestKeys.KeyB);
        var model = new string('m', 256);

        using var response = await client.SendAsync(Post("responses", $$"""{"model":"{{model}}","input":"hi"}"""));

        Assert.NotEqual(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Single(Upstream.Requests);
    }

    [Fact]
    public async Task ThreeMegabyteModel_400_NeverLoggedWhole()
    {
        using var client = Gateway.CreateClient();
        var model = new string('q', 3 * 1024 * 1024);

        using var response = await client.SendAsync(Post("responses", $$"""{"model":"{{model}}","input":"hi"}"""));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("model", (await ErrorAsync(response)).GetProperty("param").GetString());
        var usage = await Gateway.Logs.SingleUsageEventAsync(RequestId(response)!);
        Assert.Equal(JsonValueKind.Null, usage.GetProperty("RequestedModel").ValueKind);
        Assert.DoesNotContain(new string('q', 257), Gateway.Logs.AllText, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("responses/resp_{0}", "response_id")]
    [InlineData("responses/resp_{0}/input_items", "response_id")]
    [InlineData("conversations/conv_{0}", "conversation_id")]
    [InlineData("conversations/conv_1/items/msg_{0}", "item_id")]
    [InlineData("chat/completions/chatcmpl-{0}", "completion_id")]
    [InlineData("models/gpt-{0}", "model")]
    public async Task PathIdOver256Characters_400NamingTheParameter(string template, string param)
    {
        using var client = Gateway.CreateClient();

        using var response = await client.GetAsync(string.Format(CultureInfo.InvariantCulture, template, new string('a', 260)));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = await ErrorAsync(response);
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.Equal("string_above_max_length", error.GetProperty("code").GetString());
        Assert.Empty(Upstream.Requests);
    }

    private async Task AssertTextVerdictAsync(HttpResponseMessage response, bool valid)
    {
        var usage = await Gateway.Logs.SingleUsageEventAsync(RequestId(response)!);
        Assert.DoesNotContain(Gateway.Logs.Events, e => e.TryGetProperty("@l", out var level) && level.GetString() is "Error" or "Fatal");
        if (valid)
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return;
        }

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = await ErrorAsync(response);
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Equal("invalid_text", error.GetProperty("code").GetString());
        Assert.Empty(Upstream.Requests);
        Assert.Equal("rejected", usage.GetProperty("Outcome").GetString());
    }

    /// <summary>The body as a last-wins parser (the upstream's, the fake's) reads it.</summary>
    private static JsonElement LastWins(string json) => JsonDocument.Parse(json).RootElement.Clone();
}
