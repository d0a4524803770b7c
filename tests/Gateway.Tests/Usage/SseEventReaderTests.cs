using System.Text;
using Gateway.Usage;

namespace Gateway.Tests.Usage;

/// <summary>
/// The one SSE framer, on its own: what it reports for each field and event must not depend on where the network cut
/// the stream, and only whole <c>data</c> / <c>event</c> field names count.
/// </summary>
public sealed class SseEventReaderTests
{
    private const string Stream =
        ": keep-alive comment\n\n" +
        "event: response.created\n" +
        "data: {\"a\":1}\n\n" +
        "event:no-space\r\n" +
        "data:{\"b\":\r\n" +
        "data:  2}\r\n\r\n" +
        "id: 7\n" +
        "retry: 1000\n" +
        "data: [DONE]\n\n";

    public static TheoryData<int> ChunkSizes => [1, 2, 3, 5, 8, 13, 64, 1 << 20];

    [Theory]
    [MemberData(nameof(ChunkSizes))]
    public void Next_AnyChunking_SameEventsNamesAndJoinedData(int chunkSize)
    {
        var events = Read(Stream, chunkSize);

        Assert.Equal(
        [
            new SseEvent("", "", HadData: false),
            new SseEvent("response.created", "{\"a\":1}", HadData: true),
            // The second data line keeps its second space (only one is dropped) and is joined with a newline.
            new SseEvent("no-space", "{\"b\":\n 2}", HadData: true),
            new SseEvent("", "[DONE]", HadData: true),
        ], events);
    }

    [Theory]
    [InlineData("dat: x\n\n")]
    [InlineData("datax: x\n\n")]
    [InlineData("Data: x\n\n")]
    [InlineData("eventful: x\n\n")]
    [InlineData("data\n\n")] // a field without a colon is ignored
    public void Next_FieldNameOnlyResemblingData_IsIgnored(string text)
    {
        var only = Assert.Single(Read(text, 1));

        Assert.Equal(new SseEvent("", "", HadData: false), only);
    }

    [Fact]
    public void AtEventBoundary_TracksWhetherAnEventIsUnderWay()
    {
        var reader = new SseEventReader();
        Assert.True(reader.AtEventBoundary);

        var bytes = Encoding.UTF8.GetBytes("data: {\"x\"");
        var offset = 0;
        while (reader.Next(bytes, ref offset, out _) != SsePiece.NeedMoreData)
        {
        }

        Assert.False(reader.AtEventBoundary);

        bytes = Encoding.UTF8.GetBytes(":1}\n\n");
        offset = 0;
        Assert.Equal(SsePiece.Data, reader.Next(bytes, ref offset, out _));
        Assert.Equal(SsePiece.EventEnd, reader.Next(bytes, ref offset, out _));
        Assert.True(reader.AtEventBoundary);
        Assert.Equal(bytes.Length, offset);
    }

    private static List<SseEvent> Read(string text, int chunkSize)
    {
        var reader = new SseEventReader();
        var bytes = Encoding.UTF8.GetBytes(text);
        var events = new List<SseEvent>();
        var name = new StringBuilder();
        var data = new StringBuilder();
        for (var start = 0; start < bytes.Length; start += chunkSize)
        {
            var chunk = bytes.AsSpan(start, Math.Min(chunkSize, bytes.Length - start));
            var offset = 0;
            while (true)
            {
                var piece = reader.Next(chunk, ref offset, out var value);
                if (piece == SsePiece.NeedMoreData)
                {
                    break;
                }

                switch (piece)
                {
                    case SsePiece.Data:
                        data.Append(Encoding.UTF8.GetString(value));
                        break;
                    case SsePiece.DataLineBreak:
                        data.Append('\n');
                        break;
                    case SsePiece.EventName:
                        name.Append(Encoding.UTF8.GetString(value));
                        break;
                    case SsePiece.EventEnd:
                        events.Add(new SseEvent(name.ToString(), data.ToString(), reader.LastEventHadData));
                        name.Clear();
                        data.Clear();
                        break;
                }
            }

            Assert.Equal(chunk.Length, offset);
        }

        return events;
    }

    private sealed record SseEvent(string Name, string Data, bool HadData);
}
