using System.Text;
using System.Text.Json;
using CsCheck;
using Gateway.Usage;

namespace Gateway.Tests.Usage;

/// <summary>
/// The scanner's vectorised skips (whitespace runs, scalar runs, the keys of skipped objects; #15) as a property: for
/// generated documents (the scanned key names at every depth, duplicates, escapes in keys and values, non-ASCII, strings
/// past every capacity, keys past the key limit, numbers in every JSON form, any whitespace), some of them broken or cut
/// short, fed in random chunkings and one after another with a reset between, <see cref="JsonFieldScanner"/> reads
/// exactly what <see cref="ReferenceJsonFieldScanner"/> (the algorithm before the change) reads after every chunk.
/// </summary>
public sealed class JsonFieldScannerPropertyTests
{
    private const int Documents = 20_000;

    private static readonly string[] ScannedKeys =
    [
        "type", "id", "object", "model", "status", "sequence_number", "delta", "usage", "response", "conversation", "background",
        "choices", "error", "input_tokens", "output_tokens", "total_tokens", "prompt_tokens", "completion_tokens",
        "input_tokens_details", "prompt_tokens_details", "output_tokens_details", "completion_tokens_details", "cached_tokens",
        "reasoning_tokens", "content",
    ];

    private static readonly string[] OtherKeys =
    [
        "output", "text", "metadata", "tools", "us\\u0061ge", "i\\\"d", "", "\u00e9t\u00e9", "\ud83d\ude00", new string('k', 47), new string('k', 48),
        new string('k', 49), "input_tokens_details_but_longer_than_the_key_limit_of_forty_eight_b",
    ];

    private static readonly string[] Scalars =
    [
        "0", "-0", "7", "-12", "1.5", "-0.25", "1e10", "1E+2", "-3.25e-7", "123456789012345678901234567890", "9223372036854775807",
        "0.000000000000000000000000001", "true", "false", "null",
    ];

    private static readonly string[] StringParts =
    [
        "a", "resp_123", "gpt-4o-mini", " ", "\\\"", "\\\\", "\\u0041", "\\u00e9", "\\n", "\\/", "}", "]", "{", "[", ",", ":", "\u00e9",
        "\u20ac", "\ud83d\ude00", "\\ud83d\\ude00", "\"usage\":{", "data: ",
    ];

    private static readonly string[] Whitespace = ["", "", "", " ", "\t", "\t\r\n", "\n", "\n  ", "\r\n\t", "\n" + new string(' ', 40), new string(' ', 70)];

    private static readonly string[] Breakers = ["{", "}", "[", "]", "\"", ",", ":", "\\", " ", "x", "1", "\u00e9"];

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    [Fact]
    public void Feed_AnyDocumentInAnyChunking_ReadsWhatTheFormerScannerRead()
    {
        var completed = 0;
        var failed = 0;
        var withUsage = 0;
        Cases.Sample(c =>
        {
            var outcome = Compare(c.Documents, c.ChunkSizes);
            Interlocked.Add(ref completed, outcome.Completed);
            Interlocked.Add(ref failed, outcome.Failed);
            Interlocked.Add(ref withUsage, outcome.WithUsage);
        }, iter: Documents, print: c => c.ToString());

        // Not vacuous: many documents complete, many carry a usage object, many are broken (measured rates are far above these).
        Assert.True(completed > Documents / 4, $"completed {completed}");
        Assert.True(withUsage > Documents / 20, $"with usage {withUsage}");
        Assert.True(failed > Documents / 20, $"failed {failed}");
    }

    [Theory]
    [InlineData("ResponsesTests/ResponsesWithReasoning.json")]
    [InlineData("ResponsesTests/StreamingResponses.json")]
    [InlineData("ChatTests/StreamingStructuredRefusalWorks.json")]
    public void Feed_RecordedBodySplitAtEveryOffset_ReadsWhatTheFormerScannerRead(string recording)
    {
        foreach (var document in RecordedDocuments(recording))
        {
            for (var cut = 0; cut <= document.Length; cut++)
            {
                var scanner = new JsonFieldScanner();
                var reference = new ReferenceJsonFieldScanner();
                foreach (var part in new[] { document[..cut], document[cut..] })
                {
                    scanner.Feed(part);
                    reference.Feed(part);
                    AssertSame(reference, scanner, document);
                }

                Assert.True(scanner.IsComplete, Encoding.UTF8.GetString(document));
            }
        }
    }

    [Theory]
    [InlineData(100_000)]
    [InlineData(61)]
    [InlineData(4093)]
    public void Feed_HostileRunsAndNesting_ReadsWhatTheFormerScannerRead(int chunkSize)
    {
        // A megabyte of whitespace, a megabyte-long number, nesting past the depth limit, a key past the key limit.
        string[] documents =
        [
            "{\"usage\":" + new string(' ', 1 << 20) + "{\"input_tokens\":" + new string('7', 1 << 20) + ",\"output_tokens\":2}}",
            "{\"output\":" + string.Concat(Enumerable.Repeat("[{\"a\":", 120)) + "1" + string.Concat(Enumerable.Repeat("}]", 120)) + ",\"usage\":{\"total_tokens\":3}}",
            "{\"" + new string('u', 5000) + "\":{\"usage\":{\"total_tokens\":4}},\"usage\":{\"total_tokens\":5}}",
            "{\"usage\":{\"total_tokens\":1" + new string('\t', 1 << 16) + "}}",
        ];
        foreach (var json in documents)
        {
            var document = Encoding.UTF8.GetBytes(json);
            var scanner = new JsonFieldScanner();
            var reference = new ReferenceJsonFieldScanner();
            for (var offset = 0; offset < document.Length; offset += chunkSize)
            {
                var part = document.AsSpan(offset, Math.Min(chunkSize, document.Length - offset));
                scanner.Feed(part);
                reference.Feed(part);
            }

            AssertSame(reference, scanner, document[..Math.Min(200, document.Length)]);
        }
    }

    private static IEnumerable<byte[]> RecordedDocuments(string recording)
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Fixtures", "openai-recordings", recording);
        using var file = JsonDocument.Parse(File.ReadAllText(path));
        var body = file.RootElement.GetProperty("Entries")[0].GetProperty("ResponseBody");
        if (body.ValueKind != JsonValueKind.Array)
        {
            // Pretty-printed as the upstream sends it, and compact.
            yield return Encoding.UTF8.GetBytes(JsonSerializer.Serialize(body, Indented));
            yield return Encoding.UTF8.GetBytes(body.GetRawText());
            yield break;
        }

        // SSE: each event's data is one document.
        var stream = string.Concat(body.EnumerateArray().Select(s => s.GetString()));
        foreach (var line in stream.Split('\n'))
        {
            if (line.StartsWith("data: {", StringComparison.Ordinal))
            {
                yield return Encoding.UTF8.GetBytes(line["data: ".Length..]);
            }
        }
    }

    private readonly record struct Outcome(int Completed, int Failed, int WithUsage);

    private static Outcome Compare(byte[][] documents, int[] chunkSizes)
    {
        var scanner = new JsonFieldScanner();
        var reference = new ReferenceJsonFieldScanner();
        var outcome = default(Outcome);
        var next = 0;
        foreach (var document in documents)
        {
            scanner.Reset();
            reference.Reset();
            for (var offset = 0; offset < document.Length;)
            {
                var size = Math.Min(chunkSizes[next++ % chunkSizes.Length], document.Length - offset);
                scanner.Feed(document.AsSpan(offset, size));
                reference.Feed(document.AsSpan(offset, size));
                offset += size;
                AssertSame(reference, scanner, document);
            }

            outcome = new Outcome(
                outcome.Completed + (reference.IsComplete ? 1 : 0),
                outcome.Failed + (reference.HasFailed ? 1 : 0),
                outcome.WithUsage + (reference.IsComplete && reference.Has(ScanField.UsageObject) ? 1 : 0));
        }

        return outcome;
    }

    private static void AssertSame(ReferenceJsonFieldScanner expected, JsonFieldScanner actual, byte[] document)
    {
        if (expected.IsComplete != actual.IsComplete || expected.HasFailed != actual.HasFailed)
        {
            Assert.Fail($"complete {expected.IsComplete} → {actual.IsComplete}, failed {expected.HasFailed} → {actual.HasFailed}: {Encoding.UTF8.GetString(document)}");
        }

        for (var field = ScanField.None + 1; field < ScanField.Count; field++)
        {
            if (expected.Has(field) != actual.Has(field) || expected.HasComplete(field) != actual.HasComplete(field)
                || !expected.Raw(field).SequenceEqual(actual.Raw(field)))
            {
                Assert.Fail($"{field}: has {expected.Has(field)} → {actual.Has(field)}, complete {expected.HasComplete(field)} → {actual.HasComplete(field)}, "
                    + $"raw '{Encoding.UTF8.GetString(expected.Raw(field))}' → '{Encoding.UTF8.GetString(actual.Raw(field))}': {Encoding.UTF8.GetString(document)}");
            }
        }
    }

    private sealed record Case(byte[][] Documents, int[] ChunkSizes)
    {
        public override string ToString() =>
            $"chunks [{string.Join(',', ChunkSizes)}] documents: {string.Join(" || ", Documents.Select(d => Encoding.UTF8.GetString(d)))}";
    }

    private static Gen<Case> Cases =>
        Gen.Select(Document.Array[1, 3], Gen.Frequency((3, Gen.Int[1, 16]), (2, Gen.Int[17, 300]), (1, Gen.Int[301, 5000])).Array[1, 12],
            (documents, chunks) => new Case(documents, chunks));

    /// <summary>A document: mostly an object, sometimes another value; one in four broken (a byte inserted, removed or the end cut off).</summary>
    private static Gen<byte[]> Document =>
        Gen.Frequency<string>((5, Object(4)), (5, WithUsage), (1, Array(3)), (1, Value(1)))
            .Select(Gen.OneOf(Whitespace), Gen.OneOf(Whitespace), (json, before, after) => Encoding.UTF8.GetBytes(before + json + after))
            .SelectMany(bytes => Gen.Frequency<byte[]>((3, Gen.Const(bytes)), (1, Broken(bytes))));

    private static Gen<byte[]> Broken(byte[] bytes) =>
        Gen.Select(Gen.Int[0, bytes.Length], Gen.Int[0, 2], Gen.OneOf(Breakers), (at, how, breaker) => how switch
        {
            0 => [.. bytes[..at], .. Encoding.UTF8.GetBytes(breaker), .. bytes[at..]],
            1 when at < bytes.Length => [.. bytes[..at], .. bytes[(at + 1)..]],
            _ => bytes[..at],
        });

    private static Gen<string> Value(int depth) => depth <= 0
        ? Gen.Frequency<string>((3, Gen.OneOf(Scalars)), (3, JsonString))
        : Gen.Frequency<string>((3, Gen.OneOf(Scalars)), (3, JsonString), (2, Object(depth - 1)), (1, Array(depth - 1)));

    private static Gen<string> Object(int depth) => Members(Key, Value(depth)).Array[0, 7].Select(Gen.OneOf(Whitespace), Enclose);

    /// <summary>An object with a usage object (at the root or under <c>response</c>) among other members, as the upstream's last event has.</summary>
    private static Gen<string> WithUsage =>
        Gen.Select(Members(Key, Value(2)).Array[0, 5], Members(Gen.OneOf(ScannedKeys), Value(0)).Array[0, 6], Gen.Bool, Gen.OneOf(Whitespace),
            (members, usage, nested, ws) =>
            {
                var usageMember = "\"usage\":" + Enclose(usage, ws);
                return Enclose([.. members, nested ? "\"response\":{" + usageMember + "}" : usageMember], ws);
            });

    private static Gen<string> Members(Gen<string> keys, Gen<string> values) =>
        Gen.Select(keys, Gen.OneOf(Whitespace), Gen.OneOf(Whitespace), values, (key, before, after, value) => $"\"{key}\"{before}:{after}{value}");

    private static string Enclose(string[] members, string ws) => "{" + ws + string.Join("," + ws, members) + ws + "}";

    private static Gen<string> Array(int depth) =>
        Value(depth).Array[0, 4].Select(Gen.OneOf(Whitespace), (items, ws) => "[" + ws + string.Join("," + ws, items) + ws + "]");

    private static Gen<string> Key => Gen.Frequency<string>((6, Gen.OneOf(ScannedKeys)), (2, Gen.OneOf(OtherKeys)), (1, Gen.OneOf(StringParts).Array[0, 6].Select(string.Concat)));

    /// <summary>A JSON string's contents: escapes, structural characters, non-ASCII; sometimes past every capture's capacity.</summary>
    private static Gen<string> JsonString =>
        Gen.Frequency<string>((12, Gen.OneOf(StringParts).Array[0, 12].Select(string.Concat)), (1, Gen.Int[60, 2200].Select(n => new string('z', n))))
            .Select(s => "\"" + s + "\"");
}
