using Gateway.Configuration;
using Gateway.Isolation;
using Gateway.Observability;
using Gateway.Pipeline;
using Gateway.Pricing;
using Gateway.Quotas;
using Gateway.Routing;
using Gateway.SharedState;
using Yarp.ReverseProxy.Forwarder;

namespace Gateway.Usage;

/// <summary>
/// Closes every authenticated request: decides how it ended and what it cost, counts a response's usage once
/// per response id (across replicas, through the shared store), settles the quota reservation, and writes the
/// one usage event and the metrics. Runs in a finally block: a failure anywhere still produces the event.
/// </summary>
internal sealed class UsageAccounting(
    QuotaService quotas,
    IsolationGuard isolation,
    TokenCounter tokens,
    UsageObserverFactory observers,
    GatewayMetrics metrics,
    GatewaySettings settings,
    PriceBook prices,
    SpendMetrics spend,
    ILogger<UsageAccounting> usageLogger,
    ILogger<GatewayRequestHandler> pipelineLogger)
{
    public async Task FinishAsync(GatewayExchange exchange)
    {
        try
        {
            if (exchange.Tenant is not null)
            {
                await AccountAsync(exchange);
            }
        }
        catch (Exception ex)
        {
            PipelineLog.UnhandledError(pipelineLogger, ex, exchange.RequestId, exchange.Tenant?.Id ?? "");
        }
        finally
        {
            observers.Release(exchange);
            exchange.Body?.Dispose();
        }
    }

    private async Task AccountAsync(GatewayExchange exchange)
    {
        var route = exchange.Route;
        var usage = exchange.Usage;
        var outcome = DecideOutcome(exchange);

        // What the request cost: the upstream's own numbers, or an estimate when a generating request was cut short.
        var source = "none";
        long? input = null, cached = null, output = null, reasoning = null, total = null;
        if (usage.HasUsage)
        {
            source = "upstream";
            (input, cached, output, reasoning, total) = (usage.InputTokens, usage.CachedInputTokens, usage.OutputTokens, usage.ReasoningTokens, usage.TotalTokens);
        }
        else if (ShouldEstimate(exchange, outcome))
        {
            source = "estimated";
            // The body, plus the context the upstream adds from previous_response_id / conversation (as far as the gateway knows it).
            (input, output) = Estimate(exchange);
            input += exchange.Reservation?.ContextTokens ?? 0;
            total = input + output;
        }

        // A response's usage shows again on every retrieval: count it once per response id.
        var responseId = usage.ObjectType == "response" ? usage.ObjectId : null;
        // A response stored upstream (the default) can be fetched again and would show its usage again: claim it.
        // One created with store:false cannot be, so its usage needs no mark (no store write, no memory held).
        var retrievable = exchange.Request is not { Store: false, Background: false } || exchange.Route != ApiRouteTable.ResponsesCreate;
        var claimId = source != "none" && responseId is not null && retrievable ? responseId : null;
        var holdId = source == "none" && exchange.Reservation is not null && responseId is not null && IsStillRunning(exchange) ? responseId : null;
        // Priced by the upstream's model; an estimate of a request the upstream never named falls back to the requested model.
        var cost = total is null ? null : prices.Cost(usage.Model ?? exchange.Request?.Model, input, cached, output);
        // A turn of a conversation: its usage becomes the conversation's context size, for the next turn's reservation.
        var conversationId = claimId is null ? null : exchange.Request?.ConversationId ?? usage.ConversationId;
        SettleResult settled;
        try
        {
            settled = await quotas.SettleAsync(exchange, total ?? 0, input ?? 0, source == "estimated", claimId, holdId, conversationId, cost);
        }
        catch (Exception ex)
        {
            // The event is still written; the concurrency lease expires on its own (ConcurrencyLeaseTimeout).
            AccountingLog.StepFailed(pipelineLogger, ex, "settle", exchange.RequestId, exchange.Tenant!.Id);
            settled = new SettleResult(true);
        }

        if (settled.Correction is { } correction)
        {
            // First counted from an estimate (a cut stream); this request saw the real usage: report the difference, once.
            source = "correction";
            (input, output, total) = (correction.InputTokens, correction.OutputTokens, correction.TotalTokens);
            cost = cost is null ? null : MicroUsd.ToUsd(correction.MicroUsd);
        }
        else if (!settled.First)
        {
            source = "none";
            (input, cached, output, reasoning, total, cost) = (null, null, null, null, null, null);
        }
        else if (total is not null && cost is null)
        {
            prices.ReportUnpriced(usage.Model);
        }

        if (route == ApiRouteTable.ConversationsDelete && exchange.UpstreamStatus is >= 200 and < 300)
        {
            await isolation.RecordDeletedAsync(exchange);
        }

        var tenant = exchange.Tenant!.Id;
        var endpoint = route?.Endpoint ?? "unknown";
        var status = exchange.Http.Response.StatusCode;
        var duration = exchange.Clock.GetElapsedTime(exchange.StartTimestamp);
        double? ttfb = exchange.FirstByteTimestamp == 0 ? null : exchange.Clock.GetElapsedTime(exchange.StartTimestamp, exchange.FirstByteTimestamp).TotalMilliseconds;
        var outcomeText = OutcomeText(outcome);
        var request = exchange.Http.Request;

        // Metrics first: once the usage event is visible, the counters already include the request.
        try
        {
            var modelLabel = GatewayMetrics.ModelLabel(exchange.Tenant!, usage.Model);
            metrics.RecordRequest(tenant, endpoint, outcomeText, status, modelLabel, duration.TotalSeconds, ttfb / 1000);
            if (total is not null)
            {
                // Counters only grow: a negative correction (the estimate was too high) is in the usage event, not the metric.
                var isCorrection = source == "correction";
                metrics.RecordTokens(tenant, endpoint, modelLabel, isCorrection ? Positive(input) : input, cached, isCorrection ? Positive(output) : output, reasoning);
                if (cost is > 0m)
                {
                    spend.RecordCost(tenant, modelLabel, cost.Value);
                }
            }
            else if (IsMissingUsage(exchange, outcome))
            {
                metrics.RecordMissingUsage(tenant, endpoint);
            }
        }
        catch (Exception ex)
        {
            AccountingLog.StepFailed(pipelineLogger, ex, "metrics", exchange.RequestId, tenant);
        }

        if (usageLogger.IsEnabled(LogLevel.Information))
        {
            UsageEventLog.Usage(usageLogger, tenant, endpoint, exchange.Request?.Model, usage.Model,
            exchange.Request?.Stream ?? exchange.IsStreamingResponse, exchange.Request?.Background ?? usage.Background ?? false,
            status, outcomeText, usage.ObjectId ?? exchange.PathId, input, cached, output, reasoning, total, cost, source,
            Math.Round(duration.TotalMilliseconds, 3), ttfb is null ? null : Math.Round(ttfb.Value, 3),
            exchange.RequestId, exchange.UpstreamRequestId, request.Method, request.Path.Value ?? "");
        }
    }

    /// <summary>
    /// Input from the request body, output from the text already forwarded. Each part falls back on its own
    /// (input at bytes/4, output at 0) so an estimate that fails still lets the request settle and be logged.
    /// </summary>
    private (long Input, long Output) Estimate(GatewayExchange exchange)
    {
        long input, output;
        try
        {
            input = tokens.EstimateInput(exchange.Body!.Span, settings.Current.Quotas.TokenizeBodyBytesThreshold);
        }
        catch (Exception ex)
        {
            AccountingLog.StepFailed(pipelineLogger, ex, "estimate-input", exchange.RequestId, exchange.Tenant!.Id);
            input = exchange.Body!.Length / 4 + 1;
        }

        try
        {
            output = exchange.Observer?.Tally.Total() ?? 0;
        }
        catch (Exception ex)
        {
            AccountingLog.StepFailed(pipelineLogger, ex, "estimate-output", exchange.RequestId, exchange.Tenant!.Id);
            output = 0;
        }

        return (input, output);
    }

    private static long? Positive(long? tokens) => tokens is > 0 ? tokens : null;

    private static Outcome DecideOutcome(GatewayExchange exchange)
    {
        var usage = exchange.Usage;
        if (exchange.GatewayFault)
        {
            return Outcome.GatewayError;
        }

        if (exchange.Rejected)
        {
            return Outcome.Rejected;
        }

        // When the upstream body breaks, YARP aborts the client connection itself (RequestAborted fires): that is
        // the upstream's failure, not a client that left.
        var upstreamBroke = exchange.UpstreamBroke || exchange.ForwarderError == ForwarderError.ResponseBodyDestination;
        var clientGone = !upstreamBroke && (exchange.Http.RequestAborted.IsCancellationRequested
            || exchange.ForwarderError is ForwarderError.RequestCanceled or ForwarderError.ResponseBodyCanceled or ForwarderError.ResponseBodyClient);
        if (clientGone && !usage.SawEnd)
        {
            return Outcome.ClientAborted;
        }

        if (!exchange.Forwarded)
        {
            return exchange.Http.Response.StatusCode >= 500 ? Outcome.UpstreamError : Outcome.Completed;
        }

        if (exchange.UpstreamBroke || exchange.ForwarderError != ForwarderError.None || exchange.UpstreamStatus >= 400 || exchange.UpstreamStatus == 0)
        {
            return Outcome.UpstreamError;
        }

        if (usage.SawErrorEvent && !usage.HasUsage)
        {
            return Outcome.UpstreamError;
        }

        if (exchange.IsStreamingResponse && !usage.SawEnd)
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

    /// <summary>
    /// Estimate only for requests that made the model generate and ended without the upstream's numbers:
    /// a cut stream, a client that left, an upstream that broke. A background response keeps running (and
    /// is counted when it is seen completed), so it is never estimated here.
    /// </summary>
    private static bool ShouldEstimate(GatewayExchange exchange, Outcome outcome) =>
        exchange.Route is { Generates: true } && exchange.Forwarded && exchange.Body is not null
        && exchange.Request is { Background: false }
        && outcome is Outcome.ClientAborted or Outcome.UpstreamError or Outcome.Failed or Outcome.GatewayError
        && (exchange.IsStreamingResponse || outcome == Outcome.ClientAborted)
        && (exchange.UpstreamStatus is 0 or (>= 200 and < 300));

    /// <summary>A generating request the upstream answered successfully, in the foreground, without any usage: unbillable traffic.</summary>
    private static bool IsMissingUsage(GatewayExchange exchange, Outcome outcome) =>
        exchange.Route is { Generates: true } && exchange.Forwarded && exchange.Request is { Background: false }
        && !exchange.Usage.HasUsage && outcome is Outcome.Completed or Outcome.Incomplete
        && exchange.UpstreamStatus is >= 200 and < 300;

    private static bool IsStillRunning(GatewayExchange exchange) =>
        exchange.Request is { Background: true } && exchange.Usage.ResponseStatus is null or "queued" or "in_progress";

    private static string OutcomeText(Outcome outcome) => outcome switch
    {
        Outcome.Completed => "completed",
        Outcome.Incomplete => "incomplete",
        Outcome.Failed => "failed",
        Outcome.Rejected => "rejected",
        Outcome.ClientAborted => "client_aborted",
        Outcome.GatewayError => "gateway_error",
        _ => "upstream_error",
    };
}

internal static partial class AccountingLog
{
    [LoggerMessage(EventId = 8121, EventName = "AccountingStepFailed", Level = LogLevel.Error,
        Message = "Accounting step {AccountingStep} of {RequestId} of tenant {Tenant} failed; the other steps and the usage event go ahead")]
    public static partial void StepFailed(ILogger logger, Exception exception, string accountingStep, string requestId, string tenant);
}
