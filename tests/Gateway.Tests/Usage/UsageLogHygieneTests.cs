using System.ClientModel;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Gateway.Tests.Infrastructure;
using OpenAI.Responses;

namespace Gateway.Tests.Usage;

/// <summary>
/// The log is a billing record that many people read: no key (the upstream key, the tenants' gateway keys, a wrong key
/// somebody tried) and no prompt or output text may ever appear in it, whatever path a request takes.
/// Prompts carry distinctive marker words; the fake's output words are common English words, so the check on output is
/// on the whole text the client received (a phrase no log line has a reason to contain).
/// </summary>
public sealed class UsageLogHygieneTests() : GatewayTestBed
{
    private const string WrongKey = "gwk_never_issued_key_0123456789abcdefghij";

    private static readonly string[] Markers =
    [
        "Quixotrambulant", "Zephyrglobnik", "Marmalusticore", "Vorpalquenchly", "Snorkelwisteria", "Pumpernixolated",
        "Gobbledyquartz", "Fizzlecrumpet", "Wobbleplinth", "Xanthoquibble",
    ];

    [Fact]
    public async Task EveryKindOfRequest_LogsNeitherKeysNorPromptNorOutputText()
    {
        var outputs = new List<string>();
        using var client = Gateway.CreateClient();

        // Responses: JSON (input + instructions + metadata), SSE, background + retrieval.
        var json = await PostAsync(client, "responses", $$$"""{"model":"gpt-4o-mini","input":"{{{Markers[0]}}} tell me","instructions":"{{{Markers[1]}}}","metadata":{"note":"{{{Markers[2]}}}"}}""");
        outputs.Add(JsonDocument.Parse(json).RootElement.GetProperty("output")[0].GetProperty("content")[0].GetProperty("text").GetString()!);
        var sse = await PostAsync(client, "responses", $$$"""{"model":"gpt-4o-mini","input":[{"role":"user","content":[{"type":"input_text","text":"{{{Markers[3]}}}"}]}],"stream":true}""");
        outputs.Add(string.Concat(sse.Split('\n').Where(l => l.Contains("output_text.delta", StringComparison.Ordinal) && l.StartsWith("data:", StringComparison.Ordinal))
            .Select(l => JsonDocument.Parse(l[5..]).RootElement.GetProperty("delta").GetString())));
        var background = JsonDocument.Parse(await PostAsync(client, "responses", $$"""{"model":"gpt-4o-mini","input":"{{Markers[4]}}","background":true}""")).RootElement;
        using (var retrieved = await client.GetAsync($"responses/{background.GetProperty("id").GetString()}?include[]={Markers[5]}"))
        {
            Assert.Equal(HttpStatusCode.OK, retrieved.StatusCode);
        }

        // Chat: JSON and SSE (the gateway edits the body to ask for usage).
        var chat = await PostAsync(client, "chat/completions", $$$"""{"model":"gpt-4o-mini","messages":[{"role":"system","content":"{{{Markers[6]}}}"},{"role":"user","content":"hi"}]}""");
        outputs.Add(JsonDocument.Parse(chat).RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!);
        await PostAsync(client, "chat/completions", $$$"""{"model":"gpt-4o-mini","messages":[{"role":"user","content":"{{{Markers[6]}}}"}],"stream":true}""");

        // Embeddings and compaction.
        await PostAsync(client, "embeddings", $$"""{"model":"text-embedding-3-small","input":"{{Markers[7]}}"}""");
        await PostAsync(client, "responses/compact", $$$"""{"model":"gpt-4o-mini","input":[{"role":"user","content":"{{{Markers[7]}}}"}]}""");

        // Failures: unparseable body, upstream error echoing the prompt, upstream drop mid-stream, a cut JSON body.
        await PostAsync(client, "responses", $$"""{"model":"gpt-4o-mini","input":"{{Markers[8]}}" """, expectOk: false);
        await PostAsync(client, "responses", $$"""{"model":"gpt-4o-mini","input":"{{Markers[8]}}"}""", expectOk: false,
            headers: [("x-fake-status", "400"), ("x-fake-error-message", $"Invalid prompt: {Markers[8]}")]);
        await PostAsync(client, "responses", $$"""{"model":"gpt-4o-mini","input":"{{Markers[9]}}","stream":true}""", headers: [("x-fake-drop-after", "6")]);
        try
        {
            await PostAsync(client, "responses", $$"""{"model":"gpt-4o-mini","input":"{{Markers[9]}}"}""", expectOk: false, headers: [("x-fake-drop-after", "1")]);
        }
        catch (HttpRequestException)
        {
            // the cut body
        }

        // Wrong keys (Bearer and Azure style), and the official SDK.
        using (var wrong = Gateway.CreateClient(WrongKey))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, (await wrong.PostAsync("responses", Json($$"""{"model":"gpt-4o-mini","input":"{{Markers[0]}}"}"""))).StatusCode);
        }

        using (var azure = Gateway.CreateClient(key: null))
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "responses") { Content = Json("""{"model":"gpt-4o-mini","input":"x"}""") };
            request.Headers.Add("api-key", WrongKey);
            Assert.Equal(HttpStatusCode.Unauthorized, (await azure.SendAsync(request)).StatusCode);
        }

        var sdk = new ResponsesClient(new ApiKeyCredential(TestKeys.KeyB), new ResponsesClientOptions { Endpoint = Gateway.BaseUrl });
        var sdkResponse = await sdk.CreateResponseAsync("gpt-4o-mini", $"{Markers[1]} from the SDK");
        outputs.Add(sdkResponse.Value.GetOutputText());

        await Gateway.Logs.WaitForUsageEventsAsync(13);
        await Gateway.Logs.WaitForEventsAsync("RequestCompleted", 2);
        await Task.Delay(200); // an extra line would be a defect: give it the chance to show
        var log = Gateway.Logs.AllText;
        Assert.Equal(13, Gateway.Logs.UsageEvents.Count); // every authenticated request above was logged (the 401s get RequestCompleted)
        Assert.Equal(2, Gateway.Logs.Named("RequestCompleted").Count);

        foreach (var secret in new[] { TestKeys.UpstreamKey, TestKeys.KeyA, TestKeys.KeyB, WrongKey })
        {
            Assert.DoesNotContain(secret, log, StringComparison.Ordinal);
            Assert.DoesNotContain(secret[..16], log, StringComparison.Ordinal); // not even a recognisable prefix
        }

        Assert.DoesNotContain("Bearer", log, StringComparison.OrdinalIgnoreCase);
        foreach (var marker in Markers)
        {
            Assert.DoesNotContain(marker, log, StringComparison.OrdinalIgnoreCase);
        }

        Assert.Equal(4, outputs.Count);
        foreach (var output in outputs)
        {
            Assert.True(output.Trim().Split(' ').Length >= 5, $"'{output}' is too short to be a meaningful check");
            Assert.DoesNotContain(output.Trim(), log, StringComparison.Ordinal);
        }
    }

    private static async Task<string> PostAsync(HttpClient client, string path, string body, bool expectOk = true, (string Name, string Value)[]? headers = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = Json(body) };
        foreach (var (name, value) in headers ?? [])
        {
            request.Headers.Add(name, value);
        }

        using var response = await client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        if (expectOk)
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        return text;
    }

    private static StringContent Json(string json) => new(json, Encoding.UTF8, new MediaTypeHeaderValue("application/json"));
}
