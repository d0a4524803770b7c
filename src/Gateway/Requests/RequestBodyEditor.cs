using System.Buffers;

namespace Gateway.Requests;

/// <summary>
/// Splices small edits into a JSON body at positions <see cref="RequestInspector"/> recorded, leaving every
/// other byte as the client sent it (re-serializing would reorder nothing, but would cost and could alter numbers).
/// </summary>
internal static class RequestBodyEditor
{
    /// <summary>
    /// Applies <paramref name="edits"/> (positions in the current body, non-overlapping) in one copy. Members added
    /// to the same object are joined with commas, and followed by one when the object already has members.
    /// </summary>
    public static void Apply(PooledBody body, List<BodyEdit>? edits)
    {
        if (edits is null || edits.Count == 0)
        {
            return;
        }

        // A handful of edits: an insertion sort, stable, so members added to one object keep the order they were added in.
        var ordered = edits.ToArray();
        for (var i = 1; i < ordered.Length; i++)
        {
            for (var j = i; j > 0 && ordered[j - 1].Position > ordered[j].Position; j--)
            {
                (ordered[j - 1], ordered[j]) = (ordered[j], ordered[j - 1]);
            }
        }

        var source = body.Span;
        var capacity = source.Length;
        foreach (var edit in ordered)
        {
            capacity += edit.Insertion.Length + 1;
        }

        var buffer = ArrayPool<byte>.Shared.Rent(capacity);
        var written = 0;
        var copied = 0;
        for (var i = 0; i < ordered.Length; i++)
        {
            var edit = ordered[i];
            source[copied..edit.Position].CopyTo(buffer.AsSpan(written));
            written += edit.Position - copied;
            edit.Insertion.CopyTo(buffer.AsSpan(written));
            written += edit.Insertion.Length;
            copied = edit.Position + edit.RemoveLength;
            if (edit.IsMember)
            {
                var anotherMemberFollows = i + 1 < ordered.Length && ordered[i + 1].IsMember && ordered[i + 1].Position == edit.Position;
                if (anotherMemberFollows || HasMembersAfter(source, edit.Position))
                {
                    buffer[written++] = (byte)',';
                }
            }
        }

        source[copied..].CopyTo(buffer.AsSpan(written));
        written += source.Length - copied;
        body.Replace(buffer, written);
    }

    private static bool HasMembersAfter(ReadOnlySpan<byte> json, int position)
    {
        var rest = json[position..].TrimStart(" \t\r\n"u8);
        return rest.Length > 0 && rest[0] != (byte)'}';
    }
}
