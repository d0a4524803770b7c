using System.Buffers.Text;
using System.Globalization;
using System.IO.Hashing;
using System.Text.Json;

namespace Gateway.Reporting;

/// <summary>
/// Reads one CLEF line into a <see cref="UsageRecord"/> with a <see cref="Utf8JsonReader"/>: no DOM, no string per field
/// (dimension values are interned, the request id is hashed from its bytes). A line that is not valid JSON, or not a
/// usage event, comes back with <see cref="UsageRecord.IsUsageEvent"/> false.
/// </summary>
internal sealed class UsageLineParser(bool needTimestamp)
{
    // Seeded with the literal the report substitutes for a missing upstream, so that "default" read from a line is the same instance.
    private readonly Dictionary<string, string> _strings = new(StringComparer.Ordinal) { [UsageReport.DefaultUpstream] = UsageReport.DefaultUpstream };
    private readonly char[] _chars = new char[512];

    public bool TryParse(ReadOnlySpan<byte> line, out UsageRecord record)
    {
        record = default;
        try
        {
            return Parse(line, ref record);
        }
        catch (JsonException)
        {
            record = default;
            return false;
        }
    }

    private bool Parse(ReadOnlySpan<byte> line, ref UsageRecord record)
    {
        var reader = new Utf8JsonReader(line, new JsonReaderOptions { MaxDepth = 16 });
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            return false;
        }

        while (reader.Read())
        {
            if (reader.TokenType == JsonTokenType.EndObject)
            {
                break;
            }

            // Property names of our own events are never escaped: compare the raw bytes.
            var name = reader.ValueSpan;
            if (!reader.Read())
            {
                return false;
            }

            switch (name.Length)
            {
                case 2 when name.SequenceEqual("@t"u8):
                    ReadTimestamp(ref reader, ref record);
                    break;
                case 6 when name.SequenceEqual("Tenant"u8):
                    record.Tenant = Text(ref reader);
                    break;
                case 5 when name.SequenceEqual("Model"u8):
                    record.Model = Text(ref reader);
                    break;
                case 14 when name.SequenceEqual("RequestedModel"u8):
                    record.RequestedModel = Text(ref reader);
                    break;
                case 8 when name.SequenceEqual("Endpoint"u8):
                    record.Endpoint = Text(ref reader);
                    break;
                case 8 when name.SequenceEqual("Upstream"u8):
                    record.Upstream = Text(ref reader);
                    break;
                case 7 when name.SequenceEqual("Outcome"u8):
                    record.Outcome = Text(ref reader);
                    break;
                case 11 when name.SequenceEqual("UsageSource"u8):
                    record.UsageSource = Text(ref reader);
                    break;
                case 10 when name.SequenceEqual("StatusCode"u8):
                    record.StatusCode = Long(ref reader);
                    break;
                case 11 when name.SequenceEqual("InputTokens"u8):
                    record.InputTokens = Long(ref reader);
                    break;
                case 17 when name.SequenceEqual("CachedInputTokens"u8):
                    record.CachedInputTokens = Long(ref reader);
                    break;
                case 12 when name.SequenceEqual("OutputTokens"u8):
                    record.OutputTokens = Long(ref reader);
                    break;
                case 15 when name.SequenceEqual("ReasoningTokens"u8):
                    record.ReasoningTokens = Long(ref reader);
                    break;
                case 7 when name.SequenceEqual("CostUsd"u8):
                    record.CostUsd = reader.TokenType == JsonTokenType.Number && reader.TryGetDecimal(out var cost) ? cost : 0m;
                    break;
                case 10 when name.SequenceEqual("DurationMs"u8):
                    if (reader.TokenType == JsonTokenType.Number && reader.TryGetDouble(out var duration))
                    {
                        record.DurationMs = duration;
                        record.HasDuration = true;
                    }

                    break;
                case 9 when name.SequenceEqual("RequestId"u8):
                    if (reader.TokenType == JsonTokenType.String)
                    {
                        record.RequestIdHash = XxHash3.HashToUInt64(reader.ValueSpan);
                        record.HasRequestId = true;
                    }

                    break;
                case 7 when name.SequenceEqual("EventId"u8):
                    record.IsUsageEvent = IsUsageEventId(ref reader);
                    break;
                default:
                    reader.Skip();
                    break;
            }
        }

        return record.IsUsageEvent;
    }

    private void ReadTimestamp(ref Utf8JsonReader reader, ref UsageRecord record)
    {
        if (reader.TokenType != JsonTokenType.String || reader.ValueSpan.Length < 10)
        {
            return;
        }

        var value = reader.ValueSpan;
        record.Day = Intern(value[..10]);
        if (needTimestamp)
        {
            // CLEF writes UTC in round-trip format ("2026-11-30T08:06:19.1234567Z"); an offset is honoured too.
            if (Utf8Parser.TryParse(value, out DateTimeOffset instant, out _, 'O'))
            {
                record.Timestamp = instant.UtcDateTime;
                record.HasTimestamp = true;
            }
            else if (DateTimeOffset.TryParse(reader.GetString(), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out instant))
            {
                record.Timestamp = instant.UtcDateTime;
                record.HasTimestamp = true;
            }
        }
    }

    private static bool IsUsageEventId(ref Utf8JsonReader reader)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            reader.Skip();
            return false;
        }

        var usage = false;
        var depth = reader.CurrentDepth;
        while (reader.Read() && !(reader.TokenType == JsonTokenType.EndObject && reader.CurrentDepth == depth))
        {
            if (reader.TokenType == JsonTokenType.PropertyName && reader.ValueTextEquals("Name"u8))
            {
                reader.Read();
                usage = reader.TokenType == JsonTokenType.String && reader.ValueTextEquals("Usage"u8);
            }
            else if (reader.TokenType is JsonTokenType.StartObject or JsonTokenType.StartArray)
            {
                reader.Skip();
            }
        }

        return usage;
    }

    private static long Long(ref Utf8JsonReader reader) =>
        reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var value) ? value : 0;

    private string? Text(ref Utf8JsonReader reader)
    {
        if (reader.TokenType != JsonTokenType.String)
        {
            if (reader.TokenType is JsonTokenType.StartObject or JsonTokenType.StartArray)
            {
                reader.Skip();
            }

            return null;
        }

        if (!reader.ValueIsEscaped)
        {
            return Intern(reader.ValueSpan);
        }

        if (reader.ValueSpan.Length <= _chars.Length)
        {
            var length = reader.CopyString(_chars);
            return Intern(_chars.AsSpan(0, length));
        }

        return Intern(reader.GetString().AsSpan());
    }

    private string Intern(ReadOnlySpan<byte> utf8)
    {
        if (utf8.Length <= _chars.Length && System.Text.Unicode.Utf8.ToUtf16(utf8, _chars, out _, out var written) == System.Buffers.OperationStatus.Done)
        {
            return Intern(_chars.AsSpan(0, written));
        }

        return Intern(System.Text.Encoding.UTF8.GetString(utf8).AsSpan());
    }

    private string Intern(ReadOnlySpan<char> value)
    {
        var lookup = _strings.GetAlternateLookup<ReadOnlySpan<char>>();
        if (lookup.TryGetValue(value, out var existing))
        {
            return existing;
        }

        var text = value.ToString();
        _strings[text] = text;
        return text;
    }
}
