using System.Globalization;
using Gateway.Routing;

namespace Gateway.Tests.Routing;

public sealed class ApiRouteTableTests
{
    [Theory]
    [InlineData("POST", "/v1/responses", "responses.create", null)]
    [InlineData("GET", "/v1/responses/resp_123", "responses.retrieve", "resp_123")]
    [InlineData("DELETE", "/v1/responses/resp_123", "responses.delete", "resp_123")]
    [InlineData("POST", "/v1/responses/resp_123/cancel", "responses.cancel", "resp_123")]
    [InlineData("GET", "/v1/responses/resp_123/input_items", "responses.input_items", "resp_123")]
    [InlineData("POST", "/v1/responses/input_tokens", "responses.input_tokens", null)]
    [InlineData("POST", "/v1/responses/compact", "responses.compact", null)]
    [InlineData("POST", "/v1/conversations", "conversations.create", null)]
    [InlineData("GET", "/v1/conversations/conv_1", "conversations.retrieve", "conv_1")]
    [InlineData("POST", "/v1/conversations/conv_1", "conversations.update", "conv_1")]
    [InlineData("DELETE", "/v1/conversations/conv_1", "conversations.delete", "conv_1")]
    [InlineData("GET", "/v1/conversations/conv_1/items", "conversations.items", "conv_1")]
    [InlineData("POST", "/v1/conversations/conv_1/items", "conversations.items", "conv_1")]
    [InlineData("DELETE", "/v1/conversations/conv_1/items/msg_1", "conversations.items", "conv_1")]
    [InlineData("POST", "/v1/chat/completions", "chat.completions", null)]
    [InlineData("GET", "/v1/chat/completions", "chat.completions.list", null)]
    [InlineData("GET", "/v1/chat/completions/chatcmpl-1", "chat.completions.retrieve", "chatcmpl-1")]
    [InlineData("GET", "/v1/chat/completions/chatcmpl-1/messages", "chat.completions.messages", "chatcmpl-1")]
    [InlineData("POST", "/v1/embeddings", "embeddings", null)]
    [InlineData("GET", "/v1/models", "models.list", null)]
    [InlineData("GET", "/v1/models/ft:gpt-4o-mini:org:custom:abc", "models.retrieve", null)]
    [InlineData("GET", "/v1/gateway/quota", "gateway.quota", null)]
    public void TryMatch_AllowedOperation_MatchesWithPathId(string method, string path, string endpoint, string? id)
    {
        Assert.True(ApiRouteTable.TryMatch(method, path, out var match));
        Assert.Equal(endpoint, match.Route.Endpoint);
        Assert.Equal(id, match.PathId);
    }

    [Theory]
    [InlineData("GET", "/v1/files")]
    [InlineData("POST", "/v1/files")]
    [InlineData("POST", "/v1/batches")]
    [InlineData("POST", "/v1/fine_tuning/jobs")]
    [InlineData("GET", "/v1/organization/users")]
    [InlineData("POST", "/v1/images/generations")]
    [InlineData("DELETE", "/v1/models/ft:gpt-4o-mini:org:custom:abc")]
    [InlineData("GET", "/v1/responses")]
    [InlineData("PUT", "/v1/responses/resp_1")]
    [InlineData("GET", "/v1/responses/resp_1/other")]
    [InlineData("GET", "/v1/responses/resp_1%2F..%2F..%2Ffiles")]
    [InlineData("GET", "/v1/models/..")]
    [InlineData("GET", "/v1/conversations/conv_1/other")]
    [InlineData("GET", "/v2/responses")]
    public void TryMatch_AnythingElse_IsNotForwarded(string method, string path)
    {
        Assert.False(ApiRouteTable.TryMatch(method, path, out _));
    }

    [Theory]
    [InlineData("GET", "/v1/responses/resp_{0}", "response_id")]
    [InlineData("POST", "/v1/responses/resp_{0}/cancel", "response_id")]
    [InlineData("DELETE", "/v1/conversations/conv_{0}", "conversation_id")]
    [InlineData("POST", "/v1/conversations/conv_{0}/items", "conversation_id")]
    [InlineData("DELETE", "/v1/conversations/conv_1/items/msg_{0}", "item_id")]
    [InlineData("GET", "/v1/chat/completions/chatcmpl-{0}/messages", "completion_id")]
    [InlineData("GET", "/v1/models/gpt-{0}", "model")]
    public void TryMatch_IdOver256Characters_MatchedWithTheParameterToRefuse(string method, string template, string param)
    {
        var hole = template.IndexOf("{0}", StringComparison.Ordinal);
        var prefix = hole - template.LastIndexOf('/', hole) - 1; // "resp_", "chatcmpl-"...
        Assert.True(ApiRouteTable.TryMatch(method, string.Format(CultureInfo.InvariantCulture, template, new string('a', 256 - prefix)), out var longest));
        Assert.Null(longest.OverlongIdParam);

        Assert.True(ApiRouteTable.TryMatch(method, string.Format(CultureInfo.InvariantCulture, template, new string('a', 257 - prefix)), out var overlong));
        Assert.Equal(param, overlong.OverlongIdParam);
        Assert.Null(overlong.PathId);
    }
}
