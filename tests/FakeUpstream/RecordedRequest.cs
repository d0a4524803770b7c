namespace FakeUpstream;

/// <summary>One request as the fake received it (before authentication), for test assertions.</summary>
/// <param name="Headers">Request headers; keys are case-insensitive.</param>
/// <param name="Body">Raw request body bytes (empty when there was none).</param>
public sealed record RecordedRequest(
    string Method,
    string PathAndQuery,
    IReadOnlyDictionary<string, string[]> Headers,
    byte[] Body,
    DateTimeOffset ReceivedAt)
{
    private int _aborted;

    /// <summary>True once the caller aborted this request while the fake was serving it (<c>HttpContext.RequestAborted</c> fired).</summary>
    public bool Aborted => Volatile.Read(ref _aborted) == 1;

    internal void MarkAborted() => Volatile.Write(ref _aborted, 1);

    /// <summary>The body decoded as UTF-8 (convenience for assertions and logs).</summary>
    public string BodyText => System.Text.Encoding.UTF8.GetString(Body);

    /// <summary>First value of a header, or null.</summary>
    public string? Header(string name) => Headers.TryGetValue(name, out var values) && values.Length > 0 ? values[0] : null;
}
