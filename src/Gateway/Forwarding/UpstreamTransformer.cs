using Gateway.Observability;
using Gateway.Quotas;
using Gateway.Requests;
using Gateway.Routing;
using Gateway.Upstreams;
using Gateway.Usage;
using Microsoft.Net.Http.Headers;
using Yarp.ReverseProxy.Forwarder;

namespace Gateway.Forwarding;

/// <summary>
/// Rewrites what crosses the gateway. Towards the upstream: the client's credentials and org/project headers
/// go, the real key comes in, <c>Accept-Encoding: identity</c> is asked for. Towards the client: cookies and the
/// organisation-wide <c>x-ratelimit-*</c> headers go (the tenant's own come in), and the body is observed for usage.
/// One shared instance holds the services; YARP gets a small per-request transformer (<see cref="For"/>) that
/// carries that request's <see cref="UpstreamCall"/> and target.
/// </summary>
internal sealed class UpstreamTransformer(
    UsageObserverFactory observers, GatewayMetrics metrics, ThreadPoolHop hops, ILogger<UpstreamTransformer> logger)
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

    /// <summary>The transformer YARP uses for one request.</summary>
    public HttpTransformer For(UpstreamCall call, UpstreamTarget target) => new PerRequest(this, call, target);

    private static void TransformRequest(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, UpstreamTarget target)
    {
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
        headers.TryAddWithoutValidation(target.AuthHeaderName, target.AuthHeaderValue);

        if (!string.IsNullOrEmpty(target.Organization))
        {
            headers.TryAddWithoutValidation("OpenAI-Organization", target.Organization);
        }

        if (!string.IsNullOrEmpty(target.Project))
        {
            headers.TryAddWithoutValidation("OpenAI-Project", target.Project);
        }

        // The path after /v1 goes after the upstream base, so /openai/v1 (Azure) or any compatible base works.
        var path = httpContext.Request.Path;
        proxyRequest.RequestUri = RequestUtilities.MakeDestinationAddress(destinationPrefix, new PathString(path.Value!.Substring(3)), httpContext.Request.QueryString);
    }

    private async ValueTask<bool> TransformResponseAsync(PerRequest yarp, HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
    {
        var call = yarp.Call;
        if (proxyResponse is null)
        {
            return await yarp.CopyResponseAsync(httpContext, proxyResponse, cancellationToken);
        }

        call.Status = (int)proxyResponse.StatusCode;
        if (proxyResponse.Headers.NonValidated.TryGetValues("x-request-id", out var upstreamId))
        {
            call.UpstreamRequestId = upstreamId.ToString();
        }

        if (call.DropAnswer is { } drop && drop(proxyResponse))
        {
            return false;
        }

        // Error bodies are small: read (bounded) before anything is copied, to judge and scrub them.
        var upstreamError = call.Status >= 400 ? await UpstreamErrors.ReadAsync(proxyResponse, cancellationToken) : null;
        var upstreamKey = UpstreamKey(yarp.Target.AuthHeaderValue);
        if (upstreamError is not null && UpstreamErrors.IsCredentialRefusal(call.Status, upstreamError))
        {
            // The upstream refused our key or organization: the tenant learns nothing of it but that it failed.
            metrics.RecordUpstreamAuthFailure(call.Status);
            await UpstreamErrors.AnswerAuthFailureAsync(httpContext, call, upstreamError, upstreamKey, logger);
            return false;
        }

        // Dropped from the upstream's answer before YARP copies it: never added to the client's headers, nothing to remove there.
        foreach (var name in UpstreamHeadersToDrop)
        {
            proxyResponse.Headers.Remove(name);
        }

        RateLimitHeaders.RemoveUpstream(proxyResponse.Headers);
        var copy = await yarp.CopyResponseAsync(httpContext, proxyResponse, cancellationToken);
        var responseHeaders = httpContext.Response.Headers;
        RateLimitHeaders.Apply(responseHeaders, call.QuotaStatus);
        if (call.UpstreamRequestId is null)
        {
            responseHeaders["x-request-id"] = call.Request.RequestId;
        }

        if (upstreamError is not null)
        {
            // They may name the upstream organization or quote its key: copied scrubbed.
            await UpstreamErrors.WriteScrubbedAsync(httpContext, upstreamError, upstreamKey, cancellationToken);
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

        var format = DetectFormat(call.Request, proxyResponse, content.Headers.ContentType);
        if (format != BodyFormat.None || decompress)
        {
            var observer = format == BodyFormat.None ? null : observers.Attach(format, call.Request.Route!.Usage);
            call.Observer = observer;
            proxyResponse.Content = new ObservedUpstreamContent(content, call, observer, decompress ? encoding.Last() : null, hops);
        }

        return copy;
    }

    private static string UpstreamKey(string value)
    {
        return value.StartsWith("Bearer ", StringComparison.Ordinal) ? value["Bearer ".Length..] : value;
    }

    private static BodyFormat DetectFormat(AuthenticatedRequest request, HttpResponseMessage response, System.Net.Http.Headers.MediaTypeHeaderValue? contentType)
    {
        var route = request.Route;
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

    /// <summary>One request's view of the transformer: YARP calls it, it hands the call and target to the shared logic.</summary>
    private sealed class PerRequest(UpstreamTransformer owner, UpstreamCall call, UpstreamTarget target) : HttpTransformer
    {
        public UpstreamCall Call => call;

        public UpstreamTarget Target => target;

        public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
        {
            await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);
            if (proxyRequest.Content is not null && call.Request.Body is { } body)
            {
                // The buffered body goes out in one send with the headers, not through YARP's copy (BufferedBodyHandler).
                var content = new BufferedRequestContent(body.Memory);
                proxyRequest.Options.Set(BufferedBodyHandler.Body, content);
                call.RequestContent = content;
            }

            TransformRequest(httpContext, proxyRequest, destinationPrefix, target);
        }

        public override ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken) =>
            owner.TransformResponseAsync(this, httpContext, proxyResponse, cancellationToken);

        public ValueTask<bool> CopyResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken) =>
            base.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
    }
}
