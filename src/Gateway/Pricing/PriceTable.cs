using System.Collections.Frozen;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Gateway.Pricing;

/// <summary>
/// The prices in force: the price file (<c>pricing.json</c>) with the configuration's per-model overrides on top.
/// Immutable; a reload builds a new table. Money is <see cref="decimal"/> throughout, read from the JSON text as is.
/// </summary>
internal sealed partial class PriceTable
{
    /// <summary>Highest price accepted per 1M tokens: a guard against a misplaced decimal point, not a business rule.</summary>
    public const decimal MaxPrice = 10_000m;

    private readonly FrozenDictionary<string, ModelPrice> _models;
    private readonly FrozenDictionary<string, ModelPrice>.AlternateLookup<ReadOnlySpan<char>> _modelsByName;

    public PriceTable(DateOnly? asOf, IReadOnlyDictionary<string, ModelPrice> models, string source)
    {
        AsOf = asOf;
        Source = source;
        _models = models.ToFrozenDictionary(StringComparer.Ordinal);
        _modelsByName = _models.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    public static PriceTable Empty { get; } = new(null, new Dictionary<string, ModelPrice>(), "(none)");

    public DateOnly? AsOf { get; }

    /// <summary>Where the prices came from (the file's path), for logs.</summary>
    public string Source { get; }

    public int Count => _models.Count;

    public IEnumerable<KeyValuePair<string, ModelPrice>> Models => _models;

    /// <summary>The model's price; a dated snapshot (<c>gpt-4.1-mini-2025-04-14</c>) prices as its family.</summary>
    public bool TryGet(string? model, out ModelPrice price)
    {
        price = default;
        if (string.IsNullOrEmpty(model))
        {
            return false;
        }

        if (_models.TryGetValue(model, out price))
        {
            return true;
        }

        // A dated snapshot priced as its family: matched and looked up without a Match object or a substring per request.
        foreach (var snapshot in DatedSnapshot().EnumerateMatches(model))
        {
            return _modelsByName.TryGetValue(model.AsSpan(0, snapshot.Index), out price);
        }

        return false;
    }

    /// <summary>This table with <paramref name="overrides"/> replacing (or adding) single models' prices.</summary>
    public PriceTable With(IReadOnlyDictionary<string, ModelPrice> overrides)
    {
        if (overrides.Count == 0)
        {
            return this;
        }

        var merged = new Dictionary<string, ModelPrice>(_models, StringComparer.Ordinal);
        foreach (var (model, price) in overrides)
        {
            merged[model] = price;
        }

        return new PriceTable(AsOf, merged, Source);
    }

    /// <summary>
    /// Reads a price file: <c>{"AsOf": "2025-08-07", "Models": {"gpt-4o": {"Input": 2.50, "CachedInput": 1.25, "Output": 10.00}}}</c>.
    /// Throws <see cref="PriceTableException"/> with a message naming the entry at fault.
    /// </summary>
    public static PriceTable Parse(ReadOnlySpan<byte> json, string source)
    {
        JsonDocument document;
        try
        {
            var reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
            document = JsonDocument.ParseValue(ref reader);
        }
        catch (JsonException ex)
        {
            throw new PriceTableException($"The price file {source} is not valid JSON: {ex.Message}");
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new PriceTableException($"The price file {source} must be a JSON object with \"AsOf\" and \"Models\".");
            }

            DateOnly? asOf = null;
            if (root.TryGetProperty(nameof(AsOf), out var asOfText))
            {
                if (asOfText.ValueKind != JsonValueKind.String
                    || !DateOnly.TryParseExact(asOfText.GetString(), "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var date))
                {
                    throw new PriceTableException($"The price file {source}: \"AsOf\" must be a date written yyyy-MM-dd.");
                }

                asOf = date;
            }

            if (!root.TryGetProperty(nameof(Models), out var models) || models.ValueKind != JsonValueKind.Object)
            {
                throw new PriceTableException($"The price file {source} has no \"Models\" object.");
            }

            var prices = new Dictionary<string, ModelPrice>(StringComparer.Ordinal);
            foreach (var entry in models.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.Object)
                {
                    throw new PriceTableException($"The price file {source}: Models:{entry.Name} must be an object with Input, CachedInput and Output.");
                }

                var input = Price(entry.Value, "Input", source, entry.Name) ?? 0m;
                var cached = Price(entry.Value, "CachedInput", source, entry.Name) ?? input;
                var output = Price(entry.Value, "Output", source, entry.Name) ?? 0m;
                var failure = Validate(entry.Name, input, cached, output);
                if (failure is not null)
                {
                    throw new PriceTableException($"The price file {source}: {failure}");
                }

                if (!prices.TryAdd(entry.Name, new ModelPrice(input, cached, output)))
                {
                    throw new PriceTableException($"The price file {source} lists {entry.Name} twice.");
                }
            }

            return new PriceTable(asOf, prices, source);
        }
    }

    /// <summary>Null when the entry is acceptable, else what is wrong with it (for operators: names the model and the fix).</summary>
    public static string? Validate(string model, decimal input, decimal cachedInput, decimal output)
    {
        if (string.IsNullOrWhiteSpace(model))
        {
            return "a model name is empty.";
        }

        if (input < 0 || cachedInput < 0 || output < 0 || input > MaxPrice || cachedInput > MaxPrice || output > MaxPrice)
        {
            return $"Models:{model}: prices are USD per 1M tokens, between 0 and {MaxPrice.ToString(CultureInfo.InvariantCulture)}.";
        }

        return null;
    }

    private static decimal? Price(JsonElement entry, string name, string source, string model)
    {
        if (!entry.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDecimal(out var price))
        {
            throw new PriceTableException($"The price file {source}: Models:{model}:{name} must be a number (USD per 1M tokens).");
        }

        return price;
    }

    // A dated snapshot: the family's name followed by -YYYY-MM-DD.
    [GeneratedRegex(@"-\d{4}-\d{2}-\d{2}$", RegexOptions.CultureInvariant)]
    private static partial Regex DatedSnapshot();
}

/// <summary>A price file that cannot be used; the message names the file and the entry at fault.</summary>
internal sealed class PriceTableException(string message) : Exception(message);
