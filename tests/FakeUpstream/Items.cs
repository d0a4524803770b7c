using System.Globalization;
using System.Text.Json;

namespace FakeUpstream;

/// <summary>A conversation or input item: its id and its JSON as the API returns it.</summary>
internal sealed record StoredItem(string Id, byte[] Json, string? Role);

/// <summary>Item shapes and list envelopes shared by input_items, conversations and compaction.</summary>
internal static class Items
{
    /// <summary>
    /// Turns a request's <c>input</c> (string, or array of strings / items) into stored items the way the API lists them:
    /// every item gets an id and a status; a message's string content becomes an <c>input_text</c> (or, for the
    /// assistant, <c>output_text</c>) part.
    /// </summary>
    public static List<StoredItem> FromInput(JsonElement input, Func<int, string> newId)
    {
        var items = new List<StoredItem>();
        switch (input.ValueKind)
        {
            case JsonValueKind.String:
                items.Add(Message(newId(0), "user", input));
                break;
            case JsonValueKind.Array:
                var index = 0;
                foreach (var element in input.EnumerateArray())
                {
                    if (element.ValueKind == JsonValueKind.String)
                    {
                        items.Add(Message(newId(index), "user", element));
                    }
                    else if (element.ValueKind == JsonValueKind.Object)
                    {
                        items.Add(FromObject(element, newId(index)));
                    }

                    index++;
                }

                break;
        }

        return items;
    }

    private static StoredItem FromObject(JsonElement item, string fallbackId)
    {
        var id = RequestJson.String(item, "id") ?? fallbackId;
        var type = RequestJson.String(item, "type") ?? "message";
        if (type == "message")
        {
            var role = RequestJson.String(item, "role") ?? "user";
            return item.TryGetProperty("content", out var content)
                ? Message(id, role, content, RequestJson.String(item, "status"))
                : Message(id, role, default, RequestJson.String(item, "status"));
        }

        var json = Json.Serialize((item, id), static (w, s) =>
        {
            w.WriteStartObject();
            w.WriteString("id", s.id);
            var hasStatus = false;
            foreach (var property in s.item.EnumerateObject())
            {
                if (property.NameEquals("id"))
                {
                    continue;
                }

                hasStatus |= property.NameEquals("status");
                property.WriteTo(w);
            }

            if (!hasStatus)
            {
                w.WriteString("status", "completed");
            }

            w.WriteEndObject();
        });
        return new StoredItem(id, json, null);
    }

    private static StoredItem Message(string id, string role, JsonElement content, string? status = null)
    {
        var json = Json.Serialize((id, role, content, status), static (w, s) =>
        {
            w.WriteStartObject();
            w.WriteString("id", s.id);
            w.WriteString("type", "message");
            w.WriteString("status", s.status ?? "completed");
            w.WritePropertyName("content");
            switch (s.content.ValueKind)
            {
                case JsonValueKind.String when s.role == "assistant":
                    w.WriteStartArray();
                    ResponseJson.WriteOutputTextPart(w, s.content.GetString()!);
                    w.WriteEndArray();
                    break;
                case JsonValueKind.String:
                    w.WriteStartArray();
                    w.WriteStartObject();
                    w.WriteString("type", "input_text");
                    w.WriteString("text", s.content.GetString());
                    w.WriteEndObject();
                    w.WriteEndArray();
                    break;
                case JsonValueKind.Array:
                    s.content.WriteTo(w);
                    break;
                default:
                    w.WriteStartArray();
                    w.WriteEndArray();
                    break;
            }

            w.WriteString("role", s.role);
            w.WriteEndObject();
        });
        return new StoredItem(id, json, role);
    }

    /// <summary>The assistant output message of a response, as a stored item.</summary>
    public static StoredItem FromResponseOutput(ResponseState response) => new(
        response.MessageId,
        Json.Serialize(response, static (w, s) => ResponseJson.WriteMessageItem(w, s, done: true)),
        "assistant");

    /// <summary>Applies <c>order</c> (asc|desc), <c>after</c> and <c>limit</c> (1..100, default 20) to items kept oldest first.</summary>
    public static (List<T> Page, bool HasMore) Page<T>(IReadOnlyList<T> oldestFirst, Func<T, string> idOf, IQueryCollection query, string defaultOrder)
    {
        var descending = (query["order"].ToString() is { Length: > 0 } order ? order : defaultOrder) == "desc";
        var limit = int.TryParse(query["limit"], NumberStyles.Integer, CultureInfo.InvariantCulture, out var l) ? Math.Clamp(l, 1, 100) : 20;
        var after = query["after"].ToString();

        var page = new List<T>(Math.Min(limit, oldestFirst.Count));
        var started = after.Length == 0;
        var hasMore = false;
        for (var i = 0; i < oldestFirst.Count; i++)
        {
            var item = oldestFirst[descending ? oldestFirst.Count - 1 - i : i];
            if (!started)
            {
                started = idOf(item) == after;
                continue;
            }

            if (page.Count == limit)
            {
                hasMore = true;
                break;
            }

            page.Add(item);
        }

        return (page, hasMore);
    }

    /// <summary><c>{"object":"list","data":[…],"first_id","has_more","last_id"}</c>, as the recordings order it.</summary>
    public static byte[] ListJson<T>(List<T> page, bool hasMore, Func<T, string> idOf, Action<Utf8JsonWriter, T> writeItem) =>
        Json.Serialize((page, hasMore, idOf, writeItem), static (w, s) =>
        {
            w.WriteStartObject();
            w.WriteString("object", "list");
            w.WriteStartArray("data");
            foreach (var item in s.page)
            {
                s.writeItem(w, item);
            }

            w.WriteEndArray();
            w.WriteString("first_id", s.page.Count > 0 ? s.idOf(s.page[0]) : null);
            w.WriteBoolean("has_more", s.hasMore);
            w.WriteString("last_id", s.page.Count > 0 ? s.idOf(s.page[^1]) : null);
            w.WriteEndObject();
        });

    public static void WriteRaw(Utf8JsonWriter w, StoredItem item) => w.WriteRawValue(item.Json, skipInputValidation: true);
}
