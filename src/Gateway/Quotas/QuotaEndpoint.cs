using System.Text.Json;
using Gateway.Configuration;
using Gateway.Errors;
using Gateway.Requests;
using Gateway.SharedState;

namespace Gateway.Quotas;

/// <summary><c>GET /v1/gateway/quota</c>: the calling tenant's limits, what it used in each window, and when each resets.</summary>
internal sealed class QuotaEndpoint(QuotaService quotas, ISharedStateStore store, TimeProvider time, Pricing.SpendMetrics spend)
{
    /// <summary>Writes the answer and returns the tenant's standing; or the error to answer instead when the store is down in Deny mode.</summary>
    public async Task<(QuotaStatus? Status, OpenAIError? Error)> WriteAsync(AuthenticatedRequest request)
    {
        var tenant = request.Tenant;
        var windows = QuotaWindows.At(time.GetUtcNow());
        QuotaCounters counters;
        try
        {
            counters = await quotas.ReadCountersAsync(tenant.Id, windows);
        }
        catch (StoreUnavailableException)
        {
            return (null, OpenAIError.StoreUnavailable());
        }

        var limits = tenant.Limits;
        var status = QuotaService.StatusOf(limits, counters, windows);
        spend.RecordBudgetUse(tenant.Id, counters, windows);

        var response = request.Http.Response;
        response.ContentType = "application/json";
        response.Headers["x-request-id"] = request.RequestId;
        RateLimitHeaders.Apply(response.Headers, status);
        await using var writer = new Utf8JsonWriter(response.Body);
        writer.WriteStartObject();
        writer.WriteString("object"u8, "gateway.quota");
        writer.WriteString("tenant"u8, tenant.Id);
        writer.WriteString("store"u8, store.Kind);
        writer.WriteStartObject("limits"u8);
        WriteLimit(writer, "requests_per_minute"u8, limits.RequestsPerMinute);
        WriteLimit(writer, "tokens_per_minute"u8, limits.TokensPerMinute);
        WriteLimit(writer, "tokens_per_day"u8, limits.TokensPerDay);
        WriteLimit(writer, "tokens_per_month"u8, limits.TokensPerMonth);
        WriteLimit(writer, "max_concurrent_requests"u8, limits.MaxConcurrentRequests);
        WriteLimit(writer, "max_output_tokens"u8, tenant.MaxOutputTokens ?? 0);
        WriteUsdLimit(writer, "usd_per_day"u8, limits.UsdPerDay);
        WriteUsdLimit(writer, "usd_per_month"u8, limits.UsdPerMonth);
        writer.WriteStartArray("models"u8);
        foreach (var model in tenant.AllowedModels ?? (IEnumerable<string>)[])
        {
            writer.WriteStringValue(model);
        }

        writer.WriteEndArray();
        writer.WriteEndObject();
        writer.WriteStartObject("usage"u8);
        writer.WriteNumber("requests_this_minute"u8, counters.Requests);
        writer.WriteNumber("tokens_this_minute"u8, counters.MinuteTokens);
        writer.WriteNumber("tokens_today"u8, counters.DayTokens);
        writer.WriteNumber("tokens_this_month"u8, counters.MonthTokens);
        writer.WriteNumber("concurrent_requests"u8, counters.Concurrent);
        writer.WriteNumber("usd_today"u8, MicroUsd.ToUsd(counters.DayMicroUsd));
        writer.WriteNumber("usd_this_month"u8, MicroUsd.ToUsd(counters.MonthMicroUsd));
        writer.WriteEndObject();
        writer.WriteStartObject("resets"u8);
        writer.WriteString("minute"u8, windows.Now + windows.UntilMinuteEnd);
        writer.WriteString("day"u8, windows.Now + windows.UntilDayEnd);
        writer.WriteString("month"u8, windows.Now + windows.UntilMonthEnd);
        writer.WriteEndObject();
        writer.WriteString("window_semantics"u8, "fixed UTC windows: minute, day, calendar month");
        writer.WriteEndObject();
        return (status, null);
    }

    private static void WriteUsdLimit(Utf8JsonWriter writer, ReadOnlySpan<byte> name, decimal value)
    {
        if (value > 0)
        {
            writer.WriteNumber(name, value);
        }
        else
        {
            writer.WriteNull(name);
        }
    }

    /// <summary>0 (unlimited) is written as null, so a client never mistakes it for "nothing allowed".</summary>
    private static void WriteLimit(Utf8JsonWriter writer, ReadOnlySpan<byte> name, long value)
    {
        if (value > 0)
        {
            writer.WriteNumber(name, value);
        }
        else
        {
            writer.WriteNull(name);
        }
    }
}
