using System.Text;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Usage;

/// <summary>
/// The answer's model, type and status are decoded through a bounded cache of repeated values: whatever it holds, every
/// usage event carries its own answer's model, also past the cache's bound, with escapes and non-ASCII text.
/// </summary>
public sealed class RepeatedStringsTests : GatewayTestBed
{
    [Fact]
    public async Task ManyDistinctModels_PastTheCacheBound_EachEventCarriesItsOwnAnswersModel()
    {
        using var client = Gateway.CreateClient();
        // 300 names (the cache keeps 256), each asked twice, JSON and streamed; some with non-ASCII text (escaped by the upstream).
        var models = Enumerable.Range(0, 300).Select(i => i % 3 == 0 ? $"modèle-{i}" : i % 3 == 1 ? $"m-{i}" : $"model-{i}-{new string('x', 60)}").ToArray();
        foreach (var chunk in models.Concat(models).Chunk(30))
        {
            await Task.WhenAll(chunk.Select(async (model, i) =>
            {
                var stream = i % 2 == 0 ? "true" : "false";
                using var content = new StringContent($$"""{"model":"{{model}}","input":"hi","stream":{{stream}}}""", Encoding.UTF8, "application/json");
                using var response = await client.PostAsync("responses", content);
                await response.Content.ReadAsStringAsync();
                Assert.True(response.IsSuccessStatusCode, $"{model}: {(int)response.StatusCode}");
                var usage = await UsageEvents.OfAsync(Gateway, response);
                Assert.Equal(model + "-2025-01-01", UsageEvents.Text(usage, "Model"));
                Assert.Equal(model, UsageEvents.Text(usage, "RequestedModel"));
                Assert.Equal("completed", UsageEvents.Text(usage, "Outcome"));
            }));
        }
    }
}
