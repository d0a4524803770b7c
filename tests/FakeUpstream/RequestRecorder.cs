using Microsoft.AspNetCore.Http.Extensions;

namespace FakeUpstream;

/// <summary>Keeps the requests the fake received, in arrival order, so tests can assert what the gateway forwarded.</summary>
internal sealed class RequestRecorder(bool enabled)
{
    private readonly Lock _gate = new();
    private readonly List<RecordedRequest> _requests = [];
    private int _count;

    public bool Enabled { get; } = enabled;

    /// <summary>Requests seen (counted even when recording is off).</summary>
    public int Count => Volatile.Read(ref _count);

    public void Record(HttpContext context, byte[] body)
    {
        Interlocked.Increment(ref _count);
        if (!Enabled)
        {
            return;
        }

        var request = context.Request;
        var headers = new Dictionary<string, string[]>(request.Headers.Count, StringComparer.OrdinalIgnoreCase);
        foreach (var (name, values) in request.Headers)
        {
            headers[name] = values.ToArray()!;
        }

        var recorded = new RecordedRequest(
            request.Method,
            request.GetEncodedPathAndQuery(),
            headers,
            body,
            DateTimeOffset.UtcNow);

        lock (_gate)
        {
            _requests.Add(recorded);
        }
    }

    public RecordedRequest[] Snapshot()
    {
        lock (_gate)
        {
            return [.. _requests];
        }
    }

    public void Clear()
    {
        lock (_gate)
        {
            _requests.Clear();
            Interlocked.Exchange(ref _count, 0);
        }
    }
}
