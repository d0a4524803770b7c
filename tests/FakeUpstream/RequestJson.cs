using System.Text.Json;

namespace FakeUpstream;

/// <summary>Tolerant readers for request JSON (wrong types read as absent, like optional fields).</summary>
internal static class RequestJson
{
    public static string? String(JsonElement obj, string name) =>
        obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    public static bool? Bool(JsonElement obj, string name) =>
        obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False
            ? v.GetBoolean()
            : null;

    public static int? Int(JsonElement obj, string name) =>
        obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var n)
            ? n
            : null;

    public static JsonElement? Element(JsonElement obj, string name) =>
        obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    /// <summary>Raw JSON of an object-valued property (e.g. metadata), or null.</summary>
    public static string? RawObject(JsonElement obj, string name) =>
        Element(obj, name) is { ValueKind: JsonValueKind.Object } v ? v.GetRawText() : null;

    /// <summary>Parses a request body; null (and a 400 already written by the caller) when it is not a JSON object.
    /// An empty body reads as <c>{}</c>.</summary>
    public static JsonDocument? TryParseObject(byte[] body)
    {
        if (body.Length == 0)
        {
            return JsonDocument.Parse("{}"u8.ToArray());
        }

        try
        {
            var document = JsonDocument.Parse(body);
            if (document.RootElement.ValueKind == JsonValueKind.Object)
            {
                return document;
            }

            document.Dispose();
            return null;
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
