using System.Globalization;
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
/// sent to the store (through Isolation) before its id reaches the client; a failed exchange is answered the OpenAI way.
/// </summary>
internal sealed class UpstreamForwarder(
    IHttpForwarder forwarder,
    UpstreamRouter router,
    UpstreamHealth health,
    UpstreamTransformer transformer,
    UsageObserverFactory observers,
    IsolationGuard isolation,
    TimeProvider clock,
    ILogger<UpstreamForwarder> logger)
{
    /// <summary>Every request goes through the pool; with <c>Gateway:Upstreams</c> empty it is <c>Gateway:Upstream</c> alone, named <c>default</c>.</summary>
    public Task<UpstreamExchange> SendAsync(AuthenticatedRequest request, QuotaStatus? quotaStatus) => SendThroughPoolAsync(request, quotaStatus);

    private async ValueTask<UpstreamExchange> CompleteAsync(
        AuthenticatedRequest request, QuotaStatus? quotaStatus, UpstreamCall call, UpstreamTarget target, ForwarderError error, Exception? fault, int attempts, decimal? priceMultiplier)
    {
        // Built once with everything it carries (no copies per request); a ValueTask, as it is nearly always synchronous.
        var exchange = Finish(call, target, error, fault, attempts, priceMultiplier);
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
    /// The pool (issue #12): the candidates for the client's model in order; per attempt the upstream's key, its
    /// deployment name in the body and a fresh copy of the buffered body. A 429, 5xx, 401/403, connect failure or
    /// timeout before headers moves on to the next candidate (at most Routing:MaxAttempts); once headers are relayed
    /// nothing is retried. Usage and quotas keep the client's model name. A request naming an object recorded with its
    /// upstream (<see cref="AuthenticatedRequest.Pin"/>) goes there only, cooling or not, and its answer is relayed.
    /// </summary>
    private async Task<UpstreamExchange> SendThroughPoolAsync(AuthenticatedRequest request, QuotaStatus? quotaStatus)
    {
        var model = request.Facts?.Model;
        var pin = request.Pin;
        var choice = router.Choose(model, pin?.Upstream);
        if (choice.Kind == UpstreamChoiceKind.PinnedUpstreamGone)
        {
            // The upstream holding the object was removed: the object is unreachable, as OpenAI says of an unknown id.
            UpstreamLog.PinnedUpstreamGone(logger, request.Tenant.Id, pin!.Kind.ToString(), pin.ObjectId, pin.Where, pin.Upstream, request.RequestId);
            return await RefuseAsync(request, quotaStatus, IsolationGuard.NotFound(pin));
        }

        if (choice.Kind == UpstreamChoiceKind.NoUpstreamServesModel)
        {
            return await RefuseAsync(request, quotaStatus, new OpenAIError(StatusCodes.Status404NotFound,
                $"The model `{model}` does not exist or you do not have access to it.", "invalid_request_error", null, "model_not_found"));
        }

        if (choice.Kind != UpstreamChoiceKind.Candidates)
        {
            return await ExhaustedAsync(request, quotaStatus, choice.RetryAfter ?? TimeSpan.Zero, null, 0);
        }

        var routing = choice.Snapshot.Routing;
        var candidates = choice.Candidates;
        var failoverAllowed = pin is null && candidates.Count > 1;
        // Objects created through a configured pool are pinned to their upstream; the implicit single upstream is not, so
        // moving from Gateway:Upstream to Gateway:Upstreams does not strand them.
        var pinCreated = !choice.Snapshot.IsSingleUpstream;
        var attempts = 0;
        var earlierRateLimited = false;
        for (var index = 0; index < candidates.Count && attempts < routing.MaxAttempts; index++)
        {
            var upstream = candidates[index];
            if ((pin is null ? health.TryBeginAttempt(upstream, model, soleCandidate: !failoverAllowed) : health.BeginPinnedAttempt(upstream, model)) is not { } attempt)
            {
                continue; // another request probes it
            }

            attempts++;
            var number = attempts;
            var hasNext = index + 1 < candidates.Count;
            var action = FailoverAction.Relay;
            var reported = false;
            UpstreamTarget target;
            try
            {
                target = await TargetAsync(request, upstream);
            }
            catch (Exception ex)
            {
                // E.g. no Entra token: the gateway's own fault (answered as such, usage event kept), not the upstream's.
                health.Abandon(attempt);
                return new UpstreamExchange(upstream.Name, ForwarderError.None, 0, UsageReading.None) { Attempts = attempts, Fault = ex };
            }

            var call = new UpstreamCall(request, quotaStatus, clock, ObjectIdentified(request, pinCreated ? upstream.Name : null))
            {
                DropAnswer = response =>
                {
                    var outcome = UpstreamAttemptOutcome.FromAnswer(response, clock.GetUtcNow());
                    health.Report(attempt, outcome, routing);
                    reported = true;
                    action = UpstreamFailoverPolicy.Decide(outcome, new FailoverContext(number, routing.MaxAttempts, hasNext, failoverAllowed, earlierRateLimited));
                    earlierRateLimited |= outcome.Kind == UpstreamOutcomeKind.RateLimited;
                    return action is FailoverAction.TryNext or FailoverAction.AnswerRateLimited;
                },
            };

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

            if (call.RequestContent is { } content)
            {
                // HTTP/2 may still be sending the body beside the answer: its bytes are the request's pooled buffer, which a
                // next attempt may rewrite and the request's end returns to the pool.
                await content.WhenSentAsync();
            }

            var context = request.Http;
            if (!reported)
            {
                if (fault is null && !context.RequestAborted.IsCancellationRequested && !context.Response.HasStarted
                    && error is ForwarderError.Request or ForwarderError.RequestTimedOut)
                {
                    var outcome = error == ForwarderError.RequestTimedOut ? UpstreamAttemptOutcome.TimedOut : UpstreamAttemptOutcome.ConnectFailed;
                    health.Report(attempt, outcome, routing);
                    action = UpstreamFailoverPolicy.Decide(outcome, new FailoverContext(number, routing.MaxAttempts, hasNext, failoverAllowed, earlierRateLimited));
                    if (action == FailoverAction.AnswerRateLimited)
                    {
                        // The last candidate was unreachable after an earlier one was rate limited: the client hears of the rate limit.
                        context.Response.Clear();
                        context.Features.Set<IForwarderErrorFeature>(null);
                        ReleaseObserver(call);
                        return await ExhaustedAsync(request, quotaStatus, choice.RetryAfter ?? SoonestRecovery(candidates, model), upstream.Name, attempts);
                    }
                }
                else
                {
                    health.Abandon(attempt);
                    action = FailoverAction.Relay;
                }
            }

            if (action == FailoverAction.TryNext && index + 1 < candidates.Count && attempts < routing.MaxAttempts)
            {
                // Nothing reached the client: undo what YARP set for the failed attempt before the next one.
                context.Response.Clear();
                context.Response.Headers[UpstreamTransformer.GatewayRequestIdHeader] = request.RequestId;
                context.Features.Set<IForwarderErrorFeature>(null);
                ReleaseObserver(call);
                continue;
            }

            if (action == FailoverAction.AnswerRateLimited || (action == FailoverAction.TryNext && error == ForwarderError.None))
            {
                ReleaseObserver(call);
                return await ExhaustedAsync(request, quotaStatus, SoonestRecovery(candidates, model), upstream.Name, attempts);
            }

            if (failoverAllowed && action is FailoverAction.AnswerBadGateway or FailoverAction.AnswerGatewayTimeout)
            {
                // Every candidate tried failed: the gateway answers 502/504 itself.
                UpstreamLog.NoUpstreamAnswered(logger, model, attempts, action == FailoverAction.AnswerGatewayTimeout ? 504 : 502,
                    Math.Round(SoonestRecovery(candidates, model).TotalSeconds, 3), request.RequestId);
            }

            return await CompleteAsync(request, quotaStatus, call, target, error, fault, attempts, upstream.PriceMultiplier);
        }

        // Every candidate was being probed by other requests.
        return await ExhaustedAsync(request, quotaStatus, SoonestRecovery(candidates, model), null, attempts);
    }

    /// <summary>Every candidate is cooling or rate limited: the gateway's own 429 with the soonest recovery, logged with the model.</summary>
    private async Task<UpstreamExchange> ExhaustedAsync(AuthenticatedRequest request, QuotaStatus? quotaStatus, TimeSpan retryAfter, string? upstream, int attempts)
    {
        var refusal = RateLimited(retryAfter);
        UpstreamLog.NoUpstreamAnswered(logger, request.Facts?.Model, attempts, refusal.StatusCode,
            Math.Round(Math.Max(retryAfter.TotalSeconds, 1), 3), request.RequestId); // RateLimited says 1 s at least
        return await RefuseAsync(request, quotaStatus, refusal, upstream, attempts);
    }

    private Func<ObservedUsage, Task>? ObjectIdentified(AuthenticatedRequest request, string? upstream) => request.Route!.CreatesObject == ObjectKind.None
        ? null
        : usage => isolation.RecordCreatedAsync(request, usage.ObjectId, usage.ConversationId, upstream);

    private static async ValueTask<UpstreamTarget> TargetAsync(AuthenticatedRequest request, PoolUpstream upstream)
    {
        var credential = await upstream.Credentials.GetAsync(request.Http.RequestAborted);
        var model = request.Facts?.Model;
        if (upstream.Models is not null && request.Body is { } body && upstream.UpstreamModel(model) is { } upstreamModel)
        {
            UpstreamModelRewriter.Rewrite(body, upstreamModel);
        }

        if (request.Body is { } buffered)
        {
            // YARP builds its request content (and copies the content headers) from this stream; BufferedBodyHandler sends
            // the buffered bytes in its place. A fresh stream per attempt, over the current buffer (a rewrite may replace it).
            request.Http.Request.Body = buffered.AsStream();
            request.Http.Request.ContentLength = buffered.Length;
        }

        return new UpstreamTarget(upstream.Name, upstream.BaseUrl, upstream.Transport.Invoker, upstream.Transport.RequestConfig,
            credential.HeaderName, credential.Value, upstream.Organization, upstream.Project);
    }

    private TimeSpan SoonestRecovery(IReadOnlyList<PoolUpstream> candidates, string? model)
    {
        var now = clock.GetUtcNow();
        var soonest = TimeSpan.MaxValue;
        foreach (var upstream in candidates)
        {
            var availability = health.Availability(upstream.Name, model);
            var wait = availability.IsAvailable ? TimeSpan.Zero : availability.RecoversAt - now;
            soonest = wait < soonest ? wait : soonest;
        }

        return soonest == TimeSpan.MaxValue || soonest <= TimeSpan.Zero ? TimeSpan.FromSeconds(1) : soonest;
    }

    private static OpenAIError RateLimited(TimeSpan? retryAfter)
    {
        var wait = retryAfter is { } value && value > TimeSpan.Zero ? value : TimeSpan.FromSeconds(1);
        return new OpenAIError(StatusCodes.Status429TooManyRequests,
            "Every upstream serving this model is rate limited or unavailable. Please try again later.", "requests", null, "rate_limit_exceeded")
        {
            Headers = new Dictionary<string, string>
            {
                ["retry-after"] = Math.Max(1, (long)Math.Ceiling(wait.TotalSeconds)).ToString(CultureInfo.InvariantCulture),
                ["retry-after-ms"] = Math.Max(1, (long)Math.Ceiling(wait.TotalMilliseconds)).ToString(CultureInfo.InvariantCulture),
            },
        };
    }

    private void ReleaseObserver(UpstreamCall call)
    {
        if (call.Observer is { } observer)
        {
            call.Observer = null;
            observers.Release(observer);
        }
    }

    private static async Task<UpstreamExchange> RefuseAsync(
        AuthenticatedRequest request, QuotaStatus? quotaStatus, OpenAIError refusal, string? upstream = null, int attempts = 0)
    {
        await AnswerAsync(request, quotaStatus, refusal);
        return new UpstreamExchange(upstream ?? "", ForwarderError.None, refusal.StatusCode, UsageReading.None) { Attempts = attempts };
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
    private UpstreamExchange Finish(UpstreamCall call, UpstreamTarget target, ForwarderError error, Exception? fault, int attempts, decimal? priceMultiplier)
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
            OwnershipRecorded = call.OwnershipRecorded,
            Attempts = attempts,
            PriceMultiplier = priceMultiplier,
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
