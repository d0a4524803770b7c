namespace Gateway.Configuration;

/// <summary>
/// The checks an upstream's address and transport share, whether it is <c>Gateway:Upstream</c> or a member of
/// <c>Gateway:Upstreams</c>: one implementation, so both say the same thing in the same words. Each failure names
/// the key (<paramref name="key"/> is the upstream's section, e.g. <c>Gateway:Upstreams:east</c>) and the fix.
/// </summary>
internal static class UpstreamTransportValidator
{
    public static void Validate(string key, string? baseUrl, string httpVersion, TimeSpan activityTimeout, TimeSpan connectTimeout, List<string> failures)
    {
        if (string.IsNullOrWhiteSpace(baseUrl))
        {
            failures.Add($"{key}:BaseUrl is missing; set it to the upstream's /v1 address, e.g. \"{UpstreamOptions.DefaultBaseUrl}\" or \"https://NAME.openai.azure.com/openai/v1\".");
        }
        else if (!Uri.TryCreate(baseUrl, UriKind.Absolute, out var baseUri) || (baseUri.Scheme != Uri.UriSchemeHttps && baseUri.Scheme != Uri.UriSchemeHttp))
        {
            failures.Add($"{key}:BaseUrl '{baseUrl}' is not an absolute http(s) URL; use e.g. \"{UpstreamOptions.DefaultBaseUrl}\".");
        }
        else if (!string.IsNullOrEmpty(baseUri.Query) || !string.IsNullOrEmpty(baseUri.Fragment) || !string.IsNullOrEmpty(baseUri.UserInfo))
        {
            // User info would be a credential in the URL: keys go in ApiKey/ApiKeyFile, which are never logged.
            failures.Add($"{key}:BaseUrl must not carry a query string, fragment or user info; give just the /v1 address and put the key in ApiKey or ApiKeyFile.");
        }

        if (httpVersion is not ("auto" or "1.1" or "2"))
        {
            failures.Add($"{key}:HttpVersion '{httpVersion}' must be \"auto\", \"1.1\" or \"2\".");
        }

        if (activityTimeout <= TimeSpan.Zero)
        {
            failures.Add($"{key}:ActivityTimeout must be a positive duration such as \"00:10:00\".");
        }

        if (connectTimeout <= TimeSpan.Zero)
        {
            failures.Add($"{key}:ConnectTimeout must be a positive duration such as \"00:00:10\".");
        }
    }
}
