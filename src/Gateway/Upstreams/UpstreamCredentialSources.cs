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
/// A key in a mounted secret file, re-read when the last read is older than <see cref="RereadInterval"/> (lazily on
/// use rather than on a timer, so a pool of many upstreams holds no timers). An unreadable file keeps the previous
/// key. <c>Gateway:Upstream</c> (the <c>default</c> upstream) falls back to <c>OPENAI_API_KEY</c> while its file does
/// not exist, as it always has: <paramref name="keyWhileFileMissing"/>.
/// </summary>
internal sealed class FileKeyCredentialSource : IUpstreamCredentialSource
{
    public static readonly TimeSpan RereadInterval = TimeSpan.FromSeconds(5);

    private readonly UpstreamAuthHeader _header;
    private readonly string _path;
    private readonly string? _keyWhileFileMissing;
    private readonly TimeProvider _time;
    private readonly KeyFileEvents _events;
    private volatile Snapshot _current;

    public FileKeyCredentialSource(UpstreamAuthHeader header, string path, string? keyWhileFileMissing, TimeProvider time, KeyFileEvents events)
    {
        _header = header;
        _path = path;
        _keyWhileFileMissing = keyWhileFileMissing;
        _time = time;
        _events = events;
        _current = new Snapshot(Read() ?? KeyCredential.For(header, ""), time.GetTimestamp());
    }

    /// <summary>What this source reads: a source is kept across reloads while these stay the same.</summary>
    public (UpstreamAuthHeader Header, string Path, string? KeyWhileFileMissing) Identity => (_header, _path, _keyWhileFileMissing);

    public ValueTask<UpstreamCredential> GetAsync(CancellationToken cancellationToken)
    {
        var current = _current;
        if (_time.GetElapsedTime(current.ReadAt) >= RereadInterval)
        {
            // Racing readers may both read the file; either result is the file's content (and both may log the change).
            var read = Read();
            current = new Snapshot(read ?? current.Credential, _time.GetTimestamp());
            var changed = read is { } key && key != _current.Credential;
            _current = current;
            if (changed)
            {
                _events.Changed();
            }
        }

        return ValueTask.FromResult(current.Credential);
    }

    private UpstreamCredential? Read()
    {
        try
        {
            return KeyCredential.For(_header, File.ReadAllText(_path).Trim());
        }
        catch (Exception ex) when (_keyWhileFileMissing is not null && ex is FileNotFoundException or DirectoryNotFoundException)
        {
            return KeyCredential.For(_header, _keyWhileFileMissing);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            _events.Unreadable(ex.Message);
            return null;
        }
    }

    private sealed record Snapshot(UpstreamCredential Credential, long ReadAt);
}

/// <summary>What a <see cref="FileKeyCredentialSource"/> reports: the key changed, or the file could not be read (its reason).</summary>
internal sealed record KeyFileEvents(Action Changed, Action<string> Unreadable);

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
