using System.Security.Cryptography;
using System.Text;

namespace Gateway.Tenants;

/// <summary>
/// <c>new-key</c>: mints a random gateway key and prints it with the SHA-256 digest that goes into
/// <c>Gateway:Tenants:{tenant}:KeyHashes</c>. <c>hash-key</c>: prints the digest of a key read from stdin.
/// </summary>
internal static class GatewayKeyCommand
{
    public const string KeyPrefix = "gwk_";

    public static bool TryRun(string[] args, TextReader input, TextWriter output, out int exitCode)
    {
        exitCode = 0;
        if (args.Length == 0)
        {
            return false;
        }

        switch (args[0])
        {
            case "new-key":
                var key = NewKey();
                output.WriteLine($"key:  {key}");
                output.WriteLine($"hash: {Hash(key)}");
                output.WriteLine();
                output.WriteLine("Give the key to the tenant (it is shown only once and never stored); add the hash to");
                output.WriteLine("Gateway:Tenants:<tenant-id>:KeyHashes in appsettings.json. The change applies without a restart.");
                return true;
            case "hash-key":
                var existing = input.ReadLine()?.Trim();
                if (string.IsNullOrEmpty(existing))
                {
                    output.WriteLine("usage: echo <key> | Gateway hash-key");
                    exitCode = 2;
                    return true;
                }

                output.WriteLine(Hash(existing));
                return true;
            default:
                return false;
        }
    }

    /// <summary>256 random bits, base64url: unguessable, and safe in headers and shells.</summary>
    public static string NewKey()
    {
        Span<byte> secret = stackalloc byte[32];
        RandomNumberGenerator.Fill(secret);
        return KeyPrefix + Convert.ToBase64String(secret).TrimEnd('=').Replace('+', '-').Replace('/', '_');
    }

    public static string Hash(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));
}
