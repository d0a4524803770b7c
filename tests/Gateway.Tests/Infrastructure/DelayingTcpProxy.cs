using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;

namespace Gateway.Tests.Infrastructure;

/// <summary>
/// A TCP proxy on 127.0.0.1 in front of a real server (Redis) that holds every chunk for a fixed time in each direction,
/// in order: a network with that latency. With <see cref="ToServerDelay"/> 0 and <see cref="ToClientDelay"/> D, every
/// awaited request/answer costs D, so the time a gateway takes tells how many round trips it waited for.
/// </summary>
public sealed class DelayingTcpProxy : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly int _serverPort;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<TcpClient> _sockets = [];
    private readonly Task _accepting;
    private readonly ConcurrentQueue<string> _traffic = new();
    private readonly long _started = Stopwatch.GetTimestamp();
    private int _connections;

    private DelayingTcpProxy(int serverPort, TimeSpan toServerDelay, TimeSpan toClientDelay)
    {
        _serverPort = serverPort;
        ToServerDelay = toServerDelay;
        ToClientDelay = toClientDelay;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        _accepting = Task.Run(AcceptAsync);
    }

    public TimeSpan ToServerDelay { get; }

    public TimeSpan ToClientDelay { get; }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>A StackExchange.Redis connection string through the proxy.</summary>
    public string RedisConnectionString => $"127.0.0.1:{Port},abortConnect=false,connectTimeout=5000";

    /// <summary>
    /// Every chunk that crossed the proxy, in the order read: milliseconds since start, connection, direction and the
    /// chunk's RESP text (shortened), so a timing assertion can say which commands it waited for.
    /// </summary>
    public IReadOnlyList<string> Traffic => [.. _traffic];

    /// <summary>The clock <see cref="Traffic"/> is timed by.</summary>
    public TimeSpan Elapsed => Stopwatch.GetElapsedTime(_started);

    public static DelayingTcpProxy Start(int serverPort, TimeSpan toServerDelay, TimeSpan toClientDelay) =>
        new(serverPort, toServerDelay, toClientDelay);

    private async Task AcceptAsync()
    {
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                var server = new TcpClient();
                await server.ConnectAsync(IPAddress.Loopback, _serverPort, _stop.Token);
                lock (_sockets)
                {
                    _sockets.Add(client);
                    _sockets.Add(server);
                }

                var connection = Interlocked.Increment(ref _connections);
                _ = PumpAsync(client.GetStream(), server.GetStream(), ToServerDelay, $"#{connection} ->");
                _ = PumpAsync(server.GetStream(), client.GetStream(), ToClientDelay, $"#{connection} <-");
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    /// <summary>Reads as fast as data comes, writes each chunk once it is <paramref name="delay"/> old.</summary>
    private async Task PumpAsync(NetworkStream from, NetworkStream to, TimeSpan delay, string direction)
    {
        var chunks = Channel.CreateUnbounded<(long Due, byte[] Data)>();
        var writing = Task.Run(async () =>
        {
            try
            {
                await foreach (var (due, data) in chunks.Reader.ReadAllAsync(_stop.Token))
                {
                    var wait = TimeSpan.FromSeconds((double)(due - Stopwatch.GetTimestamp()) / Stopwatch.Frequency);
                    if (wait > TimeSpan.Zero)
                    {
                        await Task.Delay(wait, _stop.Token);
                    }

                    await to.WriteAsync(data, _stop.Token);
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException)
            {
            }
        });

        var buffer = new byte[64 * 1024];
        try
        {
            int read;
            while ((read = await from.ReadAsync(buffer, _stop.Token)) > 0)
            {
                var now = Stopwatch.GetTimestamp();
                var due = now + (long)(delay.TotalSeconds * Stopwatch.Frequency);
                var text = System.Text.Encoding.ASCII.GetString(buffer, 0, Math.Min(read, 160)).Replace("\r\n", " ", StringComparison.Ordinal);
                _traffic.Enqueue($"{Stopwatch.GetElapsedTime(_started, now).TotalMilliseconds:F0} ms {direction} {read} B: {text}");
                chunks.Writer.TryWrite((due, buffer.AsSpan(0, read).ToArray()));
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException)
        {
        }

        chunks.Writer.TryComplete();
        await writing;
        try
        {
            to.Socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        lock (_sockets)
        {
            foreach (var socket in _sockets)
            {
                socket.Dispose();
            }
        }

        await _accepting;
        _stop.Dispose();
    }
}
