using System.Text.Json;

namespace Gateway.Tests.Infrastructure;

/// <summary>
/// The recorded OpenAI exchanges in tests/Fixtures/openai-recordings (from openai/openai-dotnet's SessionRecords,
/// MIT, Copyright (c) 2024 OpenAI; see that folder's README), as test cases.
/// </summary>
public static class Recordings
{
    public static string Root => Path.Combine(AppContext.BaseDirectory, "Fixtures", "openai-recordings");

    public sealed record Exchange(string File, int Index, string Method, string PathAndQuery, string? RequestBody, int StatusCode, JsonElement ResponseBody, bool IsStream)
    {
        public override string ToString() => $"{File}#{Index}";
    }

    public static IEnumerable<Exchange> All()
    {
        foreach (var path in Directory.EnumerateFiles(Root, "*.json", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            var relative = Path.GetRelativePath(Root, path).Replace('\\', '/');
            using var document = JsonDocument.Parse(File.ReadAllText(path));
            var index = 0;
            foreach (var entry in document.RootElement.GetProperty("Entries").EnumerateArray())
            {
                var uri = new Uri(entry.GetProperty("RequestUri").GetString()!);
                var body = entry.GetProperty("RequestBody");
                var responseHeaders = entry.GetProperty("ResponseHeaders");
                var isStream = responseHeaders.TryGetProperty("Content-Type", out var type) && type.GetString()!.StartsWith("text/event-stream", StringComparison.Ordinal);
                yield return new Exchange(relative, index++, entry.GetProperty("RequestMethod").GetString()!, uri.PathAndQuery,
                    body.ValueKind == JsonValueKind.Null ? null : body.GetRawText(), entry.GetProperty("StatusCode").GetInt32(),
                    entry.GetProperty("ResponseBody").Clone(), isStream);
            }
        }
    }

    /// <summary>The usage the recorded answer carries (JSON top-level, SSE terminal event, chat usage chunk), if any.</summary>
    public static JsonElement? RecordedUsage(Exchange exchange)
    {
        if (!exchange.IsStream)
        {
            return exchange.ResponseBody.ValueKind == JsonValueKind.Object && exchange.ResponseBody.TryGetProperty("usage", out var usage)
                && usage.ValueKind == JsonValueKind.Object ? usage : null;
        }

        var text = string.Concat(exchange.ResponseBody.EnumerateArray().Select(s => s.GetString()));
        JsonElement? found = null;
        foreach (var line in text.Split('\n'))
        {
            if (!line.StartsWith("data: {", StringComparison.Ordinal))
            {
                continue;
            }

            var data = JsonDocument.Parse(line[6..]).RootElement;
            if (data.TryGetProperty("response", out var response) && response.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object)
            {
                found = u.Clone();
            }
            else if (data.TryGetProperty("usage", out var chat) && chat.ValueKind == JsonValueKind.Object)
            {
                found = chat.Clone();
            }
        }

        return found;
    }
}
