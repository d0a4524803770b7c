using System.Collections.Concurrent;
using System.Text.Json;

namespace FakeUpstream;

/// <summary>Renders responses as the real API does (field order and shapes from the recordings).</summary>
internal static class ResponseJson
{
    private static readonly ConcurrentDictionary<string, string> DatedModels = new(StringComparer.Ordinal);

    /// <summary>The API answers with the dated snapshot name of the requested alias.</summary>
    public static string DatedModel(string model)
    {
        if (DatedModels.TryGetValue(model, out var dated))
        {
            return dated;
        }

        dated = model switch
        {
            "gpt-4o-mini" => "gpt-4o-mini-2024-07-18",
            "gpt-4o" => "gpt-4o-2024-08-06",
            "gpt-4.1" => "gpt-4.1-2025-04-14",
            "gpt-4.1-mini" => "gpt-4.1-mini-2025-04-14",
            "gpt-4.1-nano" => "gpt-4.1-nano-2025-04-14",
            "o3-mini" => "o3-mini-2025-01-31",
            _ when HasDateSuffix(model) => model,
            _ => model + "-2025-01-01",
        };
        if (DatedModels.Count < 1024)
        {
            DatedModels.TryAdd(model, dated);
        }

        return dated;

        static bool HasDateSuffix(string m) =>
            m.Length > 11 && m[^11] == '-' && m[^8] == '-' && m[^5] == '-' && char.IsAsciiDigit(m[^10]) && char.IsAsciiDigit(m[^1]);
    }

    public static byte[] Serialize(ResponseState state, ResponsePhase phase) =>
        Json.Serialize((state, phase), static (w, s) => WriteResponse(w, s.state, s.phase));

    public static void WriteResponse(Utf8JsonWriter w, ResponseState s, ResponsePhase phase)
    {
        var final = phase == ResponsePhase.Final;
        w.WriteStartObject();
        w.WriteString("id", s.Id);
        w.WriteString("object", "response");
        w.WriteNumber("created_at", s.CreatedAt);
        w.WriteString("status", phase switch
        {
            ResponsePhase.Queued => "queued",
            ResponsePhase.InProgress => "in_progress",
            ResponsePhase.Cancelled => "cancelled",
            _ => s.Incomplete ? "incomplete" : "completed",
        });
        w.WriteBoolean("background", s.Background);
        if (final)
        {
            w.WriteNumber("completed_at", s.CreatedAt);
        }
        else
        {
            w.WriteNull("completed_at");
        }

        if (s.ConversationId is not null)
        {
            w.WriteStartObject("conversation");
            w.WriteString("id", s.ConversationId);
            w.WriteEndObject();
        }

        w.WriteNull("error");
        if (final && s.Incomplete)
        {
            w.WriteStartObject("incomplete_details");
            w.WriteString("reason", "max_output_tokens");
            w.WriteEndObject();
        }
        else
        {
            w.WriteNull("incomplete_details");
        }

        w.WriteString("instructions", s.Instructions);
        if (s.MaxOutputTokens is { } max)
        {
            w.WriteNumber("max_output_tokens", max);
        }
        else
        {
            w.WriteNull("max_output_tokens");
        }

        w.WriteNull("max_tool_calls");
        w.WriteString("model", s.Model);
        w.WriteStartArray("output");
        if (final)
        {
            WriteMessageItem(w, s, done: true);
        }

        w.WriteEndArray();
        w.WriteBoolean("parallel_tool_calls", true);
        w.WriteString("previous_response_id", s.PreviousResponseId);
        w.WriteNull("prompt_cache_key");
        w.WriteStartObject("reasoning");
        w.WriteNull("effort");
        w.WriteNull("summary");
        w.WriteEndObject();
        w.WriteNull("safety_identifier");
        w.WriteString("service_tier", final ? "default" : "auto");
        w.WriteBoolean("store", s.Store);
        w.WriteRawNumber("temperature", "1.0"u8);
        w.WriteStartObject("text");
        w.WriteStartObject("format");
        w.WriteString("type", "text");
        w.WriteEndObject();
        w.WriteString("verbosity", "medium");
        w.WriteEndObject();
        w.WriteString("tool_choice", "auto");
        w.WriteStartArray("tools");
        w.WriteEndArray();
        w.WriteNumber("top_logprobs", 0);
        w.WriteRawNumber("top_p", "1.0"u8);
        w.WriteString("truncation", "disabled");
        if (final)
        {
            w.WritePropertyName("usage");
            WriteUsage(w, s.Usage);
        }
        else
        {
            w.WriteNull("usage");
        }

        w.WriteNull("user");
        w.WritePropertyName("metadata");
        if (s.MetadataJson is not null)
        {
            w.WriteRawValue(s.MetadataJson, skipInputValidation: true);
        }
        else
        {
            w.WriteStartObject();
            w.WriteEndObject();
        }

        w.WriteEndObject();
    }

    /// <summary><c>{"input_tokens","input_tokens_details":{"cached_tokens"},"output_tokens","output_tokens_details":{"reasoning_tokens"},"total_tokens"}</c>.</summary>
    public static void WriteUsage(Utf8JsonWriter w, in TokenUsage usage)
    {
        w.WriteStartObject();
        w.WriteNumber("input_tokens", usage.InputTokens);
        w.WriteStartObject("input_tokens_details");
        w.WriteNumber("cached_tokens", usage.CachedTokens);
        w.WriteEndObject();
        w.WriteNumber("output_tokens", usage.OutputTokens);
        w.WriteStartObject("output_tokens_details");
        w.WriteNumber("reasoning_tokens", usage.ReasoningTokens);
        w.WriteEndObject();
        w.WriteNumber("total_tokens", usage.TotalTokens);
        w.WriteEndObject();
    }

    /// <summary>The assistant message output item; <paramref name="done"/> false renders it as just added (no content yet).</summary>
    public static void WriteMessageItem(Utf8JsonWriter w, ResponseState s, bool done)
    {
        w.WriteStartObject();
        w.WriteString("id", s.MessageId);
        w.WriteString("type", "message");
        w.WriteString("status", !done ? "in_progress" : s.Incomplete ? "incomplete" : "completed");
        w.WriteStartArray("content");
        if (done)
        {
            WriteOutputTextPart(w, s.Text);
        }

        w.WriteEndArray();
        w.WriteString("role", "assistant");
        w.WriteEndObject();
    }

    public static void WriteOutputTextPart(Utf8JsonWriter w, string text)
    {
        w.WriteStartObject();
        w.WriteString("type", "output_text");
        w.WriteStartArray("annotations");
        w.WriteEndArray();
        w.WriteStartArray("logprobs");
        w.WriteEndArray();
        w.WriteString("text", text);
        w.WriteEndObject();
    }

    /// <summary>
    /// The full event sequence of a streamed response: created, [queued,] in_progress, output_item.added,
    /// content_part.added, N × output_text.delta, output_text.done, content_part.done, output_item.done, then
    /// response.completed (or response.incomplete). A cancelled background response only has created and queued.
    /// sequence_number equals the event's index, so <c>starting_after=N</c> means "skip N+1 events".
    /// </summary>
    public static SseEvents BuildEvents(ResponseState s)
    {
        using var b = new SseEventBuilder(s.Deltas + 10);
        var seq = 0;
        var initial = s.Background ? ResponsePhase.Queued : ResponsePhase.InProgress;
        Lifecycle(b, "response.created", seq++, s, initial);
        if (s.Background)
        {
            Lifecycle(b, "response.queued", seq++, s, ResponsePhase.Queued);
        }

        if (s.Status == ResponseStatus.Cancelled)
        {
            return b.Build();
        }

        Lifecycle(b, "response.in_progress", seq++, s, ResponsePhase.InProgress);

        var w = Begin(b, "response.output_item.added", seq++);
        w.WriteNumber("output_index", 0);
        w.WritePropertyName("item");
        WriteMessageItem(w, s, done: false);
        End(b, w);

        w = Begin(b, "response.content_part.added", seq++);
        WriteItemRef(w, s);
        w.WritePropertyName("part");
        WriteOutputTextPart(w, string.Empty);
        End(b, w);

        for (var i = 0; i < s.Deltas; i++)
        {
            var delta = Words.Delta(i);
            w = Begin(b, "response.output_text.delta", seq++);
            WriteItemRef(w, s);
            w.WriteString("delta", delta);
            w.WriteStartArray("logprobs");
            w.WriteEndArray();
            if (s.Obfuscation)
            {
                // Real deltas carry random padding that hides their length; a fixed-width deterministic pad does the same.
                w.WriteString("obfuscation", Obfuscation.AsSpan(0, Math.Max(1, 16 - delta.Length)));
            }

            End(b, w);
        }

        var text = s.Text;
        w = Begin(b, "response.output_text.done", seq++);
        WriteItemRef(w, s);
        w.WriteString("text", text);
        w.WriteStartArray("logprobs");
        w.WriteEndArray();
        End(b, w);

        w = Begin(b, "response.content_part.done", seq++);
        WriteItemRef(w, s);
        w.WritePropertyName("part");
        WriteOutputTextPart(w, text);
        End(b, w);

        w = Begin(b, "response.output_item.done", seq++);
        w.WriteNumber("output_index", 0);
        w.WritePropertyName("item");
        WriteMessageItem(w, s, done: true);
        End(b, w);

        Lifecycle(b, s.Incomplete ? "response.incomplete" : "response.completed", seq, s, ResponsePhase.Final);
        return b.Build();
    }

    private const string Obfuscation = "q8Zr3XkTp0LmWb7Y";

    private static void Lifecycle(SseEventBuilder b, string type, int seq, ResponseState s, ResponsePhase phase)
    {
        var w = Begin(b, type, seq);
        w.WritePropertyName("response");
        WriteResponse(w, s, phase);
        End(b, w);
    }

    private static Utf8JsonWriter Begin(SseEventBuilder b, string type, int seq)
    {
        var w = b.BeginEvent(type);
        w.WriteStartObject();
        w.WriteString("type", type);
        w.WriteNumber("sequence_number", seq);
        return w;
    }

    private static void End(SseEventBuilder b, Utf8JsonWriter w)
    {
        w.WriteEndObject();
        b.End();
    }

    private static void WriteItemRef(Utf8JsonWriter w, ResponseState s)
    {
        w.WriteString("item_id", s.MessageId);
        w.WriteNumber("output_index", 0);
        w.WriteNumber("content_index", 0);
    }
}
