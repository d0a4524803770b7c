namespace FakeUpstream;

/// <summary>Out-of-process control of the fake (benchmarks, the demo, tests against a standalone instance).</summary>
internal static class AdminEndpoints
{
    public static void Map(IEndpointRouteBuilder app, FakeUpstreamState state)
    {
        app.MapGet("/healthz", static context =>
        {
            context.Response.ContentType = "text/plain";
            return context.Response.WriteAsync("ok");
        });

        app.MapGet("/_fake/requests", context => WriteJsonAsync(context, Json.Serialize(state.Recorder.Snapshot(), static (w, requests) =>
        {
            w.WriteStartArray();
            foreach (var request in requests)
            {
                w.WriteStartObject();
                w.WriteString("method", request.Method);
                w.WriteString("pathAndQuery", request.PathAndQuery);
                w.WriteStartObject("headers");
                foreach (var (name, values) in request.Headers)
                {
                    w.WriteStartArray(name);
                    foreach (var value in values)
                    {
                        w.WriteStringValue(value);
                    }

                    w.WriteEndArray();
                }

                w.WriteEndObject();
                w.WriteString("body", request.BodyText);
                w.WriteString("receivedAt", request.ReceivedAt);
                w.WriteBoolean("aborted", request.Aborted);
                w.WriteEndObject();
            }

            w.WriteEndArray();
        })));

        app.MapDelete("/_fake/requests", context =>
        {
            state.Recorder.Clear();
            context.Response.StatusCode = StatusCodes.Status204NoContent;
            return Task.CompletedTask;
        });

        app.MapPost("/_fake/gates/{name}/release", context =>
        {
            state.Gates.Release((string)context.Request.RouteValues["name"]!);
            context.Response.StatusCode = StatusCodes.Status204NoContent;
            return Task.CompletedTask;
        });

        app.MapPost("/_fake/mode", async context =>
        {
            using var document = await System.Text.Json.JsonDocument.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted);
            var root = document.RootElement;
            var name = root.TryGetProperty("mode", out var m) ? m.GetString() : null;
            int? Int(string property) => root.TryGetProperty(property, out var value) && value.TryGetInt32(out var n) ? n : null;
            FakeUpstreamMode? mode = name switch
            {
                "normal" => FakeUpstreamMode.Normal,
                "fail" => FakeUpstreamMode.Fail(Int("status") ?? 500),
                "throttle" => FakeUpstreamMode.Throttle(Int("retryAfter"), Int("retryAfterMs")),
                "hang" => FakeUpstreamMode.Hang,
                _ => null,
            };
            if (name == "stop" && state.StopListening is { } stop)
            {
                context.Response.StatusCode = StatusCodes.Status204NoContent;
                await context.Response.CompleteAsync();
                _ = Task.Run(stop);
                return;
            }

            if (mode is null)
            {
                context.Response.StatusCode = StatusCodes.Status400BadRequest;
                await WriteJsonAsync(context, """{"error":{"message":"mode must be normal, fail, throttle, hang or stop","type":"invalid_request_error","param":"mode","code":null}}"""u8.ToArray());
                return;
            }

            state.Mode = mode;
            context.Response.StatusCode = StatusCodes.Status204NoContent;
        });

        app.MapGet("/_fake/ledger", context => WriteJsonAsync(context, Json.Serialize(state.Ledger, static (w, ledger) =>
        {
            w.WriteStartObject();
            w.WriteNumber("input_tokens", ledger.InputTokens);
            w.WriteNumber("cached_tokens", ledger.CachedTokens);
            w.WriteNumber("output_tokens", ledger.OutputTokens);
            w.WriteNumber("reasoning_tokens", ledger.ReasoningTokens);
            w.WriteNumber("total_tokens", ledger.TotalTokens);
            w.WriteNumber("responses_with_usage", ledger.ResponsesWithUsage);
            w.WriteEndObject();
        })));

        app.MapDelete("/_fake/ledger", context =>
        {
            state.Ledger.Reset();
            context.Response.StatusCode = StatusCodes.Status204NoContent;
            return Task.CompletedTask;
        });
    }

    private static Task WriteJsonAsync(HttpContext context, byte[] body)
    {
        context.Response.ContentType = OpenAiWire.JsonContentType;
        context.Response.ContentLength = body.Length;
        return context.Response.Body.WriteAsync(body).AsTask();
    }
}
