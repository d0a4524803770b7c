using Gateway.Configuration;
using Gateway.Observability;
using Gateway.Pricing;
using Gateway.Requests;
using Gateway.Routing;
using Gateway.SharedState;

namespace Gateway.Usage;

/// <summary>
/// Usage's part of closing a request: what it is billed (the upstream's numbers, or an estimate when a generating
/// request was cut short), what is left of that once the quota ledger has claimed it once per response id, and the
/// one usage event with its metrics. The handler calls these in order; Quotas settles between them.
/// </summary>
internal sealed class UsageAccounting(
    TokenCounter tokens,
    GatewayMetrics metrics,
    GatewaySettings settings,
    PriceBook prices,
    SpendMetrics spend,
    TimeProvider clock,
    UsageEventWriter usageEvents,
    ILogger<UsageAccounting> usageLogger)
{
    /// <summary>The request's usage before settling; <paramref name="contextTokens"/> is what its reservation counted for hidden context.</summary>
    public UsageBill Bill(AuthenticatedRequest request, RequestOutcome outcome, long contextTokens)
    {
        var usage = outcome.Usage;
        if (usage.HasUsage)
        {
            return new UsageBill(UsageSource.Upstream, usage.InputTokens, usage.CachedInputTokens, usage.OutputTokens, usage.ReasoningTokens,
                usage.TotalTokens, prices.Cost(usage.Model ?? request.Facts?.Model, usage.InputTokens, usage.CachedInputTokens, usage.OutputTokens, outcome.PriceMultiplier));
        }

        if (!ShouldEstimate(request, outcome))
        {
            return UsageBill.None;
        }

        // The body, plus the context the upstream adds from previous_response_id / conversation (as far as the gateway knows it).
        var input = EstimateInput(request) + contextTokens;
        var output = outcome.OutputTokensSeen;
        // Priced by the upstream's model; an estimate of a request the upstream never named falls back to the requested model.
        return new UsageBill(UsageSource.Estimated, input, null, output, null, input + output, prices.Cost(usage.Model ?? request.Facts?.Model, input, null, output, outcome.PriceMultiplier));
    }

    /// <summary>Whether <see cref="Bill"/> estimates the body (the o200k walk, CPU that grows with the body): no usage, and <see cref="ShouldEstimate"/>.</summary>
    public static bool WillEstimate(AuthenticatedRequest request, RequestOutcome outcome) => !outcome.Usage.HasUsage && ShouldEstimate(request, outcome);

    /// <summary>What the usage event reports once the ledger has settled: the bill, a correction of an earlier estimate, or nothing (already counted).</summary>
    public UsageBill Reconcile(UsageBill bill, SettleResult settled, string? model)
    {
        if (settled.Correction is { } correction)
        {
            // First counted from an estimate (a cut stream); this request saw the real usage: report the difference, once.
            return new UsageBill(UsageSource.Correction, correction.InputTokens, bill.CachedInputTokens, correction.OutputTokens, bill.ReasoningTokens,
                correction.TotalTokens, bill.CostUsd is null ? null : MicroUsd.ToUsd(correction.MicroUsd));
        }

        if (!settled.First)
        {
            return UsageBill.None;
        }

        if (bill.TotalTokens is not null && bill.CostUsd is null)
        {
            prices.ReportUnpriced(model);
        }

        return bill;
    }

    /// <summary>Records the metrics, then writes the usage event (so once the event is visible, the counters include the request).</summary>
    public void Record(AuthenticatedRequest request, RequestOutcome outcome, UsageBill bill)
    {
        var usage = outcome.Usage;
        var tenant = request.Tenant.Id;
        var endpoint = request.Route?.Endpoint ?? "unknown";
        var http = request.Http;
        var status = http.Response.StatusCode;
        var duration = clock.GetElapsedTime(request.StartTimestamp);
        double? ttfb = outcome.FirstByteTimestamp == 0 ? null : clock.GetElapsedTime(request.StartTimestamp, outcome.FirstByteTimestamp).TotalMilliseconds;
        var outcomeText = outcome.Text;
        try
        {
            var modelLabel = GatewayMetrics.ModelLabel(request.Tenant, usage.Model);
            metrics.RecordRequest(tenant, endpoint, outcomeText, status, modelLabel, duration.TotalSeconds, ttfb / 1000);
            if (bill.TotalTokens is not null)
            {
                // Counters only grow: a negative correction (the estimate was too high) is in the usage event, not the metric.
                var isCorrection = bill.Source == UsageSource.Correction;
                metrics.RecordTokens(tenant, endpoint, modelLabel, isCorrection ? Positive(bill.InputTokens) : bill.InputTokens, bill.CachedInputTokens,
                    isCorrection ? Positive(bill.OutputTokens) : bill.OutputTokens, bill.ReasoningTokens);
                if (bill.CostUsd is > 0m)
                {
                    spend.RecordCost(tenant, modelLabel, bill.CostUsd.Value);
                }
            }
            else if (IsMissingUsage(request, outcome))
            {
                metrics.RecordMissingUsage(tenant, endpoint);
            }
        }
        catch (Exception ex)
        {
            AccountingLog.StepFailed(usageLogger, ex, "metrics", request.RequestId, tenant);
        }

        if (usageEvents.IsEnabled)
        {
            usageEvents.Write(new UsageEvent(tenant, endpoint, request.Facts?.Model, usage.Model,
                request.Facts?.Stream ?? outcome.Streaming, request.Facts?.Background ?? usage.Background ?? false,
                status, outcomeText, usage.ObjectId ?? request.PathId, bill.InputTokens, bill.CachedInputTokens, bill.OutputTokens, bill.ReasoningTokens,
                bill.TotalTokens, bill.CostUsd, bill.SourceText,
                Math.Round(duration.TotalMilliseconds, 3), ttfb is null ? null : Math.Round(ttfb.Value, 3),
                request.RequestId, outcome.UpstreamRequestId, http.Request.Method, http.Request.Path.Value ?? "",
                outcome.Upstream, outcome.Attempts, http.Connection.Id));
        }
    }

    /// <summary>Input from the request body; falls back to bytes/4 so an estimate that fails still lets the request settle and be logged.</summary>
    private long EstimateInput(AuthenticatedRequest request)
    {
        try
        {
            return tokens.EstimateInput(request.Body!.Span, settings.Current.Quotas.TokenizeBodyBytesThreshold);
        }
        catch (Exception ex)
        {
            AccountingLog.StepFailed(usageLogger, ex, "estimate-input", request.RequestId, request.Tenant.Id);
            return request.Body!.Length / 4 + 1;
        }
    }

    private static long? Positive(long? tokens) => tokens is > 0 ? tokens : null;

    /// <summary>
    /// Estimate only for requests that made the model generate and ended without the upstream's numbers:
    /// a cut stream, a client that left, an upstream that broke. A background response keeps running (and
    /// is counted when it is seen completed), so it is never estimated here.
    /// </summary>
    private static bool ShouldEstimate(AuthenticatedRequest request, RequestOutcome outcome) =>
        request.Route is { Generates: true } && outcome.Forwarded && request.Body is not null
        && request.Facts is { Background: false }
        && outcome.Kind is Outcome.ClientAborted or Outcome.UpstreamError or Outcome.Failed or Outcome.GatewayError
        && (outcome.Streaming || outcome.Kind == Outcome.ClientAborted)
        && (outcome.UpstreamStatus is 0 or (>= 200 and < 300));

    /// <summary>A generating request the upstream answered successfully, in the foreground, without any usage: unbillable traffic.</summary>
    private static bool IsMissingUsage(AuthenticatedRequest request, RequestOutcome outcome) =>
        request.Route is { Generates: true } && outcome.Forwarded && request.Facts is { Background: false }
        && !outcome.Usage.HasUsage && outcome.Kind is Outcome.Completed or Outcome.Incomplete
        && outcome.UpstreamStatus is >= 200 and < 300;
}

internal static partial class AccountingLog
{
    [LoggerMessage(EventId = 8121, EventName = "AccountingStepFailed", Level = LogLevel.Error,
        Message = "Accounting step {AccountingStep} of {RequestId} of tenant {Tenant} failed; the other steps and the usage event go ahead")]
    public static partial void StepFailed(ILogger logger, Exception exception, string accountingStep, string requestId, string tenant);
}
