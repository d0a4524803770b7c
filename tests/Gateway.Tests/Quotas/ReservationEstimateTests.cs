using System.Text;
using Gateway.Tests.Infrastructure;
using Gateway.Usage;
using Xunit.Abstractions;

namespace Gateway.Tests.Quotas;

/// <summary>
/// How close the reservation's input estimate (o200k_base over the text the model reads) comes to what OpenAI really
/// billed, on the recorded real exchanges. The numbers are written to the test output; docs/quotas.md quotes them.
/// </summary>
public sealed class ReservationEstimateTests(ITestOutputHelper output)
{
    private static readonly TokenCounter Counter = new();

    public static TheoryData<Recordings.Exchange> Generating()
    {
        var data = new TheoryData<Recordings.Exchange>();
        foreach (var exchange in Recordings.All().Where(e => e is { Method: "POST", RequestBody: not null, StatusCode: 200 } && RealInput(e) is not null))
        {
            data.Add(exchange);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Generating))]
    public void InputEstimate_ComparedWithRecordedUsage(Recordings.Exchange exchange)
    {
        var real = RealInput(exchange)!.Value;
        var estimate = Counter.EstimateInput(Encoding.UTF8.GetBytes(exchange.RequestBody!), 64 * 1024);
        output.WriteLine($"{exchange} {exchange.PathAndQuery}: billed input {real}, estimate {estimate} ({(estimate - real) * 100.0 / real:+0;-0}%)");

        if (exchange.RequestBody!.Contains("\"previous_response_id\"", StringComparison.Ordinal) || exchange.RequestBody.Contains("\"conversation\"", StringComparison.Ordinal))
        {
            // Context the upstream adds from stored state is invisible in the body: always an underestimate.
            Assert.True(estimate < real, $"estimate {estimate} vs billed {real}");
        }
        else
        {
            // What the body itself carries: within a quarter (tool schemas and compaction items are the least exact).
            Assert.InRange(estimate, real * 0.75, Math.Max(real * 1.25, real + 2));
        }
    }

    public static TheoryData<string> Images => new()
    {
        "https://example.com/cat.png",
        "data:image/png;base64," + Convert.ToBase64String(new byte[30_000].Select((_, i) => (byte)(i * 31 % 251)).ToArray()),
    };

    /// <summary>An image costs one image's tokens whether it comes by URL or inline, in the Responses or the Chat shape.</summary>
    [Theory]
    [MemberData(nameof(Images))]
    public void InputEstimate_ImageByUrlOrInline_CountsOneImageInBothShapes(string url)
    {
        var responses = System.Text.Json.JsonSerializer.Serialize(new
        {
            model = "gpt-4o-mini",
            input = new object[] { new { role = "user", content = new object[] { new { type = "input_text", text = "What is this?" }, new { type = "input_image", image_url = url } } } },
        });
        var chat = System.Text.Json.JsonSerializer.Serialize(new
        {
            model = "gpt-4o-mini",
            messages = new object[] { new { role = "user", content = new object[] { new { type = "text", text = "What is this?" }, new { type = "image_url", image_url = new { url, detail = "high" } } } } },
        });
        var textOnly = System.Text.Json.JsonSerializer.Serialize(new
        {
            model = "gpt-4o-mini",
            messages = new object[] { new { role = "user", content = new object[] { new { type = "text", text = "What is this?" } } } },
        });

        var forResponses = Counter.EstimateInput(Encoding.UTF8.GetBytes(responses), 64 * 1024);
        var forChat = Counter.EstimateInput(Encoding.UTF8.GetBytes(chat), 64 * 1024);

        Assert.Equal(forResponses, forChat);
        Assert.Equal(Counter.EstimateInput(Encoding.UTF8.GetBytes(textOnly), 64 * 1024) + TokenCounter.ImageTokens, forChat);
    }

    private static long? RealInput(Recordings.Exchange exchange) =>
        Recordings.RecordedUsage(exchange) is { } usage
            ? usage.TryGetProperty("input_tokens", out var input) ? input.GetInt64() : usage.TryGetProperty("prompt_tokens", out var prompt) ? prompt.GetInt64() : null
            : null;
}
