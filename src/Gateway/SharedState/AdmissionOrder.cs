using System.Collections.Immutable;
using System.Globalization;
using System.Text;

namespace Gateway.SharedState;

/// <summary>
/// The admission checks, in the order they are made: the first limit a request does not fit refuses it (and is the
/// one the 429 names). Stated once, here: <see cref="MemoryStateStore"/> runs <see cref="Decide"/>, and
/// <see cref="RedisStateStore"/>'s admission script embeds <see cref="LuaDecision"/>, built from the same table; the
/// contract tests drive every store through every pair of refusals and expect the earlier check of this table.
/// </summary>
internal static class AdmissionOrder
{
    /// <summary>
    /// Concurrency first (a refused request must not count against the minute), then the request rate, then tokens
    /// from the shortest window to the longest, then dollars. A two-step admission's second step (tokens only) skips
    /// the checks that count the request.
    /// </summary>
    public static readonly ImmutableArray<AdmissionCheck> Checks =
    [
        new(AdmissionDecision.Concurrency, CountsRequest: true, LuaLimit: "maxc", LuaUsed: "c", LuaAdding: "1"),
        new(AdmissionDecision.RequestsPerMinute, CountsRequest: true, LuaLimit: "rpm", LuaUsed: "r", LuaAdding: "1"),
        new(AdmissionDecision.TokensPerMinute, CountsRequest: false, LuaLimit: "tpm", LuaUsed: "tm", LuaAdding: "reserve"),
        new(AdmissionDecision.TokensPerDay, CountsRequest: false, LuaLimit: "tpd", LuaUsed: "td", LuaAdding: "reserve"),
        new(AdmissionDecision.TokensPerMonth, CountsRequest: false, LuaLimit: "tpmo", LuaUsed: "tmo", LuaAdding: "reserve"),
        new(AdmissionDecision.UsdPerDay, CountsRequest: false, LuaLimit: "upd", LuaUsed: "ud", LuaAdding: "ru"),
        new(AdmissionDecision.UsdPerMonth, CountsRequest: false, LuaLimit: "upmo", LuaUsed: "umo", LuaAdding: "ru"),
    ];

    /// <summary>The first check <paramref name="request"/> does not fit, given the tenant's current counters; else Admitted.</summary>
    public static AdmissionDecision Decide(AdmissionRequest request, QuotaCounters counters)
    {
        foreach (var check in Checks)
        {
            if (check.CountsRequest && request.TokensOnly)
            {
                continue;
            }

            var (limit, used, adding) = Measure(check.Decision, request, counters);
            if (limit > 0 && used + adding > limit)
            {
                return check.Decision;
            }
        }

        return AdmissionDecision.Admitted;
    }

    /// <summary>
    /// The same decision in Lua over the admission script's locals (limits, counters, reservation; a tokens-only step
    /// has set the request-counting limits to 0): sets <c>decision</c> to the refusing check's <see cref="AdmissionDecision"/> value.
    /// </summary>
    public static string LuaDecision()
    {
        var lua = new StringBuilder("local decision = 0\n");
        for (var i = 0; i < Checks.Length; i++)
        {
            var check = Checks[i];
            lua.Append(CultureInfo.InvariantCulture,
                $"{(i == 0 ? "if" : "elseif")} {check.LuaLimit} > 0 and {check.LuaUsed} + {check.LuaAdding} > {check.LuaLimit} then decision = {(int)check.Decision}\n");
        }

        return lua.Append("end\n").ToString();
    }

    private static (long Limit, long Used, long Adding) Measure(AdmissionDecision decision, AdmissionRequest request, QuotaCounters counters) => decision switch
    {
        AdmissionDecision.Concurrency => (request.Limits.MaxConcurrentRequests, counters.Concurrent, 1),
        AdmissionDecision.RequestsPerMinute => (request.Limits.RequestsPerMinute, counters.Requests, 1),
        AdmissionDecision.TokensPerMinute => (request.Limits.TokensPerMinute, counters.MinuteTokens, request.ReserveTokens),
        AdmissionDecision.TokensPerDay => (request.Limits.TokensPerDay, counters.DayTokens, request.ReserveTokens),
        AdmissionDecision.TokensPerMonth => (request.Limits.TokensPerMonth, counters.MonthTokens, request.ReserveTokens),
        AdmissionDecision.UsdPerDay => (request.MicroUsdPerDay, counters.DayMicroUsd, request.ReserveMicroUsd),
        AdmissionDecision.UsdPerMonth => (request.MicroUsdPerMonth, counters.MonthMicroUsd, request.ReserveMicroUsd),
        _ => throw new ArgumentOutOfRangeException(nameof(decision), decision, "Not a limit."),
    };
}

/// <summary>One admission check: the limit it enforces and, for the Lua script, the locals it compares.</summary>
internal sealed record AdmissionCheck(AdmissionDecision Decision, bool CountsRequest, string LuaLimit, string LuaUsed, string LuaAdding);
