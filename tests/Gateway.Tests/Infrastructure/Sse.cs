using System.Text;
using System.Text.Json;

namespace Gateway.Tests.Infrastructure;

/// <summary>Reads a server-sent event stream event by event, as an SDK would.</summary>
public sealed class SseReader(Stream stream)
{
    private readonly StreamReader _reader = new(stream, Encoding.UTF8);

    /// <summary>The next event's (event name, data), or null at the end of the stream.</summary>
    public async Task<(string? Event, string Data)?> NextAsync(CancellationToken cancellationToken = default)
    {
        string? name = null;
        var data = new StringBuilder();
        while (true)
        {
            var line = await _reader.ReadLineAsync(cancellationToken);
            if (line is null)
            {
                return data.Length > 0 ? (name, data.ToString()) : null;
            }

            if (line.Length == 0)
            {
                if (data.Length > 0 || name is not null)
                {
                    return (name, data.ToString());
                }

                continue;
            }

            if (line.StartsWith("event:", StringComparison.Ordinal))
            {
                name = line[6..].TrimStart();
            }
            else if (line.StartsWith("data:", StringComparison.Ordinal))
            {
                if (data.Length > 0)
                {
                    data.Append('\n');
                }

                data.Append(line.AsSpan(5).TrimStart(' '));
            }
        }
    }

    public async Task<List<(string? Event, string Data)>> ReadAllAsync(CancellationToken cancellationToken = default)
    {
        var events = new List<(string?, string)>();
        while (await NextAsync(cancellationToken) is { } next)
        {
            events.Add(next);
        }

        return events;
    }

    public static string TypeOf(string data) => JsonDocument.Parse(data).RootElement.GetProperty("type").GetString()!;
}
