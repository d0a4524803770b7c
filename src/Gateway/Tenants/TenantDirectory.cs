using System.Collections.Frozen;
using System.Security.Cryptography;
using Gateway.Configuration;

namespace Gateway.Tenants;

/// <summary>
/// Maps gateway keys to tenants by the SHA-256 digest of the key; plain keys are never stored.
/// Rebuilt whenever the configuration file changes, so adding or removing a key needs no restart.
/// A reload that fails validation keeps the previous table.
/// </summary>
internal sealed class TenantDirectory : IDisposable
{
    private const int MaxKeyLength = 512;
    private readonly GatewaySettings _settings;
    private readonly ILogger<TenantDirectory> _logger;
    private volatile Snapshot _snapshot;

    public TenantDirectory(GatewaySettings settings, ILogger<TenantDirectory> logger)
    {
        _settings = settings;
        _logger = logger;
        _snapshot = Build(settings.Current);
        settings.Changed += Reload;
    }

    /// <summary>Finds the tenant owning <paramref name="key"/>; allocation-free.</summary>
    public Tenant? FindByKey(ReadOnlySpan<char> key)
    {
        if (key.IsEmpty || key.Length > MaxKeyLength)
        {
            return null;
        }

        Span<byte> keyBytes = stackalloc byte[MaxKeyLength * 3];
        var byteCount = System.Text.Encoding.UTF8.GetBytes(key, keyBytes);
        Span<byte> digest = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(keyBytes[..byteCount], digest);
        Span<char> hex = stackalloc char[SHA256.HashSizeInBytes * 2];
        Convert.TryToHexStringLower(digest, hex, out _);
        return _snapshot.ByHash.TryGetValue(hex, out var tenant) ? tenant : null;
    }

    private void Reload(GatewayOptions options)
    {
        var next = Build(options);
        _snapshot = next;
        TenantsLog.TenantsReloaded(_logger, next.Tenants.Count, next.KeyCount);
    }

    private static Snapshot Build(GatewayOptions options)
    {
        var tenants = new Dictionary<string, Tenant>(StringComparer.Ordinal);
        var byHash = new Dictionary<string, Tenant>(StringComparer.Ordinal);
        foreach (var (id, tenantOptions) in options.Tenants)
        {
            var tenant = new Tenant(id, tenantOptions);
            tenants[id] = tenant;
            foreach (var hash in tenantOptions.KeyHashes)
            {
                byHash[hash] = tenant;
            }
        }

        var frozen = byHash.ToFrozenDictionary(StringComparer.Ordinal);
        return new Snapshot(tenants.ToFrozenDictionary(StringComparer.Ordinal), frozen.GetAlternateLookup<ReadOnlySpan<char>>(), frozen.Count);
    }

    public void Dispose() => _settings.Changed -= Reload;

    private sealed record Snapshot(
        FrozenDictionary<string, Tenant> Tenants,
        FrozenDictionary<string, Tenant>.AlternateLookup<ReadOnlySpan<char>> ByHash,
        int KeyCount);
}
