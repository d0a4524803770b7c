using System.Text;
using Gateway.Routing;
using Gateway.Usage;

namespace Gateway.Tests.Usage;

/// <summary>
/// The observer that reads usage out of bodies as they pass: SSE framing (any chunking, CRLF, multi-line data,
/// comments), the events that matter, the flags the chat filter relies on, the delta tally for estimates, and its
/// bounded memory. The end-to-end tests prove the same through the gateway; these pin the edge cases.
/// </summary>
public sealed class UsageObserverTests
{
    private static readonly TokenCounter Tokens = new();

    private const string ResponsesStream =
        "event: response.created\n" +
        "data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_abc\",\"object\":\"response\",\"status\":\"in_progress\",\"model\":\"gpt-4o-mini-2024-07-18\",\"usage\":null}}\n\n" +
        "event: response.output_text.delta\n" +
        "data: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"delta\":\" hello\"}\n\n" +
        "event: response.output_text.delta\n" +
        "data: {\"type\":\"response.output_text.delta\",\"sequence_number\":2,\"delta\":\" world\"}\n\n" +
        "event: response.completed\n" +
        "data: {\"type\":\"response.completed\",\"sequence_number\":3,\"response\":{\"id\":\"resp_abc\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"gpt-4o-mini-2024-07-18\"," +
        "\"output\":[{\"content\":[{\"text\":\" hello world\"}]}],\"usage\":{\"input_tokens\":12,\"input_tokens_details\":{\"cached_tokens\":4},\"output_tokens\":7,\"output_tokens_details\":{\"reasoning_tokens\":5},\"total_tokens\":19}}}\n\n";

    [Theory]
    [InlineData(1, false)]
    [InlineData(1, true)]
    [InlineData(3, false)]
    [InlineData(64, true)]
    [InlineData(100_000, false)]
    public void ResponsesStream_AnyChunkingAndLineEnding_UsageIdsAndTally(int chunkSize, bool crlf)
    {
        var (observer, usage) = Start(BodyFormat.Sse, UsageShape.Responses);
        Feed(observer, crlf ? ResponsesStream.Replace("\n", "\r\n", StringComparison.Ordinal) : ResponsesStream, chunkSize);

        Assert.True(usage.HasUsage);
        Assert.True(usage.SawEnd);
        Assert.False(usage.SawErrorEvent);
        Assert.Equal((12L, 4L, 7L, 5L, 19L), (usage.InputTokens!.Value, usage.CachedInputTokens!.Value, usage.OutputTokens!.Value, usage.ReasoningTokens!.Value, usage.TotalTokens!.Value));
        Assert.Equal("resp_abc", usage.ObjectId);
        Assert.Equal("response", usage.ObjectType);
        Assert.Equal("completed", usage.ResponseStatus);
        Assert.Equal("gpt-4o-mini-2024-07-18", usage.Model);
        Assert.Equal(3, usage.LastSequenceNumber);
        Assert.Equal(4, usage.EventCount);
        Assert.Equal(2, observer.Tally.Total()); // " hello", " world"
        Assert.True(observer.AtEventBoundary);
    }

    [Fact]
    public void SseFraming_CommentsUnknownFieldsAndMultiLineData_Handled()
    {
        var (observer, usage) = Start(BodyFormat.Sse, UsageShape.Responses);
        Feed(observer,
            ": keep-alive comment\n\n" +
            "id: 7\nretry: 1000\nevent: " + new string('x', 200) + "\n" + // an absurd event name is cut, not a crash
            "data: {\"type\":\"response.output_text.delta\",\n" +
            "data: \"delta\":\" fox\"}\n\n" +
            "event: response.incomplete\n" +
            "data: {\"type\":\"response.incomplete\",\"response\":{\"id\":\"resp_1\",\"status\":\"incomplete\",\n" +
            "data: \"usage\":{\"input_tokens\":3,\"output_tokens\":16,\"total_tokens\":19}}}\n\n",
            chunkSize: 5);

        Assert.Equal(1, observer.Tally.Total());
        Assert.True(usage.HasUsage);
        Assert.Equal(19, usage.TotalTokens);
        Assert.Equal("incomplete", usage.ResponseStatus);
        Assert.Null(usage.CachedInputTokens); // not reported: unknown, not zero
        Assert.Null(usage.ReasoningTokens);
    }

    [Theory]
    [InlineData("event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"boom\",\"param\":null,\"sequence_number\":2}\n\n")]
    [InlineData("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"service_unavailable_error\",\"code\":null,\"message\":\"boom\",\"param\":null},\"sequence_number\":2}\n\n")]
    public void ErrorEvent_FlatOrNested_SeenAndNoUsage(string stream)
    {
        var (observer, usage) = Start(BodyFormat.Sse, UsageShape.Responses);
        Feed(observer, stream, chunkSize: 7);
        Assert.True(usage.SawErrorEvent);
        Assert.False(usage.HasUsage);
        Assert.False(usage.SawEnd);
    }

    [Fact]
    public void ChatStream_FlagsTheUsageChunkAndNullUsageEventByEvent()
    {
        var (observer, usage) = Start(BodyFormat.Sse, UsageShape.Chat);

        Feed(observer, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" quick\"}}],\"usage\":null}\n\n", 4);
        Assert.True(observer.LastEventHadNullUsage);
        Assert.False(observer.LastEventWasChatUsageChunk);

        Feed(observer, "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" brown\"}}]}\n\n", 4);
        Assert.False(observer.LastEventHadNullUsage);

        Feed(observer, "data: {\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11,\"prompt_tokens_details\":{\"cached_tokens\":1},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n", 4);
        Assert.True(observer.LastEventWasChatUsageChunk);
        Assert.False(usage.SawEnd);

        Feed(observer, "data: [DONE]\n\n", 4);
        Assert.False(observer.LastEventWasChatUsageChunk);
        Assert.True(usage.SawEnd);
        Assert.Equal((9L, 1L, 2L, 0L, 11L), (usage.InputTokens!.Value, usage.CachedInputTokens!.Value, usage.OutputTokens!.Value, usage.ReasoningTokens!.Value, usage.TotalTokens!.Value));
        Assert.Equal("chatcmpl-1", usage.ObjectId);
        Assert.Equal("chat.completion", usage.ObjectType);
        Assert.Equal(2, observer.Tally.Total());
    }

    [Fact]
    public void ChatChunk_TopLevelError_Seen()
    {
        var (observer, usage) = Start(BodyFormat.Sse, UsageShape.Chat);
        Feed(observer, "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n", 3);
        Assert.True(usage.SawErrorEvent);
    }

    [Fact]
    public void AudioDeltas_AreNotCountedAsText()
    {
        var (observer, _) = Start(BodyFormat.Sse, UsageShape.Responses);
        Feed(observer, "event: response.audio.delta\ndata: {\"type\":\"response.audio.delta\",\"delta\":\"UklGRiQAAABXQVZFZm10IBAAAAABAAEA\"}\n\n" +
                       "event: response.audio.transcript.delta\ndata: {\"type\":\"response.audio.transcript.delta\",\"delta\":\" hello\"}\n\n", 9);
        Assert.Equal(0, observer.Tally.Total());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void JsonBody_OnlyAWholeDocumentCounts(bool truncated)
    {
        const string body = """{"id":"resp_9","object":"response","status":"completed","model":"gpt-4.1-2025-04-14","usage":{"input_tokens":5,"output_tokens":6,"total_tokens":11}}""";
        var (observer, usage) = Start(BodyFormat.Json, UsageShape.Responses);
        Feed(observer, truncated ? body[..^20] : body, chunkSize: 16);
        observer.Complete();

        Assert.Equal(!truncated, usage.HasUsage);
        Assert.Equal(!truncated, usage.SawEnd);
        Assert.Equal("resp_9", usage.ObjectId); // known as soon as it has passed (ownership is recorded from it)
        Assert.True(observer.ObjectIdJustSeen);
    }

    [Fact]
    public void EmbeddingsJson_NoCompletionTokens_OutputIsZero()
    {
        var (observer, usage) = Start(BodyFormat.Json, UsageShape.Embeddings);
        Feed(observer, """{"object":"list","data":[{"object":"embedding","index":0,"embedding":"AAAA"}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}""", 10);
        observer.Complete();
        Assert.Equal(8, usage.InputTokens);
        Assert.Equal(0, usage.OutputTokens);
        Assert.Equal(8, usage.TotalTokens);
        Assert.Null(usage.ObjectId);
    }

    [Fact]
    public void HugeDelta_CutAt2KiBForTheEstimate()
    {
        // Each " hello" is one o200k token; the observer keeps at most 2 KiB of a delta, so the estimate counts ~341 of them.
        var delta = string.Concat(Enumerable.Repeat(" hello", 10_000));
        var (observer, _) = Start(BodyFormat.Sse, UsageShape.Responses);
        Feed(observer, $"event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"delta\":\"{delta}\"}}\n\n", 4096);
        Assert.InRange(observer.Tally.Total(), 2048 / 6 - 1, 2048 / 6 + 1);
    }

    [Fact]
    public void TallyOverManyBatches_CountsLikeTheWholeText()
    {
        // ~60 KB of prose in small deltas crosses the tally's batch size many times; batches are cut before a
        // whitespace, so the count equals the tokenizer's count of the whole text, not one extra per cut word.
        // Deltas of 7 characters cut words anywhere, as subword tokens do.
        var words = new[] { " The", " gateway", " counts", " tokens", " exactly,", " even", " when", " streams", " are", " cut", " short.\n" };
        var text = new StringBuilder();
        for (var i = 0; i < 8_000; i++)
        {
            text.Append(words[i % words.Length]);
        }

        var stream = new StringBuilder();
        for (var at = 0; at < text.Length; at += 7)
        {
            var delta = text.ToString(at, Math.Min(7, text.Length - at)).Replace("\n", "\\n", StringComparison.Ordinal);
            stream.Append("event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"").Append(delta).Append("\"}\n\n");
        }

        var (observer, _) = Start(BodyFormat.Sse, UsageShape.Responses);
        Feed(observer, stream.ToString(), 1500);

        Assert.Equal(Tokens.Count(text.ToString()), observer.Tally.Total());
    }

    [Fact]
    public void MultiMegabyteTerminalEvent_MemoryStaysBoundedAndUsageFound()
    {
        // A terminal event repeats the whole output (here 3 MB of text): it is scanned through, never held.
        var text = new string('x', 3_000_000);
        var stream = Encoding.UTF8.GetBytes("event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_big\",\"status\":\"completed\"," +
            $"\"output\":[{{\"content\":[{{\"text\":\"{text}\"}}]}}],\"usage\":{{\"input_tokens\":1,\"output_tokens\":750000,\"total_tokens\":750001}}}}}}\n\n");
        var (observer, usage) = Start(BodyFormat.Sse, UsageShape.Responses);
        Feed(observer, "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\" warm\"}\n\n", 64); // pooled buffers in place

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < stream.Length; i += 16_384)
        {
            observer.Observe(stream.AsSpan(i, Math.Min(16_384, stream.Length - i)));
        }

        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(750001, usage.TotalTokens);
        Assert.True(allocated < 4096, $"observing 3 MB allocated {allocated} bytes");
    }

    [Fact]
    public void Attach_ObserverBackFromThePool_StartsWithNothingOfThePreviousBody()
    {
        // The pooled observer reuses its ObservedUsage (#15): the next request must see a new one's values, and the
        // previous request's reading, taken before release, must not change.
        var factory = new UsageObserverFactory(Tokens);
        var first = factory.Attach(BodyFormat.Sse, UsageShape.Responses);
        Feed(first, ResponsesStream + "data: {\"type\":\"error\"}\n\n", 5);
        first.Usage.Background = true;
        first.Usage.ConversationId = "conv_1";
        var reading = first.Usage.ToReading();
        Assert.True(reading is { HasUsage: true, SawEnd: true, SawErrorEvent: true, ObjectId: "resp_abc", TotalTokens: 19 });
        factory.Release(first);

        var second = factory.Attach(BodyFormat.Json, UsageShape.Responses);
        Assert.Same(first, second); // the pool handed back the same observer
        Assert.Equivalent(new ObservedUsage(), second.Usage, strict: true);
        Feed(second, "{\"object\":\"response\",\"status\":\"queued\"}", 7);
        second.Complete();
        Assert.Equal(new UsageReading { ObjectType = "response", ResponseStatus = "queued", SawEnd = true }, second.Usage.ToReading());
        Assert.True(reading is { HasUsage: true, ObjectId: "resp_abc", ConversationId: "conv_1", Background: true, TotalTokens: 19 });
        factory.Release(second);
    }

    [Fact]
    public void ObservedUsageReset_EveryProperty_BackToANewInstancesValue()
    {
        // Guards Reset against a property added later and forgotten there: it would leak from one request into the next.
        var usage = new ObservedUsage();
        foreach (var property in typeof(ObservedUsage).GetProperties().Where(p => p.CanWrite))
        {
            var type = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
            property.SetValue(usage, type == typeof(string) ? "x" : type == typeof(bool) ? true : Convert.ChangeType(42, type, System.Globalization.CultureInfo.InvariantCulture));
        }

        Assert.NotEqual(new ObservedUsage().ToReading(), usage.ToReading());
        usage.Reset();

        Assert.Equivalent(new ObservedUsage(), usage, strict: true);
    }

    private static (UsageObserver Observer, ObservedUsage Usage) Start(BodyFormat format, UsageShape shape)
    {
        var observer = new UsageObserver(Tokens);
        var usage = new ObservedUsage();
        observer.Begin(format, shape, usage);
        return (observer, usage);
    }

    private static void Feed(UsageObserver observer, string text, int chunkSize)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        for (var i = 0; i < bytes.Length; i += chunkSize)
        {
            observer.Observe(bytes.AsSpan(i, Math.Min(chunkSize, bytes.Length - i)));
        }
    }
}
