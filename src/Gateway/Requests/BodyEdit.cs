namespace Gateway.Requests;

/// <summary>
/// One change to a request body: replace <see cref="RemoveLength"/> bytes at <see cref="Position"/> with
/// <see cref="Insertion"/>, or (<see cref="IsMember"/>) add a member at the start of an object.
/// </summary>
internal readonly record struct BodyEdit(int Position, int RemoveLength, byte[] Insertion, bool IsMember)
{
    /// <summary>Overwrites the value at <paramref name="slot"/> (the very occurrence the upstream reads).</summary>
    public static BodyEdit Overwrite(JsonValueSlot slot, ReadOnlySpan<byte> value) => new(slot.Start, slot.Length, value.ToArray(), false);

    /// <summary>Adds <paramref name="member"/> (<c>"name":value</c>) to the object whose '{' is at <paramref name="objectStart"/>.</summary>
    public static BodyEdit AddMember(int objectStart, ReadOnlySpan<byte> member) => new(objectStart + 1, 0, member.ToArray(), true);
}
