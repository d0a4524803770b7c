using System.Globalization;
using System.Text;
using System.Text.Json;

namespace FakeUpstream;

/// <summary>A created chat completion (kept when <c>store:true</c>).</summary>
internal sealed class ChatState
{
    private static long s_sequence;
    private int _usageDelivered;
    private string? _metadataJson;

    public required string Id { get; init; }

    public required long Created { get; init; }

    public required string Model { get; init; }

    public required int Deltas { get; init; }

    public required TokenUsage Usage { get; init; }

    /// <summary><c>stop</c>, or <c>length</c> when max_completion_tokens cut the answer.</summary>
    public required string FinishReason { get; init; }

    public bool Obfuscation { get; init; } = true;

    public byte[] RequestBody { get; init; } = [];

    /// <summary>Creation order, for listing.</summary>
    public long Sequence { get; } = Interlocked.Increment(ref s_sequence);

    public string? MetadataJson
    {
        get => Volatile.Read(ref _metadataJson);
        set => Volatile.Write(ref _metadataJson, value);
    }

    public string Text => Words.Text(Deltas);

    public bool TryMarkUsageDelivered() => Interlocked.Exchange(ref _usageDelivered, 1) == 0;
}

/// <summary><c>/v1/chat/completions</c>: create (JSON or SSE with the <c>[DONE]</c> sentinel) and the stored-completion routes.</summary>
internal sealed class ChatEndpoints(FakeUpstreamState state)
{
    private const string IdPlaceholder = "chatcmpl-ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ";
    private const long TimestampPlaceholder = 1999999999;
    private const string SystemFingerprint = "fp_f4ke0c0ffee";
    private const string Obfuscation = "Xq3vT9bLm2Rk8sWz";

    private readonly TemplateCache<TemplateKey> _templates = new();

    public void Map(IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/chat/completions", CreateAsync);
        app.MapGet("/v1/chat/completions", ListAsync);
        app.MapGet("/v1/chat/completions/{id}", GetAsync);
        app.MapPost("/v1/chat/completions/{id}", UpdateAsync);
        app.MapDelete("/v1/chat/completions/{id}", DeleteAsync);
        app.MapGet("/v1/chat/completions/{id}/messages", MessagesAsync);
    }

    private async Task CreateAsync(HttpContext context)
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

        if (RequestJson.Element(root, "messages") is not { ValueKind: JsonValueKind.Array } messages)
        {
            await OpenAiWire.WriteMissingParameterAsync(context, "messages");
            return;
        }

        var directives = fake.Directives;
        var streamOptions = RequestJson.Element(root, "stream_options");
        var includeUsage = streamOptions is { } so && RequestJson.Bool(so, "include_usage") == true;
        var obfuscation = streamOptions is not { } o || RequestJson.Bool(o, "include_obfuscation") != false;
        var maxTokens = RequestJson.Int(root, "max_completion_tokens") ?? RequestJson.Int(root, "max_tokens");

        var reasoning = directives.ReasoningTokens ?? 0;
        var deltas = directives.Deltas;
        var finishReason = "stop";
        if (maxTokens is { } max && deltas + reasoning > max)
        {
            deltas = Math.Max(0, max - reasoning);
            finishReason = "length";
        }

        var chat = new ChatState
        {
            Id = Ids.ChatCompletion(),
            Created = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
            Model = ResponseJson.DatedModel(model),
            Deltas = deltas,
            Usage = TokenUsage.Of(directives.InputTokens ?? Words.CountInput(messages) + 5, directives.CachedTokens ?? 0, deltas + reasoning, reasoning),
            FinishReason = finishReason,
            Obfuscation = obfuscation,
            RequestBody = fake.Body,
            MetadataJson = RequestJson.RawObject(root, "metadata"),
        };

        if (RequestJson.Bool(root, "store") == true)
        {
            state.Chats.Add(chat.Id, chat);
        }

        OpenAiWire.ApplyPostHeaders(context.Response);
        if (RequestJson.Bool(root, "stream") != true)
        {
            if (await OpenAiWire.WriteJsonAsync(context, StatusCodes.Status200OK, RenderFromTemplate(chat)))
            {
                CountUsage(chat);
            }

            return;
        }

        var events = BuildChunks(chat, includeUsage);
        context.Response.StatusCode = StatusCodes.Status200OK;
        OpenAiWire.ApplyCommonHeaders(context);
        context.Response.ContentType = OpenAiWire.SseContentType;
        var written = await SseWriter.StreamAsync(context, events);

        // The usage chunk is the one just before [DONE]; it only exists with include_usage.
        if (includeUsage && written >= events.Count - 1)
        {
            CountUsage(chat);
        }
    }

    private async Task ListAsync(HttpContext context)
    {
        var all = new List<ChatState>(state.Chats.Values);
        all.Sort(static (a, b) => a.Sequence.CompareTo(b.Sequence));
        var model = context.Request.Query["model"].ToString();
        if (model.Length > 0)
        {
            all.RemoveAll(c => c.Model != model && c.Model != ResponseJson.DatedModel(model));
        }

        var (page, hasMore) = Items.Page(all, static c => c.Id, context.Request.Query, "asc");
        await OpenAiWire.WriteJsonAsync(context, StatusCodes.Status200OK, Items.ListJson(page, hasMore, static c => c.Id, static (w, c) => WriteCompletion(w, c, stored: true)));
    }

    private async Task GetAsync(HttpContext context)
    {
        if (await FindAsync(context) is { } chat)
        {
            await WriteStoredAsync(context, chat);
        }
    }

    private async Task UpdateAsync(HttpContext context)
    {
        if (await FindAsync(context) is not { } chat)
        {
            return;
        }

        using var document = RequestJson.TryParseObject(context.Fake().Body);
        if (document is null)
        {
            await OpenAiWire.WriteInvalidJsonAsync(context);
            return;
        }

        if (RequestJson.Element(document.RootElement, "metadata") is { ValueKind: JsonValueKind.Object } metadata)
        {
            chat.MetadataJson = metadata.GetRawText();
        }

        await WriteStoredAsync(context, chat);
    }

    private async Task DeleteAsync(HttpContext context)
    {
        var id = RouteId(context);
        if (!state.Chats.TryRemove(id, out _))
        {
            await OpenAiWire.WriteNotFoundAsync(context, NotFound(id));
            return;
        }

        await OpenAiWire.WriteJsonAsync(context, StatusCodes.Status200OK, Json.Serialize(id, static (w, id) =>
        {
            w.WriteStartObject();
            w.WriteString("object", "chat.completion.deleted");
            w.WriteString("id", id);
            w.WriteBoolean("deleted", true);
            w.WriteEndObject();
        }));
    }

    /// <summary>The request's messages, with ids <c>{completion id}-{index}</c>.</summary>
    private async Task MessagesAsync(HttpContext context)
    {
        if (await FindAsync(context) is not { } chat)
        {
            return;
        }

        var messages = new List<StoredItem>();
        using (var document = RequestJson.TryParseObject(chat.RequestBody))
        {
            if (document is not null && RequestJson.Element(document.RootElement, "messages") is { ValueKind: JsonValueKind.Array } array)
            {
                var index = 0;
                foreach (var message in array.EnumerateArray())
                {
                    var id = string.Create(CultureInfo.InvariantCulture, $"{chat.Id}-{index++}");
                    messages.Add(new StoredItem(id, Json.Serialize((id, message), static (w, s) =>
                    {
                        w.WriteStartObject();
                        w.WriteString("id", s.id);
                        w.WriteString("role", RequestJson.String(s.message, "role") ?? "user");
                        w.WriteString("content", ContentText(s.message));
                        w.WriteString("name", RequestJson.String(s.message, "name"));
                        w.WriteNull("content_parts");
                        w.WriteEndObject();
                    }), null));
                }
            }
        }

        var (page, hasMore) = Items.Page(messages, static m => m.Id, context.Request.Query, "asc");
        await OpenAiWire.WriteJsonAsync(context, StatusCodes.Status200OK, Items.ListJson(page, hasMore, static m => m.Id, Items.WriteRaw));
    }

    private static string? ContentText(JsonElement message)
    {
        switch (RequestJson.Element(message, "content"))
        {
            case { ValueKind: JsonValueKind.String } text:
                return text.GetString();
            case { ValueKind: JsonValueKind.Array } parts:
                var builder = new StringBuilder();
                foreach (var part in parts.EnumerateArray())
                {
                    builder.Append(RequestJson.String(part, "text"));
                }

                return builder.ToString();
            default:
                return null;
        }
    }

    private static Task<bool> WriteStoredAsync(HttpContext context, ChatState chat) =>
        OpenAiWire.WriteJsonAsync(context, StatusCodes.Status200OK, Json.Serialize(chat, static (w, c) => WriteCompletion(w, c, stored: true)));

    /// <summary>A <c>chat.completion</c> object (recorded field order); stored retrievals add <c>metadata</c>.</summary>
    private static void WriteCompletion(Utf8JsonWriter w, ChatState c, bool stored)
    {
        w.WriteStartObject();
        w.WriteString("id", c.Id);
        w.WriteString("object", "chat.completion");
        w.WriteNumber("created", c.Created);
        w.WriteString("model", c.Model);
        w.WriteStartArray("choices");
        w.WriteStartObject();
        w.WriteNumber("index", 0);
        w.WriteStartObject("message");
        w.WriteString("role", "assistant");
        w.WriteString("content", c.Text);
        w.WriteNull("refusal");
        w.WriteStartArray("annotations");
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteNull("logprobs");
        w.WriteString("finish_reason", c.FinishReason);
        w.WriteEndObject();
        w.WriteEndArray();
        w.WritePropertyName("usage");
        WriteUsage(w, c.Usage);
        w.WriteString("service_tier", "default");
        w.WriteString("system_fingerprint", SystemFingerprint);
        if (stored)
        {
            w.WritePropertyName("metadata");
            if (c.MetadataJson is { } metadata)
            {
                w.WriteRawValue(metadata, skipInputValidation: true);
            }
            else
            {
                w.WriteStartObject();
                w.WriteEndObject();
            }
        }

        w.WriteEndObject();
    }

    /// <summary>Chat usage: prompt/completion/total plus the detail objects, as recorded.</summary>
    private static void WriteUsage(Utf8JsonWriter w, in TokenUsage usage)
    {
        w.WriteStartObject();
        w.WriteNumber("prompt_tokens", usage.InputTokens);
        w.WriteNumber("completion_tokens", usage.OutputTokens);
        w.WriteNumber("total_tokens", usage.TotalTokens);
        w.WriteStartObject("prompt_tokens_details");
        w.WriteNumber("cached_tokens", usage.CachedTokens);
        w.WriteNumber("audio_tokens", 0);
        w.WriteEndObject();
        w.WriteStartObject("completion_tokens_details");
        w.WriteNumber("reasoning_tokens", usage.ReasoningTokens);
        w.WriteNumber("audio_tokens", 0);
        w.WriteNumber("accepted_prediction_tokens", 0);
        w.WriteNumber("rejected_prediction_tokens", 0);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    /// <summary>
    /// Role chunk, one chunk per delta, the finish_reason chunk, then (include_usage only) a <c>"choices":[]</c> chunk with
    /// usage, then <c>[DONE]</c>. With include_usage every other chunk has <c>"usage":null</c>; without it chunks have no
    /// usage key at all, exactly like OpenAI.
    /// </summary>
    private static SseEvents BuildChunks(ChatState c, bool includeUsage)
    {
        using var b = new SseEventBuilder(c.Deltas + 4);
        Chunk(b, c, includeUsage, ChunkKind.Role, null);
        for (var i = 0; i < c.Deltas; i++)
        {
            Chunk(b, c, includeUsage, ChunkKind.Content, Words.Delta(i));
        }

        Chunk(b, c, includeUsage, ChunkKind.Finish, null);
        if (includeUsage)
        {
            Chunk(b, c, includeUsage, ChunkKind.Usage, null);
        }

        b.AddRaw("data: [DONE]\n\n"u8);
        return b.Build();
    }

    private enum ChunkKind
    {
        Role,
        Content,
        Finish,
        Usage,
    }

    private static void Chunk(SseEventBuilder b, ChatState c, bool includeUsage, ChunkKind kind, string? content)
    {
        var w = b.BeginData();
        w.WriteStartObject();
        w.WriteString("id", c.Id);
        w.WriteString("object", "chat.completion.chunk");
        w.WriteNumber("created", c.Created);
        w.WriteString("model", c.Model);
        w.WriteString("service_tier", "default");
        w.WriteString("system_fingerprint", SystemFingerprint);
        w.WriteStartArray("choices");
        if (kind != ChunkKind.Usage)
        {
            w.WriteStartObject();
            w.WriteNumber("index", 0);
            w.WriteStartObject("delta");
            if (kind == ChunkKind.Role)
            {
                w.WriteString("role", "assistant");
                w.WriteString("content", string.Empty);
                w.WriteNull("refusal");
            }
            else if (kind == ChunkKind.Content)
            {
                w.WriteString("content", content);
            }

            w.WriteEndObject();
            w.WriteNull("logprobs");
            if (kind == ChunkKind.Finish)
            {
                w.WriteString("finish_reason", c.FinishReason);
            }
            else
            {
                w.WriteNull("finish_reason");
            }

            w.WriteEndObject();
        }

        w.WriteEndArray();
        if (kind == ChunkKind.Usage)
        {
            w.WritePropertyName("usage");
            WriteUsage(w, c.Usage);
        }
        else if (includeUsage)
        {
            w.WriteNull("usage");
        }

        if (c.Obfuscation)
        {
            w.WriteString("obfuscation", Obfuscation.AsSpan(0, Math.Max(1, 16 - (content?.Length ?? 2))));
        }

        w.WriteEndObject();
        b.End();
    }

    private byte[] RenderFromTemplate(ChatState chat)
    {
        var created = chat.Created.ToString(CultureInfo.InvariantCulture);
        if (created.Length != 10)
        {
            return Json.Serialize(chat, static (w, c) => WriteCompletion(w, c, stored: false));
        }

        var key = new TemplateKey(chat.Model, chat.Deltas, chat.Usage, chat.FinishReason);
        var template = _templates.Get(key, 0, static (k, _) =>
        {
            var prototype = new ChatState
            {
                Id = IdPlaceholder,
                Created = TimestampPlaceholder,
                Model = k.Model,
                Deltas = k.Deltas,
                Usage = k.Usage,
                FinishReason = k.FinishReason,
            };
            var bytes = Json.Serialize(prototype, static (w, c) => WriteCompletion(w, c, stored: false));
            return JsonTemplate.TryCreate(bytes, (IdPlaceholder, 1), (TimestampPlaceholder.ToString(CultureInfo.InvariantCulture), 1));
        });

        return template?.Render(chat.Id, created) ?? Json.Serialize(chat, static (w, c) => WriteCompletion(w, c, stored: false));
    }

    private void CountUsage(ChatState chat)
    {
        if (chat.TryMarkUsageDelivered())
        {
            state.Ledger.Add(chat.Usage);
        }
    }

    private async Task<ChatState?> FindAsync(HttpContext context)
    {
        var id = RouteId(context);
        if (state.Chats.Get(id) is { } chat)
        {
            return chat;
        }

        await OpenAiWire.WriteNotFoundAsync(context, NotFound(id));
        return null;
    }

    private static string RouteId(HttpContext context) => (string)context.Request.RouteValues["id"]!;

    private static string NotFound(string id) => $"No chat completion found with id '{id}'.";

    private readonly record struct TemplateKey(string Model, int Deltas, TokenUsage Usage, string FinishReason);
}
