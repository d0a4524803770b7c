using System.Text;
using Gateway.Routing;

namespace Gateway.Forwarding;

/// <summary>
/// The SSE error event sent when the upstream connection breaks mid-stream. It carries the flat and the
/// nested error shape at once: Node and Python raise on the nested one, .NET reads the flat fields.
/// </summary>
internal static class StreamErrorEvents
{
    private const string Message = "The connection to the upstream API was lost mid-stream. The response is incomplete.";

    public static byte[] UpstreamDisconnected(UsageShape shape, long lastSequenceNumber, bool atEventBoundary)
    {
        // Close a half-written event first so the error is parsed as an event of its own.
        var prefix = atEventBoundary ? "" : "\n\n";
        var text = shape == UsageShape.Chat
            ? $"{prefix}data: {{\"error\":{{\"message\":\"{Message}\",\"type\":\"server_error\",\"param\":null,\"code\":\"upstream_disconnected\"}}}}\n\n"
            : $"{prefix}event: error\ndata: {{\"type\":\"error\",\"code\":\"upstream_disconnected\",\"message\":\"{Message}\",\"param\":null," +
              $"\"error\":{{\"type\":\"server_error\",\"code\":\"upstream_disconnected\",\"message\":\"{Message}\",\"param\":null}}," +
              $"\"sequence_number\":{lastSequenceNumber + 1}}}\n\n";
        return Encoding.UTF8.GetBytes(text);
    }
}
