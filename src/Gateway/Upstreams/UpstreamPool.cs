using System.Collections.Frozen;
using Azure.Core;
using Azure.Identity;
using Gateway.Configuration;

namespace Gateway.Upstreams;

/// <summary>
/// Holds the current <see cref="UpstreamPoolSnapshot"/>, rebuilt from <c>Gateway:Upstreams</c> (or, when that is
/// empty, <c>Gateway:Upstream</c> as the upstream "default") on every valid reload. Connection pools are reused for
/// upstreams whose address and transport settings did not change; pools no longer used are disposed only after the
/// longest request could have finished on them, so in-flight requests keep working on their snapshot.
/// </summary>
internal sealed class UpstreamPool : IDisposable
{
    public const string DefaultUpstreamName = "default";

    /// <summary>The environment variable today's single upstream falls back to.</summary>
    public const string DefaultKeyEnvironmentVariable = "OPENAI_API_KEY";

    private readonly GatewaySettings _settings;
    private readonly IConfiguration _configuration;
    private readonly TimeProvider _time;
    private readonly ILogger<UpstreamPool> _logger;
    private readonly Lazy<EntraTokenCredentialSource> _entra;
    private readonly Lock _building = new();
    private volatile UpstreamPoolSnapshot _current;
    private bool _disposed;

    public UpstreamPool(GatewaySettings settings, IConfiguration configuration, TimeProvider time, ILogger<UpstreamPool> logger, Func<TokenCredential>? entraCredential = null)
    {
        _settings = settings;
        _configuration = configuration;
        _time = time;
        _logger = logger;
        // One token cache for every AzureIdentity upstream (same identity, same scope), created only when one is configured.
        _entra = new Lazy<EntraTokenCredentialSource>(() => new EntraTokenCredentialSource((entraCredential ?? (() => new DefaultAzureCredential()))(), time));
        var options = settings.Current;
        if (options.Upstreams.Count > 0 && configuration.GetSection("Gateway:Upstream").Exists())
        {
            UpstreamLog.SingleUpstreamIgnored(logger, options.Upstreams.Count);
        }

        _current = Build(options, previous: null);
        settings.Changed += OnChanged;
    }

    /// <summary>Take it once per request and use it for every attempt of that request.</summary>
    public UpstreamPoolSnapshot Current => _current;

    private void OnChanged(GatewayOptions options)
    {
        lock (_building)
        {
            if (_disposed)
            {
                return;
            }

            var previous = _current;
            var next = Build(options, previous);
            _current = next;
            UpstreamLog.PoolReloaded(_logger, next.Upstreams.Count);

            var kept = next.Upstreams.Select(u => u.Transport).ToHashSet();
            var retired = previous.Upstreams.Select(u => u.Transport).Where(t => !kept.Contains(t)).Distinct().ToList();
            if (retired.Count > 0)
            {
                var grace = retired.Max(t => t.Key.ConnectTimeout + t.Key.ActivityTimeout) + TimeSpan.FromMinutes(1);
                _ = Task.Delay(grace, _time).ContinueWith(_ => retired.ForEach(t => t.Invoker.Dispose()), TaskScheduler.Default);
            }
        }
    }

    private UpstreamPoolSnapshot Build(GatewayOptions options, UpstreamPoolSnapshot? previous)
    {
        var transports = new Dictionary<TransportKey, UpstreamTransport>();
        foreach (var upstream in previous?.Upstreams ?? [])
        {
            transports.TryAdd(upstream.Transport.Key, upstream.Transport);
        }

        UpstreamTransport TransportFor(TransportKey key)
        {
            if (!transports.TryGetValue(key, out var transport))
            {
                transport = UpstreamTransport.Create(key);
                transports[key] = transport;
            }

            return transport;
        }

        List<PoolUpstream> upstreams;
        if (options.Upstreams.Count == 0)
        {
            upstreams = [FromSingleUpstream(options.Upstream, TransportFor(TransportKey.From(DefaultUpstreamName, options.Upstream)))];
        }
        else
        {
            upstreams = options.Upstreams
                .Select(pair => FromPoolEntry(pair.Key, pair.Value, TransportFor(TransportKey.From(pair.Key, pair.Value))))
                .ToList();
        }

        upstreams.Sort((a, b) => a.Priority != b.Priority ? a.Priority.CompareTo(b.Priority) : string.CompareOrdinal(a.Name, b.Name));
        return new UpstreamPoolSnapshot(upstreams, options.Routing);
    }

    private PoolUpstream FromPoolEntry(string name, PoolUpstreamOptions options, UpstreamTransport transport)
    {
        var models = options.Models is { Count: > 0 } map ? map.ToFrozenDictionary(StringComparer.Ordinal) : null;
        return new PoolUpstream(
            name, transport.Key.BaseUrl, options.Priority, options.Weight, models, options.PriceMultiplier,
            options.Organization, options.Project, options.AuthHeader, transport, CredentialsFor(name, options));
    }

    private PoolUpstream FromSingleUpstream(UpstreamOptions options, UpstreamTransport transport)
    {
        var header = UpstreamAuthHeaderConverter.Parse(options.AuthHeader);
        IUpstreamCredentialSource credentials = !string.IsNullOrWhiteSpace(options.ApiKey)
            ? new StaticKeyCredentialSource(header, options.ApiKey.Trim())
            : !string.IsNullOrWhiteSpace(options.ApiKeyFile) && File.Exists(options.ApiKeyFile)
                ? FileSource(DefaultUpstreamName, header, options.ApiKeyFile)
                : new StaticKeyCredentialSource(header, (_configuration[DefaultKeyEnvironmentVariable] ?? "").Trim());

        // Gateway:Upstream has no PriceMultiplier on this branch; phase 2 maps it here once merged.
        return new PoolUpstream(
            DefaultUpstreamName, transport.Key.BaseUrl, Priority: 1, Weight: 1, Models: null, PriceMultiplier: 1m,
            options.Organization, options.Project, header, transport, credentials);
    }

    private IUpstreamCredentialSource CredentialsFor(string name, PoolUpstreamOptions options)
    {
        if (options.AuthHeader == UpstreamAuthHeader.AzureIdentity)
        {
            return _entra.Value;
        }

        if (!string.IsNullOrWhiteSpace(options.ApiKey))
        {
            return new StaticKeyCredentialSource(options.AuthHeader, options.ApiKey.Trim());
        }

        if (!string.IsNullOrWhiteSpace(options.ApiKeyFile))
        {
            return FileSource(name, options.AuthHeader, options.ApiKeyFile);
        }

        return new StaticKeyCredentialSource(options.AuthHeader, (_configuration[options.ApiKeyEnvironmentVariable ?? ""] ?? "").Trim());
    }

    private FileKeyCredentialSource FileSource(string name, UpstreamAuthHeader header, string path) =>
        new(header, path, _time, reason => UpstreamLog.KeyFileUnreadable(_logger, name, path, reason));

    public void Dispose()
    {
        lock (_building)
        {
            _disposed = true;
            _settings.Changed -= OnChanged;
            foreach (var transport in _current.Upstreams.Select(u => u.Transport).Distinct())
            {
                transport.Invoker.Dispose();
            }

            if (_entra.IsValueCreated)
            {
                _entra.Value.Dispose();
            }
        }
    }
}
