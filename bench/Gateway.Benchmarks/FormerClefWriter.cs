// The stdout sink's CLEF writer as it was before the sixth pass of #15 (a check of every property, then a second pass
// writing them, names and template encoded per line): the baseline of ClefFormatBenchmark and --interleaved-clef only.
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.Encodings.Web;
using System.Text.Json;
using Serilog.Events;
using Serilog.Parsing;

namespace Gateway.Benchmarks;

/// <summary>
/// Writes a log event as one CLEF line in UTF-8, the same JSON object Serilog's <c>CompactJsonFormatter</c> writes
/// (<c>@t</c>, <c>@mt</c>, <c>@l</c> unless Information, <c>@x</c>, <c>@tr</c>, <c>@sp</c>, then the properties in order, a
/// leading <c>@</c> doubled), but straight into bytes with <see cref="Utf8JsonWriter"/> instead of through a UTF-16
/// <see cref="TextWriter"/> and a per-value visitor. Events it does not cover exactly (renderings of formatted tokens,
/// dictionary values, scalars of other types) are left to the formatter: <see cref="TryWrite"/> returns false before
/// anything is written.
/// </summary>
internal sealed class FormerClefWriter
{
    // Not the default encoder: that one escapes every non-ASCII character and HTML-sensitive ones (<, >, &, ', +); CLEF
    // readers only need valid JSON, and the formatter writes those characters as they are.
    private static readonly JsonWriterOptions Options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, SkipValidation = true };

    private static readonly JsonEncodedText Timestamp = JsonEncodedText.Encode("@t");
    private static readonly JsonEncodedText Template = JsonEncodedText.Encode("@mt");
    private static readonly JsonEncodedText Level = JsonEncodedText.Encode("@l");
    private static readonly JsonEncodedText ExceptionName = JsonEncodedText.Encode("@x");
    private static readonly JsonEncodedText TraceId = JsonEncodedText.Encode("@tr");
    private static readonly JsonEncodedText SpanId = JsonEncodedText.Encode("@sp");
    private static readonly JsonEncodedText TypeTag = JsonEncodedText.Encode("$type");

    // Templates without formatted tokens (most): whether a template needs @r renderings is decided once per instance.
    private readonly ConditionalWeakTable<MessageTemplate, object> _plainTemplates = [];

    public static JsonWriterOptions WriterOptions => Options;

    /// <summary>Writes the event (without the newline) when every part of it is covered; otherwise writes nothing and returns false.</summary>
    public bool TryWrite(LogEvent logEvent, Utf8JsonWriter writer)
    {
        if (!IsPlain(logEvent.MessageTemplate))
        {
            return false;
        }

        // Serilog keeps the properties in a Dictionary: enumerated as one, the enumerator is not boxed.
        var properties = logEvent.Properties as Dictionary<string, LogEventPropertyValue> ?? logEvent.Properties.ToDictionary();
        foreach (var property in properties)
        {
            if (!IsCovered(property.Value))
            {
                return false;
            }
        }

        writer.WriteStartObject();
        Span<char> timestamp = stackalloc char[40];
        logEvent.Timestamp.UtcDateTime.TryFormat(timestamp, out var length, "O", CultureInfo.InvariantCulture);
        writer.WriteString(Timestamp, timestamp[..length]);
        writer.WriteString(Template, logEvent.MessageTemplate.Text);
        if (logEvent.Level != LogEventLevel.Information)
        {
            writer.WriteString(Level, LevelName(logEvent.Level));
        }

        if (logEvent.Exception is { } exception)
        {
            writer.WriteString(ExceptionName, exception.ToString());
        }

        if (logEvent.TraceId is { } traceId)
        {
            writer.WriteString(TraceId, traceId.ToHexString());
        }

        if (logEvent.SpanId is { } spanId)
        {
            writer.WriteString(SpanId, spanId.ToHexString());
        }

        foreach (var (name, value) in properties)
        {
            if (name.StartsWith('@'))
            {
                writer.WritePropertyName(string.Concat("@", name));
            }
            else
            {
                writer.WritePropertyName(name);
            }

            WriteValue(writer, value);
        }

        writer.WriteEndObject();
        return true;
    }

    private bool IsPlain(MessageTemplate template)
    {
        if (_plainTemplates.TryGetValue(template, out var plain))
        {
            return (bool)plain;
        }

        var isPlain = !template.Tokens.OfType<PropertyToken>().Any(t => t.Format is not null);
        _plainTemplates.AddOrUpdate(template, isPlain);
        return isPlain;
    }

    private static bool IsCovered(LogEventPropertyValue value)
    {
        switch (value)
        {
            case ScalarValue scalar:
                return scalar.Value is null or string or bool or int or long or uint or ulong or short or ushort or byte or sbyte or decimal
                    or DateTime or DateTimeOffset
                    || (scalar.Value is double d && double.IsFinite(d))
                    || (scalar.Value is float f && float.IsFinite(f));
            case StructureValue structure:
                for (var i = 0; i < structure.Properties.Count; i++)
                {
                    if (!IsCovered(structure.Properties[i].Value))
                    {
                        return false;
                    }
                }

                return true;
            case SequenceValue sequence:
                for (var i = 0; i < sequence.Elements.Count; i++)
                {
                    if (!IsCovered(sequence.Elements[i]))
                    {
                        return false;
                    }
                }

                return true;
            default:
                return false;
        }
    }

    private static void WriteValue(Utf8JsonWriter writer, LogEventPropertyValue value)
    {
        switch (value)
        {
            case ScalarValue scalar:
                WriteScalar(writer, scalar.Value);
                break;
            case StructureValue structure:
                writer.WriteStartObject();
                for (var i = 0; i < structure.Properties.Count; i++)
                {
                    writer.WritePropertyName(structure.Properties[i].Name);
                    WriteValue(writer, structure.Properties[i].Value);
                }

                if (structure.TypeTag is { } typeTag)
                {
                    writer.WriteString(TypeTag, typeTag);
                }

                writer.WriteEndObject();
                break;
            case SequenceValue sequence:
                writer.WriteStartArray();
                for (var i = 0; i < sequence.Elements.Count; i++)
                {
                    WriteValue(writer, sequence.Elements[i]);
                }

                writer.WriteEndArray();
                break;
        }
    }

    private static void WriteScalar(Utf8JsonWriter writer, object? value)
    {
        switch (value)
        {
            case null: writer.WriteNullValue(); break;
            case string s: writer.WriteStringValue(s); break;
            case bool b: writer.WriteBooleanValue(b); break;
            case int i: writer.WriteNumberValue(i); break;
            case long l: writer.WriteNumberValue(l); break;
            case uint u: writer.WriteNumberValue(u); break;
            case ulong u: writer.WriteNumberValue(u); break;
            case short s: writer.WriteNumberValue(s); break;
            case ushort u: writer.WriteNumberValue(u); break;
            case byte b: writer.WriteNumberValue(b); break;
            case sbyte s: writer.WriteNumberValue(s); break;
            case decimal m: writer.WriteNumberValue(m); break;
            case double d: writer.WriteNumberValue(d); break;
            case float f: writer.WriteNumberValue(f); break;
            case DateTime t: WriteRoundTrip(writer, t); break;
            case DateTimeOffset t: WriteRoundTrip(writer, t); break;
        }
    }

    private static void WriteRoundTrip<T>(Utf8JsonWriter writer, T value)
        where T : ISpanFormattable
    {
        Span<char> text = stackalloc char[40];
        value.TryFormat(text, out var length, "O", CultureInfo.InvariantCulture);
        writer.WriteStringValue(text[..length]);
    }

    private static string LevelName(LogEventLevel level) => level switch
    {
        LogEventLevel.Verbose => "Verbose",
        LogEventLevel.Debug => "Debug",
        LogEventLevel.Warning => "Warning",
        LogEventLevel.Error => "Error",
        LogEventLevel.Fatal => "Fatal",
        _ => level.ToString(),
    };
}
