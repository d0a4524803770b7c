using System.Buffers;
using System.Text;

namespace Gateway.Requests;

/// <summary>
/// Splices small edits into a JSON body at positions <see cref="RequestInspector"/> recorded, leaving every
/// other byte as the client sent it (re-serializing would reorder nothing, but would cost and could alter numbers).
/// </summary>
internal static class RequestBodyEditor
{
    /// <summary>Sets (inserts) a top-level integer property right after the root '{'.</summary>
    public static void InsertTopLevelNumber(PooledBody body, RequestFacts facts, string property, long value)
    {
        var insertion = Encoding.UTF8.GetBytes($"\"{property}\":{value}{(HasMembersAfter(body.Span, facts.RootObjectStart) ? "," : "")}");
        Splice(body, facts.RootObjectStart + 1, 0, insertion);
    }

    /// <summary>Makes <c>stream_options.include_usage</c> true, adding <c>stream_options</c> if needed.</summary>
    public static void EnableIncludeUsage(PooledBody body, RequestFacts facts)
    {
        if (facts.IncludeUsageValueStart >= 0)
        {
            Splice(body, facts.IncludeUsageValueStart, facts.IncludeUsageValueLength, "true"u8);
        }
        else if (facts.StreamOptionsObjectStart >= 0)
        {
            var comma = HasMembersAfter(body.Span, facts.StreamOptionsObjectStart) ? ","u8 : ""u8;
            Splice(body, facts.StreamOptionsObjectStart + 1, 0, [.. "\"include_usage\":true"u8, .. comma]);
        }
        else
        {
            var comma = HasMembersAfter(body.Span, facts.RootObjectStart) ? ","u8 : ""u8;
            Splice(body, facts.RootObjectStart + 1, 0, [.. "\"stream_options\":{\"include_usage\":true}"u8, .. comma]);
        }
    }

    private static bool HasMembersAfter(ReadOnlySpan<byte> json, int objectStart)
    {
        var rest = json[(objectStart + 1)..].TrimStart(" \t\r\n"u8);
        return rest.Length > 0 && rest[0] != (byte)'}';
    }

    private static void Splice(PooledBody body, int position, int removeLength, ReadOnlySpan<byte> insertion)
    {
        var source = body.Span;
        var length = source.Length - removeLength + insertion.Length;
        var buffer = ArrayPool<byte>.Shared.Rent(length);
        source[..position].CopyTo(buffer);
        insertion.CopyTo(buffer.AsSpan(position));
        source[(position + removeLength)..].CopyTo(buffer.AsSpan(position + insertion.Length));
        body.Replace(buffer, length);
    }
}
