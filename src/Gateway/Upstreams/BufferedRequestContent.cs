using System.Net;

namespace Gateway.Upstreams;

/// <summary>
/// The request body the gateway already holds (read whole, inspected and edited before admission), sent as content of
/// known length in place of YARP's streaming copy. YARP's copy flushes the request headers alone before it copies the
/// body, so the upstream got each request in two sends and woke twice for it; with the body in hand, HttpClient writes
/// headers and body into one send (issue #15: the time to first byte at concurrency 1). YARP refuses a transform that
/// replaces its content, so the transform attaches this one to the request's options and
/// <see cref="BufferedBodyHandler"/>, the first handler of the upstream's connection pool, swaps it in. The bytes are
/// the request's pooled buffer: <see cref="WhenSentAsync"/> completes when HttpClient is done with them, and the
/// forwarder waits for it before the attempt ends (over HTTP/2 the body may still be going out beside the answer).
/// </summary>
internal sealed class BufferedRequestContent(ReadOnlyMemory<byte> body) : HttpContent
{
    private Task? _sending;

    /// <summary>Waits until HttpClient is done with the bytes (at once if it never started); a failed send is not thrown: the exchange reports it.</summary>
    public async ValueTask WhenSentAsync()
    {
        try
        {
            await (_sending ?? Task.CompletedTask);
        }
        catch (Exception)
        {
            // HttpClient failed the request with it; YARP reports that as the forwarding error.
        }
    }

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
        SerializeToStreamAsync(stream, context, CancellationToken.None);

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken) =>
        _sending = stream.WriteAsync(body, cancellationToken).AsTask();

    protected override void SerializeToStream(Stream stream, TransportContext? context, CancellationToken cancellationToken) =>
        stream.Write(body.Span);

    protected override bool TryComputeLength(out long length)
    {
        length = body.Length;
        return true;
    }
}
