using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Gateway.Tests.Infrastructure;
using Gateway.Tests.Usage;

namespace Gateway.Tests.Pricing;

/// <summary>Sending recorded or steered requests and reading the usage event's cost, for the pricing tests.</summary>
internal static class PricingTestKit
{
    /// <summary>The usage event's CostUsd as written (a JSON number read as decimal, digit for digit), or null.</summary>
    public static decimal? Cost(JsonElement usage) =>
        usage.GetProperty("CostUsd") is { ValueKind: JsonValueKind.Number } value ? value.GetDecimal() : null;

    /// <summary>The test's own arithmetic: USD per 1M tokens, cached input at its price, rounded half away from zero to 6 places.</summary>
    public static decimal Expected(JsonElement usage, decimal input, decimal cachedInput, decimal output, decimal multiplier = 1m)
    {
        var inputTokens = UsageEvents.Long(usage, "InputTokens") ?? 0;
        var cachedTokens = UsageEvents.Long(usage, "CachedInputTokens") ?? 0;
        var outputTokens = UsageEvents.Long(usage, "OutputTokens") ?? 0;
        var exact = (((inputTokens - cachedTokens) * input) + (cachedTokens * cachedInput) + (outputTokens * output)) * multiplier / 1_000_000m;
        return Math.Round(exact, 6, MidpointRounding.AwayFromZero);
    }

    public static async Task<JsonElement> ReplayAsync(GatewayHost gateway, HttpClient client, Recordings.Exchange exchange)
    {
        using var request = new HttpRequestMessage(new HttpMethod(exchange.Method), exchange.PathAndQuery.TrimStart('/')["v1/".Length..]);
        request.Headers.Add("x-fake-replay", exchange.ToString());
        if (exchange.RequestBody is not null)
        {
            request.Content = new StringContent(exchange.RequestBody, Encoding.UTF8, new MediaTypeHeaderValue("application/json"));
        }

        using var response = await client.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync();
        return await UsageEvents.OfAsync(gateway, response);
    }

    public static async Task<JsonElement> PostAsync(GatewayHost gateway, HttpClient client, string path, string body, params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        foreach (var (name, value) in headers)
        {
            request.Headers.Add(name, value);
        }

        using var response = await client.SendAsync(request);
        await response.Content.ReadAsStringAsync();
        return await UsageEvents.OfAsync(gateway, response);
    }

    public static Recordings.Exchange Recorded(string file, int index) =>
        Recordings.All().Single(e => e.File == file && e.Index == index);
}
