using Gateway.Configuration;
using Gateway.Errors;
using Gateway.Forwarding;
using Gateway.Isolation;
using Gateway.Quotas;
using Gateway.Requests;
using Gateway.Routing;
using Gateway.Tenants;
using Gateway.Usage;
using Yarp.ReverseProxy.Forwarder;

namespace Gateway.Pipeline;

/// <summary>
/// Handles every <c>/v1/*</c> request, in order: match the allow-list, authenticate the tenant, read and check
/// the body, enforce model and output caps, tenant isolation and quotas, then forward with YARP while the usage
/// is observed. Whatever happens, exactly one usage event is written for an authenticated request.
/// </summary>
internal sealed class GatewayRequestHandler(
    IHttpForwarder forwarder,
    UpstreamClient upstream,
    UpstreamTransformer transformer,
    TenantAuthenticator authenticator,
    GatewaySettings settings,
    IsolationGuard isolation,
    QuotaService quotas,
    QuotaEndpoint quotaEndpoint,
    UsageAccounting accounting,
    BodyReadLimiter bodyReads,
    TimeProvider clock,
    ILogger<GatewayRequestHandler> logger)
{
    /// <summary>Bodies above this (or of unknown length) are admitted for slot and RPM before they are read.</summary>
    private const long PreAdmitAboveBodyBytes = 64 * 1024;

    public async Task HandleAsync(HttpContext context)
    {
        var exchange = new GatewayExchange(context, NewRequestId(), clock);
        context.Features.Set(exchange);
        context.TraceIdentifier = exchange.RequestId;
        context.Response.Headers[UpstreamTransformer.GatewayRequestIdHeader] = exchange.RequestId;

        var request = context.Request;
        var tenant = authenticator.Authenticate(request, out var authError);
        if (tenant is null)
        {
            await RejectAsync(exchange, authError!);
            if (logger.IsEnabled(LogLevel.Information))
            {
                UsageEventLog.UnauthenticatedRequest(logger, request.Method, request.Path.Value ?? "", context.Response.StatusCode,
                    clock.GetElapsedTime(exchange.StartTimestamp).TotalMilliseconds, exchange.RequestId);
            }
            return;
        }

        exchange.Tenant = tenant;
        try
        {
            await ProcessAsync(exchange);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !context.RequestAborted.IsCancellationRequested)
        {
            PipelineLog.UnhandledError(logger, ex, exchange.RequestId, tenant.Id);
            exchange.GatewayFault = true;
            if (!context.Response.HasStarted)
            {
                context.Response.Clear();
                context.Response.Headers[UpstreamTransformer.GatewayRequestIdHeader] = exchange.RequestId;
                await RejectAsync(exchange, OpenAIError.Internal(exchange.RequestId));
                exchange.Rejected = false; // the gateway failed; this is not a policy refusal
            }
        }
        finally
        {
            await accounting.FinishAsync(exchange);
        }
    }

    private async Task ProcessAsync(GatewayExchange exchange)
    {
        var context = exchange.Http;
        var request = context.Request;
        if (!ApiRouteTable.TryMatch(request.Method, request.Path.Value ?? "", out var match))
        {
            await RejectAsync(exchange, OpenAIError.UnknownUrl(request.Method, request.Path.Value ?? ""));
            return;
        }

        exchange.Route = match.Route;
        exchange.PathId = match.PathId;
        if (match.OverlongIdParam is { } overlongId)
        {
            await RejectAsync(exchange, RequestInspector.TooLong(overlongId));
            return;
        }

        if (match.Route.IsGatewayLocal)
        {
            if (await quotaEndpoint.WriteAsync(exchange) is { } localError)
            {
                await RejectAsync(exchange, localError);
            }

            return;
        }

        var error = await PrepareBodyAsync(exchange, match.Route)
            ?? ApplyTenantPolicy(exchange)
            ?? await isolation.CheckAsync(exchange)
            ?? await quotas.AdmitAsync(exchange);
        if (error is not null)
        {
            await RejectAsync(exchange, error);
            return;
        }

        if (match.Route.CreatesObject != ObjectKind.None)
        {
            exchange.ObjectIdentified = isolation.RecordCreatedAsync;
        }

        exchange.Forwarded = true;
        exchange.ForwarderError = await forwarder.SendAsync(context, upstream.BaseUrl, upstream.Invoker, upstream.RequestConfig, transformer);
        if (exchange.ForwarderError != ForwarderError.None)
        {
            await HandleForwarderErrorAsync(exchange);
        }
    }

    /// <summary>Reads and checks a JSON body; the forwarded body is the buffered (possibly edited) copy.</summary>
    private async ValueTask<OpenAIError?> PrepareBodyAsync(GatewayExchange exchange, ApiRoute route)
    {
        if (route.Body == BodyPolicy.None)
        {
            return null;
        }

        var request = exchange.Http.Request;
        var hasBody = request.ContentLength > 0 || (request.ContentLength is null && request.Headers.TransferEncoding.Count > 0);
        if (!hasBody)
        {
            return route.Body == BodyPolicy.JsonRequired ? OpenAIError.BadRequest("The request needs a JSON body.") : null;
        }

        if (!IsJson(request.ContentType))
        {
            return OpenAIError.UnsupportedMediaType(request.ContentType);
        }

        var limits = settings.Current.Limits;
        if (request.ContentLength > limits.MaxRequestBodyBytes)
        {
            return OpenAIError.BodyTooLarge(limits.MaxRequestBodyBytes);
        }

        var tenantId = exchange.Tenant!.Id;
        if (!bodyReads.TryEnter(tenantId, limits.MaxConcurrentBodyReadsPerTenant))
        {
            return OpenAIError.TooManyBodyReads(limits.MaxConcurrentBodyReadsPerTenant);
        }

        PooledBody? body;
        OpenAIError? error;
        try
        {
            // A large body takes the tenant's slot (and counts against RPM) before it is received, not after.
            if (request.ContentLength is null or > PreAdmitAboveBodyBytes && await quotas.PreAdmitAsync(exchange) is { } refused)
            {
                return refused;
            }

            (body, error) = await RequestBodyReader.ReadAsync(exchange.Http, limits.MaxRequestBodyBytes);
        }
        finally
        {
            bodyReads.Exit(tenantId);
        }

        if (error is not null)
        {
            return error;
        }

        exchange.Body = body;
        exchange.Request = RequestInspector.Inspect(body!.Span, route, out error);
        return error;
    }

    /// <summary>Allowed models and the output-token cap, then the body edits the gateway makes before forwarding.</summary>
    private static OpenAIError? ApplyTenantPolicy(GatewayExchange exchange)
    {
        var facts = exchange.Request;
        var route = exchange.Route!;
        var tenant = exchange.Tenant!;
        if (facts is null)
        {
            return null;
        }

        if (RequestPolicy.Apply(exchange.Body!, facts, route, tenant, out var hideChatUsageChunk) is { } error)
        {
            return error;
        }

        exchange.HideChatUsageChunk = hideChatUsageChunk;
        if (exchange.Body is not null)
        {
            UseBufferedBody(exchange.Http.Request, exchange.Body);
        }

        return null;
    }

    private static void UseBufferedBody(HttpRequest request, PooledBody body)
    {
        request.Body = body.AsStream();
        request.ContentLength = body.Length;
        request.Headers.TransferEncoding = default;
    }

    private async Task HandleForwarderErrorAsync(GatewayExchange exchange)
    {
        var context = exchange.Http;
        var errorFeature = context.Features.Get<IForwarderErrorFeature>();
        var error = exchange.ForwarderError;
        PipelineLog.ForwardingFailed(logger, error.ToString(), errorFeature?.Exception?.GetType().Name, errorFeature?.Exception?.Message, exchange.RequestId, exchange.Tenant?.Id);
        if (context.Response.HasStarted || context.RequestAborted.IsCancellationRequested)
        {
            return;
        }

        context.Response.Clear();
        context.Response.Headers[UpstreamTransformer.GatewayRequestIdHeader] = exchange.RequestId;
        var envelope = error == ForwarderError.RequestTimedOut ? OpenAIError.UpstreamTimeout() : OpenAIError.UpstreamUnreachable();
        if (error == ForwarderError.RequestTimedOut)
        {
            // The upstream may still be generating (and billing) the answer; Node and Python must not send it again.
            envelope = envelope with { Headers = new Dictionary<string, string> { ["x-should-retry"] = "false" } };
        }

        await WriteErrorAsync(exchange, envelope);
    }

    private async Task RejectAsync(GatewayExchange exchange, OpenAIError error)
    {
        exchange.Rejected = true;
        if (exchange.Tenant is not null)
        {
            await quotas.DescribeAsync(exchange);
        }

        await WriteErrorAsync(exchange, error);
    }

    private static Task WriteErrorAsync(GatewayExchange exchange, OpenAIError error)
    {
        var headers = exchange.Http.Response.Headers;
        headers["x-request-id"] = exchange.RequestId;
        RateLimitHeaders.Apply(headers, exchange.QuotaStatus);
        return error.WriteAsync(exchange.Http);
    }

    private static bool IsJson(string? contentType) =>
        contentType is not null
        && (contentType.StartsWith("application/json", StringComparison.OrdinalIgnoreCase)
            || (contentType.StartsWith("application/", StringComparison.OrdinalIgnoreCase) && contentType.Contains("+json", StringComparison.OrdinalIgnoreCase)));

    /// <summary>A short random id: <c>gw-</c> and 24 hex digits; echoed in x-request-id / x-gateway-request-id and every log line.</summary>
    private static string NewRequestId()
    {
        // Unique, not secret: Random.Shared is enough (the crypto RNG costs two getpid syscalls per call in OpenSSL).
        Span<byte> random = stackalloc byte[12];
        Random.Shared.NextBytes(random);
        return string.Concat("gw-", Convert.ToHexStringLower(random));
    }
}

internal static partial class PipelineLog
{
    [LoggerMessage(EventId = 1201, EventName = "UnhandledError", Level = LogLevel.Error,
        Message = "Request {RequestId} of tenant {Tenant} failed inside the gateway")]
    public static partial void UnhandledError(ILogger logger, Exception exception, string requestId, string tenant);

    [LoggerMessage(EventId = 1202, EventName = "ForwardingFailed", Level = LogLevel.Warning,
        Message = "Forwarding {RequestId} of tenant {Tenant} failed: {ForwarderError} ({ExceptionType}: {ExceptionMessage})")]
    public static partial void ForwardingFailed(ILogger logger, string forwarderError, string? exceptionType, string? exceptionMessage, string requestId, string? tenant);
}
