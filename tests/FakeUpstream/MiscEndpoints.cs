using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace FakeUpstream;

/// <summary>Embeddings, models, and the catch-all for every other <c>/v1</c> path.</summary>
internal sealed class MiscEndpoints(FakeUpstreamState state)
{
    private static readonly string[] Models =
    [
        "gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-5", "gpt-5-mini", "o3-mini",
        "text-embedding-3-small", "text-embedding-3-large",
    ];

    private static readonly byte[] ModelList = Json.Serialize(0, static (w, _) =>
    {
        w.WriteStartObject();
        w.WriteString("object", "list");
        w.WriteStartArray("data");
        foreach (var model in Models)
        {
            WriteModel(w, model);
        }

        w.WriteEndArray();
        w.WriteEndObject();
    });

    private static readonly byte[] EmptyList = """{"object":"list","data":[]}"""u8.ToArray();

    public void Map(IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/embeddings", EmbeddingsAsync);
        app.MapGet("/v1/models", static async context => await OpenAiWire.WriteJsonAsync(context, StatusCodes.Status200OK, ModelList));
        app.MapGet("/v1/models/{id}", static async context =>
        {
            var id = (string)context.Request.RouteValues["id"]!;
            await OpenAiWire.WriteJsonAsync(context, StatusCodes.Status200OK, Json.Serialize(id, static (w, id) => WriteModel(w, id)));
        });

        // Any other OpenAI path answers an empty list, so tests can prove that the gateway, not the upstream, blocks it.
        app.Map("/v1/{**rest}", static async context => await OpenAiWire.WriteJsonAsync(context, StatusCodes.Status200OK, EmptyList));
    }

    private static void WriteModel(Utf8JsonWriter w, string id)
    {
        w.WriteStartObject();
        w.WriteString("id", id);
        w.WriteString("object", "model");
        w.WriteNumber("created", 1721172741);
        w.WriteString("owned_by", "system");
        w.WriteEndObject();
    }

    /// <summary>Deterministic small vectors (8 dims unless <c>dimensions</c>), as floats or base64 (the .NET and Python SDKs ask for base64).</summary>
    private async Task EmbeddingsAsync(HttpContext context)
    {
        var fake = context.Fake();
        using var document = RequestJson.TryParseObject(fake.Body);
        if (document is null)
        {
            await OpenAiWire.WriteInvalidJsonAsync(context);
            return;
        }

        var root = document.RootElement;
        var model = RequestJson.String(root, "model");
        if (model is null)
        {
            await OpenAiWire.WriteMissingParameterAsync(context, "model");
            return;
        }

        if (RequestJson.Element(root, "input") is not { } input)
        {
            await OpenAiWire.WriteMissingParameterAsync(context, "input");
            return;
        }

        // input: a string, an array of strings, an array of token ids, or an array of token-id arrays.
        var inputs = new List<string>();
        long words = 0;
        if (input.ValueKind == JsonValueKind.Array && input.GetArrayLength() > 0 && input[0].ValueKind == JsonValueKind.Number)
        {
            inputs.Add(input.GetRawText());
            words = input.GetArrayLength();
        }
        else if (input.ValueKind == JsonValueKind.Array)
        {
            foreach (var element in input.EnumerateArray())
            {
                var isText = element.ValueKind == JsonValueKind.String;
                var text = isText ? element.GetString()! : element.GetRawText();
                inputs.Add(text);
                words += isText ? Math.Max(1, Words.Count(text)) : element.ValueKind == JsonValueKind.Array ? element.GetArrayLength() : 1;
            }
        }
        else
        {
            var text = input.ValueKind == JsonValueKind.String ? input.GetString()! : input.GetRawText();
            inputs.Add(text);
            words = Math.Max(1, Words.Count(text));
        }

        var promptTokens = fake.Directives.InputTokens ?? words;
        var embedding = (
            Inputs: inputs,
            Model: model,
            Dimensions: Math.Clamp(RequestJson.Int(root, "dimensions") ?? 8, 1, 4096),
            Base64: RequestJson.String(root, "encoding_format") == "base64",
            PromptTokens: promptTokens);

        var body = Json.Serialize(embedding, static (w, e) =>
        {
            w.WriteStartObject();
            w.WriteString("object", "list");
            w.WriteStartArray("data");
            for (var i = 0; i < e.Inputs.Count; i++)
            {
                w.WriteStartObject();
                w.WriteString("object", "embedding");
                w.WriteNumber("index", i);
                w.WritePropertyName("embedding");
                WriteVector(w, e.Inputs[i], e.Dimensions, e.Base64);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteString("model", e.Model);
            w.WriteStartObject("usage");
            w.WriteNumber("prompt_tokens", e.PromptTokens);
            w.WriteNumber("total_tokens", e.PromptTokens);
            w.WriteEndObject();
            w.WriteEndObject();
        });

        if (await OpenAiWire.WriteJsonAsync(context, StatusCodes.Status200OK, body))
        {
            state.Ledger.Add(TokenUsage.Of(promptTokens, 0, 0, 0));
        }
    }

    private static void WriteVector(Utf8JsonWriter w, string text, int dimensions, bool base64)
    {
        // FNV-1a of the text seeds a tiny xorshift generator: same text, same vector.
        var seed = 2166136261u;
        foreach (var b in Encoding.UTF8.GetBytes(text))
        {
            seed = (seed ^ b) * 16777619u;
        }

        var values = new float[dimensions];
        var x = seed == 0 ? 1u : seed;
        for (var i = 0; i < dimensions; i++)
        {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            values[i] = (float)((x / (double)uint.MaxValue * 2) - 1) * 0.1f;
        }

        if (base64)
        {
            var bytes = new byte[dimensions * sizeof(float)];
            for (var i = 0; i < dimensions; i++)
            {
                BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * sizeof(float)), values[i]);
            }

            w.WriteBase64StringValue(bytes);
            return;
        }

        w.WriteStartArray();
        foreach (var value in values)
        {
            w.WriteNumberValue(value);
        }

        w.WriteEndArray();
    }
}
