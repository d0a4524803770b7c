using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Primitives;

namespace FakeUpstream;

/// <summary>
/// <c>x-fake-replay: Folder/File.json#N</c>: answers with recorded exchange N of a recording (status, headers, body), so
/// tests can push real api.openai.com bytes through the gateway and compare what comes out.
/// </summary>
internal sealed class ReplayCatalog(string? root)
{
    private readonly ConcurrentDictionary<string, RecordedExchange[]> _files = new(StringComparer.Ordinal);

    public string? Root { get; } = root is null ? null : Path.GetFullPath(root);

    public RecordedExchange Get(string file, int entry)
    {
        if (Root is null)
        {
            throw new InvalidOperationException("No recordings folder: set FakeUpstreamSettings.RecordingsPath.");
        }

        var path = Path.GetFullPath(Path.Combine(Root, file));
        if (!path.StartsWith(Root.TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar, StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"Recording '{file}' is outside the recordings folder.");
        }

        var exchanges = _files.GetOrAdd(path, RecordedExchange.LoadFile);
        if ((uint)entry >= (uint)exchanges.Length)
        {
            throw new InvalidOperationException($"Recording '{file}' has {exchanges.Length} entries; there is no entry {entry}.");
        }

        return exchanges[entry];
    }

    /// <summary>Parses <c>RelativeFile.json#entryIndex</c>.</summary>
    public static bool TryParseSpec(string spec, out string file, out int entry)
    {
        var hash = spec.LastIndexOf('#');
        file = hash < 0 ? spec : spec[..hash];
        entry = 0;
        return file.Length > 0
            && (hash < 0 || int.TryParse(spec.AsSpan(hash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out entry));
    }

    /// <summary>Writes the recorded answer, applying the same stream and body faults as synthetic answers.</summary>
    public async Task ReplayAsync(HttpContext context, string spec)
    {
        RecordedExchange exchange;
        try
        {
            exchange = TryParseSpec(spec, out var file, out var entry)
                ? Get(file, entry)
                : throw new InvalidOperationException("Expected x-fake-replay: <RelativeFile.json>#<entryIndex>.");
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException or JsonException or UnauthorizedAccessException)
        {
            await OpenAiWire.WriteErrorAsync(context, StatusCodes.Status500InternalServerError, $"x-fake-replay '{spec}': {ex.Message}", "fake_upstream_error", null, null);
            return;
        }

        var response = context.Response;
        response.StatusCode = exchange.StatusCode;
        foreach (var header in exchange.Headers)
        {
            response.Headers[header.Name] = header.Kind switch
            {
                ReplayHeaderKind.RequestId => Ids.RequestId(),
                ReplayHeaderKind.ProcessingMs => OpenAiWire.ProcessingMs(context),
                _ => header.Values,
            };
        }

        var ledger = context.Fake().State.Ledger;
        if (exchange.SseChunks is { } chunks)
        {
            var written = await SseWriter.StreamAsync(context, chunks);
            if (exchange.Usage is { } streamed && written >= streamed.EventsRequired)
            {
                ledger.AddReplayed(streamed.Id, streamed.Usage);
            }

            return;
        }

        if (await OpenAiWire.WriteBodyAsync(context, exchange.Body, negotiateCompression: true) && exchange.Usage is { } usage)
        {
            ledger.AddReplayed(usage.Id, usage.Usage);
        }
    }
}

internal enum ReplayHeaderKind
{
    Static,
    RequestId,
    ProcessingMs,
}

internal sealed record ReplayHeader(string Name, StringValues Values, ReplayHeaderKind Kind);

/// <summary>The usage a recorded body reports, and how many SSE events must be written for it to have been delivered.</summary>
internal sealed record ReplayUsage(string? Id, TokenUsage Usage, int EventsRequired);

/// <summary>One recorded request/response pair, prepared for replay.</summary>
internal sealed class RecordedExchange
{
    // Hop-by-hop or length headers Kestrel computes itself, and headers that would be wrong for a local server.
    private static readonly HashSet<string> DroppedHeaders = new(StringComparer.OrdinalIgnoreCase)
    {
        "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Alt-Svc", "Date", "Strict-Transport-Security", "Content-Encoding",
    };

    private const string Sanitized = "Sanitized";

    public required int StatusCode { get; init; }

    public required ReplayHeader[] Headers { get; init; }

    /// <summary>The exact bytes the fake sends (SSE: the concatenation of the recorded strings).</summary>
    public required byte[] Body { get; init; }

    /// <summary>For <c>text/event-stream</c>: the recorded strings, written and flushed one by one.</summary>
    public ReadOnlyMemory<byte>[]? SseChunks { get; init; }

    public ReplayUsage? Usage { get; init; }

    public static RecordedExchange[] LoadFile(string path)
    {
        using var document = JsonDocument.Parse(File.ReadAllBytes(path));
        var entries = document.RootElement.GetProperty("Entries");
        var result = new RecordedExchange[entries.GetArrayLength()];
        var i = 0;
        foreach (var entry in entries.EnumerateArray())
        {
            result[i++] = Load(entry);
        }

        return result;
    }

    private static RecordedExchange Load(JsonElement entry)
    {
        var headers = new List<ReplayHeader>();
        var isSse = false;
        if (entry.TryGetProperty("ResponseHeaders", out var recordedHeaders) && recordedHeaders.ValueKind == JsonValueKind.Object)
        {
            foreach (var header in recordedHeaders.EnumerateObject())
            {
                if (DroppedHeaders.Contains(header.Name))
                {
                    continue;
                }

                var values = header.Value.ValueKind == JsonValueKind.Array
                    ? header.Value.EnumerateArray().Select(v => v.GetString() ?? string.Empty).ToArray()
                    : [header.Value.GetString() ?? string.Empty];
                isSse |= header.Name.Equals("Content-Type", StringComparison.OrdinalIgnoreCase) && values[0].Contains("text/event-stream", StringComparison.OrdinalIgnoreCase);
                headers.Add(Desanitize(header.Name, values));
            }
        }

        var statusCode = entry.GetProperty(nameof(StatusCode)).GetInt32();
        entry.TryGetProperty("ResponseBody", out var body);
        if (isSse && body.ValueKind == JsonValueKind.Array)
        {
            var chunks = body.EnumerateArray().Select(s => (ReadOnlyMemory<byte>)Encoding.UTF8.GetBytes(s.GetString() ?? string.Empty)).ToArray();
            var all = new byte[chunks.Sum(c => c.Length)];
            var offset = 0;
            foreach (var chunk in chunks)
            {
                chunk.Span.CopyTo(all.AsSpan(offset));
                offset += chunk.Length;
            }

            return new RecordedExchange
            {
                StatusCode = statusCode,
                Headers = [.. headers],
                Body = all,
                SseChunks = chunks,
                Usage = StreamUsage(chunks),
            };
        }

        var json = body.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null
            ? []
            : Json.Serialize(body, static (w, b) => b.WriteTo(w)); // compact; numbers keep their recorded text (1.0 stays 1.0)
        return new RecordedExchange
        {
            StatusCode = statusCode,
            Headers = [.. headers],
            Body = json,
            Usage = body.ValueKind == JsonValueKind.Object ? UsageOf(body, eventsRequired: 0) : null,
        };
    }

    /// <summary>Realistic values where the recording has "Sanitized" (the gateway's header filtering is what tests look at).</summary>
    private static ReplayHeader Desanitize(string name, string[] values)
    {
        var kind = ReplayHeaderKind.Static;
        for (var i = 0; i < values.Length; i++)
        {
            if (values[i] != Sanitized)
            {
                continue;
            }

            if (name.Equals("X-Request-ID", StringComparison.OrdinalIgnoreCase))
            {
                kind = ReplayHeaderKind.RequestId;
            }
            else if (name.Equals("openai-processing-ms", StringComparison.OrdinalIgnoreCase))
            {
                kind = ReplayHeaderKind.ProcessingMs;
            }

            values[i] = name.ToLowerInvariant() switch
            {
                "set-cookie" => "__cf_bm=fake; path=/",
                "openai-organization" => "org-fake",
                "openai-project" => "proj_fake",
                _ => "fake",
            };
        }

        return new ReplayHeader(name, new StringValues(values), kind);
    }

    /// <summary>Usage of a recorded stream: <c>response.completed|incomplete|failed</c>.response.usage, or a chat chunk's usage.</summary>
    private static ReplayUsage? StreamUsage(ReadOnlyMemory<byte>[] chunks)
    {
        var events = 0;
        ReplayUsage? found = null;
        foreach (var chunk in chunks)
        {
            var text = Encoding.UTF8.GetString(chunk.Span);
            var endsEvent = text.EndsWith("\n\n", StringComparison.Ordinal);
            foreach (var line in text.Split('\n'))
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal) || line == "data: [DONE]")
                {
                    continue;
                }

                try
                {
                    using var data = JsonDocument.Parse(line.AsMemory(6));
                    var root = data.RootElement;
                    var type = RequestJson.String(root, "type");
                    if (type is "response.completed" or "response.incomplete" or "response.failed"
                        && RequestJson.Element(root, "response") is { ValueKind: JsonValueKind.Object } response)
                    {
                        found = UsageOf(response, events + 1) ?? found;
                    }
                    else if (RequestJson.String(root, "object") == "chat.completion.chunk")
                    {
                        found = UsageOf(root, events + 1) ?? found;
                    }
                }
                catch (JsonException)
                {
                    // Not JSON: nothing to meter.
                }
            }

            if (endsEvent)
            {
                events++;
            }
        }

        return found;
    }

    private static ReplayUsage? UsageOf(JsonElement owner, int eventsRequired)
    {
        if (RequestJson.Element(owner, "usage") is not { ValueKind: JsonValueKind.Object } usage)
        {
            return null;
        }

        var id = RequestJson.String(owner, "id");
        TokenUsage tokens;
        if (usage.TryGetProperty("input_tokens", out _))
        {
            tokens = new TokenUsage(
                Long(usage, "input_tokens"),
                Long(RequestJson.Element(usage, "input_tokens_details"), "cached_tokens"),
                Long(usage, "output_tokens"),
                Long(RequestJson.Element(usage, "output_tokens_details"), "reasoning_tokens"),
                Long(usage, "total_tokens"));
        }
        else
        {
            tokens = new TokenUsage(
                Long(usage, "prompt_tokens"),
                Long(RequestJson.Element(usage, "prompt_tokens_details"), "cached_tokens"),
                Long(usage, "completion_tokens"),
                Long(RequestJson.Element(usage, "completion_tokens_details"), "reasoning_tokens"),
                Long(usage, "total_tokens"));
        }

        return new ReplayUsage(id, tokens, eventsRequired);
    }

    private static long Long(JsonElement? obj, string name) =>
        obj is { ValueKind: JsonValueKind.Object } o && o.TryGetProperty(name, out var v) && v.TryGetInt64(out var n) ? n : 0;
}
