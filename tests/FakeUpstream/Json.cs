using System.Buffers;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace FakeUpstream;

/// <summary>Compact JSON output helpers (one reusable buffer and writer per thread; serialization never awaits).</summary>
internal static class Json
{
    /// <summary>Relaxed escaping: the real API sends non-ASCII text and characters such as '&lt;' unescaped.</summary>
    public static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    [ThreadStatic]
    private static ArrayBufferWriter<byte>? t_buffer;

    [ThreadStatic]
    private static Utf8JsonWriter? t_writer;

    [ThreadStatic]
    private static bool t_busy;

    public static byte[] Serialize<TState>(TState state, Action<Utf8JsonWriter, TState> write)
    {
        if (t_busy)
        {
            // Re-entrant call (a writer delegate serializing something else): use private instances.
            var buffer = new ArrayBufferWriter<byte>(1024);
            using var writer = new Utf8JsonWriter(buffer, WriterOptions);
            write(writer, state);
            writer.Flush();
            return buffer.WrittenSpan.ToArray();
        }

        t_busy = true;
        try
        {
            var buffer = t_buffer ??= new ArrayBufferWriter<byte>(4096);
            buffer.ResetWrittenCount();
            var writer = t_writer ??= new Utf8JsonWriter(buffer, WriterOptions);
            writer.Reset(buffer);
            write(writer, state);
            writer.Flush();
            var result = buffer.WrittenSpan.ToArray();
            if (buffer.Capacity > 1 << 20)
            {
                t_buffer = null; // don't pin a huge buffer per thread after an unusually large answer
            }

            return result;
        }
        finally
        {
            t_busy = false;
        }
    }

    /// <summary>Writes a number as raw JSON text, e.g. <c>1.0</c>, which Utf8JsonWriter would print as <c>1</c>.</summary>
    public static void WriteRawNumber(this Utf8JsonWriter writer, string propertyName, ReadOnlySpan<byte> rawNumber)
    {
        writer.WritePropertyName(propertyName);
        writer.WriteRawValue(rawNumber, skipInputValidation: true);
    }
}
