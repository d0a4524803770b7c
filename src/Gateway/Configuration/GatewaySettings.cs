using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;

namespace Gateway.Configuration;

/// <summary>
/// The current, validated <see cref="GatewayOptions"/>. The configuration file is reloaded on change; a change that
/// does not bind (e.g. <c>"DrainTimeout": "soon"</c>) or fails validation is logged and ignored, so a typo in a live
/// edit never takes the gateway down. The section is bound here rather than through IOptionsMonitor, whose binding
/// errors would be thrown (and lost) inside the file watcher's callback.
/// </summary>
internal sealed class GatewaySettings : IDisposable
{
    private readonly IConfiguration _configuration;
    private readonly GatewayOptionsValidator _validator;
    private readonly ILogger<GatewaySettings> _logger;
    private readonly IDisposable _registration;
    private volatile GatewayOptions _current;

    public GatewaySettings(IConfiguration configuration, GatewayOptionsValidator validator, ILogger<GatewaySettings> logger)
    {
        _configuration = configuration;
        _validator = validator;
        _logger = logger;
        var initial = Bind(); // binding errors at start propagate: the process must not start on a broken file
        var result = validator.Validate(Options.DefaultName, initial);
        if (result.Failed)
        {
            throw new OptionsValidationException(Options.DefaultName, typeof(GatewayOptions), result.Failures);
        }

        _current = initial;
        _registration = ChangeToken.OnChange(configuration.GetReloadToken, OnReload);
    }

    public GatewayOptions Current => _current;

    /// <summary>Raised after a valid new configuration replaced the current one.</summary>
    public event Action<GatewayOptions>? Changed;

    private GatewayOptions Bind()
    {
        var options = new GatewayOptions();
        _configuration.GetSection(GatewayOptions.SectionName).Bind(options);
        options.Quotas.RedisConnectionString = _configuration[QuotaOptions.RedisConnectionStringKey];
        return options;
    }

    private void OnReload()
    {
        GatewayOptions next;
        try
        {
            next = Bind();
        }
        catch (InvalidOperationException ex)
        {
            SettingsLog.ReloadRejected(_logger, ex.InnerException?.Message ?? ex.Message);
            return;
        }

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

    public void Dispose() => _registration.Dispose();
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
