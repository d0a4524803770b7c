using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.Encodings.Web;
using System.Text.Json;
using Serilog.Events;
using Serilog.Parsing;

namespace Gateway.Observability;

/// <summary>
/// Writes a log event as one CLEF line in UTF-8, the same JSON object Serilog's <c>CompactJsonFormatter</c> writes
/// (<c>@t</c>, <c>@mt</c>, <c>@l</c> unless Information, <c>@x</c>, <c>@tr</c>, <c>@sp</c>, then the properties in order, a
/// leading <c>@</c> doubled), but straight into bytes with <see cref="Utf8JsonWriter"/> instead of through a UTF-16
/// <see cref="TextWriter"/> and a per-value visitor. Events it does not cover exactly (renderings of formatted tokens,
/// dictionary values, scalars of other types) are left to the formatter: <see cref="TryWrite"/> returns false, and what
/// it wrote of the line so far is the caller's to discard. One pass over the properties, and the names and templates
/// the gateway's events repeat on every line are encoded once, not per line. Not thread-safe: one instance per sink,
/// used by one drain at a time.
/// </summary>
internal sealed class ClefWriter
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

    /// <summary>Property names are the code's own (templates, [LoggerMessage] parameters, enrichers): a small set, bounded anyway.</summary>
    private const int MaxCachedNames = 512;

    // Templates without formatted tokens (most) with their encoded text; null for one that needs @r renderings.
    private readonly ConditionalWeakTable<MessageTemplate, EncodedTemplate> _templates = [];

    private readonly Dictionary<string, JsonEncodedText> _names = new(StringComparer.Ordinal);

    // The name last written at each position of a line: events of one kind (the usage event) carry the same name objects
    // in the same order line after line, so most names are found by one reference compare, without hashing.
    private readonly (string? Name, JsonEncodedText Encoded)[] _lastNames = new (string?, JsonEncodedText)[64];

    // The string value last written at each position, encoded once it comes twice in a row: the usage event's constant
    // values (tenant, endpoint, outcome, usage source, method, upstream, category) are the same objects line after line.
    // A value that changes every line (an id) is written as before and never encoded ahead, so it costs nothing more.
    private readonly (string? Value, JsonEncodedText? Encoded)[] _lastValues = new (string?, JsonEncodedText?)[64];

    public static JsonWriterOptions WriterOptions => Options;

    /// <summary>
    /// Writes the event (without the newline) when every part of it is covered; otherwise returns false, possibly after
    /// writing part of the line, which the caller discards (<see cref="StdoutClefSink"/> writes into a scratch line).
    /// </summary>
    public bool TryWrite(LogEvent logEvent, Utf8JsonWriter writer)
    {
        if (EncodedTemplateOf(logEvent.MessageTemplate) is not { } template)
        {
            return false;
        }

        writer.WriteStartObject();
        Span<char> timestamp = stackalloc char[40];
        logEvent.Timestamp.UtcDateTime.TryFormat(timestamp, out var length, "O", CultureInfo.InvariantCulture);
        writer.WriteString(Timestamp, timestamp[..length]);
        writer.WriteString(Template, template);
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

        // Serilog keeps the properties in a Dictionary: enumerated as one, the enumerator is not boxed.
        var properties = logEvent.Properties as Dictionary<string, LogEventPropertyValue> ?? logEvent.Properties.ToDictionary();
        var position = 0;
        foreach (var (name, value) in properties)
        {
            writer.WritePropertyName(EncodedName(name, position));
            if (value is ScalarValue { Value: string text } && (uint)position < (uint)_lastValues.Length)
            {
                WriteString(writer, text, ref _lastValues[position]);
            }
            else if (!TryWriteValue(writer, value))
            {
                return false;
            }

            position++;
        }

        writer.WriteEndObject();
        return true;
    }

    private JsonEncodedText? EncodedTemplateOf(MessageTemplate template)
    {
        if (!_templates.TryGetValue(template, out var encoded))
        {
            var isPlain = !template.Tokens.OfType<PropertyToken>().Any(t => t.Format is not null);
            encoded = new EncodedTemplate(isPlain ? JsonEncodedText.Encode(template.Text, Options.Encoder) : null);
            _templates.AddOrUpdate(template, encoded);
        }

        return encoded.Text;
    }

    private JsonEncodedText EncodedName(string name, int position)
    {
        var atPosition = (uint)position < (uint)_lastNames.Length;
        if (atPosition && ReferenceEquals(_lastNames[position].Name, name))
        {
            return _lastNames[position].Encoded;
        }

        if (!_names.TryGetValue(name, out var encoded))
        {
            // CLEF reserves a leading @ for its own members: a property's is doubled.
            encoded = JsonEncodedText.Encode(name.StartsWith('@') ? string.Concat("@", name) : name, Options.Encoder);
            if (_names.Count < MaxCachedNames)
            {
                _names.Add(name, encoded);
            }
        }

        if (atPosition)
        {
            _lastNames[position] = (name, encoded);
        }

        return encoded;
    }

    private static void WriteString(Utf8JsonWriter writer, string text, ref (string? Value, JsonEncodedText? Encoded) last)
    {
        if (ReferenceEquals(last.Value, text))
        {
            last.Encoded ??= JsonEncodedText.Encode(text, Options.Encoder);
            writer.WriteStringValue(last.Encoded.Value);
            return;
        }

        last = (text, null);
        writer.WriteStringValue(text);
    }

    private static bool TryWriteValue(Utf8JsonWriter writer, LogEventPropertyValue value)
    {
        switch (value)
        {
            case ScalarValue scalar:
                return TryWriteScalar(writer, scalar.Value);
            case StructureValue structure:
                writer.WriteStartObject();
                for (var i = 0; i < structure.Properties.Count; i++)
                {
                    writer.WritePropertyName(structure.Properties[i].Name);
                    if (!TryWriteValue(writer, structure.Properties[i].Value))
                    {
                        return false;
                    }
                }

                if (structure.TypeTag is { } typeTag)
                {
                    writer.WriteString(TypeTag, typeTag);
                }

                writer.WriteEndObject();
                return true;
            case SequenceValue sequence:
                writer.WriteStartArray();
                for (var i = 0; i < sequence.Elements.Count; i++)
                {
                    if (!TryWriteValue(writer, sequence.Elements[i]))
                    {
                        return false;
                    }
                }

                writer.WriteEndArray();
                return true;
            default:
                return false;
        }
    }

    /// <summary>The types the usage event carries first, most frequent first; NaN and infinities are the formatter's (it writes them as strings).</summary>
    private static bool TryWriteScalar(Utf8JsonWriter writer, object? value)
    {
        switch (value)
        {
            case string s: writer.WriteStringValue(s); return true;
            case null: writer.WriteNullValue(); return true;
            case long l: writer.WriteNumberValue(l); return true;
            case int i: writer.WriteNumberValue(i); return true;
            case bool b: writer.WriteBooleanValue(b); return true;
            case double d when double.IsFinite(d): writer.WriteNumberValue(d); return true;
            case decimal m: writer.WriteNumberValue(m); return true;
            case DateTimeOffset t: WriteRoundTrip(writer, t); return true;
            case DateTime t: WriteRoundTrip(writer, t); return true;
            case float f when float.IsFinite(f): writer.WriteNumberValue(f); return true;
            case uint u: writer.WriteNumberValue(u); return true;
            case ulong u: writer.WriteNumberValue(u); return true;
            case short s: writer.WriteNumberValue(s); return true;
            case ushort u: writer.WriteNumberValue(u); return true;
            case byte b: writer.WriteNumberValue(b); return true;
            case sbyte s: writer.WriteNumberValue(s); return true;
            default: return false;
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

    /// <summary>A template's text as written in <c>@mt</c>; null when the template has formatted tokens (left to the formatter).</summary>
    private sealed record EncodedTemplate(JsonEncodedText? Text);
}
