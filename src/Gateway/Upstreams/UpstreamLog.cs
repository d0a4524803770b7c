namespace Gateway.Upstreams;

/// <summary>Events 8300–8319, and 2001 (the single upstream's key event, id kept). Never log a key, token or body here.</summary>
internal static partial class UpstreamLog
{
    [LoggerMessage(EventId = 8300, EventName = "UpstreamCoolingDown", Level = LogLevel.Warning,
        Message = "Upstream {Upstream} cooling down for model {Model} ({Reason}) for {CooldownSeconds} s")]
    public static partial void CoolingDown(ILogger logger, string upstream, string model, string reason, double cooldownSeconds);

    [LoggerMessage(EventId = 8301, EventName = "UpstreamRecovered", Level = LogLevel.Information,
        Message = "Upstream {Upstream} recovered (model {Model})")]
    public static partial void Recovered(ILogger logger, string upstream, string model);

    [LoggerMessage(EventId = 8302, EventName = "UpstreamAuthRejected", Level = LogLevel.Error,
        Message = "Upstream {Upstream} refused our credentials ({StatusCode}); cooling it for {CooldownSeconds} s. Check its key or identity")]
    public static partial void AuthFailed(ILogger logger, string upstream, int statusCode, double cooldownSeconds);

    [LoggerMessage(EventId = 8303, EventName = "UpstreamSettingIgnored", Level = LogLevel.Warning,
        Message = "Gateway:Upstreams has {UpstreamCount} upstreams, so Gateway:Upstream is not used")]
    public static partial void SingleUpstreamIgnored(ILogger logger, int upstreamCount);

    [LoggerMessage(EventId = 8304, EventName = "UpstreamPoolReloaded", Level = LogLevel.Information,
        Message = "Upstream pool rebuilt: {UpstreamCount} upstreams")]
    public static partial void PoolReloaded(ILogger logger, int upstreamCount);

    [LoggerMessage(EventId = 8305, EventName = "UpstreamKeyFileUnreadable", Level = LogLevel.Error,
        Message = "Key file {Path} of upstream {Upstream} could not be read ({Reason}); keeping the previous key")]
    public static partial void KeyFileUnreadable(ILogger logger, string upstream, string path, string reason);

    [LoggerMessage(EventId = 2001, EventName = "UpstreamKeyChanged", Level = LogLevel.Information,
        Message = "Upstream {Upstream} key loaded from {Source}")]
    public static partial void KeyChanged(ILogger logger, string upstream, string source);

    [LoggerMessage(EventId = 8310, EventName = "PinnedUpstreamGone", Level = LogLevel.Warning,
        Message = "Tenant {Tenant} named {ObjectKind} {ObjectId} ({Where}) held by upstream {Upstream}, which is no longer configured; answered not found {RequestId}")]
    public static partial void PinnedUpstreamGone(ILogger logger, string tenant, string objectKind, string objectId, string where, string upstream, string requestId);

    [LoggerMessage(EventId = 8311, EventName = "NoUpstreamAnswered", Level = LogLevel.Warning,
        Message = "No upstream could serve model {Model} after {Attempts} attempts; answered {StatusCode}, soonest recovery in {RetryAfterSeconds} s {RequestId}")]
    public static partial void NoUpstreamAnswered(ILogger logger, string? model, int attempts, int statusCode, double retryAfterSeconds, string requestId);
}
