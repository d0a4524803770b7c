using System.Net;
using System.Text;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace Gateway.Hosting;

/// <summary>
/// The canned upstream the start-up warm-up talks to: a minimal Kestrel app on loopback answering
/// <c>/v1/responses</c> and <c>/v1/chat/completions</c> the way OpenAI does (JSON, or SSE when the body asks for a
/// stream), usage included, so the gateway's usage scan, accounting and usage event run as for a real answer.
/// Nothing here reaches the network beyond 127.0.0.1.
/// </summary>
internal sealed class WarmupUpstream : IAsyncDisposable
{
    private static readonly byte[] StreamFlag = "\"stream\":true"u8.ToArray();
    private readonly WebApplication _app;
    private long _sequence;

    private WarmupUpstream(WebApplication app, Uri baseUrl)
    {
        _app = app;
        BaseUrl = baseUrl;
    }

    /// <summary><c>http://127.0.0.1:port/v1</c>.</summary>
    public Uri BaseUrl { get; }

    public static async Task<WarmupUpstream> StartAsync(IPEndPoint endpoint, CancellationToken cancellationToken)
    {
        // Empty: no configuration sources, no logging providers; only Kestrel.
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Listen(endpoint);
        });
        var app = builder.Build();
        WarmupUpstream? upstream = null;
        app.Run(context => upstream!.AnswerAsync(context));
        try
        {
            await app.StartAsync(cancellationToken);
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }

        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        upstream = new WarmupUpstream(app, new Uri(address.TrimEnd('/') + "/v1"));
        return upstream;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync(CancellationToken.None);
        await _app.DisposeAsync();
    }

    private async Task AnswerAsync(HttpContext context)
    {
        var body = await ReadBodyAsync(context.Request.Body, context.RequestAborted);
        var stream = body.AsSpan().IndexOf(StreamFlag) >= 0;
        var id = Interlocked.Increment(ref _sequence).ToString("x16", System.Globalization.CultureInfo.InvariantCulture);
        var path = context.Request.Path.Value ?? "";
        string answer;
        if (path.EndsWith("/responses", StringComparison.Ordinal))
        {
            answer = stream ? ResponsesStream(id) : ResponsesJson(id);
        }
        else if (path.EndsWith("/chat/completions", StringComparison.Ordinal))
        {
            answer = stream ? ChatStream(id) : ChatJson(id);
        }
        else
        {
            context.Response.StatusCode = StatusCodes.Status404NotFound;
            return;
        }

        context.Response.Headers["x-request-id"] = "req_warmup_" + id;
        context.Response.Headers["openai-processing-ms"] = "1";
        context.Response.ContentType = stream ? "text/event-stream; charset=utf-8" : "application/json";
        if (stream)
        {
            // Event by event with a flush each, as the real upstream streams.
            foreach (var sseEvent in answer.Split("\n\n", StringSplitOptions.RemoveEmptyEntries))
            {
                await context.Response.WriteAsync(sseEvent + "\n\n", context.RequestAborted);
                await context.Response.Body.FlushAsync(context.RequestAborted);
            }
        }
        else
        {
            await context.Response.WriteAsync(answer, context.RequestAborted);
        }
    }

    private static async Task<byte[]> ReadBodyAsync(Stream body, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        await body.CopyToAsync(buffer, cancellationToken);
        return buffer.ToArray();
    }

    private const string Model = "gpt-4o-mini-2024-07-18";

    private const string ResponsesUsage =
        """{"input_tokens":14,"input_tokens_details":{"cached_tokens":0},"output_tokens":9,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":23}""";

    private const string ChatUsage =
        """{"prompt_tokens":14,"completion_tokens":9,"total_tokens":23,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}""";

    private static readonly string[] Deltas = ["Hello", " there", ",", " nice", " to", " meet", " you", " today", "!"];

    private static string ResponseObject(string id, string status, string output, string usage) =>
        $$$"""{"id":"resp_warmup{{{id}}}","object":"response","created_at":1741476777,"status":"{{{status}}}","error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":64,"model":"{{{Model}}}","output":[{{{output}}}],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null},"store":true,"temperature":1.0,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":{{{usage}}},"user":null,"metadata":{}}""";

    private static string Message(string id, string text, string status) =>
        $$"""{"type":"message","id":"msg_warmup{{id}}","status":"{{status}}","role":"assistant","content":[{"type":"output_text","text":"{{text}}","annotations":[]}]}""";

    private static string ResponsesJson(string id) => ResponseObject(id, "completed", Message(id, string.Concat(Deltas), "completed"), ResponsesUsage);

    private static string ResponsesStream(string id)
    {
        var sse = new StringBuilder();
        var sequence = 0;
        void Event(string type, string data) =>
            sse.Append("event: ").Append(type).Append("\ndata: {\"type\":\"").Append(type).Append("\",\"sequence_number\":")
                .Append(sequence++).Append(',').Append(data).Append("}\n\n");

        Event("response.created", "\"response\":" + ResponseObject(id, "in_progress", "", "null"));
        Event("response.in_progress", "\"response\":" + ResponseObject(id, "in_progress", "", "null"));
        Event("response.output_item.added", "\"output_index\":0,\"item\":" +
            $$"""{"type":"message","id":"msg_warmup{{id}}","status":"in_progress","role":"assistant","content":[]}""");
        Event("response.content_part.added", "\"item_id\"" + $$""":"msg_warmup{{id}}","output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}""");
        foreach (var delta in Deltas)
        {
            Event("response.output_text.delta", "\"item_id\"" + $$""":"msg_warmup{{id}}","output_index":0,"content_index":0,"delta":"{{delta}}","logprobs":[]""");
        }

        var text = string.Concat(Deltas);
        Event("response.output_text.done", "\"item_id\"" + $$""":"msg_warmup{{id}}","output_index":0,"content_index":0,"text":"{{text}}","logprobs":[]""");
        Event("response.content_part.done", "\"item_id\"" + $$""":"msg_warmup{{id}}","output_index":0,"content_index":0,"part":{"type":"output_text","text":"{{text}}","annotations":[]}""");
        Event("response.output_item.done", "\"output_index\":0,\"item\":" + Message(id, text, "completed"));
        Event("response.completed", "\"response\":" + ResponseObject(id, "completed", Message(id, text, "completed"), ResponsesUsage));
        return sse.ToString();
    }

    private static string ChatJson(string id) =>
        $$"""{"id":"chatcmpl-warmup{{id}}","object":"chat.completion","created":1741476777,"model":"{{Model}}","choices":[{"index":0,"message":{"role":"assistant","content":"{{string.Concat(Deltas)}}","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{{ChatUsage}},"service_tier":"default","system_fingerprint":"fp_warmup"}""";

    private static string ChatStream(string id)
    {
        var sse = new StringBuilder();
        void Chunk(string choices, string usage) =>
            sse.Append("data: ").Append($$"""{"id":"chatcmpl-warmup{{id}}","object":"chat.completion.chunk","created":1741476777,"model":"{{Model}}","service_tier":"default","system_fingerprint":"fp_warmup","choices":[{{choices}}],"usage":{{usage}}}""").Append("\n\n");

        Chunk("""{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}""", "null");
        foreach (var delta in Deltas)
        {
            Chunk($$"""{"index":0,"delta":{"content":"{{delta}}"},"logprobs":null,"finish_reason":null}""", "null");
        }

        Chunk("""{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}""", "null");
        Chunk("", ChatUsage);
        sse.Append("data: [DONE]\n\n");
        return sse.ToString();
    }
}
