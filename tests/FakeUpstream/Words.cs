using System.Text;
using System.Text.Json;

namespace FakeUpstream;

/// <summary>The fake's deterministic "model output" and its deterministic token arithmetic.</summary>
internal static class Words
{
    /// <summary>Each a single o200k_base token (common word with its leading space), so a tokenizer-based
    /// estimate of the output agrees with the reported <c>output_tokens</c> = number of deltas.</summary>
    private static readonly string[] Vocabulary =
    [
        " hello", " world", " the", " quick", " brown", " fox", " jumps", " over", " lazy", " dog",
        " and", " then", " it", " was", " a", " good", " day", " for", " all", " of",
    ];

    private static readonly string[] TextCache = new string[257];

    public static string Delta(int index) => Vocabulary[index % Vocabulary.Length];

    /// <summary>The concatenation of the first <paramref name="deltas"/> deltas.</summary>
    public static string Text(int deltas)
    {
        if (deltas < TextCache.Length)
        {
            return TextCache[deltas] ??= Build(deltas);
        }

        return Build(deltas);

        static string Build(int count)
        {
            var builder = new StringBuilder(count * 6);
            for (var i = 0; i < count; i++)
            {
                builder.Append(Delta(i));
            }

            return builder.ToString();
        }
    }

    /// <summary>Number of whitespace-separated words.</summary>
    public static int Count(ReadOnlySpan<char> text)
    {
        var count = 0;
        var inWord = false;
        foreach (var c in text)
        {
            if (char.IsWhiteSpace(c))
            {
                inWord = false;
            }
            else if (!inWord)
            {
                inWord = true;
                count++;
            }
        }

        return count;
    }

    public static int Count(string? text) => text is null ? 0 : Count(text.AsSpan());

    /// <summary>
    /// Words of all the text in a request's input: a plain string, an array of strings, or items whose <c>text</c>,
    /// <c>content</c> or <c>output</c> strings hold the text (messages, content parts, tool outputs). Ids, roles and
    /// types are not text and are not counted.
    /// </summary>
    public static int CountInput(JsonElement element) => CountText(element, isText: true);

    private static int CountText(JsonElement element, bool isText)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.String:
                return isText ? Count(element.GetString()) : 0;
            case JsonValueKind.Array:
                var total = 0;
                foreach (var item in element.EnumerateArray())
                {
                    total += CountText(item, isText);
                }

                return total;
            case JsonValueKind.Object:
                var sum = 0;
                foreach (var property in element.EnumerateObject())
                {
                    var textual = property.NameEquals("text") || property.NameEquals("content") || property.NameEquals("output");
                    if (textual || property.Value.ValueKind is JsonValueKind.Object or JsonValueKind.Array)
                    {
                        sum += CountText(property.Value, textual);
                    }
                }

                return sum;
            default:
                return 0;
        }
    }
}
