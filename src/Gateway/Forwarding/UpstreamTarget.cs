using Yarp.ReverseProxy.Forwarder;

namespace Gateway.Forwarding;

/// <summary>
/// Where one attempt goes, from the pool snapshot its request took (never mixed across a configuration reload): the
/// base URL, the connection pool, the request settings and the credentials read for this attempt.
/// </summary>
/// <param name="Name">The upstream's name in logs and metrics.</param>
/// <param name="BaseUrl">The upstream base without a trailing slash, e.g. <c>https://api.openai.com/v1</c>.</param>
/// <param name="AuthHeaderName"><c>Authorization</c> or <c>api-key</c>.</param>
/// <param name="AuthHeaderValue"><c>Bearer sk-…</c> or the bare key, read once for this request. Never log it.</param>
/// <param name="Organization">Sent as <c>OpenAI-Organization</c> to this upstream only.</param>
/// <param name="Project">Sent as <c>OpenAI-Project</c> to this upstream only.</param>
internal sealed record UpstreamTarget(
    string Name, string BaseUrl, HttpMessageInvoker Invoker, ForwarderRequestConfig RequestConfig,
    string AuthHeaderName, string AuthHeaderValue, string? Organization, string? Project);
