using System.Net;
using Gateway.Configuration;
using Yarp.ReverseProxy.Forwarder;

namespace Gateway.Upstreams;

/// <summary>
/// The connection pool and YARP request config of one upstream of the pool (a <c>Gateway:Upstreams</c> member, or
/// <c>Gateway:Upstream</c> as <c>default</c>): HTTP/2 where offered, no cookies, redirects or automatic
/// decompression, no trace headers, long activity timeout.
/// </summary>
internal sealed record UpstreamTransport(HttpMessageInvoker Invoker, ForwarderRequestConfig RequestConfig, TransportKey Key)
{
    public static UpstreamTransport Create(TransportKey key)
    {
        var handler = new SocketsHttpHandler
        {
            UseProxy = key.UseSystemProxy,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            EnableMultipleHttp2Connections = true,
            ConnectTimeout = key.ConnectTimeout,
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(90),
            // Trace headers of our own have no business at OpenAI.
            ActivityHeadersPropagator = null,
        };

        var config = new ForwarderRequestConfig
        {
            ActivityTimeout = key.ActivityTimeout,
            Version = key.HttpVersion == "1.1" ? HttpVersion.Version11 : HttpVersion.Version20,
            VersionPolicy = key.HttpVersion == "2" ? HttpVersionPolicy.RequestVersionExact : HttpVersionPolicy.RequestVersionOrLower,
        };

        // The buffered request body goes out with the headers in one send (BufferedBodyHandler).
        return new UpstreamTransport(new HttpMessageInvoker(new BufferedBodyHandler(handler), disposeHandler: true), config, key);
    }
}

/// <summary>What an upstream's connection pool depends on: an upstream whose key is unchanged by a reload keeps its pool.</summary>
/// <param name="Upstream">Part of the key so each upstream has a pool of its own, even beside another with the same address.</param>
internal sealed record TransportKey(string Upstream, string BaseUrl, TimeSpan ActivityTimeout, TimeSpan ConnectTimeout, string HttpVersion, bool UseSystemProxy)
{
    public static TransportKey From(string upstream, PoolUpstreamOptions options) =>
        new(upstream, options.BaseUrl!.TrimEnd('/'), options.ActivityTimeout, options.ConnectTimeout, options.HttpVersion, options.UseSystemProxy);

    public static TransportKey From(string upstream, UpstreamOptions options) =>
        new(upstream, options.BaseUrl.TrimEnd('/'), options.ActivityTimeout, options.ConnectTimeout, options.HttpVersion, options.UseSystemProxy);
}
