using System.Collections.Concurrent;

namespace FakeUpstream;

/// <summary>
/// Totals of the <c>usage</c> objects this fake actually delivered, so tests can compare them with what the gateway metered.
/// Each usage object is counted exactly once: when it is first delivered complete (a JSON body written in full, or the SSE
/// event that carries it written). Later retrievals of the same response (GET, stream replay) do not count again; a
/// background response counts when it is first delivered completed. Thread-safe.
/// </summary>
public sealed class UsageLedger
{
    private long _inputTokens;
    private long _cachedTokens;
    private long _outputTokens;
    private long _reasoningTokens;
    private long _totalTokens;
    private long _responsesWithUsage;

    // Ids of replayed recordings already counted: a recording is the same upstream object however often it is replayed.
    private readonly ConcurrentDictionary<string, byte> _countedReplayIds = new(StringComparer.Ordinal);

    public long InputTokens => Interlocked.Read(ref _inputTokens);

    public long CachedTokens => Interlocked.Read(ref _cachedTokens);

    public long OutputTokens => Interlocked.Read(ref _outputTokens);

    public long ReasoningTokens => Interlocked.Read(ref _reasoningTokens);

    public long TotalTokens => Interlocked.Read(ref _totalTokens);

    /// <summary>Number of usage objects counted.</summary>
    public long ResponsesWithUsage => Interlocked.Read(ref _responsesWithUsage);

    public void Reset()
    {
        Interlocked.Exchange(ref _inputTokens, 0);
        Interlocked.Exchange(ref _cachedTokens, 0);
        Interlocked.Exchange(ref _outputTokens, 0);
        Interlocked.Exchange(ref _reasoningTokens, 0);
        Interlocked.Exchange(ref _totalTokens, 0);
        Interlocked.Exchange(ref _responsesWithUsage, 0);
        _countedReplayIds.Clear();
    }

    public override string ToString() =>
        $"input={InputTokens} cached={CachedTokens} output={OutputTokens} reasoning={ReasoningTokens} total={TotalTokens} responses={ResponsesWithUsage}";

    internal void Add(in TokenUsage usage)
    {
        Interlocked.Add(ref _inputTokens, usage.InputTokens);
        Interlocked.Add(ref _cachedTokens, usage.CachedTokens);
        Interlocked.Add(ref _outputTokens, usage.OutputTokens);
        Interlocked.Add(ref _reasoningTokens, usage.ReasoningTokens);
        Interlocked.Add(ref _totalTokens, usage.TotalTokens);
        Interlocked.Increment(ref _responsesWithUsage);
    }

    /// <summary>Counts a replayed usage once per recorded object id (null id: always counts).</summary>
    internal void AddReplayed(string? id, in TokenUsage usage)
    {
        if (id is null || _countedReplayIds.TryAdd(id, 0))
        {
            Add(usage);
        }
    }
}

/// <summary>One usage object. <see cref="TotalTokens"/> is carried separately because recordings state it explicitly.</summary>
internal readonly record struct TokenUsage(long InputTokens, long CachedTokens, long OutputTokens, long ReasoningTokens, long TotalTokens)
{
    public static TokenUsage Of(long input, long cached, long output, long reasoning) =>
        new(input, cached, output, reasoning, input + output);
}
