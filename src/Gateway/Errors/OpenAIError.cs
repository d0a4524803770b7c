using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.Net.Http.Headers;

namespace Gateway.Errors;

/// <summary>
/// An error the gateway answers itself, in the exact envelope the OpenAI API uses
/// (<c>{"error":{"message","type","param","code"}}</c>), so every SDK parses it like one of OpenAI's own.
/// </summary>
internal sealed record OpenAIError(int StatusCode, string Message, string Type, string? Param = null, string? Code = null)
{
    // Escaped as OpenAI escapes: "Response with id 'resp_…' not found." keeps its quotes (not \u0027), so the gateway's
    // not-found answers are byte for byte the upstream's and do not stand out from them.
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Extra response headers (retry-after, x-should-retry, ...).</summary>
    public IReadOnlyDictionary<string, string>? Headers { get; init; }

    public static OpenAIError InvalidApiKey(string message) =>
        new(StatusCodes.Status401Unauthorized, message, "invalid_request_error", null, "invalid_api_key");

    public static OpenAIError UnknownUrl(string method, string path) =>
        new(StatusCodes.Status404NotFound, $"Invalid URL ({method} {path})", "invalid_request_error", null, null);

    public static OpenAIError InvalidJson() =>
        new(StatusCodes.Status400BadRequest,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. " +
            "The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
            "invalid_request_error");

    public static OpenAIError BadRequest(string message, string? param = null, string? code = null) =>
        new(StatusCodes.Status400BadRequest, message, "invalid_request_error", param, code);

    public static OpenAIError BodyTooLarge(long limit) =>
        new(StatusCodes.Status413PayloadTooLarge,
            $"Request body too large: this gateway accepts at most {limit} bytes.", "invalid_request_error", null, "request_too_large");

    public static OpenAIError UnsupportedMediaType(string? contentType) =>
        new(StatusCodes.Status415UnsupportedMediaType,
            $"Unsupported Content-Type '{contentType ?? "(none)"}': send the request body as application/json.",
            "invalid_request_error", null, "unsupported_media_type");

    public static OpenAIError UnsupportedContentEncoding(string encoding) =>
        new(StatusCodes.Status415UnsupportedMediaType,
            $"Unsupported Content-Encoding '{encoding}': send the request body uncompressed.",
            "invalid_request_error", null, "unsupported_content_encoding");

    /// <summary>429 for a tenant that has too many request bodies in transit at once; retried by every SDK after a second.</summary>
    public static OpenAIError TooManyBodyReads(int limit) =>
        new(StatusCodes.Status429TooManyRequests,
            $"Too many request bodies being received at once: Limit {limit}. Please try again when an upload has finished.",
            "requests", null, "rate_limit_exceeded")
        {
            Headers = new Dictionary<string, string> { ["retry-after"] = "1", ["retry-after-ms"] = "1000" },
        };

    public static OpenAIError UpstreamUnreachable() =>
        new(StatusCodes.Status502BadGateway, "The gateway could not reach the upstream API. Please retry your request.", "server_error");

    public static OpenAIError UpstreamTimeout() =>
        new(StatusCodes.Status504GatewayTimeout, "The upstream API did not answer in time.", "server_error");

    public static OpenAIError StoreUnavailable() =>
        new(StatusCodes.Status503ServiceUnavailable, "The gateway's quota store is unavailable, so requests cannot be admitted. Please retry shortly.",
            "server_error", null, "quota_store_unavailable")
        {
            // Every SDK retries a 503; a short wait gives the store a chance instead of three instant repeats.
            Headers = new Dictionary<string, string> { ["retry-after"] = "1", ["retry-after-ms"] = "1000" },
        };

    /// <summary>A fault of the gateway itself; the request id lets operators find the logged error.</summary>
    public static OpenAIError Internal(string requestId) =>
        new(StatusCodes.Status500InternalServerError,
            $"The gateway had an error while processing your request. You can retry your request, or contact the gateway's operators and include the request ID {requestId} in your message.",
            "server_error");

    /// <summary>Writes the envelope as the whole response. Callers check <see cref="HttpResponse.HasStarted"/> first.</summary>
    public Task WriteAsync(HttpContext context)
    {
        var response = context.Response;
        response.StatusCode = StatusCode;
        response.ContentType = "application/json";
        if (Headers is not null)
        {
            foreach (var (name, value) in Headers)
            {
                response.Headers[name] = value;
            }
        }

        var body = ToUtf8Json();
        response.ContentLength = body.Length;
        response.Headers[HeaderNames.CacheControl] = "no-store";
        return response.Body.WriteAsync(body, context.RequestAborted).AsTask();
    }

    public byte[] ToUtf8Json()
    {
        using var buffer = new MemoryStream(256);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            writer.WriteStartObject();
            writer.WriteStartObject("error"u8);
            writer.WriteString("message"u8, Message);
            writer.WriteString("type"u8, Type);
            WriteNullable(writer, "param"u8, Param);
            WriteNullable(writer, "code"u8, Code);
            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        return buffer.ToArray();
    }

    private static void WriteNullable(Utf8JsonWriter writer, ReadOnlySpan<byte> name, string? value)
    {
        if (value is null)
        {
            writer.WriteNull(name);
        }
        else
        {
            writer.WriteString(name, value);
        }
    }
}
