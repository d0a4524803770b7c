using Gateway.Configuration;

namespace Gateway.Forwarding;

/// <summary>
/// The real upstream key and the header that carries it. Precedence: <c>Gateway:Upstream:ApiKey</c>,
/// then <c>Gateway:Upstream:ApiKeyFile</c>, then the <c>OPENAI_API_KEY</c> environment variable.
/// The file is re-read every few seconds so a rotated Kubernetes secret takes effect without a restart.
/// </summary>
internal sealed class UpstreamCredentials : IDisposable
{
    public const string EnvironmentVariable = "OPENAI_API_KEY";
    private static readonly TimeSpan FilePollInterval = TimeSpan.FromSeconds(5);

    private readonly GatewaySettings _settings;
    private readonly IConfiguration _configuration;
    private readonly ILogger<UpstreamCredentials> _logger;
    private readonly ITimer _fileTimer;
    private readonly Lock _refreshing = new(); // the poll timer and a config reload may refresh at the same time
    private volatile Credential _current;

    public UpstreamCredentials(GatewaySettings settings, IConfiguration configuration, TimeProvider time, ILogger<UpstreamCredentials> logger)
    {
        _settings = settings;
        _configuration = configuration;
        _logger = logger;
        _current = Resolve(settings.Current.Upstream);
        settings.Changed += OnSettingsChanged;
        _fileTimer = time.CreateTimer(_ => Refresh(_settings.Current.Upstream), null, FilePollInterval, FilePollInterval);
    }

    private void OnSettingsChanged(GatewayOptions options) => Refresh(options.Upstream);

    /// <summary>Header name (<c>Authorization</c> or <c>api-key</c>).</summary>
    public string HeaderName => _current.HeaderName;

    /// <summary>Header value (<c>Bearer sk-…</c> or the bare key). Never log it.</summary>
    public string HeaderValue => _current.HeaderValue;

    private void Refresh(UpstreamOptions upstream)
    {
        try
        {
            lock (_refreshing)
            {
                var next = Resolve(upstream);
                if (next != _current)
                {
                    _current = next;
                    CredentialsLog.UpstreamKeyChanged(_logger, next.Source);
                }
            }
        }
        catch (IOException ex)
        {
            CredentialsLog.UpstreamKeyFileUnreadable(_logger, upstream.ApiKeyFile ?? "", ex.Message);
        }
        catch (UnauthorizedAccessException ex)
        {
            CredentialsLog.UpstreamKeyFileUnreadable(_logger, upstream.ApiKeyFile ?? "", ex.Message);
        }
    }

    private Credential Resolve(UpstreamOptions upstream)
    {
        string key;
        string source;
        if (!string.IsNullOrWhiteSpace(upstream.ApiKey))
        {
            (key, source) = (upstream.ApiKey.Trim(), "Gateway:Upstream:ApiKey");
        }
        else if (!string.IsNullOrWhiteSpace(upstream.ApiKeyFile) && File.Exists(upstream.ApiKeyFile))
        {
            (key, source) = (File.ReadAllText(upstream.ApiKeyFile).Trim(), "Gateway:Upstream:ApiKeyFile");
        }
        else
        {
            (key, source) = ((_configuration[EnvironmentVariable] ?? "").Trim(), EnvironmentVariable);
        }

        var azureStyle = string.Equals(upstream.AuthHeader, "api-key", StringComparison.OrdinalIgnoreCase);
        return azureStyle
            ? new Credential("api-key", key, source)
            : new Credential("Authorization", key.Length == 0 ? "" : "Bearer " + key, source);
    }

    public void Dispose()
    {
        _fileTimer.Dispose();
        _settings.Changed -= OnSettingsChanged;
    }

    private sealed record Credential(string HeaderName, string HeaderValue, string Source);
}

internal static partial class CredentialsLog
{
    [LoggerMessage(EventId = 2001, EventName = "UpstreamKeyChanged", Level = LogLevel.Information,
        Message = "Upstream key loaded from {Source}")]
    public static partial void UpstreamKeyChanged(ILogger logger, string source);

    [LoggerMessage(EventId = 2002, EventName = "UpstreamKeyFileUnreadable", Level = LogLevel.Error,
        Message = "Upstream key file {Path} could not be read ({Reason}); keeping the previous key")]
    public static partial void UpstreamKeyFileUnreadable(ILogger logger, string path, string reason);
}
