using System.Net;
using Gateway.Configuration;
using Yarp.ReverseProxy.Forwarder;

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
        if (current.Source.BaseUrl == upstream.BaseUrl && current.Source.ActivityTimeout == upstream.ActivityTimeout
            && current.Source.ConnectTimeout == upstream.ConnectTimeout && current.Source.UseSystemProxy == upstream.UseSystemProxy
            && current.Source.HttpVersion == upstream.HttpVersion)
        {
            return;
        }

        _state = Build(upstream);
        // In-flight requests hold their own reference; let them finish on the old pool.
        _ = Task.Delay(upstream.ActivityTimeout + TimeSpan.FromMinutes(1)).ContinueWith(_ => current.Target.Invoker.Dispose(), TaskScheduler.Default);
    }

    private static State Build(UpstreamOptions upstream)
    {
        var handler = new SocketsHttpHandler
        {
            UseProxy = upstream.UseSystemProxy,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            EnableMultipleHttp2Connections = true,
            ConnectTimeout = upstream.ConnectTimeout,
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(90),
            // Trace headers of our own have no business at OpenAI.
            ActivityHeadersPropagator = null,
        };

        var config = new ForwarderRequestConfig
        {
            ActivityTimeout = upstream.ActivityTimeout,
            Version = upstream.HttpVersion == "1.1" ? HttpVersion.Version11 : HttpVersion.Version20,
            VersionPolicy = upstream.HttpVersion == "2" ? HttpVersionPolicy.RequestVersionExact : HttpVersionPolicy.RequestVersionOrLower,
        };

        var invoker = new HttpMessageInvoker(handler, disposeHandler: true);
        return new State(new UpstreamTarget(DefaultUpstreamName, upstream.BaseUrl.TrimEnd('/'), invoker, config, "", "", null, null), upstream);
    }

    public void Dispose()
    {
        _settings.Changed -= OnChanged;
        _state.Target.Invoker.Dispose();
    }

    private sealed record State(UpstreamTarget Target, UpstreamOptions Source);
}
