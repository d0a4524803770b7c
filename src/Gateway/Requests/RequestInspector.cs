using System.Text.Json;
using Gateway.Errors;
using Gateway.Routing;

namespace Gateway.Requests;

/// <summary>
/// Reads the top-level fields of a JSON request body with <see cref="Utf8JsonReader"/>, skipping the
/// (possibly large) input without materialising it. Malformed JSON is a 400 in OpenAI's own words.
/// </summary>
internal static class RequestInspector
{
    public static RequestFacts? Inspect(ReadOnlySpan<byte> body, ApiRoute route, out OpenAIError? error)
    {
        error = null;
        var facts = new RequestFacts();
        try
        {
            var reader = new Utf8JsonReader(body, new JsonReaderOptions { MaxDepth = 256 });
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                error = OpenAIError.BadRequest("The request body must be a JSON object.");
                return null;
            }

            facts.RootObjectStart = (int)reader.TokenStartIndex;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                ReadProperty(ref reader, route, facts);
            }

            // Anything after the root object is malformed JSON; Read() throws on it.
            while (reader.Read())
            {
            }
        }
        catch (JsonException)
        {
            error = OpenAIError.InvalidJson();
            return null;
        }

        return facts;
    }

    private static void ReadProperty(ref Utf8JsonReader reader, ApiRoute route, RequestFacts facts)
    {
        if (reader.ValueTextEquals("model"u8))
        {
            reader.Read();
            facts.Model = reader.TokenType == JsonTokenType.String ? reader.GetString() : Skip(ref reader);
        }
        else if (reader.ValueTextEquals("stream"u8))
        {
            reader.Read();
            facts.Stream = reader.TokenType == JsonTokenType.True;
        }
        else if (reader.ValueTextEquals("background"u8))
        {
            reader.Read();
            facts.Background = reader.TokenType == JsonTokenType.True;
        }
        else if (reader.ValueTextEquals("store"u8))
        {
            reader.Read();
            facts.Store = reader.TokenType switch { JsonTokenType.True => true, JsonTokenType.False => false, _ => null };
        }
        else if (reader.ValueTextEquals("previous_response_id"u8))
        {
            reader.Read();
            facts.PreviousResponseId = reader.TokenType == JsonTokenType.String ? reader.GetString() : Skip(ref reader);
        }
        else if (reader.ValueTextEquals("conversation"u8))
        {
            reader.Read();
            facts.ConversationId = ReadConversation(ref reader);
        }
        else if (IsOutputLimit(ref reader, route, out var name))
        {
            reader.Read();
            // max_completion_tokens wins over the deprecated max_tokens, as at OpenAI.
            if (facts.MaxOutputTokensParam is "max_completion_tokens" && name == "max_tokens")
            {
                reader.Skip();
                return;
            }

            facts.MaxOutputTokensParam = name;
            if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var limit))
            {
                facts.MaxOutputTokens = limit;
                facts.MaxOutputTokensInvalid = false;
            }
            else
            {
                facts.MaxOutputTokens = null;
                facts.MaxOutputTokensInvalid = reader.TokenType != JsonTokenType.Null;
                reader.Skip();
            }
        }
        else if (route.Usage == UsageShape.Chat && reader.ValueTextEquals("stream_options"u8))
        {
            reader.Read();
            ReadStreamOptions(ref reader, facts);
        }
        else
        {
            reader.Read();
            reader.Skip();
        }
    }

    private static bool IsOutputLimit(ref Utf8JsonReader reader, ApiRoute route, out string name)
    {
        name = "";
        if (route.Usage == UsageShape.Responses && reader.ValueTextEquals("max_output_tokens"u8))
        {
            name = "max_output_tokens";
        }
        else if (route.Usage == UsageShape.Chat && reader.ValueTextEquals("max_completion_tokens"u8))
        {
            name = "max_completion_tokens";
        }
        else if (route.Usage == UsageShape.Chat && reader.ValueTextEquals("max_tokens"u8))
        {
            name = "max_tokens";
        }

        return name.Length > 0;
    }

    private static string? ReadConversation(ref Utf8JsonReader reader)
    {
        if (reader.TokenType == JsonTokenType.String)
        {
            return reader.GetString();
        }

        if (reader.TokenType != JsonTokenType.StartObject)
        {
            return Skip(ref reader);
        }

        string? id = null;
        var depth = reader.CurrentDepth;
        while (reader.Read() && !(reader.TokenType == JsonTokenType.EndObject && reader.CurrentDepth == depth))
        {
            if (reader.TokenType == JsonTokenType.PropertyName && reader.CurrentDepth == depth + 1 && reader.ValueTextEquals("id"u8))
            {
                reader.Read();
                id = reader.TokenType == JsonTokenType.String ? reader.GetString() : Skip(ref reader);
            }
            else if (reader.TokenType == JsonTokenType.PropertyName)
            {
                reader.Read();
                reader.Skip();
            }
        }

        return id;
    }

    private static void ReadStreamOptions(ref Utf8JsonReader reader, RequestFacts facts)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            reader.Skip();
            return;
        }

        facts.StreamOptionsObjectStart = (int)reader.TokenStartIndex;
        var depth = reader.CurrentDepth;
        while (reader.Read() && !(reader.TokenType == JsonTokenType.EndObject && reader.CurrentDepth == depth))
        {
            if (reader.TokenType != JsonTokenType.PropertyName)
            {
                continue;
            }

            var isIncludeUsage = reader.ValueTextEquals("include_usage"u8);
            reader.Read();
            if (isIncludeUsage && reader.TokenType is JsonTokenType.True or JsonTokenType.False or JsonTokenType.Null)
            {
                facts.IncludeUsage = reader.TokenType == JsonTokenType.True;
                facts.IncludeUsageValueStart = (int)reader.TokenStartIndex;
                facts.IncludeUsageValueLength = reader.TokenType switch { JsonTokenType.True => 4, JsonTokenType.False => 5, _ => 4 };
            }
            else
            {
                reader.Skip();
            }
        }
    }

    private static string? Skip(ref Utf8JsonReader reader)
    {
        reader.Skip();
        return null;
    }
}
