using Gateway.Errors;
using Microsoft.Net.Http.Headers;

namespace Gateway.Tenants;

/// <summary>Reads the gateway key the way the SDKs send it: <c>Authorization: Bearer</c>, or Azure-style <c>api-key</c>.</summary>
internal sealed class TenantAuthenticator(TenantDirectory directory)
{
    public const string AzureKeyHeader = "api-key";

    private static readonly OpenAIError MissingKey = OpenAIError.InvalidApiKey(
        "You didn't provide a gateway key. Send it as 'Authorization: Bearer <key>' (or 'api-key: <key>'); your platform team issues keys.");

    private static readonly OpenAIError UnknownKey = OpenAIError.InvalidApiKey(
        "Incorrect gateway key provided. Check the key your platform team issued to your tenant.");

    public Tenant? Authenticate(HttpRequest request, out OpenAIError? error)
    {
        var key = ReadKey(request);
        if (key.IsEmpty)
        {
            error = MissingKey;
            return null;
        }

        var tenant = directory.FindByKey(key);
        error = tenant is null ? UnknownKey : null;
        return tenant;
    }

    private static ReadOnlySpan<char> ReadKey(HttpRequest request)
    {
        var headers = request.Headers;
        var authorization = headers[HeaderNames.Authorization];
        if (authorization.Count == 1)
        {
            var value = authorization[0].AsSpan().Trim();
            if (value.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            {
                return value[7..].Trim();
            }
        }

        var apiKey = headers[AzureKeyHeader];
        return apiKey.Count == 1 ? apiKey[0].AsSpan().Trim() : default;
    }
}
