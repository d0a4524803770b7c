using System.Buffers;
using System.Text;
using Gateway.Requests;
using Gateway.Upstreams;

namespace Gateway.Tests.Upstreams;

public sealed class UpstreamModelRewriterTests
{
    [Theory]
    [InlineData("{\"model\":\"gpt-4.1-mini\",\"input\":\"hi\"}", "{\"model\":\"mini-ptu\",\"input\":\"hi\"}")]
    [InlineData("{ \"input\": {\"model\":\"keep\"}, \"model\" : \"gpt-4.1-mini\" }", "{ \"input\": {\"model\":\"keep\"}, \"model\" : \"mini-ptu\" }")]
    [InlineData("{\"model\":\"first\",\"x\":[1,{\"model\":\"n\"}],\"model\":\"gpt-4.1-mini\"}", "{\"model\":\"first\",\"x\":[1,{\"model\":\"n\"}],\"model\":\"mini-ptu\"}")]
    [InlineData("{\"mod\\u0065l\":\"gpt-4.1-mini\"}", "{\"mod\\u0065l\":\"mini-ptu\"}")]
    public void Rewrite_EffectiveTopLevelModel_OnlyThatStringChanges(string body, string expected)
    {
        using var pooled = Pooled(body);

        Assert.True(UpstreamModelRewriter.Rewrite(pooled, "mini-ptu"));

        Assert.Equal(expected, Encoding.UTF8.GetString(pooled.Span));
    }

    [Fact]
    public void Rewrite_DeploymentNameWithQuote_EscapedAsJson()
    {
        using var pooled = Pooled("{\"model\":\"m\"}");

        UpstreamModelRewriter.Rewrite(pooled, "a\"b");

        Assert.Equal("a\"b", System.Text.Json.JsonDocument.Parse(pooled.Memory).RootElement.GetProperty("model").GetString());
    }

    [Theory]
    [InlineData("{\"input\":\"no model\"}")]
    [InlineData("{\"model\":42}")]
    [InlineData("not json")]
    [InlineData("{\"model\":\"mini-ptu\"}")]
    [InlineData("{\"model\":\"x\",")]
    [InlineData("{\"model\":\"gpt-4.1-mini\",\"model\":42}")]
    public void Rewrite_NothingToRewrite_BodyUntouched(string body)
    {
        using var pooled = Pooled(body);

        Assert.False(UpstreamModelRewriter.Rewrite(pooled, "mini-ptu"));

        Assert.Equal(body, Encoding.UTF8.GetString(pooled.Span));
    }

    private static PooledBody Pooled(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var buffer = ArrayPool<byte>.Shared.Rent(bytes.Length);
        bytes.CopyTo(buffer, 0);
        return new PooledBody(buffer, bytes.Length);
    }
}
