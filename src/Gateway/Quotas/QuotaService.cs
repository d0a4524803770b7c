using System.Globalization;
using Gateway.Configuration;
using Gateway.Errors;
using Gateway.Pricing;
using Gateway.Requests;
using Gateway.Routing;
using Gateway.SharedState;
using Gateway.Usage;

namespace Gateway.Quotas;

/// <summary>
/// Reserve, then reconcile. Before forwarding, the request's estimated tokens (input counted with o200k_base,
/// plus its output limit) are reserved in every window at once, or the request is refused before anything
/// reaches the upstream. When it ends, the reservation is replaced by what the upstream billed.
/// Refusals are answered the way OpenAI answers them, so the SDKs' retry logic does the right thing.
/// </summary>
internal sealed class QuotaService(ISharedStateStore store, GatewaySettings settings, TokenCounter tokens, TimeProvider time, ILogger<QuotaService> logger, SpendMetrics spend, PriceBook prices)
{
    /// <summary>
    /// First step of a two-step admission, for a request whose body is large: before the body is read, count the
    /// request and take its concurrency slot (refusing on RPM, concurrency, or token windows already spent), so a
    /// tenant at its limits cannot make the gateway receive and hold megabytes first. <see cref="AdmitAsync"/> then
    /// reserves the tokens only. A request refused later settles like any other and gives the slot back.
    /// </summary>
    public ValueTask<AdmissionStep> PreAdmitAsync(AuthenticatedRequest request) => AdmitStepAsync(request, Admission.None, 0, 0, 0, tokensOnly: false);

    /// <param name="hiddenContext">The read started by <see cref="ReadHiddenContextAsync"/>, if the caller issued it early.</param>
    public async ValueTask<AdmissionStep> AdmitAsync(AuthenticatedRequest request, Admission prior, Task<long?>? hiddenContext = null)
    {
        if (await (hiddenContext ?? ReadHiddenContextAsync(request)) is not { } context)
        {
            return new AdmissionStep(prior, OpenAIError.StoreUnavailable());
        }

        var (input, output) = EstimateTokens(request, context);
        var reserve = HasTokenLimits(request.Tenant.Limits) ? input + output : 0;
        if (!TryEstimateCost(request, input, output, out var reserveMicroUsd))
        {
            return new AdmissionStep(prior, OpenAIError.BadRequest(
                $"The model '{request.Facts?.Model}' has no price in this gateway's price table, and your tenant has a dollar budget that could not count it. " +
                "Ask your platform team to price it (pricing.json or Gateway:Pricing:Models).", "model", "model_not_priced"));
        }

        if (prior.Reservation is null)
        {
            return await AdmitStepAsync(request, prior, reserve, context, reserveMicroUsd, tokensOnly: false);
        }

        // Pre-admitted: the request is counted and holds its slot; only its tokens and dollars remain to be reserved.
        return reserve == 0 && reserveMicroUsd == 0
            ? new AdmissionStep(prior, null)
            : await AdmitStepAsync(request, prior, reserve, context, reserveMicroUsd, tokensOnly: true);
    }

    private async ValueTask<AdmissionStep> AdmitStepAsync(AuthenticatedRequest request, Admission prior, long reserve, long context, long reserveMicroUsd, bool tokensOnly)
    {
        var tenant = request.Tenant;
        var limits = tenant.Limits;
        var windows = QuotaWindows.At(time.GetUtcNow());
        var leaseId = tokensOnly ? prior.Reservation!.LeaseId : limits.MaxConcurrentRequests > 0 ? NewLeaseId() : null;
        AdmissionResult result;
        try
        {
            result = await store.AdmitAsync(
                new AdmissionRequest(tenant.Id, limits, reserve, windows, tokensOnly ? "" : leaseId ?? "", settings.Current.Quotas.ConcurrencyLeaseTimeout, tokensOnly, reserveMicroUsd),
                request.Http.RequestAborted);
        }
        catch (StoreUnavailableException)
        {
            return new AdmissionStep(prior, OpenAIError.StoreUnavailable());
        }

        var status = StatusOf(limits, result.Counters, windows);
        spend.RecordBudgetUse(tenant.Id, result.Counters, windows);
        if (result.Decision != AdmissionDecision.Admitted)
        {
            if (logger.IsEnabled(LogLevel.Information))
            {
                QuotaLog.Refused(logger, tenant.Id, result.Decision.ToString(), reserve, request.RequestId);
            }
            return new AdmissionStep(prior with { Status = status },
                Refusal(result.Decision, limits, result.Counters, result.Decision is AdmissionDecision.UsdPerDay or AdmissionDecision.UsdPerMonth ? reserveMicroUsd : reserve, windows));
        }

        var reservation = new QuotaReservation(tenant.Id, reserve, windows.Minute, windows.Day, windows.Month, leaseId)
        {
            ByFallback = result.ByFallback,
            ContextTokens = context,
            ReservedMicroUsd = reserveMicroUsd,
        };
        return new AdmissionStep(new Admission(reservation, status), null);
    }

    /// <summary>
    /// Ends the request's hold on the quotas and claims its usage once per response id, deciding what to claim (a
    /// retrievable response's usage) and what to hold (the reservation of a background response still running).
    /// <c>First</c> is false when the usage of that response was already counted (by this or another replica); a
    /// <c>Correction</c> when it had been counted from an estimate and this request saw the real usage.
    /// </summary>
    public async ValueTask<SettleResult> SettleAsync(AuthenticatedRequest request, Admission admission, RequestOutcome outcome, UsageBill bill)
    {
        var usage = outcome.Usage;
        var reservation = admission.Reservation;
        // A response's usage shows again on every retrieval: count it once per response id.
        var responseId = usage.ObjectType == "response" ? usage.ObjectId : null;
        // A response stored upstream (the default) can be fetched again and would show its usage again: claim it.
        // One created with store:false cannot be, so its usage needs no mark (no store write, no memory held).
        var retrievable = request.Facts is not { Store: false, Background: false } || request.Route != ApiRouteTable.ResponsesCreate;
        var claimId = bill.Source != UsageSource.None && responseId is not null && retrievable ? responseId : null;
        var stillRunning = request.Facts is { Background: true } && usage.ResponseStatus is null or "queued" or "in_progress";
        var holdId = bill.Source == UsageSource.None && reservation is not null && responseId is not null && stillRunning ? responseId : null;
        if (reservation is null && claimId is null)
        {
            return new SettleResult(true);
        }

        // A turn of a conversation: its usage becomes the conversation's context size, for the next turn's reservation.
        var conversationId = claimId is null ? null : request.Facts?.ConversationId ?? usage.ConversationId;
        var quotas = settings.Current.Quotas;
        try
        {
            return await store.SettleAsync(new SettleRequest(request.Tenant.Id, reservation, bill.TotalTokens ?? 0, claimId, holdId,
                settings.Current.Isolation.Retention, quotas.BackgroundReservationTimeout, QuotaWindows.At(time.GetUtcNow()), MicroUsd.From(bill.CostUsd ?? 0m))
            {
                InputTokens = bill.InputTokens ?? 0,
                Estimated = bill.Source == UsageSource.Estimated,
                ConversationId = conversationId,
            }, CancellationToken.None);
        }
        catch (StoreUnavailableException)
        {
            // Deny mode with the store down: the usage event is still written; it may count a re-fetched response twice.
            return new SettleResult(true);
        }
    }

    public async ValueTask<QuotaCounters> ReadCountersAsync(string tenantId, QuotaWindows windows) =>
        await store.ReadCountersAsync(tenantId, windows, CancellationToken.None);

    /// <summary>
    /// Reads the tenant's standing so an answer the gateway writes before admission (bad input, isolation, policy)
    /// still carries its x-ratelimit-* headers. Such refusals are not counted: only admitted requests are.
    /// </summary>
    public async ValueTask<QuotaStatus?> DescribeAsync(AuthenticatedRequest request, QuotaStatus? known)
    {
        var limits = request.Tenant.Limits;
        if (known is not null || (limits.RequestsPerMinute <= 0 && limits.TokensPerMinute <= 0))
        {
            return known;
        }

        try
        {
            var windows = QuotaWindows.At(time.GetUtcNow());
            return StatusOf(limits, await store.ReadCountersAsync(request.Tenant.Id, windows, CancellationToken.None), windows);
        }
        catch (StoreUnavailableException)
        {
            // Deny mode with the store down: the refusal goes out without the headers.
            return null;
        }
    }

    /// <summary>
    /// The context a continuing request (<c>previous_response_id</c>, <c>conversation</c>) carries without sending it: the
    /// upstream bills it as input. Estimated from the last recorded usage of those objects; 0 when none is known; null when
    /// the store is unavailable (Deny). The read is issued when this is called, so the pipeline starts it beside the
    /// isolation lookups (one Redis round trip for both) and hands it to <see cref="AdmitAsync"/>; it reads only this
    /// tenant's own usage marks, so issuing it before the isolation check reveals nothing.
    /// </summary>
    public Task<long?> ReadHiddenContextAsync(AuthenticatedRequest request)
    {
        var facts = request.Facts;
        return request.Route is not { Generates: true } || facts is null || (facts.PreviousResponseId is null && facts.ConversationId is null)
            ? NoHiddenContext
            : ReadAsync(request.Tenant.Id, facts.PreviousResponseId, facts.ConversationId, request.Http.RequestAborted);

        async Task<long?> ReadAsync(string tenantId, string? previousResponseId, string? conversationId, CancellationToken cancellationToken)
        {
            try
            {
                return await store.GetContextTokensAsync(tenantId, previousResponseId, conversationId, cancellationToken);
            }
            catch (StoreUnavailableException)
            {
                return null;
            }
        }
    }

    private static readonly Task<long?> NoHiddenContext = Task.FromResult<long?>(0);

    private static bool HasTokenLimits(Configuration.TenantLimitsOptions limits) =>
        limits.TokensPerMinute > 0 || limits.TokensPerDay > 0 || limits.TokensPerMonth > 0;

    private static bool HasDollarLimits(Configuration.TenantLimitsOptions limits) => limits.UsdPerDay > 0 || limits.UsdPerMonth > 0;

    /// <summary>
    /// What the request may cost in tokens: the input estimate with the hidden context, and the output it may produce (on
    /// chat, times <c>n</c>). Zero when the route does not generate or the tenant has neither token nor dollar limits,
    /// so such requests are never tokenized.
    /// </summary>
    private (long Input, long Output) EstimateTokens(AuthenticatedRequest request, long contextTokens)
    {
        var limits = request.Tenant.Limits;
        var route = request.Route!;
        if (!route.Generates || request.Body is null || (!HasTokenLimits(limits) && !HasDollarLimits(limits)))
        {
            return (0, 0);
        }

        var quotas = settings.Current.Quotas;
        var input = tokens.EstimateInput(request.Body.Span, quotas.TokenizeBodyBytesThreshold) + contextTokens;
        if (route.Usage == UsageShape.Embeddings)
        {
            return (input, 0);
        }

        // Each of chat's n choices may produce the output limit. A limit no model reaches is clamped, so the sum cannot overflow.
        var perChoice = Math.Clamp(request.Facts?.MaxOutputTokens ?? quotas.DefaultOutputTokenReservation, 0, int.MaxValue);
        return (input, perChoice * (request.Facts?.Choices ?? 1));
    }

    /// <summary>
    /// The estimated cost held against the tenant's dollar budgets: the estimated tokens at the model's input price (no
    /// cache discount assumed) and output price, in micro-dollars. Zero when the tenant has no dollar budget. False when
    /// a tenant with a dollar budget asks for a model without a price: such a request could not be counted, so it is
    /// not let through.
    /// </summary>
    private bool TryEstimateCost(AuthenticatedRequest request, long input, long output, out long microUsd)
    {
        microUsd = 0;
        if (!request.Route!.Generates || request.Body is null || !HasDollarLimits(request.Tenant.Limits))
        {
            return true;
        }

        if (!prices.TryGetPrice(request.Facts?.Model, out var price))
        {
            return false;
        }

        microUsd = MicroUsd.From(price.Cost(input, 0, output, prices.Multiplier));
        return true;
    }

    public static QuotaStatus StatusOf(Configuration.TenantLimitsOptions limits, QuotaCounters counters, QuotaWindows windows) => new(
        limits.RequestsPerMinute > 0 ? limits.RequestsPerMinute : null,
        limits.RequestsPerMinute - counters.Requests,
        windows.UntilMinuteEnd,
        limits.TokensPerMinute > 0 ? limits.TokensPerMinute : null,
        limits.TokensPerMinute - counters.MinuteTokens,
        windows.UntilMinuteEnd);

    private static OpenAIError Refusal(AdmissionDecision decision, Configuration.TenantLimitsOptions limits, QuotaCounters counters, long requested, QuotaWindows windows)
    {
        var minuteReset = windows.UntilMinuteEnd;
        switch (decision)
        {
            case AdmissionDecision.RequestsPerMinute:
                return RateLimited("requests",
                    $"Rate limit reached for requests per minute (RPM): Limit {limits.RequestsPerMinute}, Used {counters.Requests}, Requested 1. " +
                    $"Please try again in {RateLimitHeaders.FormatDuration(minuteReset)}.", minuteReset);
            case AdmissionDecision.TokensPerMinute when requested > limits.TokensPerMinute:
                return new OpenAIError(StatusCodes.Status429TooManyRequests,
                    $"Request too large for tokens per minute (TPM): Limit {limits.TokensPerMinute}, Requested {requested}. " +
                    "The input or max_output_tokens must be reduced in order to run successfully.", "tokens", null, "rate_limit_exceeded")
                {
                    Headers = new Dictionary<string, string> { ["x-should-retry"] = "false" },
                };
            case AdmissionDecision.TokensPerMinute:
                return RateLimited("tokens",
                    $"Rate limit reached for tokens per minute (TPM): Limit {limits.TokensPerMinute}, Used {counters.MinuteTokens}, Requested {requested}. " +
                    $"Please try again in {RateLimitHeaders.FormatDuration(minuteReset)}.", minuteReset);
            case AdmissionDecision.Concurrency:
                return RateLimited("requests",
                    $"Too many concurrent requests: Limit {limits.MaxConcurrentRequests}, In flight {counters.Concurrent}. Please try again when a request has finished.",
                    TimeSpan.FromSeconds(1));
            case AdmissionDecision.TokensPerDay:
                return BudgetExhausted("daily", limits.TokensPerDay, counters.DayTokens, requested, windows.Now + windows.UntilDayEnd);
            case AdmissionDecision.UsdPerDay:
                return DollarBudgetExhausted("daily", limits.UsdPerDay, counters.DayMicroUsd, requested, windows.Now + windows.UntilDayEnd);
            case AdmissionDecision.UsdPerMonth:
                return DollarBudgetExhausted("monthly", limits.UsdPerMonth, counters.MonthMicroUsd, requested, windows.Now + windows.UntilMonthEnd);
            default:
                return BudgetExhausted("monthly", limits.TokensPerMonth, counters.MonthTokens, requested, windows.Now + windows.UntilMonthEnd);
        }
    }

    /// <summary>429 the SDKs retry: retry-after in whole seconds (1..60, Node ignores larger) and retry-after-ms.</summary>
    private static OpenAIError RateLimited(string type, string message, TimeSpan retryAfter)
    {
        var ms = Math.Clamp((long)Math.Ceiling(retryAfter.TotalMilliseconds), 1, 60_000);
        var seconds = Math.Clamp((long)Math.Ceiling(ms / 1000.0), 1, 60);
        return new OpenAIError(StatusCodes.Status429TooManyRequests, message, type, null, "rate_limit_exceeded")
        {
            Headers = new Dictionary<string, string>
            {
                ["retry-after"] = seconds.ToString(CultureInfo.InvariantCulture),
                ["retry-after-ms"] = ms.ToString(CultureInfo.InvariantCulture),
            },
        };
    }

    /// <summary>429 insufficient_quota: no retry-after (the .NET SDK would sleep hours), x-should-retry: false.</summary>
    private static OpenAIError BudgetExhausted(string period, long limit, long used, long requested, DateTimeOffset resetsAt) =>
        new(StatusCodes.Status429TooManyRequests,
            $"You exceeded your {period} token budget: Limit {limit}, Used {used}, Requested {requested}. " +
            $"It resets at {resetsAt.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture)}; ask your platform team to raise it.",
            "insufficient_quota", null, "insufficient_quota")
        {
            Headers = new Dictionary<string, string> { ["x-should-retry"] = "false" },
        };

    /// <summary>Like <see cref="BudgetExhausted"/>, in dollars (amounts to the micro-dollar the budgets count in).</summary>
    private static OpenAIError DollarBudgetExhausted(string period, decimal limit, long usedMicroUsd, long requestedMicroUsd, DateTimeOffset resetsAt) =>
        new(StatusCodes.Status429TooManyRequests,
            string.Create(CultureInfo.InvariantCulture,
                $"You exceeded your {period} dollar budget: Limit ${limit}, Used ${MicroUsd.ToUsd(usedMicroUsd):0.000000}, Requested ${MicroUsd.ToUsd(requestedMicroUsd):0.000000} (estimated). ") +
            $"It resets at {resetsAt.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture)}; ask your platform team to raise it.",
            "insufficient_quota", null, "insufficient_quota")
        {
            Headers = new Dictionary<string, string> { ["x-should-retry"] = "false" },
        };

    private static string NewLeaseId()
    {
        Span<byte> random = stackalloc byte[12];
        Random.Shared.NextBytes(random);
        return Convert.ToHexStringLower(random);
    }
}

internal static partial class QuotaLog
{
    [LoggerMessage(EventId = 5001, EventName = "QuotaRefused", Level = LogLevel.Information,
        Message = "Tenant {Tenant} refused by {Limit} (reservation {ReservedTokens} tokens) {RequestId}")]
    public static partial void Refused(ILogger logger, string tenant, string limit, long reservedTokens, string requestId);
}
