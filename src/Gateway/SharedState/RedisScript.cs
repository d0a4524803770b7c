using System.Security.Cryptography;
using System.Text;
using StackExchange.Redis;

namespace Gateway.SharedState;

/// <summary>
/// A Lua script run by its SHA1 (<c>EVALSHA</c>) once the script is known to be loaded. StackExchange.Redis' overload
/// taking the script text looks the text up in its table of loaded scripts on every call, hashing the whole text
/// (several KB per request, issue #15); the hash here is computed once. The first call sends the text (the library
/// loads the script in the same round trip), so a fresh Redis costs no extra round trip; a Redis that lost its scripts
/// since (restart, failover, <c>SCRIPT FLUSH</c>; a cluster node not used before) answers <c>NOSCRIPT</c>, and that call
/// is sent again with the text. One instance per connection: what is loaded is a property of the servers behind it.
/// </summary>
internal sealed class RedisScript(string text)
{
#pragma warning disable CA5350 // SHA1 is how Redis names a script (EVALSHA), not a security measure
    private readonly byte[] _hash = SHA1.HashData(Encoding.UTF8.GetBytes(text));
#pragma warning restore CA5350
    private volatile bool _loaded;

    public async Task<RedisResult> EvaluateAsync(IDatabaseAsync database, RedisKey[] keys, RedisValue[] values)
    {
        if (_loaded)
        {
            try
            {
                return await database.ScriptEvaluateAsync(_hash, keys, values);
            }
            catch (RedisServerException error) when (error.Message.StartsWith("NOSCRIPT", StringComparison.Ordinal))
            {
                _loaded = false;
            }
        }

        var result = await database.ScriptEvaluateAsync(text, keys, values);
        _loaded = true;
        return result;
    }
}
