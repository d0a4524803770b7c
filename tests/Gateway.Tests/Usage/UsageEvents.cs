using System.Text.Json;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Usage;

/// <summary>Reading and checking the <c>Usage</c> events (CLEF lines) the gateway writes.</summary>
internal static class UsageEvents
{
    /// <summary>Every property the usage event must carry, always (null where unknown).</summary>
    public static readonly string[] Properties =
    [
        "Tenant", "Endpoint", "RequestedModel", "Model", "Stream", "Background", "StatusCode", "Outcome", "ResponseId",
        "InputTokens", "CachedInputTokens", "OutputTokens", "ReasoningTokens", "TotalTokens", "CostUsd", "UsageSource",
        "DurationMs", "TimeToFirstByteMs", "RequestId", "UpstreamRequestId", "Method", "Path", "Upstream", "Attempts",
    ];

    public static readonly string[] Outcomes = ["completed", "incomplete", "failed", "rejected", "client_aborted", "upstream_error", "gateway_error"];

    public static readonly string[] Sources = ["upstream", "estimated", "correction", "none"];

    public static readonly string[] TokenProperties = ["InputTokens", "CachedInputTokens", "OutputTokens", "ReasoningTokens", "TotalTokens"];

    /// <summary>The one usage event of the request that produced <paramref name="response"/> (by its x-gateway-request-id).</summary>
    public static async Task<JsonElement> OfAsync(GatewayHost gateway, HttpResponseMessage response)
    {
        var requestId = response.Headers.GetValues("x-gateway-request-id").Single();
        var usage = await gateway.Logs.SingleUsageEventAsync(requestId);
        AssertWellFormed(usage);
        return usage;
    }

    /// <summary>All properties present; EventId 1000 "Usage"; types as documented; tokens consistent with the source.</summary>
    public static void AssertWellFormed(JsonElement usage)
    {
        foreach (var name in Properties)
        {
            Assert.True(usage.TryGetProperty(name, out _), $"usage event lacks {name}: {usage}");
        }

        Assert.Equal(1000, usage.GetProperty("EventId").GetProperty("Id").GetInt32());
        Assert.Equal("Usage", usage.GetProperty("EventId").GetProperty("Name").GetString());
        Assert.Equal(JsonValueKind.String, usage.GetProperty("Tenant").ValueKind);
        Assert.Equal(JsonValueKind.String, usage.GetProperty("Endpoint").ValueKind);
        Assert.Equal(JsonValueKind.Number, usage.GetProperty("StatusCode").ValueKind);
        Assert.Equal(JsonValueKind.Number, usage.GetProperty("DurationMs").ValueKind);
        Assert.True(usage.GetProperty("Stream").ValueKind is JsonValueKind.True or JsonValueKind.False);
        Assert.True(usage.GetProperty("Background").ValueKind is JsonValueKind.True or JsonValueKind.False);
        Assert.Contains(Text(usage, "Outcome"), Outcomes);
        Assert.StartsWith("gw-", Text(usage, "RequestId"), StringComparison.Ordinal);

        var source = Text(usage, "UsageSource");
        Assert.Contains(source, Sources);
        if (source == "none")
        {
            foreach (var name in TokenProperties)
            {
                Assert.Equal(JsonValueKind.Null, usage.GetProperty(name).ValueKind);
            }
        }
        else
        {
            Assert.NotNull(Long(usage, "InputTokens"));
            Assert.NotNull(Long(usage, "TotalTokens"));
        }
    }

    public static string? Text(JsonElement usage, string name) =>
        usage.GetProperty(name) is { ValueKind: JsonValueKind.String } value ? value.GetString() : null;

    public static long? Long(JsonElement usage, string name) =>
        usage.GetProperty(name) is { ValueKind: JsonValueKind.Number } value ? value.GetInt64() : null;

    public static double? Double(JsonElement usage, string name) =>
        usage.GetProperty(name) is { ValueKind: JsonValueKind.Number } value ? value.GetDouble() : null;

    public static void AssertNoTokens(JsonElement usage)
    {
        Assert.Equal("none", Text(usage, "UsageSource"));
        foreach (var name in TokenProperties)
        {
            Assert.Equal(JsonValueKind.Null, usage.GetProperty(name).ValueKind);
        }
    }

    /// <summary>
    /// The event carries exactly the upstream's <c>usage</c> object: Responses names (input/output, *_details) or
    /// chat/embeddings names (prompt/completion), detail fields null in the event when the upstream had none.
    /// </summary>
    public static void AssertEqualsUpstream(JsonElement expectedUsage, JsonElement usage)
    {
        Assert.Equal("upstream", Text(usage, "UsageSource"));
        var responsesNames = expectedUsage.TryGetProperty("input_tokens", out _);
        var (input, output, inputDetails, outputDetails) = responsesNames
            ? ("input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details")
            : ("prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details");

        Assert.Equal(Number(expectedUsage, input), Long(usage, "InputTokens"));
        Assert.Equal(Detail(expectedUsage, inputDetails, "cached_tokens"), Long(usage, "CachedInputTokens"));
        Assert.Equal(Number(expectedUsage, output), Long(usage, "OutputTokens"));
        Assert.Equal(Detail(expectedUsage, outputDetails, "reasoning_tokens"), Long(usage, "ReasoningTokens"));
        Assert.Equal(Number(expectedUsage, "total_tokens"), Long(usage, "TotalTokens"));
    }

    private static long? Number(JsonElement obj, string name) =>
        obj.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number ? value.GetInt64() : null;

    private static long? Detail(JsonElement obj, string details, string name) =>
        obj.TryGetProperty(details, out var d) && d.ValueKind == JsonValueKind.Object ? Number(d, name) : null;

    /// <summary>Sums of the token properties over events (null counts as 0).</summary>
    public static (long Input, long Cached, long Output, long Reasoning, long Total) Sum(IEnumerable<JsonElement> events)
    {
        long input = 0, cached = 0, output = 0, reasoning = 0, total = 0;
        foreach (var e in events)
        {
            input += Long(e, "InputTokens") ?? 0;
            cached += Long(e, "CachedInputTokens") ?? 0;
            output += Long(e, "OutputTokens") ?? 0;
            reasoning += Long(e, "ReasoningTokens") ?? 0;
            total += Long(e, "TotalTokens") ?? 0;
        }

        return (input, cached, output, reasoning, total);
    }
}
