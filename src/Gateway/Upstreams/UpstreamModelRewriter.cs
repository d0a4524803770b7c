using System.Buffers;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Gateway.Requests;

namespace Gateway.Upstreams;

/// <summary>
/// Rewrites the body's effective <c>model</c> (the last top-level one, as the upstream's JSON parser keeps it) to the
/// upstream's deployment name, splicing the one string and leaving every other byte as sent. RequestFacts records no
/// position of <c>model</c>, hence this reader of its own. Usage and quotas keep the client's model name.
/// </summary>
internal static class UpstreamModelRewriter
{
    private static readonly JsonReaderOptions ReaderOptions = new() { CommentHandling = JsonCommentHandling.Skip, MaxDepth = 256 };

    /// <summary>Splices <paramref name="upstreamModel"/> over the model string. False when there is none (or the body is not JSON) or it already says so.</summary>
    public static bool Rewrite(PooledBody body, string upstreamModel)
    {
        if (!TryFindModel(body.Span, out var start, out var length))
        {
            return false;
        }

        var replacement = Encoding.UTF8.GetBytes("\"" + JsonEncodedText.Encode(upstreamModel, JavaScriptEncoder.UnsafeRelaxedJsonEscaping).Value + "\"");
        var source = body.Span;
        if (source.Slice(start, length).SequenceEqual(replacement))
        {
            return false;
        }

        var total = source.Length - length + replacement.Length;
        var buffer = ArrayPool<byte>.Shared.Rent(total);
        source[..start].CopyTo(buffer);
        replacement.CopyTo(buffer.AsSpan(start));
        source[(start + length)..].CopyTo(buffer.AsSpan(start + replacement.Length));
        body.Replace(buffer, total);
        return true;
    }

    /// <summary>Position and length (quotes included) of the last top-level <c>"model": "…"</c> string value.</summary>
    public static bool TryFindModel(ReadOnlySpan<byte> json, out int start, out int length)
    {
        start = -1;
        length = 0;
        var reader = new Utf8JsonReader(json, ReaderOptions);
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return false;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var isModel = reader.ValueTextEquals("model"u8);
                reader.Read();
                if (isModel)
                {
                    // The last "model" is the effective one whatever its type; a non-string one is left for the upstream to refuse.
                    start = reader.TokenType == JsonTokenType.String ? (int)reader.TokenStartIndex : -1;
                    length = start >= 0 ? (int)reader.BytesConsumed - start : 0;
                }

                reader.Skip();
            }
        }
        catch (JsonException)
        {
            start = -1;
        }

        return start >= 0;
    }
}
