using Gateway.Configuration;
using Gateway.Upstreams;

namespace Gateway.Forwarding;

/// <summary>
/// The one connection pool to the upstream: HTTP/2 where the upstream offers it, no cookies, no redirects,
/// no automatic decompression (see <see cref="UpstreamTransformer"/>), and a long activity timeout because
/// reasoning models can think for minutes before the first byte.
/// </summary>
internal sealed class UpstreamClient : IDisposable
{
    private const string DefaultUpstreamName = "default";

    private readonly GatewaySettings _settings;
    private readonly UpstreamCredentials _credentials;
    private volatile State _state;

    public UpstreamClient(GatewaySettings settings, UpstreamCredentials credentials)
    {
        _settings = settings;
        _credentials = credentials;
        _state = Build(settings.Current.Upstream);
        settings.Changed += OnChanged;
    }

    /// <summary>One read: the base URL, pool and request settings of the same reload, for one request.</summary>
    public UpstreamTarget Current
    {
        get
        {
            var target = _state.Target;
            var upstream = _settings.Current.Upstream;
            // The key file may have been rotated since the pool was built: read the key per request.
            return target with
            {
                AuthHeaderName = _credentials.HeaderName,
                AuthHeaderValue = _credentials.HeaderValue,
                Organization = upstream.Organization,
                Project = upstream.Project,
            };
        }
    }

    private void OnChanged(GatewayOptions options)
    {
        var current = _state;
        var upstream = options.Upstream;
        if (current.Transport.Key == TransportKey.From(DefaultUpstreamName, upstream))
        {
            return;
        }

        _state = Build(upstream);
        // In-flight requests hold their own reference; let them finish on the old pool.
        _ = Task.Delay(upstream.ActivityTimeout + TimeSpan.FromMinutes(1)).ContinueWith(_ => current.Target.Invoker.Dispose(), TaskScheduler.Default);
    }

    /// <summary>The same connection pool and request settings as a pool upstream's (<see cref="UpstreamTransport"/>).</summary>
    private static State Build(UpstreamOptions upstream)
    {
        var transport = UpstreamTransport.Create(TransportKey.From(DefaultUpstreamName, upstream));
        return new State(new UpstreamTarget(DefaultUpstreamName, transport.Key.BaseUrl, transport.Invoker, transport.RequestConfig, "", "", null, null), transport);
    }

    public void Dispose()
    {
        _settings.Changed -= OnChanged;
        _state.Target.Invoker.Dispose();
    }

    private sealed record State(UpstreamTarget Target, UpstreamTransport Transport);
}
