using Microsoft.Extensions.Options;

namespace Gateway.Configuration;

/// <summary>
/// The current, validated <see cref="GatewayOptions"/>. The configuration file is reloaded on change; a
/// change that fails validation is logged and ignored, so a typo in a live edit never takes the gateway down.
/// (Registering the validator with IOptionsMonitor instead would throw from the file watcher's callback.)
/// </summary>
internal sealed class GatewaySettings : IDisposable
{
    private readonly GatewayOptionsValidator _validator;
    private readonly ILogger<GatewaySettings> _logger;
    private readonly IDisposable? _registration;
    private volatile GatewayOptions _current;

    public GatewaySettings(IOptionsMonitor<GatewayOptions> monitor, GatewayOptionsValidator validator, ILogger<GatewaySettings> logger)
    {
        _validator = validator;
        _logger = logger;
        var initial = monitor.CurrentValue;
        var result = validator.Validate(Options.DefaultName, initial);
        if (result.Failed)
        {
            throw new OptionsValidationException(Options.DefaultName, typeof(GatewayOptions), result.Failures);
        }

        _current = initial;
        _registration = monitor.OnChange(OnReload);
    }

    public GatewayOptions Current => _current;

    /// <summary>Raised after a valid new configuration replaced the current one.</summary>
    public event Action<GatewayOptions>? Changed;

    private void OnReload(GatewayOptions next)
    {
        var result = _validator.Validate(Options.DefaultName, next);
        if (result.Failed)
        {
            SettingsLog.ReloadRejected(_logger, result.FailureMessage);
            return;
        }

        _current = next;
        SettingsLog.Reloaded(_logger, next.Tenants.Count);
        Changed?.Invoke(next);
    }

    public void Dispose() => _registration?.Dispose();
}

internal static partial class SettingsLog
{
    [LoggerMessage(EventId = 1101, EventName = "ConfigurationReloaded", Level = LogLevel.Information,
        Message = "Configuration reloaded: {TenantCount} tenants")]
    public static partial void Reloaded(ILogger logger, int tenantCount);

    [LoggerMessage(EventId = 1102, EventName = "ConfigurationReloadRejected", Level = LogLevel.Error,
        Message = "Configuration change rejected, the previous configuration stays in force: {Reason}")]
    public static partial void ReloadRejected(ILogger logger, string reason);
}
