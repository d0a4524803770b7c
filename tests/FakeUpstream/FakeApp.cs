using System.Diagnostics;
using Microsoft.Extensions.Primitives;

namespace FakeUpstream;

/// <summary>Builds the fake's pipeline; shared by <see cref="FakeUpstreamServer"/> (in-process) and Program (standalone).</summary>
internal static class FakeApp
{
    public static void ConfigureBuilder(WebApplicationBuilder builder)
    {
        // No per-request logging: the fake is also the "direct" baseline of throughput benchmarks.
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.WebHost.ConfigureKestrel(options => options.AddServerHeader = false);
    }

    public static void Map(WebApplication app, FakeUpstreamState state)
    {
        state.Stopping = app.Lifetime.ApplicationStopping;

        // Azure OpenAI's v1 surface lives under /openai/v1: serve it as /v1 (GetEncodedPathAndQuery keeps the full path).
        app.Use((context, next) =>
        {
            if (context.Request.Path.StartsWithSegments("/openai", StringComparison.Ordinal, out var rest) && rest.StartsWithSegments("/v1", StringComparison.Ordinal))
            {
                context.Request.PathBase = context.Request.PathBase.Add("/openai");
                context.Request.Path = rest;
            }

            return next(context);
        });

        // Route after the rewrite above (the implicit UseRouting would run first and miss /openai/v1/... endpoints).
        app.UseRouting();
        app.Use((context, next) => context.Request.Path.StartsWithSegments("/v1", StringComparison.Ordinal)
            ? InvokeOpenAiAsync(context, next, state)
            : next(context));

        new ResponsesEndpoints(state).Map(app);
        new ChatEndpoints(state).Map(app);
        new ConversationsEndpoints(state).Map(app);
        new MiscEndpoints(state).Map(app);
        AdminEndpoints.Map(app, state);
    }

    /// <summary>Steps every <c>/v1</c> request goes through before its endpoint: read and record the body, first-byte
    /// delay, authentication, injected error status, replay.</summary>
    private static async Task InvokeOpenAiAsync(HttpContext context, RequestDelegate next, FakeUpstreamState state)
    {
        var start = Stopwatch.GetTimestamp();
        var directives = FakeDirectives.Parse(context.Request.Headers, state.Settings);
        byte[] body;
        try
        {
            body = await ReadBodyAsync(context.Request);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or BadHttpRequestException)
        {
            return; // the client went away mid-upload
        }

        var fake = new FakeRequest(state, directives, start, body);
        context.Features.Set(fake);
        state.Recorder.Record(context, body);

        if (state.Mode is { Kind: not FakeUpstreamModeKind.Normal } mode)
        {
            await FaultInjection.ApplyModeAsync(context, mode, state.Stopping);
            return;
        }

        if (directives.FirstByteDelayMs > 0 && !await FaultInjection.DelayFirstByteAsync(context, directives.FirstByteDelayMs))
        {
            return;
        }

        if (!IsAuthorized(context.Request.Headers.Authorization) && !(context.Request.PathBase.HasValue && context.Request.Headers.ContainsKey("api-key")))
        {
            await WriteUnauthorizedAsync(context);
            return;
        }

        if (directives.Status is not null)
        {
            await FaultInjection.WriteInjectedErrorAsync(context, directives);
            return;
        }

        if (directives.Replay is { } replay)
        {
            await state.Replays.ReplayAsync(context, replay);
            return;
        }

        await next(context);
    }

    private static bool IsAuthorized(StringValues authorization)
    {
        if (authorization.Count != 1)
        {
            return false;
        }

        var value = authorization[0].AsSpan().Trim();
        return value.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) && !value[7..].Trim().IsEmpty;
    }

    /// <summary>The envelope of <c>ChatTests/AuthFailure.json</c>, with the key masked the same way.</summary>
    private static Task WriteUnauthorizedAsync(HttpContext context)
    {
        var authorization = context.Request.Headers.Authorization.ToString();
        string message;
        if (authorization.Length == 0)
        {
            message = "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.";
        }
        else
        {
            message = IncorrectKeyMessage(authorization);
        }

        return OpenAiWire.WriteErrorAsync(context, StatusCodes.Status401Unauthorized, message, "invalid_request_error", null, "invalid_api_key");
    }

    /// <summary>OpenAI's 401 text for a wrong key: it quotes the key it got, masked to its first 8 and last 4 characters.</summary>
    internal static string IncorrectKeyMessage(string authorization)
    {
        var key = authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? authorization[7..].Trim() : authorization;
        return $"Incorrect API key provided: {Mask(key)}. You can find your API key at https://platform.openai.com/account/api-keys.";

        static string Mask(string key) => key.Length <= 12
            ? new string('*', key.Length)
            : string.Concat(key.AsSpan(0, 8), new string('*', key.Length - 12), key.AsSpan(key.Length - 4));
    }

    private static async Task<byte[]> ReadBodyAsync(HttpRequest request)
    {
        if (request.ContentLength is { } length)
        {
            if (length == 0)
            {
                return [];
            }

            var buffer = new byte[length];
            await request.Body.ReadExactlyAsync(buffer, request.HttpContext.RequestAborted);
            return buffer;
        }

        using var stream = new MemoryStream();
        await request.Body.CopyToAsync(stream, request.HttpContext.RequestAborted);
        return stream.ToArray();
    }
}
