using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Primitives;

namespace FakeUpstream;

/// <summary>What every answer of the real API looks like on the wire: headers, JSON bodies, the error envelope.</summary>
internal static class OpenAiWire
{
    public const string JsonContentType = "application/json";
    public const string SseContentType = "text/event-stream; charset=utf-8";

    private static readonly StringValues OpenAiVersion = "2020-10-01";
    private static readonly StringValues Organization = "org-fake";
    private static readonly StringValues Project = "proj_fake";
    private static readonly StringValues CloudflareCookie = "__cf_bm=fake; path=/; HttpOnly";
    private static readonly StringValues LimitRequests = "30000";
    private static readonly StringValues RemainingRequests = "29999";
    private static readonly StringValues LimitTokens = "150000000";
    private static readonly StringValues RemainingTokens = "149999967";
    private static readonly StringValues Zero = "0";
    private static readonly StringValues ResetRequests = "2ms";
    private static readonly StringValues ResetTokens = "0s";

    /// <summary>How long a connection lingers after the last flush before a deliberate abort, so the bytes already
    /// flushed leave the socket before it is reset (Kestrel's abort discards output still queued in the transport).</summary>
    public const int AbortLingerMs = 50;

    /// <summary>Headers the real API sends on every answer. They are the ones the gateway must pass or strip.</summary>
    public static void ApplyCommonHeaders(HttpContext context)
    {
        var headers = context.Response.Headers;
        headers["x-request-id"] = Ids.RequestId();
        headers["openai-version"] = OpenAiVersion;
        headers["openai-processing-ms"] = ProcessingMs(context);
        headers["openai-organization"] = Organization;
        headers["openai-project"] = Project;
    }

    /// <summary>Org-level rate-limit headers and the Cloudflare cookie, as on real POST /v1/responses (non-stream) and chat answers.</summary>
    public static void ApplyPostHeaders(HttpResponse response)
    {
        ApplyRateLimitHeaders(response, exhausted: false);
        response.Headers.SetCookie = CloudflareCookie;
    }

    public static void ApplyCookie(HttpResponse response) => response.Headers.SetCookie = CloudflareCookie;

    public static void ApplyRateLimitHeaders(HttpResponse response, bool exhausted)
    {
        var headers = response.Headers;
        headers["x-ratelimit-limit-requests"] = LimitRequests;
        headers["x-ratelimit-limit-tokens"] = LimitTokens;
        headers["x-ratelimit-remaining-requests"] = exhausted ? Zero : RemainingRequests;
        headers["x-ratelimit-remaining-tokens"] = RemainingTokens;
        headers["x-ratelimit-reset-requests"] = ResetRequests;
        headers["x-ratelimit-reset-tokens"] = ResetTokens;
    }

    public static string ProcessingMs(HttpContext context)
    {
        var fake = context.Features.Get<FakeRequest>();
        var ms = fake is null ? 0 : (long)Stopwatch.GetElapsedTime(fake.StartTimestamp).TotalMilliseconds;
        return ms.ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>Status, common headers and a JSON body. True when the whole body was handed to the client.</summary>
    public static Task<bool> WriteJsonAsync(HttpContext context, int statusCode, ReadOnlyMemory<byte> body)
    {
        var response = context.Response;
        response.StatusCode = statusCode;
        ApplyCommonHeaders(context);
        response.ContentType = JsonContentType;
        return WriteBodyAsync(context, body, negotiateCompression: true);
    }

    /// <summary>
    /// Writes a complete (non-SSE) body with a Content-Length, honouring <c>x-fake-encoding</c> (or Accept-Encoding when
    /// <paramref name="negotiateCompression"/>) and <c>x-fake-drop-after</c> (half the body, then a connection abort).
    /// True when the whole body was handed to the client.
    /// </summary>
    public static async Task<bool> WriteBodyAsync(HttpContext context, ReadOnlyMemory<byte> body, bool negotiateCompression)
    {
        var directives = context.Fake().Directives;
        var response = context.Response;
        var encoding = directives.Encoding ?? (negotiateCompression ? Compression.Negotiate(context.Request.Headers.AcceptEncoding) : null);
        if (encoding is not null)
        {
            body = Compression.Compress(encoding, body.Span);
            response.Headers.ContentEncoding = encoding;
        }

        response.ContentLength = body.Length;
        try
        {
            if (directives.DropAfter is not null)
            {
                await response.Body.WriteAsync(body[..(body.Length / 2)]);
                await response.Body.FlushAsync();
                await Task.Delay(AbortLingerMs);
                context.Abort();
                return false;
            }

            await response.Body.WriteAsync(body);
            return !context.RequestAborted.IsCancellationRequested;
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
            return false;
        }
    }

    public static Task WriteErrorAsync(HttpContext context, int statusCode, string message, string type, string? param, string? code) =>
        WriteJsonAsync(context, statusCode, ErrorEnvelope(message, type, param, code));

    public static Task WriteNotFoundAsync(HttpContext context, string message) =>
        WriteErrorAsync(context, StatusCodes.Status404NotFound, message, "invalid_request_error", param: null, code: null);

    public static Task WriteBadRequestAsync(HttpContext context, string message, string? param = null, string? code = null) =>
        WriteErrorAsync(context, StatusCodes.Status400BadRequest, message, "invalid_request_error", param, code);

    public static Task WriteInvalidJsonAsync(HttpContext context) => WriteBadRequestAsync(
        context,
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)");

    public static Task WriteMissingParameterAsync(HttpContext context, string name) =>
        WriteBadRequestAsync(context, $"Missing required parameter: '{name}'.", name, "missing_required_parameter");

    /// <summary><c>{"error":{"message","type","param","code"}}</c>: all four keys, always, as the SDKs expect.</summary>
    public static byte[] ErrorEnvelope(string message, string type, string? param, string? code) =>
        Json.Serialize((message, type, param, code), static (w, e) =>
        {
            w.WriteStartObject();
            w.WriteStartObject("error");
            w.WriteString("message", e.message);
            w.WriteString("type", e.type);
            w.WriteString("param", e.param);
            w.WriteString("code", e.code);
            w.WriteEndObject();
            w.WriteEndObject();
        });
}
