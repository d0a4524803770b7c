using System.Net;
using System.Text;
using System.Text.Json;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Requests;

/// <summary>Every error the gateway makes itself is OpenAI's envelope with application/json, and nothing reaches the upstream.</summary>
public sealed class BadInputTests() : GatewayTestBed(c => c["Gateway:Limits:MaxRequestBodyBytes"] = "2048")
{
    [Theory]
    [InlineData("{\"model\":\"gpt-4o-mini\",", 400, "invalid_request_error")]
    [InlineData("[1,2]", 400, "invalid_request_error")]
    [InlineData("{\"model\":\"x\"} trailing", 400, "invalid_request_error")]
    public async Task Post_MalformedJson_400(string body, int status, string type)
    {
        using var client = Gateway.CreateClient();
        using var response = await client.PostAsync("responses", new StringContent(body, Encoding.UTF8, "application/json"));
        await AssertEnvelopeAsync(response, status, type);
    }

    [Fact]
    public async Task Post_BodyOverLimit_413()
    {
        using var client = Gateway.CreateClient();
        var body = $$"""{"model":"gpt-4o-mini","input":"{{new string('a', 5000)}}"}""";
        using var response = await client.PostAsync("responses", new StringContent(body, Encoding.UTF8, "application/json"));
        await AssertEnvelopeAsync(response, 413, "invalid_request_error");
    }

    [Fact]
    public async Task Post_ChunkedBodyOverLimit_413()
    {
        using var client = Gateway.CreateClient();
        var content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes($$"""{"model":"gpt-4o-mini","input":"{{new string('a', 5000)}}"}""")));
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        using var request = new HttpRequestMessage(HttpMethod.Post, "responses") { Content = content };
        request.Headers.TransferEncodingChunked = true;
        using var response = await client.SendAsync(request);
        await AssertEnvelopeAsync(response, 413, "invalid_request_error");
    }

    [Fact]
    public async Task Post_WrongContentType_415()
    {
        using var client = Gateway.CreateClient();
        using var response = await client.PostAsync("responses", new StringContent("model=gpt-4o-mini", Encoding.UTF8, "application/x-www-form-urlencoded"));
        await AssertEnvelopeAsync(response, 415, "invalid_request_error");
    }

    [Theory]
    [InlineData("gzip")]
    [InlineData("br")]
    [InlineData("identity, gzip")]
    [InlineData("GZIP")]
    public async Task Post_EncodedBody_415NothingForwarded(string encoding)
    {
        // The body is plain JSON the gateway would read and enforce, while an upstream told it is encoded reads other bytes.
        using var client = Gateway.CreateClient();
        using var content = new StringContent("""{"model":"gpt-4o-mini","input":"Hello"}""", Encoding.UTF8, "application/json");
        content.Headers.TryAddWithoutValidation("Content-Encoding", encoding);
        using var response = await client.PostAsync("responses", content);
        var error = await AssertEnvelopeAsync(response, 415, "invalid_request_error");
        Assert.Equal("unsupported_content_encoding", error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task Post_IdentityEncoding_Forwarded()
    {
        using var client = Gateway.CreateClient();
        using var content = new StringContent("""{"model":"gpt-4o-mini","input":"Hello"}""", Encoding.UTF8, "application/json");
        content.Headers.TryAddWithoutValidation("Content-Encoding", "identity");
        using var response = await client.PostAsync("responses", content);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("\"input\":\"Hello\"", Assert.Single(Upstream.Requests).BodyText, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Post_MissingKey_401InvalidApiKey()
    {
        using var client = Gateway.CreateClient(key: null);
        using var response = await client.PostAsync("responses", new StringContent("{}", Encoding.UTF8, "application/json"));
        var error = await AssertEnvelopeAsync(response, 401, "invalid_request_error");
        Assert.Equal("invalid_api_key", error.GetProperty("code").GetString());
    }

    private async Task<JsonElement> AssertEnvelopeAsync(HttpResponseMessage response, int status, string type)
    {
        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        Assert.True(response.Headers.Contains("x-request-id"));
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal(type, error.GetProperty("type").GetString());
        Assert.True(error.TryGetProperty("param", out _));
        Assert.True(error.TryGetProperty("code", out _));
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
        Assert.Empty(Upstream.Requests);
        return error;
    }
}
