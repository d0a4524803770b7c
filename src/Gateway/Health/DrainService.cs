using Gateway.Configuration;

namespace Gateway.Health;

/// <summary>
/// Graceful drain. On SIGTERM the host calls <see cref="StoppingAsync"/> before Kestrel stops listening: the
/// gateway turns unready, keeps serving for <c>Gateway:Shutdown:DrainDelay</c> while load balancers notice, then
/// Kestrel stops accepting and waits for in-flight requests and streams up to <c>DrainTimeout</c>
/// (the host's shutdown timeout is set to the sum). Serilog is disposed last, flushing every usage event.
/// </summary>
internal sealed class DrainService(DrainState state, GatewaySettings settings, TimeProvider time, ILogger<DrainService> logger) : IHostedLifecycleService
{
    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        state.Begin();
        var delay = settings.Current.Shutdown.DrainDelay;
        DrainLog.Draining(logger, delay.TotalSeconds, settings.Current.Shutdown.DrainTimeout.TotalSeconds);
        if (delay > TimeSpan.Zero)
        {
            try
            {
                await Task.Delay(delay, time, cancellationToken);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

internal static partial class DrainLog
{
    [LoggerMessage(EventId = 7001, EventName = "Draining", Level = LogLevel.Warning,
        Message = "Shutdown requested: not ready; serving new requests for {DelaySeconds} s, then waiting up to {TimeoutSeconds} s for in-flight requests")]
    public static partial void Draining(ILogger logger, double delaySeconds, double timeoutSeconds);
}
