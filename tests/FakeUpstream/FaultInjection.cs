using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Primitives;

namespace FakeUpstream;

/// <summary>
/// Behaviour chosen per request by <c>x-fake-*</c> headers. Headers rather than query or body fields because the gateway
/// forwards unknown headers untouched, so a test talking to the gateway can still steer the upstream.
/// </summary>
internal sealed class FakeDirectives
{
    public int Deltas { get; private init; }

    public int DelayMs { get; private init; }

    public int FirstByteDelayMs { get; private init; }

    public int? Status { get; private init; }

    public string? ErrorType { get; private init; }

    public string? ErrorCode { get; private init; }

    public string? ErrorMessage { get; private init; }

    public int? RetryAfterSeconds { get; private init; }

    /// <summary>gzip | br | deflate (forced, whatever Accept-Encoding says), or null.</summary>
    public string? Encoding { get; private init; }

    public int? DropAfter { get; private init; }

    public string? Gate { get; private init; }

    public string? Replay { get; private init; }

    public int? InputTokens { get; private init; }

    public int? CachedTokens { get; private init; }

    public int? ReasoningTokens { get; private init; }

    public int BackgroundMs { get; private init; }

    public static FakeDirectives Parse(IHeaderDictionary headers, FakeUpstreamSettings settings) => new()
    {
        Deltas = Int(headers, "x-fake-deltas") ?? Math.Max(0, settings.DefaultDeltas),
        DelayMs = Int(headers, "x-fake-delay-ms") ?? Math.Max(0, settings.DefaultDelayMs),
        FirstByteDelayMs = Int(headers, "x-fake-first-byte-delay-ms") ?? 0,
        Status = Int(headers, "x-fake-status"),
        ErrorType = Text(headers, "x-fake-error-type"),
        ErrorCode = Text(headers, "x-fake-error-code"),
        ErrorMessage = Text(headers, "x-fake-error-message"),
        RetryAfterSeconds = Int(headers, "x-fake-retry-after"),
        Encoding = Compression.Normalize(Text(headers, "x-fake-encoding")),
        DropAfter = Int(headers, "x-fake-drop-after"),
        Gate = Text(headers, "x-fake-gate"),
        Replay = Text(headers, "x-fake-replay"),
        InputTokens = Int(headers, "x-fake-input-tokens"),
        CachedTokens = Int(headers, "x-fake-cached-tokens"),
        ReasoningTokens = Int(headers, "x-fake-reasoning-tokens"),
        BackgroundMs = Int(headers, "x-fake-background-ms") ?? 0,
    };

    /// <summary>Directives of an instance-wide mode: just the status and retry-after.</summary>
    public static FakeDirectives ForStatus(int status, int? retryAfterSeconds) => new() { Status = status, RetryAfterSeconds = retryAfterSeconds };

    private static string? Text(IHeaderDictionary headers, string name)
    {
        var value = headers[name];
        return StringValues.IsNullOrEmpty(value) ? null : value.ToString().Trim();
    }

    private static int? Int(IHeaderDictionary headers, string name)
    {
        var value = headers[name];
        if (StringValues.IsNullOrEmpty(value))
        {
            return null;
        }

        return int.TryParse(value.ToString(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? Math.Max(0, n) : null;
    }
}

/// <summary>Fault injection that is not tied to one endpoint.</summary>
internal static class FaultInjection
{
    /// <summary>Delays before anything is sent (<c>x-fake-first-byte-delay-ms</c>). False when the client gave up meanwhile.</summary>
    public static async Task<bool> DelayFirstByteAsync(HttpContext context, int delayMs)
    {
        try
        {
            // Timers may fire up to a clock tick early; tests use this pause as a lower bound, so hold it in full.
            var started = Stopwatch.GetTimestamp();
            var delay = TimeSpan.FromMilliseconds(delayMs);
            TimeSpan elapsed;
            while ((elapsed = Stopwatch.GetElapsedTime(started)) < delay)
            {
                await Task.Delay(delay - elapsed + TimeSpan.FromMilliseconds(1), context.Fake().WaitToken(context));
            }

            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>Fails, throttles or hangs as the instance's <see cref="FakeUpstreamMode"/> says.</summary>
    public static async Task ApplyModeAsync(HttpContext context, FakeUpstreamMode mode, CancellationToken stopping)
    {
        if (mode.Kind == FakeUpstreamModeKind.Hang)
        {
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, stopping);
            try
            {
                await Task.Delay(Timeout.Infinite, linked.Token);
            }
            catch (OperationCanceledException)
            {
                context.Abort(); // never a header, even at shutdown
            }

            return;
        }

        if (mode.RetryAfterMs is { } retryAfterMs)
        {
            context.Response.Headers["retry-after-ms"] = retryAfterMs.ToString(CultureInfo.InvariantCulture);
        }

        var status = mode.Kind == FakeUpstreamModeKind.Throttle ? 429 : mode.Status;
        await WriteInjectedErrorAsync(context, FakeDirectives.ForStatus(status, mode.RetryAfterSeconds));
    }

    /// <summary>Answers <c>x-fake-status</c> with the OpenAI error envelope; defaults mirror what the real API sends for that status.</summary>
    public static Task WriteInjectedErrorAsync(HttpContext context, FakeDirectives directives)
    {
        var status = directives.Status!.Value;
        var (type, code, message) = status switch
        {
            400 => ("invalid_request_error", (string?)null, "Invalid request (injected by x-fake-status)."),
            401 => ("invalid_request_error", "invalid_api_key", FakeApp.IncorrectKeyMessage(context.Request.Headers.Authorization.ToString())),
            403 => ("invalid_request_error", "unsupported_country_region_territory", "Country, region, or territory not supported"),
            404 => ("invalid_request_error", null, "Not found (injected by x-fake-status)."),
            409 => ("invalid_request_error", null, "Conflict (injected by x-fake-status)."),
            429 => ("requests", "rate_limit_exceeded", "Rate limit reached for gpt-4o-mini in organization org-fake on requests per min (RPM): Limit 30000, Used 30000, Requested 1. Please try again in 2ms."),
            503 => ("service_unavailable_error", null, "The server is overloaded or not ready yet."),
            _ when status >= 500 => ("server_error", null, "The server had an error while processing your request. Sorry about that!"),
            _ => ("invalid_request_error", null, "Error injected by x-fake-status."),
        };

        if (directives.RetryAfterSeconds is { } retryAfter)
        {
            context.Response.Headers.RetryAfter = retryAfter.ToString(CultureInfo.InvariantCulture);
        }

        if (status == 429)
        {
            OpenAiWire.ApplyRateLimitHeaders(context.Response, exhausted: true);
        }

        return OpenAiWire.WriteErrorAsync(
            context,
            status,
            directives.ErrorMessage ?? message,
            directives.ErrorType ?? type,
            param: null,
            directives.ErrorCode ?? code);
    }
}
