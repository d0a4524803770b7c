using System.Globalization;
using System.Text.Json;

namespace FakeUpstream;

/// <summary><c>/v1/responses</c>: create (JSON, SSE, background), retrieve (JSON or SSE replay), delete, cancel,
/// input_items, input_tokens and compact.</summary>
internal sealed class ResponsesEndpoints(FakeUpstreamState state)
{
    private const string IdPlaceholder = "resp_ffffffffffffffffffffffffffffffffffffffffffffffff";
    private const string MessageIdPlaceholder = "msg_eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
    private const long TimestampPlaceholder = 1999999999;

    private readonly TemplateCache<TemplateKey> _templates = new();

    public void Map(IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/responses", CreateAsync);
        app.MapPost("/v1/responses/input_tokens", InputTokensAsync);
        app.MapPost("/v1/responses/compact", CompactAsync);
        app.MapGet("/v1/responses/{id}", GetAsync);
        app.MapDelete("/v1/responses/{id}", DeleteAsync);
        app.MapPost("/v1/responses/{id}/cancel", CancelAsync);
        app.MapGet("/v1/responses/{id}/input_items", InputItemsAsync);
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

        var directives = fake.Directives;
        var input = RequestJson.Element(root, "input");
        var instructions = RequestJson.String(root, "instructions");
        var stream = RequestJson.Bool(root, "stream") ?? false;
        var background = RequestJson.Bool(root, "background") ?? false;
        var store = RequestJson.Bool(root, "store") ?? true;
        var maxOutputTokens = RequestJson.Int(root, "max_output_tokens");
        var previousResponseId = RequestJson.String(root, "previous_response_id");
        var conversationId = ConversationIdOf(root);
        var metadata = RequestJson.RawObject(root, "metadata");
        var obfuscation = RequestJson.Element(root, "stream_options") is not { } options || RequestJson.Bool(options, "include_obfuscation") != false;

        // Reasoning tokens count inside output_tokens, and max_output_tokens caps visible + reasoning, as in the real API.
        var reasoning = directives.ReasoningTokens ?? 0;
        var deltas = directives.Deltas;
        var incomplete = false;
        if (maxOutputTokens is { } max && deltas + reasoning > max)
        {
            deltas = Math.Max(0, max - reasoning);
            incomplete = true;
        }

        var inputWords = (input is { } i ? Words.CountInput(i) : 0) + Words.Count(instructions);
        var response = new ResponseState
        {
            Id = Ids.Response(),
            MessageId = Ids.Message(),
            CreatedAt = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
            Model = ResponseJson.DatedModel(model),
            Deltas = deltas,
            Usage = TokenUsage.Of(directives.InputTokens ?? inputWords + 5, directives.CachedTokens ?? 0, deltas + reasoning, reasoning),
            Incomplete = incomplete,
            Background = background,
            Store = store,
            Obfuscation = obfuscation,
            MaxOutputTokens = maxOutputTokens,
            Instructions = instructions,
            PreviousResponseId = previousResponseId,
            ConversationId = conversationId,
            MetadataJson = metadata,
            RequestBody = fake.Body,
            Status = background ? ResponseStatus.Queued : ResponseStatus.Completed,
            ReadyAtMs = Environment.TickCount64 + directives.BackgroundMs,
        };

        if (store || background)
        {
            state.Responses.Add(response.Id, response);
        }

        if (conversationId is not null)
        {
            AppendToConversation(conversationId, input, response);
        }

        if (stream)
        {
            await StreamAsync(context, response, startingAfter: -1, isCreate: true);
            return;
        }

        if (background)
        {
            // Background POST: queued, no usage, no rate-limit headers (as recorded).
            await OpenAiWire.WriteJsonAsync(context, StatusCodes.Status200OK, ResponseJson.Serialize(response, ResponsePhase.Queued));
            return;
        }

        var plain = instructions is null && previousResponseId is null && conversationId is null && metadata is null && maxOutputTokens is null;
        var body = plain ? RenderFromTemplate(response) : ResponseJson.Serialize(response, ResponsePhase.Final);
        OpenAiWire.ApplyPostHeaders(context.Response);
        if (await OpenAiWire.WriteJsonAsync(context, StatusCodes.Status200OK, body))
        {
            CountUsage(response);
        }
    }

    private async Task GetAsync(HttpContext context)
    {
        if (await FindAsync(context) is not { } response)
        {
            return;
        }

        if (context.Request.Query["stream"] == "true")
        {
            var startingAfter = int.TryParse(context.Request.Query["starting_after"], NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n : -1;
            await StreamAsync(context, response, startingAfter, isCreate: false);
            return;
        }

        // A background response completes on the first retrieval after its x-fake-background-ms.
        if (response.Status == ResponseStatus.Queued && Environment.TickCount64 >= response.ReadyAtMs)
        {
            response.TryTransition(ResponseStatus.Queued, ResponseStatus.Completed);
        }

        var phase = response.CurrentPhase;
        if (await OpenAiWire.WriteJsonAsync(context, StatusCodes.Status200OK, ResponseJson.Serialize(response, phase)) && phase == ResponsePhase.Final)
        {
            CountUsage(response);
        }
    }

    private async Task DeleteAsync(HttpContext context)
    {
        var id = RouteId(context);
        if (!state.Responses.TryRemove(id, out _))
        {
            await OpenAiWire.WriteNotFoundAsync(context, NotFoundMessage(id));
            return;
        }

        await OpenAiWire.WriteJsonAsync(context, StatusCodes.Status200OK, Json.Serialize(id, static (w, id) =>
        {
            w.WriteStartObject();
            w.WriteString("id", id);
            w.WriteString("object", "response.deleted");
            w.WriteBoolean("deleted", true);
            w.WriteEndObject();
        }));
    }

    private async Task CancelAsync(HttpContext context)
    {
        if (await FindAsync(context) is not { } response)
        {
            return;
        }

        if (!response.Background)
        {
            await OpenAiWire.WriteBadRequestAsync(context, "Only responses created with background=true can be cancelled.");
            return;
        }

        // Still queued: cancelled, usage null. Already completed: returned unchanged.
        response.TryTransition(ResponseStatus.Queued, ResponseStatus.Cancelled);
        var phase = response.CurrentPhase;
        if (await OpenAiWire.WriteJsonAsync(context, StatusCodes.Status200OK, ResponseJson.Serialize(response, phase)) && phase == ResponsePhase.Final)
        {
            CountUsage(response);
        }
    }

    private async Task InputItemsAsync(HttpContext context)
    {
        if (await FindAsync(context) is not { } response)
        {
            return;
        }

        List<StoredItem> items = [];
        using (var document = RequestJson.TryParseObject(response.RequestBody))
        {
            if (document is not null && RequestJson.Element(document.RootElement, "input") is { } input)
            {
                items = Items.FromInput(input, index => Ids.Derived("msg_", response.Id, index));
            }
        }

        var (page, hasMore) = Items.Page(items, static item => item.Id, context.Request.Query, "desc");
        await OpenAiWire.WriteJsonAsync(context, StatusCodes.Status200OK, Items.ListJson(page, hasMore, static item => item.Id, Items.WriteRaw));
    }

    private static async Task InputTokensAsync(HttpContext context)
    {
        var fake = context.Fake();
        using var document = RequestJson.TryParseObject(fake.Body);
        if (document is null)
        {
            await OpenAiWire.WriteInvalidJsonAsync(context);
            return;
        }

        var root = document.RootElement;
        var words = (RequestJson.Element(root, "input") is { } input ? Words.CountInput(input) : 0) + Words.Count(RequestJson.String(root, "instructions"));
        var tokens = fake.Directives.InputTokens ?? words + 5;
        await OpenAiWire.WriteJsonAsync(context, StatusCodes.Status200OK, Json.Serialize(tokens, static (w, n) =>
        {
            w.WriteStartObject();
            w.WriteString("object", "response.input_tokens");
            w.WriteNumber("input_tokens", n);
            w.WriteEndObject();
        }));
    }

    /// <summary>Compaction: returns the user messages plus one opaque compaction item, and bills usage like a response.</summary>
    private async Task CompactAsync(HttpContext context)
    {
        var fake = context.Fake();
        using var document = RequestJson.TryParseObject(fake.Body);
        if (document is null)
        {
            await OpenAiWire.WriteInvalidJsonAsync(context);
            return;
        }

        var root = document.RootElement;
        if (RequestJson.String(root, "model") is null)
        {
            await OpenAiWire.WriteMissingParameterAsync(context, "model");
            return;
        }

        var directives = fake.Directives;
        var input = RequestJson.Element(root, "input");
        var words = (input is { } i ? Words.CountInput(i) : 0) + Words.Count(RequestJson.String(root, "instructions"));
        var reasoning = directives.ReasoningTokens ?? 0;
        var usage = TokenUsage.Of(directives.InputTokens ?? words + 5, directives.CachedTokens ?? 0, directives.Deltas + reasoning, reasoning);
        var kept = input is { } items ? Items.FromInput(items, _ => Ids.Message()).FindAll(static item => item.Role == "user") : [];
        var compaction = (Id: Ids.Response(), CreatedAt: DateTimeOffset.UtcNow.ToUnixTimeSeconds(), Kept: kept, Usage: usage);

        var body = Json.Serialize(compaction, static (w, c) =>
        {
            w.WriteStartObject();
            w.WriteString("id", c.Id);
            w.WriteString("object", "response.compaction");
            w.WriteNumber("created_at", c.CreatedAt);
            w.WriteStartArray("output");
            foreach (var item in c.Kept)
            {
                Items.WriteRaw(w, item);
            }

            w.WriteStartObject();
            w.WriteString("id", Ids.Compaction());
            w.WriteString("type", "compaction");
            w.WriteString("encrypted_content", "gAAAAABfakeCompactionPayload==");
            w.WriteEndObject();
            w.WriteEndArray();
            w.WritePropertyName("usage");
            ResponseJson.WriteUsage(w, c.Usage);
            w.WriteEndObject();
        });

        OpenAiWire.ApplyPostHeaders(context.Response);
        if (await OpenAiWire.WriteJsonAsync(context, StatusCodes.Status200OK, body))
        {
            state.Ledger.Add(usage);
        }
    }

    /// <summary>SSE for a create (<paramref name="isCreate"/>) or a retrieval replay from <c>starting_after</c>.</summary>
    private async Task StreamAsync(HttpContext context, ResponseState response, int startingAfter, bool isCreate)
    {
        if (!isCreate && !await WaitUntilReadyAsync(context, response))
        {
            return;
        }

        if (isCreate && response.Background)
        {
            response.ReadyAtMs = long.MaxValue; // "running": retrievals wait for this stream to finish or fail
        }

        var events = ResponseJson.BuildEvents(response);
        var slice = startingAfter >= 0 ? events.Skip(startingAfter + 1) : events;
        var terminalIncluded = response.Status != ResponseStatus.Cancelled && slice.Count > 0;

        context.Response.StatusCode = StatusCodes.Status200OK;
        OpenAiWire.ApplyCommonHeaders(context);
        if (isCreate)
        {
            OpenAiWire.ApplyCookie(context.Response);
        }

        context.Response.ContentType = OpenAiWire.SseContentType;
        var written = await SseWriter.StreamAsync(context, slice);
        var completed = terminalIncluded && written == slice.Count;
        if (response.Background)
        {
            if (completed)
            {
                response.TryTransition(ResponseStatus.Queued, ResponseStatus.Completed);
            }
            else if (isCreate)
            {
                // The stream was cut: the response still finishes upstream, visible to a later GET.
                response.ReadyAtMs = Environment.TickCount64 + context.Fake().Directives.BackgroundMs;
            }
        }

        if (completed)
        {
            CountUsage(response);
        }
    }

    /// <summary>A replay of a queued background response waits until it is ready, then completes it.</summary>
    private static async Task<bool> WaitUntilReadyAsync(HttpContext context, ResponseState response)
    {
        try
        {
            while (response.Status == ResponseStatus.Queued && Environment.TickCount64 < response.ReadyAtMs)
            {
                var remaining = response.ReadyAtMs - Environment.TickCount64;
                await Task.Delay((int)Math.Clamp(remaining, 1, 20), context.Fake().WaitToken(context));
            }
        }
        catch (OperationCanceledException)
        {
            return false;
        }

        response.TryTransition(ResponseStatus.Queued, ResponseStatus.Completed);
        return true;
    }

    private byte[] RenderFromTemplate(ResponseState response)
    {
        var createdAt = response.CreatedAt.ToString(CultureInfo.InvariantCulture);
        if (createdAt.Length != 10)
        {
            return ResponseJson.Serialize(response, ResponsePhase.Final);
        }

        var key = new TemplateKey(response.Model, response.Deltas, response.Usage, response.Store, response.Incomplete);
        var template = _templates.Get(key, response, static (k, r) =>
        {
            var prototype = new ResponseState
            {
                Id = IdPlaceholder,
                MessageId = MessageIdPlaceholder,
                CreatedAt = TimestampPlaceholder,
                Model = k.Model,
                Deltas = k.Deltas,
                Usage = k.Usage,
                Store = k.Store,
                Incomplete = k.Incomplete,
                Obfuscation = r.Obfuscation,
            };
            var bytes = ResponseJson.Serialize(prototype, ResponsePhase.Final);
            var timestamp = TimestampPlaceholder.ToString(CultureInfo.InvariantCulture);
            return JsonTemplate.TryCreate(bytes, (IdPlaceholder, 1), (MessageIdPlaceholder, 1), (timestamp, 2));
        });

        return template?.Render(response.Id, response.MessageId, createdAt) ?? ResponseJson.Serialize(response, ResponsePhase.Final);
    }

    private void CountUsage(ResponseState response)
    {
        if (response.TryMarkUsageDelivered())
        {
            state.Ledger.Add(response.Usage);
        }
    }

    private void AppendToConversation(string conversationId, JsonElement? input, ResponseState response)
    {
        if (state.Conversations.Get(conversationId) is not { } conversation)
        {
            return;
        }

        var items = input is { } i ? Items.FromInput(i, _ => Ids.Message()) : [];
        items.Add(Items.FromResponseOutput(response));
        conversation.Append(items);
    }

    private static string? ConversationIdOf(JsonElement root) => RequestJson.Element(root, "conversation") switch
    {
        { ValueKind: JsonValueKind.String } s => s.GetString(),
        { ValueKind: JsonValueKind.Object } o => RequestJson.String(o, "id"),
        _ => null,
    };

    private async Task<ResponseState?> FindAsync(HttpContext context)
    {
        var id = RouteId(context);
        if (state.Responses.Get(id) is { } response)
        {
            return response;
        }

        await OpenAiWire.WriteNotFoundAsync(context, NotFoundMessage(id));
        return null;
    }

    private static string RouteId(HttpContext context) => (string)context.Request.RouteValues["id"]!;

    private static string NotFoundMessage(string id) => $"Response with id '{id}' not found.";

    private readonly record struct TemplateKey(string Model, int Deltas, TokenUsage Usage, bool Store, bool Incomplete);
}
