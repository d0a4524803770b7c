using System.Text;
using Gateway.Usage;

namespace Gateway.Tests.Usage;

public sealed class JsonFieldScannerTests
{
    private const string TerminalEvent =
        """{"type":"response.completed","sequence_number":16,"response":{"id":"resp_1","object":"response","status":"completed","model":"gpt-4o-mini-2024-07-18","output":[{"id":"msg_1","type":"message","content":[{"type":"output_text","text":"He said \"hi\" \\ {not json} [x]","annotations":[]}]}],"usage":{"input_tokens":9,"input_tokens_details":{"cached_tokens":2},"output_tokens":12,"output_tokens_details":{"reasoning_tokens":4},"total_tokens":21},"metadata":{}}}""";

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(7)]
    [InlineData(4096)]
    public void Feed_TerminalEventInAnyChunking_ExtractsUsage(int chunkSize)
    {
        var scanner = new JsonFieldScanner();
        var bytes = Encoding.UTF8.GetBytes(TerminalEvent);
        for (var i = 0; i < bytes.Length; i += chunkSize)
        {
            scanner.Feed(bytes.AsSpan(i, Math.Min(chunkSize, bytes.Length - i)));
        }

        Assert.True(scanner.IsComplete);
        Assert.Equal("response.completed", scanner.GetString(ScanField.Type));
        Assert.Equal("resp_1", scanner.GetString(ScanField.Id));
        Assert.Equal("completed", scanner.GetString(ScanField.Status));
        Assert.Equal("gpt-4o-mini-2024-07-18", scanner.GetString(ScanField.Model));
        Assert.Equal(16, scanner.GetInt64(ScanField.SequenceNumber));
        Assert.Equal(9, scanner.GetInt64(ScanField.InputTokens));
        Assert.Equal(2, scanner.GetInt64(ScanField.CachedTokens));
        Assert.Equal(12, scanner.GetInt64(ScanField.OutputTokens));
        Assert.Equal(4, scanner.GetInt64(ScanField.ReasoningTokens));
        Assert.Equal(21, scanner.GetInt64(ScanField.TotalTokens));
        Assert.True(scanner.Has(ScanField.UsageObject));
    }

    [Fact]
    public void Feed_KeysOutOfOrderAndNested_OnlyTopLevelPathsMatch()
    {
        // In background streams output_tokens_details precedes output_tokens; a nested "usage" elsewhere must not count.
        var json = """{"output":[{"usage":{"input_tokens":999}}],"usage":{"output_tokens_details":{"reasoning_tokens":0},"output_tokens":5,"input_tokens":3,"total_tokens":8}}""";
        var scanner = new JsonFieldScanner();
        scanner.Feed(Encoding.UTF8.GetBytes(json));
        Assert.Equal(3, scanner.GetInt64(ScanField.InputTokens));
        Assert.Equal(5, scanner.GetInt64(ScanField.OutputTokens));
        Assert.Equal(8, scanner.GetInt64(ScanField.TotalTokens));
    }

    [Fact]
    public void Feed_ChatUsageChunk_FlagsEmptyChoicesAndUsage()
    {
        var scanner = new JsonFieldScanner();
        scanner.Feed("""{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":22,"completion_tokens":7,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":3},"completion_tokens_details":{"reasoning_tokens":1}}}"""u8);
        Assert.True(scanner.Has(ScanField.ChoicesArray));
        Assert.False(scanner.Has(ScanField.ChoicesElement));
        Assert.Equal(22, scanner.GetInt64(ScanField.PromptTokens));
        Assert.Equal(3, scanner.GetInt64(ScanField.CachedTokens));
        Assert.Equal(1, scanner.GetInt64(ScanField.ReasoningTokens));
    }

    [Fact]
    public void Feed_ChatContentChunk_CapturesDeltaContentAndNullUsage()
    {
        var scanner = new JsonFieldScanner();
        scanner.Feed("""{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"Hel\nlo"},"finish_reason":null}],"usage":null}"""u8);
        Assert.True(scanner.Has(ScanField.ChoicesElement));
        Assert.Equal("Hel\nlo", scanner.GetString(ScanField.ChatDeltaContent));
        Assert.True(scanner.Has(ScanField.NullUsage));
        Assert.False(scanner.Has(ScanField.UsageObject));
    }

    [Fact]
    public void Feed_NotJson_Fails()
    {
        var scanner = new JsonFieldScanner();
        scanner.Feed("[DONE]"u8);
        Assert.True(scanner.HasFailed);
    }

    [Fact]
    public void Feed_HugeStringValue_KeepsMemoryBoundedAndStillFindsUsage()
    {
        var text = new string('x', 3_000_000);
        var json = "{\"response\":{\"output\":[{\"text\":\"" + text + "\"}],\"usage\":{\"input_tokens\":1,\"output_tokens\":2,\"total_tokens\":3}}}";
        var scanner = new JsonFieldScanner();
        // The value arena is rented with the first captured value and kept until released: rent it outside the measure.
        scanner.Feed("{\"response\":{\"usage\":{\"total_tokens\":1}}}"u8);
        scanner.Reset();
        var before = GC.GetAllocatedBytesForCurrentThread();
        var bytes = Encoding.UTF8.GetBytes(json);
        var afterEncoding = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < bytes.Length; i += 65536)
        {
            scanner.Feed(bytes.AsSpan(i, Math.Min(65536, bytes.Length - i)));
        }

        var allocated = GC.GetAllocatedBytesForCurrentThread() - afterEncoding;
        Assert.True(before <= afterEncoding);
        Assert.Equal(3, scanner.GetInt64(ScanField.TotalTokens));
        Assert.True(allocated < 1024, $"scanning allocated {allocated} bytes");
    }
}
