using System.Buffers;

namespace Gateway.Requests;

/// <summary>A request body read into a pooled buffer; returned to the pool when the request ends.</summary>
internal sealed class PooledBody : IDisposable
{
    private byte[]? _buffer;

    public PooledBody(byte[] buffer, int length)
    {
        _buffer = buffer;
        Length = length;
    }

    public int Length { get; private set; }

    public ReadOnlySpan<byte> Span => _buffer.AsSpan(0, Length);

    public ReadOnlyMemory<byte> Memory => _buffer.AsMemory(0, Length);

    /// <summary>A read-only stream over the current content, for forwarding.</summary>
    public Stream AsStream() => new MemoryStream(_buffer ?? [], 0, Length, writable: false);

    /// <summary>Replaces the content (after an edit), returning the old buffer to the pool.</summary>
    public void Replace(byte[] buffer, int length)
    {
        var old = _buffer;
        _buffer = buffer;
        Length = length;
        if (old is not null)
        {
            ArrayPool<byte>.Shared.Return(old);
        }
    }

    public void Dispose()
    {
        var buffer = Interlocked.Exchange(ref _buffer, null);
        if (buffer is not null)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
