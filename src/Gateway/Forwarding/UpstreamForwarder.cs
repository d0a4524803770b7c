using Gateway.Configuration;
using Gateway.Errors;
using Gateway.Isolation;
using Gateway.Quotas;
using Gateway.Requests;
using Gateway.Routing;
using Gateway.Upstreams;
using Gateway.Usage;
using Yarp.ReverseProxy.Forwarder;

namespace Gateway.Forwarding;

/// <summary>
/// Stage 3: sends an admitted request to its upstream with YARP and returns what happened as one immutable
/// <see cref="UpstreamExchange"/>. The upstream target is chosen once, here; ownership of a created object is
/// recorded (through Isolation) before its id reaches the client; a failed exchange is answered the OpenAI way.
/// </summary>
internal sealed class UpstreamForwarder(
    IHttpForwarder forwarder,
    UpstreamClient upstreams,
    GatewaySettings settings,
    UpstreamRouter router,
    UpstreamTransformer transformer,
    UsageObserverFactory observers,
    IsolationGuard isolation,
    TimeProvider clock,
    ILogger<UpstreamForwarder> logger)
{
    public async Task<UpstreamExchange> SendAsync(AuthenticatedRequest request, QuotaStatus? quotaStatus)
    {
        UpstreamTarget target;
        if (settings.Current.Upstreams.Count == 0)
        {
            target = upstreams.Current;
        }
        else
        {
            var (chosen, refusal) = await ChooseAsync(request);
            if (refusal is not null)
            {
                await AnswerAsync(request, quotaStatus, refusal);
                return new UpstreamExchange("", ForwarderError.None, refusal.StatusCode, UsageReading.None) { Attempts = 0 };
            }

            target = chosen!;
        }

        Func<ObservedUsage, ValueTask>? objectIdentified = request.Route!.CreatesObject == ObjectKind.None
            ? null
            : usage => isolation.RecordCreatedAsync(request, usage.ObjectId, usage.ConversationId);
        var call = new UpstreamCall(request, quotaStatus, clock, objectIdentified);
        var error = ForwarderError.None;
        Exception? fault = null;
        try
        {
            error = await forwarder.SendAsync(request.Http, target.BaseUrl, target.Invoker, target.RequestConfig, transformer.For(call, target));
        }
        catch (Exception ex)
        {
            fault = ex;
        }

        var exchange = Finish(call, target, error, fault);
        if (error != ForwarderError.None && fault is null)
        {
            try
            {
                await AnswerFailureAsync(request, quotaStatus, error);
            }
            catch (Exception ex)
            {
                exchange = exchange with { Fault = ex };
            }
        }

        return exchange;
    }

    /// <summary>
    /// The pool's choice for this request (issue #12): the first candidate for the client's model, its key read now,
    /// and the body's model rewritten to the upstream's deployment name. Usage and quotas keep the client's model.
    /// </summary>
    private async Task<(UpstreamTarget? Target, OpenAIError? Refusal)> ChooseAsync(AuthenticatedRequest request)
    {
        var model = request.Facts?.Model;
        var choice = router.Choose(model);
        switch (choice.Kind)
        {
            case UpstreamChoiceKind.NoUpstreamServesModel:
                return (null, new OpenAIError(StatusCodes.Status404NotFound,
                    $"The model `{model}` does not exist or you do not have access to it.", "invalid_request_error", null, "model_not_found"));
            case UpstreamChoiceKind.AllCoolingDown or UpstreamChoiceKind.PinnedUpstreamGone:
                var wait = choice.RetryAfter ?? TimeSpan.FromSeconds(1);
                return (null, new OpenAIError(StatusCodes.Status429TooManyRequests,
                    "Every upstream serving this model is rate limited. Please try again later.", "requests", null, "rate_limit_exceeded")
                {
                    Headers = new Dictionary<string, string>
                    {
                        ["retry-after"] = Math.Max(1, (long)Math.Ceiling(wait.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture),
                        ["retry-after-ms"] = ((long)Math.Ceiling(wait.TotalMilliseconds)).ToString(System.Globalization.CultureInfo.InvariantCulture),
                    },
                });
        }

        var upstream = choice.Candidates[0];
        var credential = await upstream.Credentials.GetAsync(request.Http.RequestAborted);
        if (upstream.Models is not null && request.Body is { } body && upstream.UpstreamModel(model) is { } upstreamModel
            && UpstreamModelRewriter.Rewrite(body, upstreamModel))
        {
            request.Http.Request.Body = body.AsStream();
            request.Http.Request.ContentLength = body.Length;
        }

        return (new UpstreamTarget(upstream.Name, upstream.BaseUrl, upstream.Transport.Invoker, upstream.Transport.RequestConfig,
            credential.HeaderName, credential.Value, upstream.Organization, upstream.Project), null);
    }

    private static async Task AnswerAsync(AuthenticatedRequest request, QuotaStatus? quotaStatus, OpenAIError error)
    {
        var context = request.Http;
        context.Response.Headers[UpstreamTransformer.GatewayRequestIdHeader] = request.RequestId;
        context.Response.Headers["x-request-id"] = request.RequestId;
        RateLimitHeaders.Apply(context.Response.Headers, quotaStatus);
        await error.WriteAsync(context);
    }

    /// <summary>Reads the call out once, then returns its observer to the pool.</summary>
    private UpstreamExchange Finish(UpstreamCall call, UpstreamTarget target, ForwarderError error, Exception? fault)
    {
        var observer = call.Observer;
        var usage = observer?.Usage.ToReading() ?? UsageReading.None;
        long outputSeen = 0;
        if (observer is not null && !usage.HasUsage)
        {
            try
            {
                outputSeen = observer.Tally.Total();
            }
            catch (Exception ex)
            {
                AccountingLog.StepFailed(logger, ex, "estimate-output", call.Request.RequestId, call.Request.Tenant.Id);
            }
        }

        var streaming = observer?.Format == BodyFormat.Sse;
        if (observer is not null)
        {
            call.Observer = null;
            observers.Release(observer);
        }

        return new UpstreamExchange(target.Name, error, call.Status, usage)
        {
            UpstreamRequestId = call.UpstreamRequestId,
            FirstByteTimestamp = call.FirstByteTimestamp,
            Broke = call.Broke,
            Streaming = streaming,
            OutputTokensSeen = outputSeen,
            Fault = fault,
        };
    }

    private async Task AnswerFailureAsync(AuthenticatedRequest request, QuotaStatus? quotaStatus, ForwarderError error)
    {
        var context = request.Http;
        var errorFeature = context.Features.Get<IForwarderErrorFeature>();
        ForwardingLog.ForwardingFailed(logger, error.ToString(), errorFeature?.Exception?.GetType().Name, errorFeature?.Exception?.Message, request.RequestId, request.Tenant.Id);
        if (context.Response.HasStarted || context.RequestAborted.IsCancellationRequested)
        {
            return;
        }

        context.Response.Clear();
        context.Response.Headers[UpstreamTransformer.GatewayRequestIdHeader] = request.RequestId;
        var envelope = error == ForwarderError.RequestTimedOut ? OpenAIError.UpstreamTimeout() : OpenAIError.UpstreamUnreachable();
        if (error == ForwarderError.RequestTimedOut)
        {
            // The upstream may still be generating (and billing) the answer; Node and Python must not send it again.
            envelope = envelope with { Headers = new Dictionary<string, string> { ["x-should-retry"] = "false" } };
        }

        context.Response.Headers["x-request-id"] = request.RequestId;
        RateLimitHeaders.Apply(context.Response.Headers, quotaStatus);
        await envelope.WriteAsync(context);
    }
}

internal static partial class ForwardingLog
{
    [LoggerMessage(EventId = 1202, EventName = "ForwardingFailed", Level = LogLevel.Warning,
        Message = "Forwarding {RequestId} of tenant {Tenant} failed: {ForwarderError} ({ExceptionType}: {ExceptionMessage})")]
    public static partial void ForwardingFailed(ILogger logger, string forwarderError, string? exceptionType, string? exceptionMessage, string requestId, string? tenant);
}
