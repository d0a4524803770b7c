using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Unicode;
using Gateway.Errors;
using Gateway.Routing;

namespace Gateway.Requests;

/// <summary>
/// Reads the top-level fields of a JSON request body with <see cref="Utf8JsonReader"/>, skipping the
/// (possibly large) input without materialising it. Malformed JSON is a 400 in OpenAI's own words.
/// </summary>
/// <remarks>
/// The gateway must decide on the value the upstream acts on. Parsers disagree on duplicated keys (most keep the
/// last, some the first, some refuse), so a policy key sent twice, under any spelling (<c>"m\u006fdel"</c> is
/// <c>model</c>), is refused; <c>null</c> is read as the upstream reads it (absent) and kept as a position the
/// policy can overwrite; a wrong-typed policy value, which a lenient parser might coerce (<c>"stream":"yes"</c>), is
/// refused. Text that is not valid UTF-8 or holds an unpaired surrogate escape is refused anywhere in the body:
/// every later reader (token estimate, logs) can then read any string without throwing.
/// </remarks>
internal static class RequestInspector
{
    /// <summary>The longest <c>model</c> or object id accepted: OpenAI's ids are far shorter; logs and labels stay bounded.</summary>
    public const int MaxIdLength = 256;

    /// <summary>OpenAI's own bounds for chat <c>n</c>.</summary>
    public const int MaxChoices = 128;

    [Flags]
    private enum PolicyKey
    {
        None = 0,
        Model = 1,
        Stream = 2,
        Background = 4,
        Store = 8,
        PreviousResponseId = 16,
        Conversation = 32,
        OutputLimit = 64,
        LegacyOutputLimit = 128,
        Choices = 256,
        StreamOptions = 512,
    }

    public static RequestFacts? Inspect(ReadOnlySpan<byte> body, ApiRoute route, out OpenAIError? error)
    {
        error = null;
        if (!Utf8.IsValid(body))
        {
            error = InvalidText(null);
            return null;
        }

        var facts = new RequestFacts();
        string? param = null;
        try
        {
            var reader = new Utf8JsonReader(body, new JsonReaderOptions { MaxDepth = 256 });
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                error = OpenAIError.BadRequest("The request body must be a JSON object.");
                return null;
            }

            facts.RootObjectStart = (int)reader.TokenStartIndex;
            var seen = PolicyKey.None;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                param = null;
                if (!HasValidText(ref reader))
                {
                    error = InvalidText(null);
                    return null;
                }

                var key = Classify(ref reader, route);
                param = key == PolicyKey.None ? null : ParamName(key, route);
                if ((seen & key) != 0)
                {
                    error = Duplicate(param!);
                    return null;
                }

                seen |= key;
                var name = reader.ValueIsEscaped ? default : reader.ValueSpan;
                reader.Read();
                error = key == PolicyKey.None
                    ? (SkipValue(ref reader) ? null : InvalidText(name.Length is > 0 and <= 64 ? Encoding.UTF8.GetString(name) : null))
                    : ReadPolicyValue(ref reader, key, param!, facts);
                if (error is not null)
                {
                    return null;
                }
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
        catch (InvalidOperationException)
        {
            // GetString()/ValueTextEquals() on text that cannot become UTF-16 (the checks above should leave none).
            error = InvalidText(param);
            return null;
        }

        if (facts.LegacyOutputLimit > facts.OutputLimit || (facts.OutputLimit is null && facts.LegacyOutputLimit is not null))
        {
            facts.MaxOutputTokens = facts.LegacyOutputLimit;
            facts.MaxOutputTokensParam = "max_tokens";
        }
        else if (facts.OutputLimit is not null)
        {
            facts.MaxOutputTokens = facts.OutputLimit;
            facts.MaxOutputTokensParam = ParamName(PolicyKey.OutputLimit, route);
        }

        return facts;
    }

    public static OpenAIError InvalidType(string param, string expected, JsonTokenType actual) =>
        OpenAIError.BadRequest($"Invalid type for '{param}': expected {expected}, but got {Describe(actual)} instead.", param, "invalid_type");

    public static OpenAIError Duplicate(string param) =>
        OpenAIError.BadRequest($"Duplicate parameter '{param}': each parameter may be sent only once.", param, "duplicate_parameter");

    public static OpenAIError TooLong(string param) =>
        OpenAIError.BadRequest($"Invalid '{param}': string too long. Expected a string with maximum length {MaxIdLength}.", param, "string_above_max_length");

    public static OpenAIError InvalidText(string? param) =>
        OpenAIError.BadRequest(
            "The request body holds text that is not valid: invalid UTF-8, or a \\u escape that is an unpaired surrogate." +
            (param is null ? "" : $" (in '{param}')"), param, "invalid_text");

    private static PolicyKey Classify(ref Utf8JsonReader reader, ApiRoute route)
    {
        if (reader.ValueTextEquals("model"u8))
        {
            return PolicyKey.Model;
        }

        if (reader.ValueTextEquals("stream"u8))
        {
            return PolicyKey.Stream;
        }

        if (reader.ValueTextEquals("background"u8))
        {
            return PolicyKey.Background;
        }

        if (reader.ValueTextEquals("store"u8))
        {
            return PolicyKey.Store;
        }

        if (reader.ValueTextEquals("previous_response_id"u8))
        {
            return PolicyKey.PreviousResponseId;
        }

        if (reader.ValueTextEquals("conversation"u8))
        {
            return PolicyKey.Conversation;
        }

        if (route.Usage == UsageShape.Responses)
        {
            return reader.ValueTextEquals("max_output_tokens"u8) ? PolicyKey.OutputLimit : PolicyKey.None;
        }

        if (route.Usage != UsageShape.Chat)
        {
            return PolicyKey.None;
        }

        return reader.ValueTextEquals("max_completion_tokens"u8) ? PolicyKey.OutputLimit
            : reader.ValueTextEquals("max_tokens"u8) ? PolicyKey.LegacyOutputLimit
            : reader.ValueTextEquals("n"u8) ? PolicyKey.Choices
            : reader.ValueTextEquals("stream_options"u8) ? PolicyKey.StreamOptions
            : PolicyKey.None;
    }

    private static string ParamName(PolicyKey key, ApiRoute route) => key switch
    {
        PolicyKey.Model => "model",
        PolicyKey.Stream => "stream",
        PolicyKey.Background => "background",
        PolicyKey.Store => "store",
        PolicyKey.PreviousResponseId => "previous_response_id",
        PolicyKey.Conversation => "conversation",
        PolicyKey.OutputLimit => route.Usage == UsageShape.Chat ? "max_completion_tokens" : "max_output_tokens",
        PolicyKey.LegacyOutputLimit => "max_tokens",
        PolicyKey.Choices => "n",
        _ => "stream_options",
    };

    private static OpenAIError? ReadPolicyValue(ref Utf8JsonReader reader, PolicyKey key, string param, RequestFacts facts)
    {
        OpenAIError? error;
        switch (key)
        {
            case PolicyKey.Model:
                if (reader.TokenType != JsonTokenType.String)
                {
                    return InvalidType(param, "a string", reader.TokenType);
                }

                error = ReadBoundedString(ref reader, param, out var model);
                facts.Model = model;
                return error;
            case PolicyKey.Stream:
                error = ReadBoolean(ref reader, param, out var stream);
                facts.Stream = stream == true;
                return error;
            case PolicyKey.Background:
                error = ReadBoolean(ref reader, param, out var background);
                facts.Background = background == true;
                return error;
            case PolicyKey.Store:
                error = ReadBoolean(ref reader, param, out var store);
                facts.Store = store;
                return error;
            case PolicyKey.PreviousResponseId:
                if (reader.TokenType == JsonTokenType.Null)
                {
                    return null;
                }

                if (reader.TokenType != JsonTokenType.String)
                {
                    return InvalidType(param, "a string", reader.TokenType);
                }

                error = ReadBoundedString(ref reader, param, out var previous);
                facts.PreviousResponseId = previous;
                return error;
            case PolicyKey.Conversation:
                return ReadConversation(ref reader, facts);
            case PolicyKey.OutputLimit:
                error = ReadInteger(ref reader, param, out var limit, out var limitSlot);
                (facts.OutputLimit, facts.OutputLimitSlot) = (limit, limitSlot);
                return error;
            case PolicyKey.LegacyOutputLimit:
                error = ReadInteger(ref reader, param, out var legacy, out var legacySlot);
                (facts.LegacyOutputLimit, facts.LegacyOutputLimitSlot) = (legacy, legacySlot);
                return error;
            case PolicyKey.Choices:
                error = ReadInteger(ref reader, param, out var choices, out _);
                facts.Choices = choices;
                return error ?? choices switch
                {
                    < 1 => OpenAIError.BadRequest(
                        $"Invalid '{param}': integer below minimum value. Expected a value >= 1, but got {choices} instead.", param, "integer_below_min_value"),
                    > MaxChoices => OpenAIError.BadRequest(
                        $"Invalid '{param}': integer above maximum value. Expected a value <= {MaxChoices}, but got {choices} instead.", param, "integer_above_max_value"),
                    _ => null,
                };
            default:
                return ReadStreamOptions(ref reader, facts);
        }
    }

    private static OpenAIError? ReadBoolean(ref Utf8JsonReader reader, string param, out bool? value)
    {
        value = reader.TokenType switch { JsonTokenType.True => true, JsonTokenType.False => false, _ => null };
        return value is null && reader.TokenType != JsonTokenType.Null ? InvalidType(param, "a boolean", reader.TokenType) : null;
    }

    private static OpenAIError? ReadInteger(ref Utf8JsonReader reader, string param, out long? value, out JsonValueSlot slot)
    {
        value = null;
        slot = new JsonValueSlot((int)reader.TokenStartIndex, reader.TokenType == JsonTokenType.Number ? reader.ValueSpan.Length : 4, reader.TokenType);
        if (reader.TokenType == JsonTokenType.Null)
        {
            return null;
        }

        if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var number))
        {
            value = number;
            return null;
        }

        return InvalidType(param, "an integer", reader.TokenType);
    }

    /// <summary>A string value of at most <see cref="MaxIdLength"/> characters; never materialises a huge one.</summary>
    private static OpenAIError? ReadBoundedString(ref Utf8JsonReader reader, string param, out string? value)
    {
        value = null;
        // Each character takes 1 to 6 bytes ("\uXXXX"), so the raw length bounds the text length both ways.
        if (reader.ValueSpan.Length > MaxIdLength * 6)
        {
            return TooLong(param);
        }

        if (!HasValidText(ref reader))
        {
            return InvalidText(param);
        }

        var text = reader.GetString()!;
        if (text.Length > MaxIdLength)
        {
            return TooLong(param);
        }

        value = text;
        return null;
    }

    /// <summary><c>conversation</c>: an id, or an object whose <c>id</c> is one.</summary>
    private static OpenAIError? ReadConversation(ref Utf8JsonReader reader, RequestFacts facts)
    {
        switch (reader.TokenType)
        {
            case JsonTokenType.Null:
                return null;
            case JsonTokenType.String:
                var error = ReadBoundedString(ref reader, "conversation", out var id);
                facts.ConversationId = id;
                return error;
            case JsonTokenType.StartObject:
                break;
            default:
                return InvalidType("conversation", "a string or an object", reader.TokenType);
        }

        var depth = reader.CurrentDepth;
        var sawId = false;
        while (reader.Read() && reader.CurrentDepth > depth)
        {
            if (!HasValidText(ref reader))
            {
                return InvalidText("conversation");
            }

            var isId = reader.ValueTextEquals("id"u8);
            reader.Read();
            if (!isId)
            {
                if (!SkipValue(ref reader))
                {
                    return InvalidText("conversation");
                }

                continue;
            }

            if (sawId)
            {
                return Duplicate("conversation.id");
            }

            sawId = true;
            if (reader.TokenType == JsonTokenType.String)
            {
                var error = ReadBoundedString(ref reader, "conversation", out var id);
                facts.ConversationId = id;
                if (error is not null)
                {
                    return error;
                }
            }
            else if (reader.TokenType != JsonTokenType.Null)
            {
                return InvalidType("conversation.id", "a string", reader.TokenType);
            }
        }

        return null;
    }

    /// <summary>Chat <c>stream_options</c>: null or an object whose <c>include_usage</c> is a boolean or null.</summary>
    private static OpenAIError? ReadStreamOptions(ref Utf8JsonReader reader, RequestFacts facts)
    {
        var start = (int)reader.TokenStartIndex;
        if (reader.TokenType == JsonTokenType.Null)
        {
            facts.StreamOptionsSlot = new JsonValueSlot(start, 4, JsonTokenType.Null);
            return null;
        }

        if (reader.TokenType != JsonTokenType.StartObject)
        {
            return InvalidType("stream_options", "an object", reader.TokenType);
        }

        var depth = reader.CurrentDepth;
        while (reader.Read() && reader.CurrentDepth > depth)
        {
            if (!HasValidText(ref reader))
            {
                return InvalidText("stream_options");
            }

            var isIncludeUsage = reader.ValueTextEquals("include_usage"u8);
            reader.Read();
            if (!isIncludeUsage)
            {
                if (!SkipValue(ref reader))
                {
                    return InvalidText("stream_options");
                }

                continue;
            }

            if (facts.IncludeUsageSlot.IsPresent)
            {
                return Duplicate("stream_options.include_usage");
            }

            if (ReadBoolean(ref reader, "stream_options.include_usage", out var include) is { } error)
            {
                return error;
            }

            facts.IncludeUsage = include;
            facts.IncludeUsageSlot = new JsonValueSlot((int)reader.TokenStartIndex, reader.TokenType == JsonTokenType.False ? 5 : 4, reader.TokenType);
        }

        facts.StreamOptionsSlot = new JsonValueSlot(start, (int)reader.TokenStartIndex + 1 - start, JsonTokenType.StartObject);
        return null;
    }

    /// <summary>Skips the current value, checking the text of every string and key in it; false on invalid text.</summary>
    private static bool SkipValue(ref Utf8JsonReader reader)
    {
        if (reader.TokenType is not (JsonTokenType.StartObject or JsonTokenType.StartArray))
        {
            return HasValidText(ref reader);
        }

        var depth = reader.CurrentDepth;
        while (reader.Read() && reader.CurrentDepth > depth)
        {
            if (!HasValidText(ref reader))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// The reader has checked the escapes' syntax and the body is valid UTF-8 (checked once, vectorised); what
    /// is left is a <c>\uD800</c>-style escape without its pair, which GetString() and CopyString() throw on.
    /// </summary>
    private static bool HasValidText(ref Utf8JsonReader reader)
    {
        if (reader.TokenType is not (JsonTokenType.String or JsonTokenType.PropertyName) || !reader.ValueIsEscaped)
        {
            return true;
        }

        var raw = reader.ValueSpan;
        var i = raw.IndexOf((byte)'\\');
        while (i >= 0)
        {
            // The reader checked the syntax: a backslash is followed by one character, \u by four hex digits.
            var surrogate = raw[i + 1] == (byte)'u' ? Surrogate(raw.Slice(i + 2, 4)) : SurrogateKind.None;
            i += raw[i + 1] == (byte)'u' ? 6 : 2;
            if (surrogate == SurrogateKind.Low)
            {
                return false;
            }

            if (surrogate == SurrogateKind.High)
            {
                if (raw.Length < i + 6 || raw[i] != (byte)'\\' || raw[i + 1] != (byte)'u' || Surrogate(raw.Slice(i + 2, 4)) != SurrogateKind.Low)
                {
                    return false;
                }

                i += 6;
            }

            var next = raw[i..].IndexOf((byte)'\\');
            i = next < 0 ? -1 : i + next;
        }

        return true;
    }

    private enum SurrogateKind
    {
        None,
        High,
        Low,
    }

    /// <summary>D800–DBFF high, DC00–DFFF low: only the first two hex digits decide.</summary>
    private static SurrogateKind Surrogate(ReadOnlySpan<byte> hex)
    {
        if ((hex[0] | 0x20) != 'd')
        {
            return SurrogateKind.None;
        }

        return (hex[1] | 0x20) switch
        {
            '8' or '9' or 'a' or 'b' => SurrogateKind.High,
            'c' or 'd' or 'e' or 'f' => SurrogateKind.Low,
            _ => SurrogateKind.None,
        };
    }

    private static string Describe(JsonTokenType token) => token switch
    {
        JsonTokenType.String => "a string",
        JsonTokenType.Number => "a number",
        JsonTokenType.True or JsonTokenType.False => "a boolean",
        JsonTokenType.Null => "null",
        JsonTokenType.StartObject => "an object",
        JsonTokenType.StartArray => "an array",
        _ => token.ToString().ToLower(CultureInfo.InvariantCulture),
    };
}
