using Yarp.ReverseProxy.Forwarder;

namespace Gateway.Forwarding;

/// <summary>
/// Where one request goes, chosen once per request and never mixed across a configuration reload: the base URL,
/// the connection pool, the request settings and the credentials. Upstream pools (issue #12) hand out one of these
/// per request instead of the single upstream's.
/// </summary>
/// <param name="Name">The upstream's name in logs and metrics.</param>
/// <param name="BaseUrl">The upstream base without a trailing slash, e.g. <c>https://api.openai.com/v1</c>.</param>
internal sealed record UpstreamTarget(string Name, string BaseUrl, HttpMessageInvoker Invoker, ForwarderRequestConfig RequestConfig, UpstreamCredentials Credentials);
