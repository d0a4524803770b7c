using System.Buffers;
using System.Buffers.Text;
using System.Text;

namespace Gateway.Usage;

/// <summary>Decodes raw JSON string contents (escapes included) captured by <see cref="JsonFieldScanner"/>.</summary>
internal static class JsonText
{
    public static string Decode(ReadOnlySpan<byte> raw)
    {
        if (raw.IndexOf((byte)'\\') < 0)
        {
            return Encoding.UTF8.GetString(raw);
        }

        var rented = ArrayPool<char>.Shared.Rent(raw.Length);
        try
        {
            var written = DecodeTo(raw, rented);
            return new string(rented, 0, written);
        }
        finally
        {
            ArrayPool<char>.Shared.Return(rented);
        }
    }

    /// <summary>Unescapes <paramref name="raw"/> into <paramref name="destination"/> (at least raw.Length chars); returns chars written.</summary>
    public static int DecodeTo(ReadOnlySpan<byte> raw, Span<char> destination)
    {
        var written = 0;
        while (!raw.IsEmpty)
        {
            var slash = raw.IndexOf((byte)'\\');
            var plain = slash < 0 ? raw : raw[..slash];
            written += Encoding.UTF8.GetChars(plain, destination[written..]);
            if (slash < 0 || slash + 1 >= raw.Length)
            {
                break;
            }

            var escape = raw[slash + 1];
            var consumed = 2;
            char decoded;
            switch (escape)
            {
                case (byte)'n': decoded = '\n'; break;
                case (byte)'t': decoded = '\t'; break;
                case (byte)'r': decoded = '\r'; break;
                case (byte)'b': decoded = '\b'; break;
                case (byte)'f': decoded = '\f'; break;
                case (byte)'u' when slash + 6 <= raw.Length
                    && Utf8Parser.TryParse(raw.Slice(slash + 2, 4), out ushort code, out var used, 'X') && used == 4:
                    decoded = (char)code;
                    consumed = 6;
                    break;
                default: decoded = (char)escape; break; // \" \\ \/ and anything malformed
            }

            destination[written++] = decoded;
            raw = raw[(slash + consumed)..];
        }

        return written;
    }
}
