using System.Globalization;
using Gateway.Configuration;
using Gateway.Errors;
using Gateway.Pipeline;
using Gateway.Pricing;
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
    public async ValueTask<OpenAIError?> AdmitAsync(GatewayExchange exchange)
    {
        var tenant = exchange.Tenant!;
        var limits = tenant.Limits;
        var windows = QuotaWindows.At(time.GetUtcNow());
        var reserve = EstimateReservation(exchange);
        if (!TryEstimateCost(exchange, out var reserveMicroUsd))
        {
            return OpenAIError.BadRequest(
                $"The model '{exchange.Request?.Model}' has no price in this gateway's price table, and your tenant has a dollar budget that could not count it. " +
                "Ask your platform team to price it (pricing.json or Gateway:Pricing:Models).", "model", "model_not_priced");
        }

        var leaseId = limits.MaxConcurrentRequests > 0 ? NewLeaseId() : null;
        AdmissionResult result;
        try
        {
            result = await store.AdmitAsync(
                new AdmissionRequest(tenant.Id, limits, reserve, windows, leaseId ?? "", settings.Current.Quotas.ConcurrencyLeaseTimeout, reserveMicroUsd),
                exchange.Http.RequestAborted);
        }
        catch (StoreUnavailableException)
        {
            return OpenAIError.StoreUnavailable();
        }

        exchange.QuotaStatus = StatusOf(limits, result.Counters, windows);
        spend.RecordBudgetUse(tenant.Id, result.Counters, windows);
        if (result.Decision != AdmissionDecision.Admitted)
        {
            if (logger.IsEnabled(LogLevel.Information))
            {
                QuotaLog.Refused(logger, tenant.Id, result.Decision.ToString(), reserve, exchange.RequestId);
            }
            return Refusal(result.Decision, limits, result.Counters, result.Decision is AdmissionDecision.UsdPerDay or AdmissionDecision.UsdPerMonth ? reserveMicroUsd : reserve, windows);
        }

        exchange.Reservation = new QuotaReservation(tenant.Id, reserve, windows.Minute, windows.Day, windows.Month, leaseId)
        {
            ByFallback = result.ByFallback,
            ReservedMicroUsd = reserveMicroUsd,
        };
        return null;
    }

    /// <summary>
    /// Ends the request's hold on the quotas and claims its usage once per response id. Returns false when
    /// the usage of that response was already counted (by this or another replica).
    /// </summary>
    public async ValueTask<bool> SettleAsync(GatewayExchange exchange, long billedTokens, string? claimResponseId, string? holdForResponseId, decimal? billedUsd = null)
    {
        var tenant = exchange.Tenant!;
        if (exchange.Reservation is null && claimResponseId is null)
        {
            return true;
        }

        var quotas = settings.Current.Quotas;
        try
        {
            return await store.SettleAsync(new SettleRequest(tenant.Id, exchange.Reservation, billedTokens, claimResponseId, holdForResponseId,
                settings.Current.Isolation.Retention, quotas.BackgroundReservationTimeout, QuotaWindows.At(time.GetUtcNow()), MicroUsd.From(billedUsd ?? 0m)),
                CancellationToken.None);
        }
        catch (StoreUnavailableException)
        {
            // Deny mode with the store down: the usage event is still written; it may count a re-fetched response twice.
            return true;
        }
    }

    public async ValueTask<QuotaCounters> ReadCountersAsync(string tenantId, QuotaWindows windows) =>
        await store.ReadCountersAsync(tenantId, windows, CancellationToken.None);

    /// <summary>
    /// Reads the tenant's standing so an answer the gateway writes before admission (bad input, isolation, policy)
    /// still carries its x-ratelimit-* headers. Such refusals are not counted: only admitted requests are.
    /// </summary>
    public async ValueTask DescribeAsync(GatewayExchange exchange)
    {
        var limits = exchange.Tenant!.Limits;
        if (exchange.QuotaStatus is not null || (limits.RequestsPerMinute <= 0 && limits.TokensPerMinute <= 0))
        {
            return;
        }

        try
        {
            var windows = QuotaWindows.At(time.GetUtcNow());
            exchange.QuotaStatus = StatusOf(limits, await store.ReadCountersAsync(exchange.Tenant.Id, windows, CancellationToken.None), windows);
        }
        catch (StoreUnavailableException)
        {
            // Deny mode with the store down: the refusal goes out without the headers.
        }
    }

    /// <summary>Input estimate plus the output the request may produce. Zero when the tenant has no token limit.</summary>
    private long EstimateReservation(GatewayExchange exchange)
    {
        var limits = exchange.Tenant!.Limits;
        var route = exchange.Route!;
        if (!route.Generates || exchange.Body is null
            || (limits.TokensPerMinute <= 0 && limits.TokensPerDay <= 0 && limits.TokensPerMonth <= 0))
        {
            return 0;
        }

        var quotas = settings.Current.Quotas;
        var input = tokens.EstimateInput(exchange.Body.Span, quotas.TokenizeBodyBytesThreshold);
        var output = route.Usage == UsageShape.Embeddings ? 0 : exchange.Request?.MaxOutputTokens ?? quotas.DefaultOutputTokenReservation;
        return input + Math.Max(0, output);
    }

    /// <summary>
    /// The estimated cost held against the tenant's dollar budgets: the input estimate at the input price (no cache
    /// discount assumed) plus the output the request may produce at the output price, in micro-dollars. Zero when the
    /// tenant has no dollar budget or the route does not generate. False when a tenant with a dollar budget asks for a
    /// model without a price: such a request could not be counted against the budget, so it is not let through.
    /// </summary>
    private bool TryEstimateCost(GatewayExchange exchange, out long microUsd)
    {
        microUsd = 0;
        var limits = exchange.Tenant!.Limits;
        var route = exchange.Route!;
        if (!route.Generates || exchange.Body is null || (limits.UsdPerDay <= 0 && limits.UsdPerMonth <= 0))
        {
            return true;
        }

        if (!prices.TryGetPrice(exchange.Request?.Model, out var price))
        {
            return false;
        }

        var quotas = settings.Current.Quotas;
        var input = tokens.EstimateInput(exchange.Body.Span, quotas.TokenizeBodyBytesThreshold);
        var output = route.Usage == UsageShape.Embeddings ? 0 : exchange.Request?.MaxOutputTokens ?? quotas.DefaultOutputTokenReservation;
        microUsd = MicroUsd.From(price.Cost(input, 0, Math.Max(0, output), prices.Multiplier));
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
