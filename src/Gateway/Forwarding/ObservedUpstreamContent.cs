using System.Net;
using Gateway.Usage;

namespace Gateway.Forwarding;

/// <summary>
/// Replaces the upstream response content so YARP copies it to the client through <see cref="ObservedUpstreamStream"/>:
/// the bytes are observed for usage as they pass, decoded if the upstream compressed them anyway, and, for a chat
/// stream whose usage the gateway asked for, the extra usage chunk is held back from the client.
/// </summary>
internal sealed class ObservedUpstreamContent : HttpContent
{
    private readonly HttpContent _inner;
    private readonly UpstreamCall _call;
    private readonly UsageObserver? _observer;
    private readonly ICollection<string>? _encodings;
    private readonly ThreadPoolHop _hops;

    public ObservedUpstreamContent(HttpContent inner, UpstreamCall call, UsageObserver? observer, string? encoding, ThreadPoolHop hops)
    {
        _hops = hops;
        _inner = inner;
        _call = call;
        _observer = observer;
        _encodings = encoding is null ? null : inner.Headers.ContentEncoding;
        foreach (var header in inner.Headers.NonValidated)
        {
            Headers.TryAddWithoutValidation(header.Key, header.Value);
        }
    }

    protected override async Task<Stream> CreateContentReadStreamAsync(CancellationToken cancellationToken)
    {
        var stream = await _inner.ReadAsStreamAsync(cancellationToken);
        if (_encodings is not null)
        {
            stream = ContentDecoding.Decode(stream, _encodings);
        }

        return new ObservedUpstreamStream(stream, _call, _observer, _hops);
    }

    protected override Task<Stream> CreateContentReadStreamAsync() => CreateContentReadStreamAsync(CancellationToken.None);

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
        throw new NotSupportedException("The gateway reads upstream content as a stream.");

    protected override bool TryComputeLength(out long length)
    {
        length = 0;
        return false;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _inner.Dispose();
        }

        base.Dispose(disposing);
    }
}
