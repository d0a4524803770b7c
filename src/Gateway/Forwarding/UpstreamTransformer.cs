using Gateway.Configuration;
using Gateway.Observability;
using Gateway.Pipeline;
using Gateway.Quotas;
using Gateway.Routing;
using Gateway.Usage;
using Microsoft.Net.Http.Headers;
using Yarp.ReverseProxy.Forwarder;

namespace Gateway.Forwarding;

/// <summary>
/// Rewrites what crosses the gateway. Towards the upstream: the client's credentials and org/project headers
/// go, the real key comes in, <c>Accept-Encoding: identity</c> is asked for. Towards the client: cookies and the
/// organisation-wide <c>x-ratelimit-*</c> headers go (the tenant's own come in), and the body is observed for usage.
/// </summary>
internal sealed class UpstreamTransformer(
    UpstreamCredentials credentials, GatewaySettings settings, UsageObserverFactory observers, GatewayMetrics metrics, ILogger<UpstreamTransformer> logger)
    : HttpTransformer
{
    public const string GatewayRequestIdHeader = "x-gateway-request-id";

    // Removed from every client request: credentials (ours replace them) and the client's org/project claims.
    private static readonly string[] ClientHeadersToDrop =
    [
        HeaderNames.Authorization, "api-key", "OpenAI-Organization", "OpenAI-Project", HeaderNames.Cookie,
        HeaderNames.AcceptEncoding, HeaderNames.Expect,
    ];

    // Removed from every upstream response: they describe the shared organisation, not the tenant.
    private static readonly string[] UpstreamHeadersToDrop =
    [
        HeaderNames.SetCookie, "openai-organization", "openai-project",
    ];

    public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
    {
        await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);
        var headers = proxyRequest.Headers;
        foreach (var name in ClientHeadersToDrop)
        {
            headers.Remove(name);
        }

        // The upstream host, not the gateway's.
        headers.Host = null;

        // Identity, so the usage can be read as the bytes pass without decompressing a copy; SSE is never
        // compressed usefully anyway, and inside a cluster or to OpenAI the bandwidth saved is small.
        headers.TryAddWithoutValidation(HeaderNames.AcceptEncoding, "identity");
        headers.TryAddWithoutValidation(credentials.HeaderName, credentials.HeaderValue);

        var upstream = settings.Current.Upstream;
        if (!string.IsNullOrEmpty(upstream.Organization))
        {
            headers.TryAddWithoutValidation("OpenAI-Organization", upstream.Organization);
        }

        if (!string.IsNullOrEmpty(upstream.Project))
        {
            headers.TryAddWithoutValidation("OpenAI-Project", upstream.Project);
        }

        // The path after /v1 goes after the upstream base, so /openai/v1 (Azure) or any compatible base works.
        var path = httpContext.Request.Path;
        proxyRequest.RequestUri = RequestUtilities.MakeDestinationAddress(destinationPrefix, new PathString(path.Value!.Substring(3)), httpContext.Request.QueryString);
    }

    public override async ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
    {
        var exchange = httpContext.Features.Get<GatewayExchange>()!;
        if (proxyResponse is null)
        {
            return await base.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
        }

        exchange.UpstreamStatus = (int)proxyResponse.StatusCode;
        if (proxyResponse.Headers.NonValidated.TryGetValues("x-request-id", out var upstreamId))
        {
            exchange.UpstreamRequestId = upstreamId.ToString();
        }

        // Error bodies are small: read (bounded) before anything is copied, to judge and scrub them.
        var upstreamError = exchange.UpstreamStatus >= 400 ? await UpstreamErrors.ReadAsync(proxyResponse, cancellationToken) : null;
        if (upstreamError is not null && UpstreamErrors.IsCredentialRefusal(exchange.UpstreamStatus, upstreamError))
        {
            // The upstream refused our key or organization: the tenant learns nothing of it but that it failed.
            metrics.RecordUpstreamAuthFailure(exchange.UpstreamStatus);
            await UpstreamErrors.AnswerAuthFailureAsync(httpContext, exchange, upstreamError, UpstreamKey(), logger);
            return false;
        }

        var copy = await base.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
        var responseHeaders = httpContext.Response.Headers;
        foreach (var name in UpstreamHeadersToDrop)
        {
            responseHeaders.Remove(name);
        }

        RateLimitHeaders.RemoveUpstream(responseHeaders);
        RateLimitHeaders.Apply(responseHeaders, exchange.QuotaStatus);
        if (exchange.UpstreamRequestId is null)
        {
            responseHeaders["x-request-id"] = exchange.RequestId;
        }

        if (upstreamError is not null)
        {
            // They may name the upstream organization or quote its key: copied scrubbed.
            await UpstreamErrors.WriteScrubbedAsync(httpContext, upstreamError, UpstreamKey(), cancellationToken);
            return false;
        }

        var content = proxyResponse.Content;
        var encoding = content.Headers.ContentEncoding;
        var decompress = encoding.Count > 0 && ContentDecoding.IsSupported(encoding);
        if (decompress)
        {
            // We asked for identity; an upstream that compresses anyway is decoded here so the usage can be
            // read and every client, asked for it or not, gets a valid identity body.
            responseHeaders.Remove(HeaderNames.ContentEncoding);
            responseHeaders.Remove(HeaderNames.ContentLength);
        }

        var format = DetectFormat(exchange, proxyResponse, content.Headers.ContentType);
        if (format != BodyFormat.None || decompress)
        {
            var observer = format == BodyFormat.None ? null : observers.Attach(exchange, format);
            proxyResponse.Content = new ObservedUpstreamContent(content, exchange, observer, decompress ? encoding.Last() : null);
        }

        return copy;
    }

    private string UpstreamKey()
    {
        var value = credentials.HeaderValue;
        return value.StartsWith("Bearer ", StringComparison.Ordinal) ? value["Bearer ".Length..] : value;
    }

    private static BodyFormat DetectFormat(GatewayExchange exchange, HttpResponseMessage response, System.Net.Http.Headers.MediaTypeHeaderValue? contentType)
    {
        var route = exchange.Route;
        var status = (int)response.StatusCode;
        if (route is null || status is < 200 or >= 300 || (!route.SpendsTokens && route.CreatesObject == ObjectKind.None))
        {
            return BodyFormat.None;
        }

        var mediaType = contentType?.MediaType;
        if (string.Equals(mediaType, "text/event-stream", StringComparison.OrdinalIgnoreCase))
        {
            return BodyFormat.Sse;
        }

        return mediaType is not null && mediaType.EndsWith("json", StringComparison.OrdinalIgnoreCase) ? BodyFormat.Json : BodyFormat.None;
    }
}
