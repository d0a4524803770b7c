using System.Text.Json;

namespace Gateway.Requests;

/// <summary>Where one value sits in the request body (bytes), so the gateway can overwrite exactly that value.</summary>
internal readonly record struct JsonValueSlot(int Start, int Length, JsonTokenType Token)
{
    public static readonly JsonValueSlot Absent = new(-1, 0, JsonTokenType.None);

    public bool IsPresent => Start >= 0;

    public bool IsNull => Token == JsonTokenType.Null;
}
