using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Upstreams;

/// <summary>
/// The buffered body is content HttpClient could send twice (YARP's one-shot copy could not). A request the upstream
/// may have acted on must still never be sent again by the gateway: when the upstream closes a reused keep-alive
/// connection after the request went out and before any byte of an answer, that request fails (a 502 the client's SDK
/// may retry, with its own key and its own quota check), and the next one goes out on a new connection. A raw TCP
/// upstream plays the race exactly.
/// </summary>
public sealed class BufferedBodyResendTests : IAsyncLifetime
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly List<string> _bodies = [];
    private readonly CancellationTokenSource _stop = new();
    private Task _serving = Task.CompletedTask;
    private GatewayHost _gateway = null!;

    public async Task InitializeAsync()
    {
        _listener.Start();
        _serving = ServeAsync(_stop.Token);
        var port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _gateway = await GatewayHost.StartAsync(new Uri($"http://127.0.0.1:{port}/v1"), c =>
            c["Gateway:Tenants:tenant-a:MaxOutputTokens"] = "512");
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _stop.CancelAsync();
        _listener.Stop();
        await _serving.ContinueWith(_ => { }, TaskScheduler.Default);
        _stop.Dispose();
    }

    [Fact]
    public async Task Create_KeepAliveConnectionClosedAfterTheRequestBeforeAnswering_NotSentAgainAndAnswered502()
    {
        using var client = _gateway.CreateClient();
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 3; i++)
        {
            using var response = await client.PostAsync("responses",
                new StringContent($$"""{"model":"gpt-4o-mini","input":"request {{i}}"}""", Encoding.UTF8, "application/json"));
            var answer = await response.Content.ReadAsStringAsync();
            statuses.Add(response.StatusCode);
            Assert.Contains(response.IsSuccessStatusCode ? "\"total_tokens\":2" : "\"type\":", answer, StringComparison.Ordinal);
        }

        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.BadGateway, HttpStatusCode.OK], statuses);
        lock (_bodies)
        {
            // Each request reached the upstream once, the gateway's edited body.
            Assert.Equal(3, _bodies.Count);
            for (var i = 0; i < 3; i++)
            {
                Assert.Contains($"request {i}", _bodies[i], StringComparison.Ordinal);
                Assert.Contains("\"max_output_tokens\":512", _bodies[i], StringComparison.Ordinal);
            }
        }
    }

    /// <summary>The first connection answers its first request and drops its second unanswered; later ones answer all.</summary>
    private async Task ServeAsync(CancellationToken stop)
    {
        for (var connection = 0; !stop.IsCancellationRequested; connection++)
        {
            using var socket = await _listener.AcceptSocketAsync(stop);
            await using var stream = new NetworkStream(socket, ownsSocket: false);
            var reader = new RequestReader(stream);
            for (var request = 0; await reader.ReadBodyAsync(stop) is { } body; request++)
            {
                lock (_bodies)
                {
                    _bodies.Add(body);
                }

                if (connection == 0 && request == 1)
                {
                    break; // closed with the request read and no byte of an answer
                }

                var json = $$$"""{"id":"resp_{{{_bodies.Count}}}","object":"response","status":"completed","model":"gpt-4o-mini","output":[],"usage":{"input_tokens":1,"output_tokens":1,"total_tokens":2}}""";
                var head = $"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {Encoding.UTF8.GetByteCount(json)}\r\n\r\n";
                await stream.WriteAsync(Encoding.UTF8.GetBytes(head + json), stop);
            }

            socket.Shutdown(SocketShutdown.Both);
        }
    }

    /// <summary>Reads HTTP/1.1 requests with a Content-Length body off one connection.</summary>
    private sealed class RequestReader(NetworkStream stream)
    {
        private readonly byte[] _buffer = new byte[64 * 1024];
        private int _filled;

        /// <summary>The next request's body, or null when the peer closed the connection.</summary>
        public async Task<string?> ReadBodyAsync(CancellationToken stop)
        {
            while (true)
            {
                var text = Encoding.Latin1.GetString(_buffer, 0, _filled);
                var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
                if (end >= 0)
                {
                    var lengthLine = text[..end].Split("\r\n").Single(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
                    var length = int.Parse(lengthLine["Content-Length:".Length..].Trim(), CultureInfo.InvariantCulture);
                    var total = end + 4 + length;
                    if (_filled >= total)
                    {
                        var body = Encoding.UTF8.GetString(_buffer, end + 4, length);
                        Buffer.BlockCopy(_buffer, total, _buffer, 0, _filled - total);
                        _filled -= total;
                        return body;
                    }
                }

                var read = await stream.ReadAsync(_buffer.AsMemory(_filled), stop);
                if (read == 0)
                {
                    return null;
                }

                _filled += read;
            }
        }
    }
}
