using System.Runtime.ExceptionServices;
using Gateway.Configuration;
using Gateway.Errors;
using Gateway.Forwarding;
using Gateway.Isolation;
using Gateway.Quotas;
using Gateway.Requests;
using Gateway.Routing;
using Gateway.SharedState;
using Gateway.Tenants;
using Gateway.Usage;
using Microsoft.Extensions.Primitives;
using Yarp.ReverseProxy.Forwarder;

namespace Gateway.Pipeline;

/// <summary>
/// Handles every <c>/v1/*</c> request as four stages, each returning an immutable result the next one takes:
/// <see cref="AuthenticatedRequest"/> (tenant, route, body, facts) → <see cref="Admission"/> (reservation, quota
/// status) → <see cref="UpstreamExchange"/> (what the upstream did, written by Forwarding) → <see cref="RequestOutcome"/>,
/// which is accounted once: Quotas settles, Isolation records a deletion, Usage bills and writes the one usage event.
/// Whatever happens, exactly one usage event is written for an authenticated request.
/// </summary>
internal sealed class GatewayRequestHandler(
    UpstreamForwarder forwarding,
    TenantAuthenticator authenticator,
    GatewaySettings settings,
    IsolationGuard isolation,
    QuotaService quotas,
    QuotaEndpoint quotaEndpoint,
    UsageAccounting accounting,
    BodyReadLimiter bodyReads,
    TimeProvider clock,
    ThreadPoolHop hops,
    ILogger<GatewayRequestHandler> logger)
{
    /// <summary>Bodies above this (or of unknown length) are admitted for slot and RPM before they are read.</summary>
    private const long PreAdmitAboveBodyBytes = 64 * 1024;

    public async Task HandleAsync(HttpContext context)
    {
        var start = clock.GetTimestamp();
        var requestId = NewRequestId();
        context.TraceIdentifier = requestId;
        context.Response.Headers[UpstreamTransformer.GatewayRequestIdHeader] = requestId;

        var tenant = authenticator.Authenticate(context.Request, out var authError);
        if (tenant is null)
        {
            await WriteErrorAsync(context, requestId, null, authError!);
            if (logger.IsEnabled(LogLevel.Information))
            {
                UsageEventLog.UnauthenticatedRequest(logger, context.Request.Method, context.Request.Path.Value ?? "", context.Response.StatusCode,
                    clock.GetElapsedTime(start).TotalMilliseconds, requestId);
            }
            return;
        }

        var journey = new Journey(new AuthenticatedRequest(context, requestId, start, tenant));
        try
        {
            await ProcessAsync(journey);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !context.RequestAborted.IsCancellationRequested)
        {
            PipelineLog.UnhandledError(logger, ex, requestId, tenant.Id);
            journey.GatewayFault = true;
            if (!context.Response.HasStarted)
            {
                context.Response.Clear();
                context.Response.Headers[UpstreamTransformer.GatewayRequestIdHeader] = requestId;
                await RejectAsync(journey, OpenAIError.Internal(requestId));
                journey.Rejected = false; // the gateway failed; this is not a policy refusal
            }
        }
        finally
        {
            await FinishAsync(journey);
        }
    }

    /// <summary>The product's story: route, body, tenant policy, isolation, quotas, then the upstream.</summary>
    private async Task ProcessAsync(Journey journey)
    {
        var http = journey.Request.Http;
        var method = http.Request.Method;
        var path = http.Request.Path.Value ?? "";
        if (!ApiRouteTable.TryMatch(method, path, out var match))
        {
            await RejectAsync(journey, OpenAIError.UnknownUrl(method, path));
            return;
        }

        journey.Request = journey.Request with { Route = match.Route, PathId = match.PathId };
        if (match.OverlongIdParam is { } overlongId)
        {
            await RejectAsync(journey, RequestInspector.TooLong(overlongId));
            return;
        }

        if (match.Route.IsGatewayLocal)
        {
            var (status, localError) = await quotaEndpoint.WriteAsync(journey.Request);
            journey.Admission = journey.Admission with { Status = status };
            if (localError is not null)
            {
                await RejectAsync(journey, localError);
            }

            return;
        }

        var error = await ReadBodyAsync(journey, match.Route)
            ?? ApplyTenantPolicy(journey)
            ?? await CheckIsolationAndAdmitAsync(journey);
        if (error is not null)
        {
            await RejectAsync(journey, error);
            return;
        }

        journey.Upstream = await forwarding.SendAsync(journey.Request, journey.Admission.Status);
        if (journey.Upstream.Fault is { } fault)
        {
            ExceptionDispatchInfo.Throw(fault);
        }
    }

    /// <summary>Reads and checks a JSON body; the forwarded body is the buffered (possibly edited) copy.</summary>
    private async ValueTask<OpenAIError?> ReadBodyAsync(Journey journey, ApiRoute route)
    {
        if (route.Body == BodyPolicy.None)
        {
            return null;
        }

        var request = journey.Request.Http.Request;
        var hasBody = request.ContentLength > 0 || (request.ContentLength is null && request.Headers.TransferEncoding.Count > 0);
        if (!hasBody)
        {
            return route.Body == BodyPolicy.JsonRequired ? OpenAIError.BadRequest("The request needs a JSON body.") : null;
        }

        if (!IsJson(request.ContentType))
        {
            return OpenAIError.UnsupportedMediaType(request.ContentType);
        }

        if (EncodedBody(request.Headers.ContentEncoding) is { } encoding)
        {
            // The gateway reads the body as plain JSON; an upstream told it is encoded would read other bytes (or none).
            return OpenAIError.UnsupportedContentEncoding(encoding);
        }

        var limits = settings.Current.Limits;
        if (request.ContentLength > limits.MaxRequestBodyBytes)
        {
            return OpenAIError.BodyTooLarge(limits.MaxRequestBodyBytes);
        }

        var tenantId = journey.Request.Tenant.Id;
        if (!bodyReads.TryEnter(tenantId, limits.MaxConcurrentBodyReadsPerTenant))
        {
            return OpenAIError.TooManyBodyReads(limits.MaxConcurrentBodyReadsPerTenant);
        }

        PooledBody? body;
        OpenAIError? error;
        try
        {
            // A large body takes the tenant's slot (and counts against RPM) before it is received, not after.
            if (request.ContentLength is null or > PreAdmitAboveBodyBytes)
            {
                var preAdmitted = await quotas.PreAdmitAsync(journey.Request);
                journey.Admission = preAdmitted.Admission;
                if (preAdmitted.Refusal is { } refused)
                {
                    return refused;
                }
            }

            (body, error) = await RequestBodyReader.ReadAsync(journey.Request.Http, limits.MaxRequestBodyBytes);
        }
        finally
        {
            bodyReads.Exit(tenantId);
        }

        if (error is not null)
        {
            return error;
        }

        var facts = RequestInspector.Inspect(body!.Span, route, out error);
        journey.Request = journey.Request with { Body = body, Facts = facts };
        return error;
    }

    /// <summary>Allowed models and the output-token cap, then the body edits the gateway makes before forwarding.</summary>
    private static OpenAIError? ApplyTenantPolicy(Journey journey)
    {
        var request = journey.Request;
        if (request.Facts is not { } facts)
        {
            return null;
        }

        if (RequestPolicy.Apply(request.Body!, facts, request.Route!, request.Tenant, out var hideChatUsageChunk) is { } error)
        {
            return error;
        }

        if (hideChatUsageChunk)
        {
            journey.Request = request with { HideChatUsageChunk = true };
        }

        if (request.Body is not null)
        {
            UseBufferedBody(request.Http.Request, request.Body);
        }

        return null;
    }

    /// <summary>
    /// Isolation (a refusal, or the upstream the named objects live on), then admission. The hidden-context read of the admission is issued before the isolation lookups are
    /// awaited, so both travel in one store round trip (issue #15); a refused request never reaches admission.
    /// </summary>
    private async ValueTask<OpenAIError?> CheckIsolationAndAdmitAsync(Journey journey)
    {
        var hiddenContext = quotas.ReadHiddenContextAsync(journey.Request);
        var check = await isolation.CheckAsync(journey.Request);
        if (check.Refusal is { } refusal)
        {
            return refusal;
        }

        if (check.Pin is { } pin)
        {
            // Isolation says which upstream holds the objects the request names: the pin Forwarding follows.
            journey.Request = journey.Request with { Pin = pin };
        }

        return await AdmitAsync(journey, hiddenContext);
    }

    private async ValueTask<OpenAIError?> AdmitAsync(Journey journey, Task<long?> hiddenContext)
    {
        var admitted = await quotas.AdmitAsync(journey.Request, journey.Admission, hiddenContext);
        journey.Admission = admitted.Admission;
        return admitted.Refusal;
    }

    private static void UseBufferedBody(HttpRequest request, PooledBody body)
    {
        request.Body = body.AsStream();
        request.ContentLength = body.Length;
        request.Headers.TransferEncoding = default;
    }

    /// <summary>
    /// Accounting, in one place and in order: the outcome is decided, Usage bills it, Quotas settles the reservation
    /// (and claims the usage once per response id), Isolation forgets a deleted conversation, Usage writes the event.
    /// A step that fails is logged and the others still run.
    /// </summary>
    private async Task FinishAsync(Journey journey)
    {
        var request = journey.Request;
        try
        {
            var outcome = DecideOutcome(journey);
            // A bill that estimates a large body (o200k) must not run on the upstream socket's thread.
            await hops.Above(UsageAccounting.WillEstimate(request, outcome) ? request.Body!.Length : 0, ThreadPoolHop.EstimateAboveBytes, "accounting");
            var bill = accounting.Bill(request, outcome, journey.Admission.Reservation?.ContextTokens ?? 0);
            SettleResult settled;
            try
            {
                settled = await quotas.SettleAsync(request, journey.Admission, outcome, bill);
            }
            catch (Exception ex)
            {
                // The event is still written; the concurrency lease expires on its own (ConcurrencyLeaseTimeout).
                AccountingLog.StepFailed(logger, ex, "settle", request.RequestId, request.Tenant.Id);
                settled = new SettleResult(true);
            }

            if (journey.Upstream?.OwnershipRecorded is { } ownershipRecorded)
            {
                // Issued before the id went to the client and in flight beside the settle; it never throws (failures are logged).
                await ownershipRecorded;
            }

            bill = accounting.Reconcile(bill, settled, outcome.Usage.Model);
            if (request.Route == ApiRouteTable.ConversationsDelete && outcome.UpstreamStatus is >= 200 and < 300)
            {
                await isolation.RecordDeletedAsync(request);
            }

            accounting.Record(request, outcome, bill);
        }
        catch (Exception ex)
        {
            PipelineLog.UnhandledError(logger, ex, request.RequestId, request.Tenant.Id);
        }
        finally
        {
            request.Body?.Dispose();
        }
    }

    private static RequestOutcome DecideOutcome(Journey journey)
    {
        var upstream = journey.Upstream;
        var usage = upstream?.Usage ?? UsageReading.None;
        return new RequestOutcome(DecideKind(journey, usage), usage)
        {
            Forwarded = upstream is not null,
            UpstreamStatus = upstream?.Status ?? 0,
            UpstreamRequestId = upstream?.UpstreamRequestId,
            Upstream = upstream is { Attempts: > 0 } ? upstream.Upstream : null,
            Attempts = upstream?.Attempts ?? 0,
            PriceMultiplier = upstream?.PriceMultiplier,
            Streaming = upstream?.Streaming ?? false,
            OutputTokensSeen = upstream?.OutputTokensSeen ?? 0,
            FirstByteTimestamp = upstream?.FirstByteTimestamp ?? 0,
        };
    }

    private static Outcome DecideKind(Journey journey, UsageReading usage)
    {
        var http = journey.Request.Http;
        if (journey.GatewayFault)
        {
            return Outcome.GatewayError;
        }

        if (journey.Rejected)
        {
            return Outcome.Rejected;
        }

        var upstream = journey.Upstream;
        var forwarderError = upstream?.Error ?? ForwarderError.None;
        // When the upstream body breaks, YARP aborts the client connection itself (RequestAborted fires): that is
        // the upstream's failure, not a client that left.
        var upstreamBroke = upstream is { Broke: true } || forwarderError == ForwarderError.ResponseBodyDestination;
        var clientGone = !upstreamBroke && (http.RequestAborted.IsCancellationRequested
            || forwarderError is ForwarderError.RequestCanceled or ForwarderError.ResponseBodyCanceled or ForwarderError.ResponseBodyClient);
        if (clientGone && !usage.SawEnd)
        {
            return Outcome.ClientAborted;
        }

        if (upstream is null)
        {
            return http.Response.StatusCode >= 500 ? Outcome.UpstreamError : Outcome.Completed;
        }

        if (upstream.Broke || forwarderError != ForwarderError.None || upstream.Status >= 400 || upstream.Status == 0)
        {
            return Outcome.UpstreamError;
        }

        if (usage.SawErrorEvent && !usage.HasUsage)
        {
            return Outcome.UpstreamError;
        }

        if (upstream.Streaming && !usage.SawEnd)
        {
            return Outcome.UpstreamError;
        }

        return usage.ResponseStatus switch
        {
            "failed" => Outcome.Failed,
            "incomplete" => Outcome.Incomplete,
            _ => Outcome.Completed,
        };
    }

    private async Task RejectAsync(Journey journey, OpenAIError error)
    {
        journey.Rejected = true;
        var request = journey.Request;
        var status = await quotas.DescribeAsync(request, journey.Admission.Status);
        journey.Admission = journey.Admission with { Status = status };
        await WriteErrorAsync(request.Http, request.RequestId, status, error);
    }

    private static Task WriteErrorAsync(HttpContext context, string requestId, QuotaStatus? quotaStatus, OpenAIError error)
    {
        var headers = context.Response.Headers;
        headers["x-request-id"] = requestId;
        RateLimitHeaders.Apply(headers, quotaStatus);
        return error.WriteAsync(context);
    }

    /// <summary>The first Content-Encoding other than <c>identity</c>, or null: a body the gateway can read as sent.</summary>
    private static string? EncodedBody(StringValues contentEncoding)
    {
        foreach (var header in contentEncoding)
        {
            foreach (var coding in (header ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                if (!coding.Equals("identity", StringComparison.OrdinalIgnoreCase))
                {
                    return coding;
                }
            }
        }

        return null;
    }

    private static bool IsJson(string? contentType) =>
        contentType is not null
        && (contentType.StartsWith("application/json", StringComparison.OrdinalIgnoreCase)
            || (contentType.StartsWith("application/", StringComparison.OrdinalIgnoreCase) && contentType.Contains("+json", StringComparison.OrdinalIgnoreCase)));

    /// <summary>A short random id: <c>gw-</c> and 24 hex digits; echoed in x-request-id / x-gateway-request-id and every log line.</summary>
    private static string NewRequestId()
    {
        // Unique, not secret: Random.Shared is enough (the crypto RNG costs two getpid syscalls per call in OpenSSL).
        // Written into the one string it becomes (no intermediate hex string per request).
        return string.Create(27, 0, static (id, _) =>
        {
            Span<byte> random = stackalloc byte[12];
            Random.Shared.NextBytes(random);
            "gw-".CopyTo(id);
            Convert.TryToHexStringLower(random, id[3..], out _);
        });
    }

    /// <summary>
    /// The handler's own locals for one request: the latest result of each stage and how the handler ended it. Private
    /// to this class and never handed to a feature: each stage gets the immutable results it needs.
    /// </summary>
    private sealed class Journey(AuthenticatedRequest request)
    {
        public AuthenticatedRequest Request { get; set; } = request;

        public Admission Admission { get; set; } = Admission.None;

        /// <summary>Null until the request was forwarded.</summary>
        public UpstreamExchange? Upstream { get; set; }

        /// <summary>The gateway itself answered (400/404/413/415/429/503...); nothing reached the upstream.</summary>
        public bool Rejected { get; set; }

        /// <summary>The gateway failed while handling the request (an exception of its own).</summary>
        public bool GatewayFault { get; set; }
    }
}

internal static partial class PipelineLog
{
    [LoggerMessage(EventId = 1201, EventName = "UnhandledError", Level = LogLevel.Error,
        Message = "Request {RequestId} of tenant {Tenant} failed inside the gateway")]
    public static partial void UnhandledError(ILogger logger, Exception exception, string requestId, string tenant);
}
