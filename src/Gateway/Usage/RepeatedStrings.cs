using System.Collections.Concurrent;
using System.Text;

namespace Gateway.Usage;

/// <summary>
/// The strings of an answer that repeat from one request to the next (object types, statuses, model names), decoded once
/// and reused instead of a new string per request. Bounded: an upstream echoing ever-new values fills it once, then those
/// values are decoded as before. Ids and other per-request values never come here.
/// </summary>
internal static class RepeatedStrings
{
    private const int MaxEntries = 256;

    /// <summary>Longer values are rare enough not to be worth a slot.</summary>
    private const int MaxLength = 64;

    private static readonly ConcurrentDictionary<string, string> Seen = new(StringComparer.Ordinal);
    private static readonly ConcurrentDictionary<string, string>.AlternateLookup<ReadOnlySpan<char>> SeenBySpan =
        Seen.GetAlternateLookup<ReadOnlySpan<char>>();

    /// <summary>The string of a raw JSON string value (escapes kept): a cached instance when it was seen before.</summary>
    public static string Decode(ReadOnlySpan<byte> raw)
    {
        if (raw.Length > MaxLength || raw.IndexOf((byte)'\\') >= 0)
        {
            return JsonText.Decode(raw);
        }

        Span<char> chars = stackalloc char[MaxLength];
        var length = Encoding.UTF8.GetChars(raw, chars);
        if (SeenBySpan.TryGetValue(chars[..length], out var cached))
        {
            return cached;
        }

        var text = new string(chars[..length]);
        if (Seen.Count < MaxEntries)
        {
            Seen.TryAdd(text, text);
        }

        return text;
    }
}
