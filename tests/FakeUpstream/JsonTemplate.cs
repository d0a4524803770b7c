using System.Collections.Concurrent;
using System.Text;

namespace FakeUpstream;

/// <summary>
/// A pre-serialized JSON body with fixed-length placeholders (ids, timestamps) patched in place per request. The default
/// non-streaming answers are the hot path of the "direct" throughput baseline, so they must not be re-serialized each time.
/// </summary>
internal sealed class JsonTemplate
{
    private readonly byte[] _bytes;
    private readonly (int Offset, int Slot)[] _patches;
    private readonly int[] _slotLengths;

    private JsonTemplate(byte[] bytes, (int Offset, int Slot)[] patches, int[] slotLengths)
    {
        _bytes = bytes;
        _patches = patches;
        _slotLengths = slotLengths;
    }

    /// <summary>
    /// Locates each placeholder (ASCII) in <paramref name="bytes"/>. Returns null unless each occurs exactly its expected
    /// number of times, e.g. when request-supplied text happens to contain one; the caller then serializes normally.
    /// </summary>
    public static JsonTemplate? TryCreate(byte[] bytes, params ReadOnlySpan<(string Placeholder, int ExpectedCount)> slots)
    {
        var patches = new List<(int Offset, int Slot)>();
        var lengths = new int[slots.Length];
        for (var slot = 0; slot < slots.Length; slot++)
        {
            var needle = Encoding.ASCII.GetBytes(slots[slot].Placeholder);
            lengths[slot] = needle.Length;
            var found = 0;
            var from = 0;
            int index;
            while ((index = bytes.AsSpan(from).IndexOf(needle)) >= 0)
            {
                patches.Add((from + index, slot));
                found++;
                from += index + needle.Length;
            }

            if (found != slots[slot].ExpectedCount)
            {
                return null;
            }
        }

        return new JsonTemplate(bytes, [.. patches], lengths);
    }

    /// <summary>A copy of the template with slot <c>i</c> replaced by <paramref name="values"/>[i] (ASCII, same length as the placeholder).</summary>
    public byte[] Render(params ReadOnlySpan<string> values)
    {
        var result = _bytes.AsSpan().ToArray();
        foreach (var (offset, slot) in _patches)
        {
            var value = values[slot];
            if (value.Length != _slotLengths[slot])
            {
                throw new InvalidOperationException($"Template value '{value}' does not fit slot {slot}.");
            }

            Encoding.ASCII.GetBytes(value, result.AsSpan(offset, value.Length));
        }

        return result;
    }
}

/// <summary>Bounded cache of templates by the request features that shape the body.</summary>
internal sealed class TemplateCache<TKey>
    where TKey : notnull
{
    private const int MaxEntries = 1024;
    private readonly ConcurrentDictionary<TKey, JsonTemplate?> _templates = new();

    public JsonTemplate? Get<TState>(TKey key, TState state, Func<TKey, TState, JsonTemplate?> create)
    {
        if (_templates.TryGetValue(key, out var template))
        {
            return template;
        }

        template = create(key, state);
        if (_templates.Count < MaxEntries)
        {
            _templates.TryAdd(key, template);
        }

        return template;
    }
}
