using System.IO.Compression;

namespace Gateway.Reporting;

/// <summary>
/// Feeds the lines of one input (a file or stdin, plain or gzip: detected by its magic bytes) to a report, in fixed
/// memory: one buffer, lines cut in place. A line longer than <see cref="MaxLineBytes"/> is skipped (no usage event is
/// that long), so a hostile or corrupt file cannot make the buffer grow without bound.
/// </summary>
internal static class UsageLogInput
{
    public const int MaxLineBytes = 1 << 20;
    private const int BufferBytes = 1 << 20;

    public static void Read(Stream raw, UsageReport report, UsageLineParser parser)
    {
        using var stream = OpenDecoded(raw);
        var buffer = new byte[BufferBytes + MaxLineBytes];
        var filled = 0;
        var skippingLongLine = false;
        while (true)
        {
            var read = stream.Read(buffer, filled, buffer.Length - filled);
            if (read == 0)
            {
                break;
            }

            filled += read;
            var span = buffer.AsSpan(0, filled);
            var start = 0;
            while (true)
            {
                var newline = span[start..].IndexOf((byte)'\n');
                if (newline < 0)
                {
                    break;
                }

                if (skippingLongLine)
                {
                    skippingLongLine = false;
                    report.Add(default, false);
                }
                else
                {
                    Handle(span.Slice(start, newline), report, parser);
                }

                start += newline + 1;
            }

            // Keep the unfinished line; past the limit, drop it and skip the rest of it.
            var rest = filled - start;
            if (rest > MaxLineBytes)
            {
                skippingLongLine = true;
                rest = 0;
            }
            else if (rest > 0 && start > 0)
            {
                buffer.AsSpan(start, rest).CopyTo(buffer);
            }

            filled = rest;
        }

        if (skippingLongLine)
        {
            report.Add(default, false);
        }
        else if (filled > 0)
        {
            Handle(buffer.AsSpan(0, filled), report, parser);
        }
    }

    private static void Handle(ReadOnlySpan<byte> line, UsageReport report, UsageLineParser parser)
    {
        if (!line.IsEmpty && line[^1] == (byte)'\r')
        {
            line = line[..^1];
        }

        if (line.IsEmpty)
        {
            return;
        }

        // Cheap rejection of other log lines before any JSON work.
        if (line.IndexOf("\"Usage\""u8) < 0)
        {
            report.Add(default, false);
            return;
        }

        var isUsage = parser.TryParse(line, out var record);
        report.Add(record, isUsage);
    }

    private static Stream OpenDecoded(Stream raw)
    {
        Span<byte> magic = stackalloc byte[2];
        var got = 0;
        while (got < 2)
        {
            var n = raw.Read(magic[got..]);
            if (n == 0)
            {
                break;
            }

            got += n;
        }

        var prefixed = new PrefixedStream(magic[..got].ToArray(), raw);
        return got == 2 && magic[0] == 0x1f && magic[1] == 0x8b
            ? new GZipStream(prefixed, CompressionMode.Decompress, leaveOpen: false)
            : prefixed;
    }

    /// <summary>A few bytes already read (to sniff the format) followed by the rest of the stream; read-only, forward-only.</summary>
    private sealed class PrefixedStream(byte[] prefix, Stream inner) : Stream
    {
        private int _position;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            if (_position < prefix.Length)
            {
                var n = Math.Min(buffer.Length, prefix.Length - _position);
                prefix.AsSpan(_position, n).CopyTo(buffer);
                _position += n;
                return n;
            }

            return inner.Read(buffer);
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
