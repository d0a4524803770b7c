using System.Diagnostics.Metrics;
using System.Globalization;
using Gateway.Configuration;
using Gateway.Observability;
using StackExchange.Redis;

namespace Gateway.SharedState;

/// <summary>
/// Notices a Redis that lost its data: restarted without persistence, flushed, or failed over to an empty replica.
/// Such a Redis answers as if nothing happened (a fast restart may not even log <c>StoreDown</c>), while every
/// quota window and budget has reset and every ownership record is gone. The gateway keeps one marker key,
/// <c>{prefix}:instance-marker</c>, holding the time it was first written and no TTL (the one key without one);
/// each replica reads it (writing it where missing) at start, after every reconnect and every
/// <c>Gateway:Quotas:RedisDataLossCheckInterval</c> (30 s). A marker missing, or different from the one this replica
/// saw last (another replica found it missing first and wrote it anew), means the data is gone: <c>RedisDataLost</c>
/// at Error and <c>gateway_store_data_loss_total</c>, once per loss on every replica.
/// </summary>
internal sealed partial class RedisDataLossMonitor : BackgroundService
{
    public const string MarkerName = "instance-marker";

    // KEYS: 1 marker; ARGV: 1 now. Returns the marker in force: the existing one, or ARGV[1] written without a TTL.
    private const string MarkerScript = """
        local v = redis.call('GET', KEYS[1])
        if v then return v end
        redis.call('SET', KEYS[1], ARGV[1])
        return ARGV[1]
        """;

    private readonly IServiceProvider _services;
    private readonly GatewaySettings _settings;
    private readonly TimeProvider _time;
    private readonly ILogger<RedisDataLossMonitor> _logger;
    private readonly Counter<long> _losses;
    private TaskCompletionSource _reconnected = NewSignal();
    private (string Value, DateTimeOffset At)? _markerSeen;

    public RedisDataLossMonitor(IServiceProvider services, GatewaySettings settings, TimeProvider time, IMeterFactory meters, ILogger<RedisDataLossMonitor> logger)
    {
        _services = services;
        _settings = settings;
        _time = time;
        _logger = logger;
        _losses = meters.Create(GatewayMetrics.MeterName).CreateCounter<long>("gateway.store.data_loss", "{event}",
            "Times the shared store was found to have lost its data (the instance marker was gone).");
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await Task.Yield(); // connecting can block for the connect timeout: never hold up the host's start
        var quotas = _settings.Current.Quotas;
        if (string.IsNullOrWhiteSpace(quotas.RedisConnectionString))
        {
            return; // the in-process store has nothing to lose that a restart does not also reset
        }

        var redis = _services.GetRequiredService<IConnectionMultiplexer>();
        var marker = new RedisKey(quotas.RedisKeyPrefix + ":" + MarkerName);
        var interval = quotas.RedisDataLossCheckInterval;
        redis.ConnectionRestored += OnConnectionRestored;
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                var reconnected = Volatile.Read(ref _reconnected).Task; // taken before the check: a reconnect during it still counts
                await CheckAsync(redis.GetDatabase(), marker);

                // Whichever comes first: the next period, or a reconnect (the moment a restarted Redis is back).
                using var period = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                await Task.WhenAny(Task.Delay(interval, _time, period.Token), reconnected);
                await period.CancelAsync();
                if (reconnected.IsCompleted)
                {
                    Interlocked.Exchange(ref _reconnected, NewSignal());
                }
            }
        }
        finally
        {
            redis.ConnectionRestored -= OnConnectionRestored;
        }
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    private void OnConnectionRestored(object? sender, ConnectionFailedEventArgs e)
    {
        if (e.ConnectionType == ConnectionType.Interactive)
        {
            Volatile.Read(ref _reconnected).TrySetResult();
        }
    }

    private async Task CheckAsync(IDatabase database, RedisKey marker)
    {
        var now = _time.GetUtcNow();
        string current;
        try
        {
            // One atomic step reads the marker and writes it where it is missing.
            current = (string)(await database.ScriptEvaluateAsync(MarkerScript, [marker], [now.ToString("O", CultureInfo.InvariantCulture)]))!;
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            return; // unreachable: the stores report that (StoreDown); the check runs again on reconnect
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // Never let the check take the host down (a failed BackgroundService stops it); try again next period.
            RedisMarkerCheckFailed(_logger, ex.GetType().Name);
            return;
        }

        // A different marker than the one seen before: this replica or another one found it missing and wrote it anew.
        if (_markerSeen is { } seen && !string.Equals(seen.Value, current, StringComparison.Ordinal))
        {
            _losses.Add(1);
            RedisDataLost(_logger, marker.ToString(), seen.At);
        }

        if (_markerSeen is null)
        {
            RedisMarkerFound(_logger, marker.ToString(), current);
        }

        _markerSeen = (current, now);
    }

    [LoggerMessage(EventId = 4050, EventName = "RedisDataLost", Level = LogLevel.Error,
        Message = "Redis lost its data: the marker {Marker} was gone or written anew (last seen {MarkerLastSeen:O}). Quota windows, budgets, counted response ids and object ownership from before are lost; see docs/operations.md, Redis data loss.")]
    private static partial void RedisDataLost(ILogger logger, string marker, DateTimeOffset markerLastSeen);

    [LoggerMessage(EventId = 4051, EventName = "RedisMarker", Level = LogLevel.Information,
        Message = "Redis data loss detection on: the marker {Marker} says this Redis has held the gateway's data since {MarkerSince}.")]
    private static partial void RedisMarkerFound(ILogger logger, string marker, string markerSince);

    [LoggerMessage(EventId = 4052, EventName = "RedisMarkerCheckFailed", Level = LogLevel.Warning,
        Message = "The Redis data loss check failed ({ErrorType}); it runs again at the next period.")]
    private static partial void RedisMarkerCheckFailed(ILogger logger, string errorType);
}
