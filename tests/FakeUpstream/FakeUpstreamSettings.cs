namespace FakeUpstream;

/// <summary>Options of a <see cref="FakeUpstreamServer"/> (and of the standalone host, section "FakeUpstream").</summary>
public sealed record FakeUpstreamSettings
{
    /// <summary>Kestrel listen URL; port 0 picks a free port.</summary>
    public string Url { get; init; } = "http://127.0.0.1:0";

    /// <summary>Keep every request (headers and body) for assertions. Off for benchmarks, where it would only grow memory.</summary>
    public bool RecordRequests { get; init; } = true;

    /// <summary>Folder with the recorded OpenAI exchanges used by <c>x-fake-replay</c>.
    /// Null: <c>Fixtures/openai-recordings</c> next to the assembly, else the repository's <c>tests/Fixtures/openai-recordings</c>.</summary>
    public string? RecordingsPath { get; init; }

    /// <summary>Number of text deltas (= visible output tokens) when the request has no <c>x-fake-deltas</c>.</summary>
    public int DefaultDeltas { get; init; } = 8;

    /// <summary>Pause between SSE events when the request has no <c>x-fake-delay-ms</c>.</summary>
    public int DefaultDelayMs { get; init; }

    /// <summary>Upper bound of stored responses, chat completions and conversations (each); the oldest are evicted
    /// so a long benchmark run does not grow memory without limit.</summary>
    public int MaxStoredObjects { get; init; } = 10_000;
}
