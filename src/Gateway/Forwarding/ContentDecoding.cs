using System.IO.Compression;

namespace Gateway.Forwarding;

/// <summary>Decoders for upstream bodies that arrive compressed although identity was asked for.</summary>
internal static class ContentDecoding
{
    public static bool IsSupported(ICollection<string> encodings)
    {
        foreach (var encoding in encodings)
        {
            if (!IsKnown(encoding))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Wraps <paramref name="compressed"/> in a decoder; stacked encodings are undone last to first.</summary>
    public static Stream Decode(Stream compressed, IEnumerable<string> encodings)
    {
        var stream = compressed;
        foreach (var encoding in encodings.Reverse())
        {
            stream = encoding.Trim().ToLowerInvariant() switch
            {
                "gzip" or "x-gzip" => new GZipStream(stream, CompressionMode.Decompress),
                "br" => new BrotliStream(stream, CompressionMode.Decompress),
                // HTTP "deflate" is the zlib format (RFC 9110 8.4.1.2).
                "deflate" => new ZLibStream(stream, CompressionMode.Decompress),
                _ => stream,
            };
        }

        return stream;
    }

    private static bool IsKnown(string encoding) =>
        encoding.Trim().ToLowerInvariant() is "gzip" or "x-gzip" or "br" or "deflate" or "identity";
}
