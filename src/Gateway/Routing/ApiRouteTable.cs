using System.Buffers;

namespace Gateway.Routing;

/// <summary>
/// The allow-list of OpenAI operations the gateway forwards. Matching is by hand on path segments: it is
/// on every request, allocation-light, and it also extracts the object id that tenant isolation checks.
/// Files, batches, fine-tuning, admin and every other API stay unreachable with the shared upstream key.
/// </summary>
internal static class ApiRouteTable
{
    public static readonly ApiRoute ResponsesCreate = new("responses.create", BodyPolicy.JsonRequired, UsageShape.Responses, CreatesObject: ObjectKind.Response, CarriesModel: true);
    public static readonly ApiRoute ResponsesRetrieve = new("responses.retrieve", BodyPolicy.None, UsageShape.Responses, PathObject: ObjectKind.Response);
    public static readonly ApiRoute ResponsesDelete = new("responses.delete", BodyPolicy.None, UsageShape.None, PathObject: ObjectKind.Response);
    public static readonly ApiRoute ResponsesCancel = new("responses.cancel", BodyPolicy.JsonOptional, UsageShape.Responses, PathObject: ObjectKind.Response);
    public static readonly ApiRoute ResponsesInputItems = new("responses.input_items", BodyPolicy.None, UsageShape.None, PathObject: ObjectKind.Response);
    public static readonly ApiRoute ResponsesInputTokens = new("responses.input_tokens", BodyPolicy.JsonRequired, UsageShape.None, CarriesModel: true);
    public static readonly ApiRoute ResponsesCompact = new("responses.compact", BodyPolicy.JsonRequired, UsageShape.Responses, CarriesModel: true);
    public static readonly ApiRoute ConversationsCreate = new("conversations.create", BodyPolicy.JsonOptional, UsageShape.None, CreatesObject: ObjectKind.Conversation);
    public static readonly ApiRoute ConversationsRetrieve = new("conversations.retrieve", BodyPolicy.None, UsageShape.None, PathObject: ObjectKind.Conversation);
    public static readonly ApiRoute ConversationsUpdate = new("conversations.update", BodyPolicy.JsonRequired, UsageShape.None, PathObject: ObjectKind.Conversation);
    public static readonly ApiRoute ConversationsDelete = new("conversations.delete", BodyPolicy.None, UsageShape.None, PathObject: ObjectKind.Conversation);
    public static readonly ApiRoute ConversationsItemsRead = new("conversations.items", BodyPolicy.None, UsageShape.None, PathObject: ObjectKind.Conversation);
    public static readonly ApiRoute ConversationsItemsWrite = new("conversations.items", BodyPolicy.JsonOptional, UsageShape.None, PathObject: ObjectKind.Conversation);
    public static readonly ApiRoute ChatCompletionsCreate = new("chat.completions", BodyPolicy.JsonRequired, UsageShape.Chat, CreatesObject: ObjectKind.ChatCompletion, CarriesModel: true);
    public static readonly ApiRoute ChatCompletionsList = new("chat.completions.list", BodyPolicy.None, UsageShape.None, IsListing: true);
    public static readonly ApiRoute ChatCompletionsRetrieve = new("chat.completions.retrieve", BodyPolicy.None, UsageShape.None, PathObject: ObjectKind.ChatCompletion);
    public static readonly ApiRoute ChatCompletionsUpdate = new("chat.completions.update", BodyPolicy.JsonRequired, UsageShape.None, PathObject: ObjectKind.ChatCompletion);
    public static readonly ApiRoute ChatCompletionsDelete = new("chat.completions.delete", BodyPolicy.None, UsageShape.None, PathObject: ObjectKind.ChatCompletion);
    public static readonly ApiRoute ChatCompletionsMessages = new("chat.completions.messages", BodyPolicy.None, UsageShape.None, PathObject: ObjectKind.ChatCompletion);
    public static readonly ApiRoute Embeddings = new("embeddings", BodyPolicy.JsonRequired, UsageShape.Embeddings, CarriesModel: true);
    public static readonly ApiRoute ModelsList = new("models.list", BodyPolicy.None, UsageShape.None);
    public static readonly ApiRoute ModelsRetrieve = new("models.retrieve", BodyPolicy.None, UsageShape.None);
    public static readonly ApiRoute GatewayQuota = new("gateway.quota", BodyPolicy.None, UsageShape.None, IsGatewayLocal: true);

    private const int MaxIdLength = Requests.RequestInspector.MaxIdLength;

    // Ids OpenAI issues are [A-Za-z0-9_-]; refusing anything else (%2F, "..") keeps encoded path tricks from reaching other APIs.
    private static readonly SearchValues<char> IdChars = SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
    private static readonly SearchValues<char> ModelIdChars = SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:");

    /// <summary>Matches <paramref name="method"/> and a path that starts with <c>/v1/</c>.</summary>
    public static bool TryMatch(string method, string path, out RouteMatch match)
    {
        match = default;
        if (!path.StartsWith("/v1/", StringComparison.Ordinal))
        {
            return false;
        }

        var rest = path.AsSpan(4).TrimEnd('/');
        Span<Range> parts = stackalloc Range[6];
        var count = rest.Split(parts, '/');
        if (count is 0 or > 5)
        {
            return false;
        }

        var first = rest[parts[0]];
        return first switch
        {
            "responses" => MatchResponses(method, rest, parts[..count], out match),
            "conversations" => MatchConversations(method, rest, parts[..count], out match),
            "chat" => MatchChat(method, rest, parts[..count], out match),
            "embeddings" => count == 1 && HttpMethods.IsPost(method) && Set(Embeddings, null, out match),
            "models" => MatchModels(method, path, count, out match),
            "gateway" => count == 2 && rest[parts[1]] is "quota" && HttpMethods.IsGet(method) && Set(GatewayQuota, null, out match),
            _ => false,
        };
    }

    private static bool MatchResponses(string method, ReadOnlySpan<char> rest, ReadOnlySpan<Range> parts, out RouteMatch match)
    {
        match = default;
        switch (parts.Length)
        {
            case 1:
                return HttpMethods.IsPost(method) && Set(ResponsesCreate, null, out match);
            case 2:
                var second = rest[parts[1]];
                if (HttpMethods.IsPost(method))
                {
                    return second switch
                    {
                        "input_tokens" => Set(ResponsesInputTokens, null, out match),
                        "compact" => Set(ResponsesCompact, null, out match),
                        _ => false,
                    };
                }

                if (!IsId(second))
                {
                    return false;
                }

                return HttpMethods.IsGet(method) ? Set(ResponsesRetrieve, second.ToString(), out match)
                    : HttpMethods.IsDelete(method) && Set(ResponsesDelete, second.ToString(), out match);
            case 3:
                var id = rest[parts[1]];
                var action = rest[parts[2]];
                if (!IsId(id))
                {
                    return false;
                }

                return action switch
                {
                    "cancel" => HttpMethods.IsPost(method) && Set(ResponsesCancel, id.ToString(), out match),
                    "input_items" => HttpMethods.IsGet(method) && Set(ResponsesInputItems, id.ToString(), out match),
                    _ => false,
                };
            default:
                return false;
        }
    }

    private static bool MatchConversations(string method, ReadOnlySpan<char> rest, ReadOnlySpan<Range> parts, out RouteMatch match)
    {
        match = default;
        if (parts.Length == 1)
        {
            return HttpMethods.IsPost(method) && Set(ConversationsCreate, null, out match);
        }

        var id = rest[parts[1]];
        if (!IsId(id))
        {
            return false;
        }

        var conversationId = id.ToString();
        if (parts.Length == 2)
        {
            return HttpMethods.IsGet(method) ? Set(ConversationsRetrieve, conversationId, out match)
                : HttpMethods.IsPost(method) ? Set(ConversationsUpdate, conversationId, out match)
                : HttpMethods.IsDelete(method) && Set(ConversationsDelete, conversationId, out match);
        }

        // /v1/conversations/{id}/items[/{item_id}]
        if (rest[parts[2]] is not "items" || parts.Length > 4 || (parts.Length == 4 && !IsId(rest[parts[3]])))
        {
            return false;
        }

        if (HttpMethods.IsGet(method) || HttpMethods.IsDelete(method))
        {
            return parts.Length == 4 && rest[parts[3]].Length > MaxIdLength && conversationId.Length <= MaxIdLength
                ? Overlong(ConversationsItemsRead, "item_id", out match)
                : Set(ConversationsItemsRead, conversationId, out match);
        }

        return parts.Length == 3 && HttpMethods.IsPost(method) && Set(ConversationsItemsWrite, conversationId, out match);
    }

    private static bool MatchChat(string method, ReadOnlySpan<char> rest, ReadOnlySpan<Range> parts, out RouteMatch match)
    {
        match = default;
        if (parts.Length < 2 || rest[parts[1]] is not "completions")
        {
            return false;
        }

        if (parts.Length == 2)
        {
            return HttpMethods.IsPost(method) ? Set(ChatCompletionsCreate, null, out match)
                : HttpMethods.IsGet(method) && Set(ChatCompletionsList, null, out match);
        }

        var id = rest[parts[2]];
        if (!IsId(id))
        {
            return false;
        }

        if (parts.Length == 3)
        {
            return HttpMethods.IsGet(method) ? Set(ChatCompletionsRetrieve, id.ToString(), out match)
                : HttpMethods.IsPost(method) ? Set(ChatCompletionsUpdate, id.ToString(), out match)
                : HttpMethods.IsDelete(method) && Set(ChatCompletionsDelete, id.ToString(), out match);
        }

        return parts.Length == 4 && rest[parts[3]] is "messages" && HttpMethods.IsGet(method)
            && Set(ChatCompletionsMessages, id.ToString(), out match);
    }

    private static bool MatchModels(string method, string path, int segmentCount, out RouteMatch match)
    {
        match = default;
        if (!HttpMethods.IsGet(method))
        {
            // DELETE /v1/models/{model} deletes a fine-tuned model of the whole organisation: never through the gateway.
            return false;
        }

        if (segmentCount == 1)
        {
            return Set(ModelsList, null, out match);
        }

        // Model ids may contain ':' and '.', and compatible servers use "org/model"; ".." segments never.
        var modelId = path.AsSpan("/v1/models/".Length).TrimEnd('/');
        foreach (var range in modelId.Split('/'))
        {
            var segment = modelId[range];
            if (segment.IsEmpty || segment.ContainsAnyExcept(ModelIdChars) || segment.SequenceEqual("..") || segment.SequenceEqual("."))
            {
                return false;
            }
        }

        return modelId.Length > MaxIdLength ? Overlong(ModelsRetrieve, "model", out match) : Set(ModelsRetrieve, null, out match);
    }

    // Any length is matched, so that an overlong id is answered 400 naming its parameter rather than 404.
    private static bool IsId(ReadOnlySpan<char> segment) =>
        segment.Length > 0 && !segment.ContainsAnyExcept(IdChars);

    private static bool Set(ApiRoute route, string? id, out RouteMatch match)
    {
        if (id is { Length: > MaxIdLength })
        {
            return Overlong(route, route.PathObject switch
            {
                ObjectKind.Response => "response_id",
                ObjectKind.Conversation => "conversation_id",
                _ => "completion_id",
            }, out match);
        }

        match = new RouteMatch(route, id);
        return true;
    }

    private static bool Overlong(ApiRoute route, string param, out RouteMatch match)
    {
        match = new RouteMatch(route, null, param);
        return true;
    }
}
