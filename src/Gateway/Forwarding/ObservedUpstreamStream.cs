using System.Threading.Tasks.Sources;
using Gateway.Usage;

namespace Gateway.Forwarding;

/// <summary>
/// The upstream body as YARP reads it. Bytes are handed on as soon as they arrive (nothing is buffered but a
/// partial chat event in filtering mode); the observer sees each chunk first. If a newly created object's id
/// is in the chunk, its ownership record is issued to the store before the chunk is released (without waiting for
/// the store's answer), so a client that reads the id and calls back at once is not refused (see IsolationGuard).
/// If the upstream connection breaks mid-stream, the client gets a proper SSE <c>error</c> event and a clean end
/// instead of a torn connection.
/// An idle stream holds nothing per wait: the zero-byte read that waits between events completes through this
/// stream's own reusable <see cref="IValueTaskSource{TResult}"/> (10,000 open streams wait 10,000 times a second, and
/// an async method's state machine per wait lived the second to the next event: garbage promoted into gen 2).
/// </summary>
internal sealed class ObservedUpstreamStream : Stream, IValueTaskSource<int>
{
    private readonly Stream _inner;
    private readonly UpstreamCall _call;
    private readonly UsageObserver? _observer;
    private readonly ChatUsageChunkFilter? _filter;
    private readonly ThreadPoolHop _hops;
    private byte[]? _tail;
    private int _tailOffset;
    private bool _ended;
    private ManualResetValueTaskSourceCore<int> _idleWait;
    private ValueTask<int> _innerWait;
    private CancellationToken _idleWaitToken;
    private Action? _onInnerWaitCompleted;

    public ObservedUpstreamStream(Stream inner, UpstreamCall call, UsageObserver? observer, ThreadPoolHop hops)
    {
        _hops = hops;
        _inner = inner;
        _call = call;
        _observer = observer;
        if (observer is { Format: BodyFormat.Sse } && call.Request.HideChatUsageChunk)
        {
            _filter = new ChatUsageChunkFilter(observer, hops);
        }
    }

    /// <summary>Whether the usage tee or the chat filter holds a pooled buffer (a test hook: an idle stream holds none).</summary>
    internal bool HoldsPooledBuffers => _observer is { HoldsPooledBuffers: true } || _filter is { HoldsBuffer: true };

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_tail is not null)
        {
            return new(DrainTail(buffer.Span));
        }

        if (_ended)
        {
            return new(0);
        }

        return buffer.IsEmpty ? WaitForData(cancellationToken) : ReadDataAsync(buffer, cancellationToken);
    }

    /// <summary>
    /// YARP's zero-byte read: wait for data without holding a buffer. YARP always waits here first, so this is where a
    /// broken upstream connection usually shows; the error event then goes out on the next read.
    /// </summary>
    private ValueTask<int> WaitForData(CancellationToken cancellationToken)
    {
        ValueTask<int> wait;
        try
        {
            wait = _inner.ReadAsync(Memory<byte>.Empty, cancellationToken);
            if (wait.IsCompleted)
            {
                return new(wait.GetAwaiter().GetResult());
            }
        }
        catch (Exception ex) when (IsUpstreamBreak(ex, cancellationToken))
        {
            return OnUpstreamBreak() ? new(0) : ValueTask.FromException<int>(ex);
        }

        // Nothing to read yet: the stream goes idle, and an idle stream holds no pooled buffer of ours.
        _observer?.ReleaseIdleBuffers();
        _filter?.ReleaseIdleBuffer();
        _idleWait.Reset();
        var version = _idleWait.Version; // read before the wait can complete on another thread
        _innerWait = wait;
        _idleWaitToken = cancellationToken;
        wait.ConfigureAwait(false).GetAwaiter().UnsafeOnCompleted(_onInnerWaitCompleted ??= OnInnerWaitCompleted);
        return new(this, version);
    }

    private void OnInnerWaitCompleted()
    {
        var wait = _innerWait;
        _innerWait = default;
        int read;
        try
        {
            read = wait.GetAwaiter().GetResult();
        }
        catch (Exception ex)
        {
            if (!IsUpstreamBreak(ex, _idleWaitToken) || !OnUpstreamBreak())
            {
                _idleWait.SetException(ex);
                return;
            }

            read = 0;
        }

        _idleWait.SetResult(read);
    }

    int IValueTaskSource<int>.GetResult(short token) => _idleWait.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<int>.GetStatus(short token) => _idleWait.GetStatus(token);

    void IValueTaskSource<int>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _idleWait.OnCompleted(continuation, state, token, flags);

    private async ValueTask<int> ReadDataAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        int read;
        try
        {
            read = _filter is null
                ? await _inner.ReadAsync(buffer, cancellationToken)
                : await _filter.ReadAsync(_inner, buffer, cancellationToken);
        }
        catch (Exception ex) when (IsUpstreamBreak(ex, cancellationToken))
        {
            if (!OnUpstreamBreak())
            {
                throw;
            }

            return DrainTail(buffer.Span);
        }

        if (read == 0)
        {
            _ended = true;
            _observer?.Complete();
            return 0;
        }

        if (_call.FirstByteTimestamp == 0)
        {
            _call.FirstByteTimestamp = _call.Clock.GetTimestamp();
        }

        if (_filter is null && _observer is not null)
        {
            // Observing (and tokenizing the text of) a large read is CPU-bound: not on the upstream socket's thread.
            await _hops.Above(read, ThreadPoolHop.ObserveAboveBytes, "usage_tee");
            _observer.Observe(buffer.Span[..read]);
        }

        if (_observer is { ObjectIdJustSeen: true } && _call.ObjectIdentified is { } onIdentified)
        {
            _observer.ObjectIdJustSeen = false;
            // The record is on its way to the store before the id is released; its answer is awaited when the request ends.
            _call.AddOwnershipRecord(onIdentified(_observer.Usage));
        }

        return read;
    }

    /// <summary>
    /// Marks the break and, for SSE, prepares the synthetic error event (the next reads send it, then a clean end).
    /// False for any other body: the caller rethrows and YARP cuts the client connection, as the upstream did.
    /// </summary>
    private bool OnUpstreamBreak()
    {
        _call.Broke = true;
        if (_observer is not { Format: BodyFormat.Sse })
        {
            return false;
        }

        var shape = _call.Request.Route!.Usage;
        var sequence = _observer.Usage.LastSequenceNumber;
        // The filter holds an unfinished event back: the client is between events though the observer is not.
        var clientAtBoundary = _observer.AtEventBoundary || _filter is { HoldsPartialEvent: true };
        _tail = StreamErrorEvents.UpstreamDisconnected(shape, sequence, clientAtBoundary);
        _observer.Observe(clientAtBoundary == _observer.AtEventBoundary ? _tail : StreamErrorEvents.UpstreamDisconnected(shape, sequence, atEventBoundary: false));
        return true;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer, offset, count, CancellationToken.None).GetAwaiter().GetResult();

    private int DrainTail(Span<byte> destination)
    {
        var tail = _tail!;
        var count = Math.Min(destination.Length, tail.Length - _tailOffset);
        tail.AsSpan(_tailOffset, count).CopyTo(destination);
        _tailOffset += count;
        if (_tailOffset == tail.Length)
        {
            _tail = null;
            _ended = true;
        }

        return count;
    }

    private static bool IsUpstreamBreak(Exception ex, CancellationToken cancellationToken) =>
        !cancellationToken.IsCancellationRequested && ex is IOException or HttpRequestException or InvalidDataException;

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
            _inner.Dispose();
            _filter?.Dispose();
        }

        base.Dispose(disposing);
    }
}
