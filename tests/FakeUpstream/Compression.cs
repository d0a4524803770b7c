using System.Globalization;
using System.IO.Compression;
using Microsoft.Extensions.Primitives;

namespace FakeUpstream;

/// <summary>Content-Encoding support: forced (<c>x-fake-encoding</c>) or negotiated for JSON like the real API.</summary>
internal static class Compression
{
    public static string? Normalize(string? encoding) => encoding?.ToLowerInvariant() switch
    {
        "gzip" => "gzip",
        "br" or "brotli" => "br",
        "deflate" => "deflate",
        _ => null,
    };

    /// <summary>Picks br, else gzip, from Accept-Encoding (ignoring entries with q=0). Null: send identity.</summary>
    public static string? Negotiate(StringValues acceptEncoding)
    {
        if (StringValues.IsNullOrEmpty(acceptEncoding))
        {
            return null;
        }

        var gzip = false;
        foreach (var header in acceptEncoding)
        {
            foreach (var range in (header ?? string.Empty).Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                var semicolon = range.IndexOf(';', StringComparison.Ordinal);
                var coding = semicolon < 0 ? range : range[..semicolon].TrimEnd();
                if (semicolon >= 0 && IsZeroQuality(range.AsSpan(semicolon + 1)))
                {
                    continue; // q=0 means "not acceptable"
                }

                if (coding.Equals("br", StringComparison.OrdinalIgnoreCase))
                {
                    return "br";
                }

                gzip |= coding.Equals("gzip", StringComparison.OrdinalIgnoreCase);
            }
        }

        return gzip ? "gzip" : null;
    }

    private static bool IsZeroQuality(ReadOnlySpan<char> parameters)
    {
        var q = parameters.Trim();
        return q.StartsWith("q=", StringComparison.OrdinalIgnoreCase)
            && double.TryParse(q[2..], NumberStyles.Float, CultureInfo.InvariantCulture, out var quality)
            && quality <= 0;
    }

    /// <summary>Wraps <paramref name="inner"/> in a compressor that leaves it open; flushing the compressor emits a sync flush.</summary>
    public static Stream CreateCompressor(string encoding, Stream inner) => encoding switch
    {
        "gzip" => new GZipStream(inner, CompressionLevel.Fastest, leaveOpen: true),
        "br" => new BrotliStream(inner, CompressionLevel.Fastest, leaveOpen: true),
        "deflate" => new ZLibStream(inner, CompressionLevel.Fastest, leaveOpen: true),
        _ => throw new ArgumentOutOfRangeException(nameof(encoding), encoding, "Unsupported encoding."),
    };

    public static byte[] Compress(string encoding, ReadOnlySpan<byte> body)
    {
        using var output = new MemoryStream(body.Length / 2 + 64);
        using (var compressor = CreateCompressor(encoding, output))
        {
            compressor.Write(body);
        }

        return output.ToArray();
    }
}
