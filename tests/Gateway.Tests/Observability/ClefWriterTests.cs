using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Gateway.Observability;
using Serilog.Events;
using Serilog.Formatting.Compact;
using Serilog.Parsing;

namespace Gateway.Tests.Observability;

/// <summary>
/// The gateway's stdout sink writes CLEF lines as UTF-8 itself (#15): every line must be the JSON object Serilog's
/// CompactJsonFormatter writes for the same event (same members, same order, same values), one line per event.
/// </summary>
public sealed class ClefWriterTests
{
    private static readonly MessageTemplateParser Parser = new();

    public static TheoryData<string> Events() => [.. Samples().Keys];

    [Theory]
    [MemberData(nameof(Events))]
    public void TryWrite_CoveredEvent_SameJsonAsCompactJsonFormatter(string name)
    {
        var logEvent = Samples()[name];
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer, ClefWriter.WriterOptions))
        {
            Assert.True(new ClefWriter().TryWrite(logEvent, json));
        }

        AssertSameJson(Formatted(logEvent), Encoding.UTF8.GetString(buffer.WrittenSpan));
    }

    [Fact]
    public void TryWrite_FormattedTokenOrUnusualValue_LeftToTheFormatter()
    {
        var writer = new ClefWriter();
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using var json = new Utf8JsonWriter(buffer, ClefWriter.WriterOptions);

        // Each on a fresh line: a value found late leaves part of the line written, which the sink discards (below).
        foreach (var logEvent in UncoveredEvents())
        {
            json.Reset(buffer);
            Assert.False(writer.TryWrite(logEvent, json));
        }
    }

    [Fact]
    public void Sink_UncoveredValueAfterCoveredOnes_PartialLineDiscardedAndFormatterLineWritten()
    {
        // The writer makes one pass: these fail only after writing the properties before the uncovered one.
        var events = UncoveredEvents().SelectMany(e => new[] { Samples()["usage"], e }).ToArray();
        AssertBatchWrittenAsFormatterWrites(events);
    }

    [Fact]
    public void Sink_EventKindsInterleaved_NamesOfEachWrittenAsTheirOwn()
    {
        // Names are remembered by position: lines of different kinds, alternating, must each keep their own names.
        var samples = Samples().Values.ToArray();
        var events = Enumerable.Range(0, 4).SelectMany(_ => samples).Concat(samples.Reverse()).ToArray();
        AssertBatchWrittenAsFormatterWrites(events);
    }

    [Fact]
    public void Sink_ValueAtAPositionRepeatedThenChanged_EachLineHasItsOwnValue()
    {
        // String values are remembered by position once repeated: a repeat, a change, an equal text in another string
        // object, a value that needs escaping, a lone surrogate (left to the formatter) and back must each be written as is.
        var repeated = "team-a";
        var escaped = "q\"uote <tag> é \u2028";
        string[] values = [repeated, repeated, "team-b", repeated, new string(repeated.AsSpan()), escaped, escaped, escaped, "lone \ud800", "lone \ud800", repeated];
        var events = values.Select(v => Event("{Tenant} {Endpoint}", ("Tenant", new ScalarValue(v)), ("Endpoint", new ScalarValue("responses.create")))).ToArray();
        AssertBatchWrittenAsFormatterWrites(events);
    }

    private static void AssertBatchWrittenAsFormatterWrites(LogEvent[] events)
    {
        using var stdout = new MemoryStream();
        using (var sink = new StdoutClefSink(new KeepOpenStream(stdout)))
        {
            sink.EmitBatch(events);
        }

        var lines = Encoding.UTF8.GetString(stdout.ToArray()).Split('\n');
        Assert.Equal(events.Length + 1, lines.Length);
        foreach (var (line, logEvent) in lines.Zip(events))
        {
            AssertSameJson(Formatted(logEvent), line);
        }
    }

    private static LogEvent[] UncoveredEvents() =>
    [
        Event("{Amount:0.00} left", ("Amount", new ScalarValue(1.5))),
        Event("{Tenant} {Map}", ("Tenant", new ScalarValue("team-a")), ("Map", new DictionaryValue([new(new ScalarValue("k"), new ScalarValue(1))]))),
        Event("{Tenant} {Span}", ("Tenant", new ScalarValue("team-a")), ("Count", new ScalarValue(3)), ("Span", new ScalarValue(TimeSpan.FromSeconds(1)))),
        Event("{Ratio}", ("Tenant", new ScalarValue("team-a")), ("Ratio", new ScalarValue(double.NaN))),
        Event("{Nested}", ("Nested", new StructureValue([new("Ok", new ScalarValue(1)), new("Infinite", new ScalarValue(double.PositiveInfinity))]))),
    ];

    [Fact]
    public void Sink_MixedBatch_OneLinePerEventEachAsTheFormatterWritesIt()
    {
        var events = Samples().Values
            .Append(Event("{Amount:0.00} left", ("Amount", new ScalarValue(1.5))))
            .Append(Event("Broken {Model}", ("Model", new ScalarValue("lone \ud800 surrogate")), ("Path", new ScalarValue("/v1/\udc00"))))
            .ToArray();
        using var stdout = new MemoryStream();
        using (var sink = new StdoutClefSink(new KeepOpenStream(stdout)))
        {
            sink.EmitBatch(events);
            sink.EmitBatch(events[..2]);
        }

        var lines = Encoding.UTF8.GetString(stdout.ToArray()).Split('\n');
        Assert.Equal(events.Length + 3, lines.Length); // the last line is the empty rest after the final newline
        Assert.Equal("", lines[^1]);
        foreach (var (line, logEvent) in lines.Zip(events.Concat(events[..2])))
        {
            AssertSameJson(Formatted(logEvent), line);
        }
    }

    private static Dictionary<string, LogEvent> Samples()
    {
        var usage = Event("{Tenant} {Endpoint} {StatusCode} {Outcome}: {TotalTokens} tokens ({UsageSource}) in {DurationMs} ms",
            ("Tenant", new ScalarValue("team-a")), ("Endpoint", new ScalarValue("responses.create")), ("Stream", new ScalarValue(true)),
            ("StatusCode", new ScalarValue(200)), ("ResponseId", new ScalarValue(null)), ("InputTokens", new ScalarValue(5_000_000_000L)),
            ("CostUsd", new ScalarValue(0.000006m)), ("Price", new ScalarValue(1.50m)), ("DurationMs", new ScalarValue(80.541)),
            ("Tiny", new ScalarValue(1e-7)), ("Huge", new ScalarValue(1.5e300)), ("Float", new ScalarValue(0.1f)),
            ("EventId", new StructureValue([new("Id", new ScalarValue(1000)), new("Name", new ScalarValue("Usage"))])),
            ("SourceContext", new ScalarValue("Gateway.Usage.UsageAccounting")));
        var text = Event("Hostile {Model}",
            ("Model", new ScalarValue("q\"uote\\back\nnew\tline\u0001ctl <html> & 'apos' +plus é 中文 😀 \u2028")),
            ("@odd", new ScalarValue("a property named with an @")), ("Small", new ScalarValue((byte)7)), ("Neg", new ScalarValue((sbyte)-7)),
            ("U", new ScalarValue(42u)), ("UL", new ScalarValue(ulong.MaxValue)), ("S", new ScalarValue((short)-3)), ("US", new ScalarValue((ushort)3)));
        var when = Event("At {When}", ("When", new ScalarValue(new DateTime(2026, 11, 30, 10, 0, 0, DateTimeKind.Utc))),
            ("Offset", new ScalarValue(new DateTimeOffset(2026, 11, 30, 11, 0, 0, TimeSpan.FromHours(1)))),
            ("Nested", new StructureValue([new("List", new SequenceValue([new ScalarValue(1), new ScalarValue("two"), new ScalarValue(null)]))], "Tagged")));
        Exception failure;
        try
        {
            throw new InvalidOperationException("boom \"quoted\"");
        }
        catch (InvalidOperationException ex)
        {
            failure = ex;
        }

        var error = new LogEvent(DateTimeOffset.UtcNow, LogEventLevel.Error, failure, Parser.Parse("Failed {RequestId}"),
            [new LogEventProperty("RequestId", new ScalarValue("gw-1"))], ActivityTraceId.CreateRandom(), ActivitySpanId.CreateRandom());
        var warning = new LogEvent(new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.FromHours(-5)), LogEventLevel.Warning, null,
            Parser.Parse("No properties at all"), []);
        return new() { ["usage"] = usage, ["text"] = text, ["dates"] = when, ["error"] = error, ["warning"] = warning };
    }

    private static LogEvent Event(string template, params (string Name, LogEventPropertyValue Value)[] properties) =>
        new(DateTimeOffset.Now, LogEventLevel.Information, null, Parser.Parse(template), properties.Select(p => new LogEventProperty(p.Name, p.Value)));

    private static string Formatted(LogEvent logEvent)
    {
        using var writer = new StringWriter();
        new CompactJsonFormatter().Format(logEvent, writer);
        return writer.ToString().TrimEnd('\n');
    }

    /// <summary>The same members in the same order with the same values (strings compared decoded, numbers by their text).</summary>
    private static void AssertSameJson(string expected, string actual)
    {
        Assert.DoesNotContain('\n', actual);
        // As stdout received the formatter's text before: UTF-8, with a lone surrogate replaced (U+FFFD).
        using var e = JsonDocument.Parse(Encoding.UTF8.GetBytes(expected));
        using var a = JsonDocument.Parse(actual);
        AssertSame(e.RootElement, a.RootElement);
    }

    private static void AssertSame(JsonElement expected, JsonElement actual)
    {
        Assert.Equal(expected.ValueKind, actual.ValueKind);
        switch (expected.ValueKind)
        {
            case JsonValueKind.Object:
                Assert.Equal(expected.EnumerateObject().Select(p => p.Name), actual.EnumerateObject().Select(p => p.Name));
                foreach (var (e, a) in expected.EnumerateObject().Zip(actual.EnumerateObject()))
                {
                    AssertSame(e.Value, a.Value);
                }

                break;
            case JsonValueKind.Array:
                Assert.Equal(expected.GetArrayLength(), actual.GetArrayLength());
                foreach (var (e, a) in expected.EnumerateArray().Zip(actual.EnumerateArray()))
                {
                    AssertSame(e, a);
                }

                break;
            case JsonValueKind.String:
                Assert.Equal(expected.GetString(), actual.GetString());
                break;
            default:
                Assert.Equal(expected.GetRawText(), actual.GetRawText());
                break;
        }
    }

    /// <summary>The sink disposes its stream at shutdown; the test reads it afterwards.</summary>
    private sealed class KeepOpenStream(Stream inner) : Stream
    {
        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => inner.Length;

        public override long Position { get => inner.Position; set => inner.Position = value; }

        public override void Flush() => inner.Flush();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);
    }
}
