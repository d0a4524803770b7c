using Microsoft.AspNetCore.Http.Extensions;

namespace FakeUpstream;

/// <summary>Keeps the requests the fake received, in arrival order, so tests can assert what the gateway forwarded.</summary>
internal sealed class RequestRecorder(bool enabled)
{
    private readonly Lock _gate = new();
    private readonly List<RecordedRequest> _requests = [];
    private int _count;
    private int _aborted;

    public bool Enabled { get; } = enabled;

    /// <summary>Requests seen (counted even when recording is off).</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>
    /// Requests whose <see cref="HttpContext.RequestAborted"/> fired while the fake was still serving them: the caller
    /// (the gateway) hung up or reset the stream. Counted even when recording is off.
    /// </summary>
    public int AbortedCount => Volatile.Read(ref _aborted);

    public void Record(HttpContext context, byte[] body)
    {
        Interlocked.Increment(ref _count);
        var recorded = Enabled ? Add(context, body) : null;

        // Disposed with the request, so only an abort before the answer is complete counts.
        context.Response.RegisterForDispose(context.RequestAborted.Register(static state =>
        {
            var (recorder, request) = ((RequestRecorder, RecordedRequest?))state!;
            Interlocked.Increment(ref recorder._aborted);
            request?.MarkAborted();
        }, (this, recorded)));
    }

    private RecordedRequest Add(HttpContext context, byte[] body)
    {
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

        return recorded;
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
            Interlocked.Exchange(ref _aborted, 0);
        }
    }
}
