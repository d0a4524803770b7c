using Gateway.Configuration;
using Gateway.Observability;
using Gateway.Pipeline;
using Gateway.Pricing;
using Gateway.Quotas;
using Gateway.Routing;
using Yarp.ReverseProxy.Forwarder;

namespace Gateway.Usage;

/// <summary>
/// Closes every authenticated request: decides how it ended and what it cost, counts a response's usage once
/// per response id (across replicas, through the shared store), settles the quota reservation, and writes the
/// one usage event and the metrics. Runs in a finally block: a failure anywhere still produces the event.
/// </summary>
internal sealed class UsageAccounting(
    QuotaService quotas,
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
            input = tokens.EstimateInput(exchange.Body!.Span, settings.Current.Quotas.TokenizeBodyBytesThreshold);
            output = exchange.Observer?.Tally.Total() ?? 0;
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
        var first = await quotas.SettleAsync(exchange, total ?? 0, claimId, holdId, cost);
        if (!first)
        {
            source = "none";
            (input, cached, output, reasoning, total, cost) = (null, null, null, null, null, null);
        }
        else if (total is not null && cost is null)
        {
            prices.ReportUnpriced(usage.Model);
        }

        var tenant = exchange.Tenant!.Id;
        var endpoint = route?.Endpoint ?? "unknown";
        var status = exchange.Http.Response.StatusCode;
        var duration = exchange.Clock.GetElapsedTime(exchange.StartTimestamp);
        double? ttfb = exchange.FirstByteTimestamp == 0 ? null : exchange.Clock.GetElapsedTime(exchange.StartTimestamp, exchange.FirstByteTimestamp).TotalMilliseconds;
        var outcomeText = OutcomeText(outcome);
        var request = exchange.Http.Request;

        // Metrics first: once the usage event is visible, the counters already include the request.
        metrics.RecordRequest(tenant, endpoint, outcomeText, status, usage.Model, duration.TotalSeconds, ttfb / 1000);
        if (total is not null)
        {
            metrics.RecordTokens(tenant, endpoint, usage.Model, input, cached, output, reasoning);
            if (cost is { } usd)
            {
                spend.RecordCost(tenant, usage.Model, usd);
            }
        }
        else if (IsMissingUsage(exchange, outcome))
        {
            metrics.RecordMissingUsage(tenant, endpoint);
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

    private static Outcome DecideOutcome(GatewayExchange exchange)
    {
        var usage = exchange.Usage;
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
        && outcome is Outcome.ClientAborted or Outcome.UpstreamError or Outcome.Failed
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
        _ => "upstream_error",
    };
}
