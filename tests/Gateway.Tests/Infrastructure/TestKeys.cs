using System.Security.Cryptography;
using System.Text;

namespace Gateway.Tests.Infrastructure;

/// <summary>Gateway keys for test tenants; only their SHA-256 digests go into the gateway's configuration.</summary>
public static class TestKeys
{
    public const string UpstreamKey = "upstream-real-key-for-tests-0123456789";
    public const string TenantA = "tenant-a";
    public const string TenantB = "tenant-b";
    public const string KeyA = "gwk_test_key_for_tenant_a_000000000000000";
    public const string KeyB = "gwk_test_key_for_tenant_b_111111111111111";

    public static string Hash(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));
}
