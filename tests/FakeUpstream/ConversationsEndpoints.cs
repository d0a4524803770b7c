using System.Text.Json;

namespace FakeUpstream;

/// <summary>A conversation: metadata plus items, oldest first.</summary>
internal sealed class ConversationState(string id, long createdAt, string? metadataJson)
{
    private readonly Lock _gate = new();
    private readonly List<StoredItem> _items = [];
    private string? _metadataJson = metadataJson;

    public string Id { get; } = id;

    public long CreatedAt { get; } = createdAt;

    public string? MetadataJson
    {
        get => Volatile.Read(ref _metadataJson);
        set => Volatile.Write(ref _metadataJson, value);
    }

    public void Append(IEnumerable<StoredItem> items)
    {
        lock (_gate)
        {
            _items.AddRange(items);
        }
    }

    public StoredItem[] Snapshot()
    {
        lock (_gate)
        {
            return [.. _items];
        }
    }

    public StoredItem? Find(string itemId)
    {
        lock (_gate)
        {
            return _items.Find(item => item.Id == itemId);
        }
    }

    public bool Remove(string itemId)
    {
        lock (_gate)
        {
            return _items.RemoveAll(item => item.Id == itemId) > 0;
        }
    }
}

/// <summary><c>/v1/conversations</c> CRUD and items. None of these carry usage.</summary>
internal sealed class ConversationsEndpoints(FakeUpstreamState state)
{
    public void Map(IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/conversations", CreateAsync);
        app.MapGet("/v1/conversations/{id}", GetAsync);
        app.MapPost("/v1/conversations/{id}", UpdateAsync);
        app.MapDelete("/v1/conversations/{id}", DeleteAsync);
        app.MapGet("/v1/conversations/{id}/items", ListItemsAsync);
        app.MapPost("/v1/conversations/{id}/items", AddItemsAsync);
        app.MapGet("/v1/conversations/{id}/items/{item_id}", GetItemAsync);
        app.MapDelete("/v1/conversations/{id}/items/{item_id}", DeleteItemAsync);
    }

    private async Task CreateAsync(HttpContext context)
    {
        using var document = RequestJson.TryParseObject(context.Fake().Body);
        if (document is null)
        {
            await OpenAiWire.WriteInvalidJsonAsync(context);
            return;
        }

        var root = document.RootElement;
        var conversation = new ConversationState(Ids.Conversation(), DateTimeOffset.UtcNow.ToUnixTimeSeconds(), RequestJson.RawObject(root, "metadata"));
        if (RequestJson.Element(root, "items") is { } items)
        {
            conversation.Append(Items.FromInput(items, _ => Ids.Message()));
        }

        state.Conversations.Add(conversation.Id, conversation);
        OpenAiWire.ApplyCookie(context.Response);
        await WriteConversationAsync(context, conversation);
    }

    private async Task GetAsync(HttpContext context)
    {
        if (await FindAsync(context) is { } conversation)
        {
            await WriteConversationAsync(context, conversation);
        }
    }

    private async Task UpdateAsync(HttpContext context)
    {
        if (await FindAsync(context) is not { } conversation)
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
            conversation.MetadataJson = metadata.GetRawText();
        }

        await WriteConversationAsync(context, conversation);
    }

    private async Task DeleteAsync(HttpContext context)
    {
        var id = RouteValue(context, "id");
        if (!state.Conversations.TryRemove(id, out _))
        {
            await OpenAiWire.WriteNotFoundAsync(context, NotFound(id));
            return;
        }

        await OpenAiWire.WriteJsonAsync(context, StatusCodes.Status200OK, Json.Serialize(id, static (w, id) =>
        {
            w.WriteStartObject();
            w.WriteString("id", id);
            w.WriteString("object", "conversation.deleted");
            w.WriteBoolean("deleted", true);
            w.WriteEndObject();
        }));
    }

    private async Task ListItemsAsync(HttpContext context)
    {
        if (await FindAsync(context) is not { } conversation)
        {
            return;
        }

        var (page, hasMore) = Items.Page(conversation.Snapshot(), static item => item.Id, context.Request.Query, "desc");
        await OpenAiWire.WriteJsonAsync(context, StatusCodes.Status200OK, Items.ListJson(page, hasMore, static item => item.Id, Items.WriteRaw));
    }

    private async Task AddItemsAsync(HttpContext context)
    {
        if (await FindAsync(context) is not { } conversation)
        {
            return;
        }

        using var document = RequestJson.TryParseObject(context.Fake().Body);
        if (document is null)
        {
            await OpenAiWire.WriteInvalidJsonAsync(context);
            return;
        }

        if (RequestJson.Element(document.RootElement, "items") is not { ValueKind: JsonValueKind.Array } input)
        {
            await OpenAiWire.WriteMissingParameterAsync(context, "items");
            return;
        }

        var added = Items.FromInput(input, _ => Ids.Message());
        conversation.Append(added);
        await OpenAiWire.WriteJsonAsync(context, StatusCodes.Status200OK, Items.ListJson(added, false, static item => item.Id, Items.WriteRaw));
    }

    private async Task GetItemAsync(HttpContext context)
    {
        if (await FindAsync(context) is not { } conversation)
        {
            return;
        }

        var itemId = RouteValue(context, "item_id");
        if (conversation.Find(itemId) is not { } item)
        {
            await OpenAiWire.WriteNotFoundAsync(context, $"Item with id '{itemId}' not found.");
            return;
        }

        await OpenAiWire.WriteJsonAsync(context, StatusCodes.Status200OK, item.Json);
    }

    /// <summary>Deleting an item answers with the conversation, as the API does.</summary>
    private async Task DeleteItemAsync(HttpContext context)
    {
        if (await FindAsync(context) is not { } conversation)
        {
            return;
        }

        var itemId = RouteValue(context, "item_id");
        if (!conversation.Remove(itemId))
        {
            await OpenAiWire.WriteNotFoundAsync(context, $"Item with id '{itemId}' not found.");
            return;
        }

        await WriteConversationAsync(context, conversation);
    }

    private static Task<bool> WriteConversationAsync(HttpContext context, ConversationState conversation) =>
        OpenAiWire.WriteJsonAsync(context, StatusCodes.Status200OK, Json.Serialize(conversation, static (w, c) =>
        {
            w.WriteStartObject();
            w.WriteString("id", c.Id);
            w.WriteString("object", "conversation");
            w.WriteNumber("created_at", c.CreatedAt);
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

            w.WriteEndObject();
        }));

    private async Task<ConversationState?> FindAsync(HttpContext context)
    {
        var id = RouteValue(context, "id");
        if (state.Conversations.Get(id) is { } conversation)
        {
            return conversation;
        }

        await OpenAiWire.WriteNotFoundAsync(context, NotFound(id));
        return null;
    }

    private static string RouteValue(HttpContext context, string name) => (string)context.Request.RouteValues[name]!;

    private static string NotFound(string id) => $"Conversation with id '{id}' not found.";
}
