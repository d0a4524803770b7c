using Gateway.Errors;
using Gateway.Isolation;
using Gateway.Quotas;
using Gateway.Requests;
using Gateway.Routing;
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
    UpstreamTransformer transformer,
    UsageObserverFactory observers,
    IsolationGuard isolation,
    TimeProvider clock,
    ILogger<UpstreamForwarder> logger)
{
    public async Task<UpstreamExchange> SendAsync(AuthenticatedRequest request, QuotaStatus? quotaStatus)
    {
        var target = upstreams.Current;
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
