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

    /// <summary>The environment variable the single upstream falls back to.</summary>
    public const string DefaultKeyEnvironmentVariable = UpstreamOptions.DefaultKeyEnvironmentVariable;

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

        // A key file keeps its reader (last key, last read) across reloads, so a rotation is noticed and logged once.
        var keyFiles = new Dictionary<string, FileKeyCredentialSource>(StringComparer.OrdinalIgnoreCase);
        foreach (var upstream in previous?.Upstreams ?? [])
        {
            if (upstream.Credentials is FileKeyCredentialSource file)
            {
                keyFiles[upstream.Name] = file;
            }
        }

        FileKeyCredentialSource FileSource(string name, string source, UpstreamAuthHeader header, string path, string? keyWhileFileMissing)
        {
            if (keyFiles.TryGetValue(name, out var kept) && kept.Identity == (header, path, keyWhileFileMissing))
            {
                return kept;
            }

            return new FileKeyCredentialSource(header, path, keyWhileFileMissing, _time, new KeyFileEvents(
                () => UpstreamLog.KeyChanged(_logger, name, source),
                reason => UpstreamLog.KeyFileUnreadable(_logger, name, path, reason)));
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
            upstreams = [FromSingleUpstream(options.Upstream, TransportFor(TransportKey.From(DefaultUpstreamName, options.Upstream)), FileSource)];
        }
        else
        {
            upstreams = options.Upstreams
                .Select(pair => FromPoolEntry(pair.Key, pair.Value, TransportFor(TransportKey.From(pair.Key, pair.Value)), FileSource))
                .ToList();
        }

        upstreams.Sort((a, b) => a.Priority != b.Priority ? a.Priority.CompareTo(b.Priority) : string.CompareOrdinal(a.Name, b.Name));
        return new UpstreamPoolSnapshot(upstreams, options.Routing, isSingleUpstream: options.Upstreams.Count == 0);
    }

    private PoolUpstream FromPoolEntry(string name, PoolUpstreamOptions options, UpstreamTransport transport, KeyFileReader keyFile)
    {
        var models = options.Models is { Count: > 0 } map ? map.ToFrozenDictionary(StringComparer.Ordinal) : null;
        return new PoolUpstream(
            name, transport.Key.BaseUrl, options.Priority, options.Weight, models, options.PriceMultiplier,
            options.Organization, options.Project, options.AuthHeader, transport, CredentialsFor(name, options, keyFile));
    }

    /// <summary><c>Gateway:Upstream</c> as the pool's only upstream, <c>default</c>. Key: <c>ApiKey</c>, else
    /// <c>ApiKeyFile</c> (while that file does not exist, <c>OPENAI_API_KEY</c>), else <c>OPENAI_API_KEY</c>.</summary>
    private PoolUpstream FromSingleUpstream(UpstreamOptions options, UpstreamTransport transport, KeyFileReader keyFile)
    {
        var header = UpstreamAuthHeaderConverter.Parse(options.AuthHeader);
        var environmentKey = (_configuration[DefaultKeyEnvironmentVariable] ?? "").Trim();
        IUpstreamCredentialSource credentials = !string.IsNullOrWhiteSpace(options.ApiKey)
            ? new StaticKeyCredentialSource(header, options.ApiKey.Trim())
            : !string.IsNullOrWhiteSpace(options.ApiKeyFile)
                ? keyFile(DefaultUpstreamName, "Gateway:Upstream:ApiKeyFile", header, options.ApiKeyFile, environmentKey)
                : new StaticKeyCredentialSource(header, environmentKey);

        return new PoolUpstream(
            DefaultUpstreamName, transport.Key.BaseUrl, Priority: 1, Weight: 1, Models: null, options.PriceMultiplier,
            options.Organization, options.Project, header, transport, credentials);
    }

    private IUpstreamCredentialSource CredentialsFor(string name, PoolUpstreamOptions options, KeyFileReader keyFile)
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
            return keyFile(name, $"Gateway:Upstreams:{name}:ApiKeyFile", options.AuthHeader, options.ApiKeyFile, null);
        }

        return new StaticKeyCredentialSource(options.AuthHeader, (_configuration[options.ApiKeyEnvironmentVariable ?? ""] ?? "").Trim());
    }

    /// <summary>The key file reader for one upstream (kept from the previous snapshot when unchanged).</summary>
    private delegate FileKeyCredentialSource KeyFileReader(string upstream, string source, UpstreamAuthHeader header, string path, string? keyWhileFileMissing);

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
