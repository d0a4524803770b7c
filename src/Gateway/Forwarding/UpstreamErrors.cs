using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Gateway.Errors;
using Gateway.Quotas;
using Microsoft.Net.Http.Headers;

namespace Gateway.Forwarding;

/// <summary>
/// What an upstream error may tell a tenant. The upstream's credentials and organization are the gateway's secret:
/// a 401/403 (the upstream refused the gateway's key, or its organization) is answered by the gateway itself as a 502
/// <c>upstream_auth_failed</c> carrying none of the upstream's text; any other error body passes with organization and
/// project ids and masked key fragments removed. Success bodies are never touched here.
/// </summary>
internal static partial class UpstreamErrors
{
    public const string Redacted = "[redacted]";

    private static readonly JsonSerializerOptions IndentedRelaxed = new()
    {
        WriteIndented = true,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    // Error bodies are small envelopes; anything larger is not read whole but replaced by a generic envelope.
    private const int MaxErrorBodyBytes = 64 * 1024;

    /// <summary>
    /// The upstream refused the gateway's credentials: any 401, and a 403 other than OpenAI's "project does not have
    /// access to model" (code <c>model_not_found</c>), which the tenant's choice of model causes and may be told.
    /// </summary>
    public static bool IsCredentialRefusal(int status, UpstreamErrorBody error) =>
        status == StatusCodes.Status401Unauthorized
        || (status == StatusCodes.Status403Forbidden && error.Code != "model_not_found");

    /// <summary>
    /// Removes what identifies the upstream account: <c>org-…</c>, <c>proj_…</c>, <c>sk-…</c> (masked or whole, with
    /// <c>…</c> or <c>*</c> masks), any other <c>***</c>-masked token, and <paramref name="upstreamKey"/> itself.
    /// </summary>
    public static string Scrub(string text, string? upstreamKey)
    {
        if (!string.IsNullOrEmpty(upstreamKey) && upstreamKey.Length >= 8)
        {
            text = text.Replace(upstreamKey, Redacted, StringComparison.Ordinal);
        }

        return AccountIdentifiers().Replace(text, Redacted);
    }

    /// <summary>
    /// Reads the upstream's 401/403 (bounded), logs it for operators with the account identifiers removed, and
    /// answers the tenant with the gateway's own 502. The upstream's headers are not copied.
    /// </summary>
    public static async Task AnswerAuthFailureAsync(HttpContext context, UpstreamCall call, UpstreamErrorBody upstreamError,
        string? upstreamKey, ILogger logger)
    {
        var (code, message) = (upstreamError.Code, upstreamError.Message);
        var requestId = call.Request.RequestId;
        UpstreamErrorLog.UpstreamAuthFailed(logger, call.Status, code is null ? null : Scrub(Truncate(code), upstreamKey),
            message is null ? null : Scrub(Truncate(message), upstreamKey), call.UpstreamRequestId, requestId, call.Request.Tenant.Id);

        var error = new OpenAIError(StatusCodes.Status502BadGateway,
            $"The upstream API refused the gateway's credentials, so your request was not processed. The gateway's operators have been alerted (request {requestId}).",
            "server_error", null, "upstream_auth_failed");
        var headers = context.Response.Headers;
        headers["x-request-id"] = requestId;
        RateLimitHeaders.Apply(headers, call.QuotaStatus);
        await error.WriteAsync(context);
    }

    /// <summary>
    /// Replaces the body of an upstream error answer (status and headers already copied) by the scrubbed text.
    /// A body the gateway cannot read as text within the bound becomes a generic envelope of the same status.
    /// </summary>
    public static async Task WriteScrubbedAsync(HttpContext context, UpstreamErrorBody upstreamError, string? upstreamKey, CancellationToken cancellationToken)
    {
        var response = context.Response;
        var (body, complete) = (upstreamError.Bytes, upstreamError.Complete);
        response.Headers.Remove(HeaderNames.ContentEncoding); // read decoded
        byte[] output;
        if (!complete)
        {
            response.ContentType = "application/json";
            output = new OpenAIError(response.StatusCode, $"The upstream API returned an error (status {response.StatusCode}).",
                response.StatusCode >= 500 ? "server_error" : "invalid_request_error").ToUtf8Json();
        }
        else
        {
            output = ScrubBody(body, upstreamKey) ?? body;
        }

        response.ContentLength = output.Length;
        if (!HttpMethods.IsHead(context.Request.Method))
        {
            await response.Body.WriteAsync(output, cancellationToken);
        }
    }

    /// <summary>
    /// The body with account identifiers removed, or null when it has none. A JSON body is scrubbed value by value
    /// after unescaping (so <c>org\u002d…</c> is caught too) and written again indented, as OpenAI writes its errors;
    /// anything else is scrubbed as text.
    /// </summary>
    public static byte[]? ScrubBody(byte[] body, string? upstreamKey)
    {
        try
        {
            if (JsonNode.Parse(body) is { } root)
            {
                return ScrubStrings(root, upstreamKey) ? Encoding.UTF8.GetBytes(root.ToJsonString(IndentedRelaxed)) : null;
            }
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or ArgumentException)
        {
            // Not JSON, or strings .NET cannot decode (a lone surrogate): scrub the raw text instead.
        }

        var text = Encoding.UTF8.GetString(body);
        var scrubbed = Scrub(text, upstreamKey);
        return text == scrubbed ? null : Encoding.UTF8.GetBytes(scrubbed);
    }

    private static bool ScrubStrings(JsonNode node, string? upstreamKey)
    {
        var changed = false;
        switch (node)
        {
            case JsonObject obj:
                foreach (var (name, child) in obj.ToArray())
                {
                    if (child is JsonValue value && value.TryGetValue<string>(out var text))
                    {
                        var scrubbed = Scrub(text, upstreamKey);
                        if (scrubbed != text)
                        {
                            obj[name] = scrubbed;
                            changed = true;
                        }
                    }
                    else if (child is not null)
                    {
                        changed |= ScrubStrings(child, upstreamKey);
                    }
                }

                break;
            case JsonArray array:
                for (var i = 0; i < array.Count; i++)
                {
                    if (array[i] is JsonValue value && value.TryGetValue<string>(out var text))
                    {
                        var scrubbed = Scrub(text, upstreamKey);
                        if (scrubbed != text)
                        {
                            array[i] = scrubbed;
                            changed = true;
                        }
                    }
                    else if (array[i] is { } child)
                    {
                        changed |= ScrubStrings(child, upstreamKey);
                    }
                }

                break;
        }

        return changed;
    }

    /// <summary>Reads an upstream error body, decoded, up to the bound.</summary>
    public static async Task<UpstreamErrorBody> ReadAsync(HttpResponseMessage upstream, CancellationToken cancellationToken)
    {
        var (body, complete) = await ReadBoundedAsync(upstream, cancellationToken);
        var (code, message) = complete ? ErrorFields(body) : (null, null);
        return new UpstreamErrorBody(body, complete, code, message);
    }

    private static async Task<(byte[] Body, bool Complete)> ReadBoundedAsync(HttpResponseMessage upstream, CancellationToken cancellationToken)
    {
        var content = upstream.Content;
        var encodings = content.Headers.ContentEncoding;
        await using var raw = await content.ReadAsStreamAsync(cancellationToken);
        Stream stream = raw;
        if (encodings.Count > 0)
        {
            if (!ContentDecoding.IsSupported(encodings))
            {
                return ([], false);
            }

            stream = ContentDecoding.Decode(raw, encodings);
        }

        try
        {
            using var buffer = new MemoryStream();
            var chunk = new byte[8192];
            int read;
            while ((read = await stream.ReadAsync(chunk, cancellationToken)) > 0)
            {
                buffer.Write(chunk, 0, read);
                if (buffer.Length > MaxErrorBodyBytes)
                {
                    return ([], false);
                }
            }

            return (buffer.ToArray(), true);
        }
        catch (Exception ex) when (ex is IOException or InvalidDataException)
        {
            // A broken or undecodable error body: the tenant gets the generic envelope, never partial upstream bytes.
            return ([], false);
        }
        finally
        {
            if (!ReferenceEquals(stream, raw))
            {
                await stream.DisposeAsync();
            }
        }
    }

    private static (string? Code, string? Message) ErrorFields(byte[] body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            if (document.RootElement.ValueKind == JsonValueKind.Object
                && document.RootElement.TryGetProperty("error", out var error) && error.ValueKind == JsonValueKind.Object)
            {
                return (StringOf(error, "code"), StringOf(error, "message"));
            }
        }
        catch (JsonException)
        {
        }

        return (null, null);

        static string? StringOf(JsonElement error, string name) =>
            error.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
    }

    private static string Truncate(string text) => text.Length <= 512 ? text : text[..512];

    // org-…, proj_…, sk-… (letters, digits, '-', '_', '*', '…' or its JSON escape), and any token masked with *** .
    [GeneratedRegex(@"\borg-[A-Za-z0-9]+|\bproj_[A-Za-z0-9]+|\bsk-(?:[A-Za-z0-9_*-]|…|\\u2026)+|[A-Za-z0-9_-]*\*{3,}[A-Za-z0-9_*-]*", RegexOptions.CultureInvariant)]
    private static partial Regex AccountIdentifiers();
}

/// <summary>An upstream error body as read: its decoded bytes (empty unless <paramref name="Complete"/>) and envelope fields.</summary>
internal sealed record UpstreamErrorBody(byte[] Bytes, bool Complete, string? Code, string? Message);

internal static partial class UpstreamErrorLog
{
    [LoggerMessage(EventId = 8111, EventName = "UpstreamAuthFailed", Level = LogLevel.Error,
        Message = "The upstream refused the gateway's credentials ({UpstreamStatus} {UpstreamErrorCode}: {UpstreamMessage}) on {UpstreamRequestId} for {RequestId} of tenant {Tenant}; check Gateway:Upstream:ApiKey, Organization and Project")]
    public static partial void UpstreamAuthFailed(ILogger logger, int upstreamStatus, string? upstreamErrorCode, string? upstreamMessage,
        string? upstreamRequestId, string requestId, string? tenant);
}
