using Gateway.Configuration;
using Gateway.Tenants;
using Gateway.Upstreams;
using Gateway.Usage;

namespace Gateway.Hosting;

/// <summary>
/// Builds the expensive singletons at start (the tokenizer's vocabulary takes a few hundred milliseconds to load)
/// so the first request does not pay for them, and so a bad configuration fails the start, not the first request.
/// Then, with <c>Gateway:Warmup:Enabled</c>, drives the whole pipeline with synthetic requests
/// (<see cref="PipelineWarmup"/>). Hosted services start before the server, so the port opens only after this.
/// </summary>
internal sealed class StartupWarmup(IServiceProvider services, GatewaySettings settings, ILogger<StartupWarmup> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        services.GetRequiredService<TenantDirectory>();
        services.GetRequiredService<UpstreamRouter>(); // the pool: reads the upstream keys
        services.GetRequiredService<TokenCounter>().Count("warm up the o200k_base vocabulary");

        var options = settings.Current.Warmup;
        if (!options.Enabled)
        {
            return;
        }

        var started = TimeProvider.System.GetTimestamp();
        WarmupLog.Started(logger, options.MaxSeconds);
        try
        {
            var result = await PipelineWarmup.RunAsync(services, options, cancellationToken);
            var elapsedMs = (long)result.Elapsed.TotalMilliseconds;
            if (result.Failures == 0 && result.Requests > 0)
            {
                WarmupLog.Completed(logger, result.Requests, elapsedMs, result.MethodsCompiled, result.JitSettled);
            }
            else
            {
                WarmupLog.CompletedWithFailures(logger, result.Requests, result.Failures, elapsedMs, result.MethodsCompiled, result.JitSettled);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // SIGTERM while starting (a rollout replaced the pod): stop warming up and let the host shut down as usual.
            WarmupLog.Cancelled(logger, (long)TimeProvider.System.GetElapsedTime(started).TotalMilliseconds);
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            // A warm-up only makes the first seconds faster: never a reason not to start.
            WarmupLog.Failed(logger, ex, (long)TimeProvider.System.GetElapsedTime(started).TotalMilliseconds);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

internal static partial class WarmupLog
{
    [LoggerMessage(EventId = 8474, EventName = "WarmupStarted", Level = LogLevel.Information,
        Message = "Warm-up: driving the pipeline with synthetic requests for at most {WarmupMaxSeconds} s before the port opens")]
    public static partial void Started(ILogger logger, double warmupMaxSeconds);

    [LoggerMessage(EventId = 8470, EventName = "WarmupCompleted", Level = LogLevel.Information,
        Message = "Warm-up: {WarmupRequests} synthetic requests through the whole pipeline in {WarmupMs} ms, {MethodsCompiled} methods compiled, JIT settled: {JitSettled}")]
    public static partial void Completed(ILogger logger, int warmupRequests, long warmupMs, long methodsCompiled, bool jitSettled);

    [LoggerMessage(EventId = 8471, EventName = "WarmupCompletedWithFailures", Level = LogLevel.Warning,
        Message = "Warm-up: {WarmupFailures} of {WarmupRequests} synthetic requests failed (in {WarmupMs} ms, {MethodsCompiled} methods compiled, JIT settled: {JitSettled}); starting anyway")]
    public static partial void CompletedWithFailures(ILogger logger, int warmupRequests, int warmupFailures, long warmupMs, long methodsCompiled, bool jitSettled);

    [LoggerMessage(EventId = 8473, EventName = "WarmupCancelled", Level = LogLevel.Information,
        Message = "Warm-up cancelled after {WarmupMs} ms: the gateway is stopping")]
    public static partial void Cancelled(ILogger logger, long warmupMs);

    [LoggerMessage(EventId = 8472, EventName = "WarmupFailed", Level = LogLevel.Warning,
        Message = "Warm-up failed after {WarmupMs} ms; starting without it")]
    public static partial void Failed(ILogger logger, Exception exception, long warmupMs);
}
