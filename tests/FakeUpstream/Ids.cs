using System.Security.Cryptography;
using System.Text;

namespace FakeUpstream;

/// <summary>Ids shaped like OpenAI's (prefix + hex or alphanumerics). Random: only their shape matters.</summary>
internal static class Ids
{
    private const string HexDigits = "0123456789abcdef";
    private const string Alphanumerics = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

    public static string Response() => Hex("resp_", 48);

    public static string Message() => Hex("msg_", 48);

    public static string Conversation() => Hex("conv_", 48);

    public static string Compaction() => Hex("cmp_", 48);

    public static string RequestId() => Hex("req_", 32);

    /// <summary><c>chatcmpl-</c> + 29 alphanumerics, like <c>chatcmpl-D8dUjRkJNE7oAraZr6I7Jy8l3f2eU</c>.</summary>
    public static string ChatCompletion() => string.Create(9 + 29, 0, static (span, _) =>
    {
        "chatcmpl-".CopyTo(span);
        for (var i = 9; i < span.Length; i++)
        {
            span[i] = Alphanumerics[Random.Shared.Next(Alphanumerics.Length)];
        }
    });

    public static string Hex(string prefix, int digits) => string.Create(prefix.Length + digits, prefix, static (span, p) =>
    {
        p.CopyTo(span);
        Span<byte> random = stackalloc byte[(span.Length - p.Length + 1) / 2];
        Random.Shared.NextBytes(random);
        for (var i = p.Length; i < span.Length; i++)
        {
            var b = random[(i - p.Length) / 2];
            span[i] = HexDigits[((i - p.Length) & 1) == 0 ? b >> 4 : b & 0xF];
        }
    });

    /// <summary>A stable id derived from a seed, for objects the fake re-creates on every read (e.g. input items).</summary>
    public static string Derived(string prefix, string seed, int index)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes($"{seed}#{index}"), hash);
        return prefix + Convert.ToHexStringLower(hash[..24]);
    }
}
