using Microsoft.AspNetCore.Http.Features;

namespace FakeUpstream;

/// <summary>Per-request state shared by the pipeline and the endpoints (stored as an HttpContext feature).</summary>
internal sealed class FakeRequest(FakeUpstreamState state, FakeDirectives directives, long startTimestamp, byte[] body)
{
    public FakeUpstreamState State { get; } = state;

    public FakeDirectives Directives { get; } = directives;

    /// <summary>Stopwatch timestamp at arrival, for <c>openai-processing-ms</c>.</summary>
    public long StartTimestamp { get; } = startTimestamp;

    public byte[] Body { get; } = body;

    private CancellationTokenSource? _waitCancellation;

    /// <summary>
    /// For deliberate waits (delays, gates): cancelled when the client goes away or the fake shuts down, so a stream
    /// parked on a gate never holds up disposal. Created on first use: requests that never wait pay nothing.
    /// </summary>
    public CancellationToken WaitToken(HttpContext context)
    {
        if (_waitCancellation is null)
        {
            _waitCancellation = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, State.Stopping);
            context.Response.RegisterForDispose(_waitCancellation);
        }

        return _waitCancellation.Token;
    }
}

internal static class FakeRequestExtensions
{
    public static FakeRequest Fake(this HttpContext context) => context.Features.GetRequiredFeature<FakeRequest>();
}
