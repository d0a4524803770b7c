using Azure.Core;
using Gateway.Configuration;

namespace Gateway.Upstreams;

/// <summary>The header that authenticates one request to one upstream. Never log <see cref="Value"/>.</summary>
internal readonly record struct UpstreamCredential(string HeaderName, string Value);

/// <summary>Where an upstream's credential comes from; asked once per attempt, so keys and tokens can change underneath.</summary>
internal interface IUpstreamCredentialSource
{
    ValueTask<UpstreamCredential> GetAsync(CancellationToken cancellationToken);
}

/// <summary>A key from configuration or the environment (fixed until the next reload builds a new source).</summary>
internal sealed class StaticKeyCredentialSource(UpstreamAuthHeader header, string key) : IUpstreamCredentialSource
{
    private readonly UpstreamCredential _credential = KeyCredential.For(header, key);

    public ValueTask<UpstreamCredential> GetAsync(CancellationToken cancellationToken) => ValueTask.FromResult(_credential);
}

/// <summary>
/// A key in a mounted secret file, re-read when the last read is older than <see cref="RereadInterval"/> (like
/// Forwarding/UpstreamCredentials, but lazily on use instead of on a timer, so a pool of many upstreams holds no timers).
/// An unreadable file keeps the previous key.
/// </summary>
internal sealed class FileKeyCredentialSource : IUpstreamCredentialSource
{
    public static readonly TimeSpan RereadInterval = TimeSpan.FromSeconds(5);

    private readonly UpstreamAuthHeader _header;
    private readonly string _path;
    private readonly TimeProvider _time;
    private readonly Action<string> _unreadable;
    private volatile Snapshot _current;

    public FileKeyCredentialSource(UpstreamAuthHeader header, string path, TimeProvider time, Action<string> unreadable)
    {
        _header = header;
        _path = path;
        _time = time;
        _unreadable = unreadable;
        _current = new Snapshot(Read() ?? KeyCredential.For(header, ""), time.GetTimestamp());
    }

    public ValueTask<UpstreamCredential> GetAsync(CancellationToken cancellationToken)
    {
        var current = _current;
        if (_time.GetElapsedTime(current.ReadAt) >= RereadInterval)
        {
            // Racing readers may both read the file; either result is the file's content.
            current = new Snapshot(Read() ?? current.Credential, _time.GetTimestamp());
            _current = current;
        }

        return ValueTask.FromResult(current.Credential);
    }

    private UpstreamCredential? Read()
    {
        try
        {
            return KeyCredential.For(_header, File.ReadAllText(_path).Trim());
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            _unreadable(ex.Message);
            return null;
        }
    }

    private sealed record Snapshot(UpstreamCredential Credential, long ReadAt);
}

/// <summary>
/// A Microsoft Entra token for Azure OpenAI (<c>AuthHeader: AzureIdentity</c>), from a <see cref="TokenCredential"/>
/// (DefaultAzureCredential in production: managed identity, workload identity, az login…). The token is cached and
/// refreshed <see cref="RefreshBeforeExpiry"/> before it expires (or at the credential's RefreshOn), one refresh at a
/// time; if a refresh fails while the cached token is still valid, the cached token is used.
/// </summary>
internal sealed class EntraTokenCredentialSource(TokenCredential credential, TimeProvider time) : IUpstreamCredentialSource, IDisposable
{
    public const string Scope = "https://cognitiveservices.azure.com/.default";
    public static readonly TimeSpan RefreshBeforeExpiry = TimeSpan.FromMinutes(5);

    private static readonly TokenRequestContext Request = new([Scope]);
    private readonly SemaphoreSlim _refreshing = new(1, 1);
    private volatile CachedToken? _cached;

    public async ValueTask<UpstreamCredential> GetAsync(CancellationToken cancellationToken)
    {
        var cached = _cached;
        if (cached is not null && time.GetUtcNow() < cached.RefreshAt)
        {
            return cached.Credential;
        }

        await _refreshing.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            cached = _cached;
            var now = time.GetUtcNow();
            if (cached is not null && now < cached.RefreshAt)
            {
                return cached.Credential; // another caller refreshed meanwhile
            }

            try
            {
                var token = await credential.GetTokenAsync(Request, cancellationToken).ConfigureAwait(false);
                var refreshAt = token.RefreshOn ?? token.ExpiresOn - RefreshBeforeExpiry;
                cached = new CachedToken(new UpstreamCredential("Authorization", "Bearer " + token.Token), refreshAt, token.ExpiresOn);
                _cached = cached;
                return cached.Credential;
            }
            catch (Exception ex) when (ex is not OperationCanceledException && cached is not null && now < cached.ExpiresOn)
            {
                return cached.Credential; // still valid; the next caller tries again
            }
        }
        finally
        {
            _refreshing.Release();
        }
    }

    public void Dispose() => _refreshing.Dispose();

    private sealed record CachedToken(UpstreamCredential Credential, DateTimeOffset RefreshAt, DateTimeOffset ExpiresOn);
}

internal static class KeyCredential
{
    public static UpstreamCredential For(UpstreamAuthHeader header, string key) => header == UpstreamAuthHeader.ApiKey
        ? new UpstreamCredential("api-key", key)
        : new UpstreamCredential("Authorization", key.Length == 0 ? "" : "Bearer " + key);
}
