using System.Net;
using System.Net.Sockets;
using RESPite.Transports;
using StackExchange.Redis;
using StackExchange.Redis.Configuration;

namespace Gateway.SharedState;

#pragma warning disable SER009 // StackExchange.Redis marks its transport seam experimental; the version is pinned (Directory.Packages.props) and RedisSocketTransportTests cover it

/// <summary>
/// StackExchange.Redis' interactive connections over a socket the gateway owns (issue #15). By default the library
/// stages a command, then wakes a writer task on the thread pool, which sends it: a thread hand-off before every
/// command leaves the process. Through this transport the thread that flushes the command sends it (one non-blocking
/// <c>send</c> on loopback or a LAN; the library holds its write lock meanwhile, as it does while staging), and
/// answers are pushed to the library's parser straight from the socket's receive completion. TLS connections and
/// the pub/sub connection keep the library's own socket path (this returns null for them).
/// </summary>
internal sealed class RedisSocketTunnel(TimeSpan connectTimeout) : Tunnel
{
    private long _connectionsOpened;

    /// <summary>
    /// The gateway's connection options: <paramref name="connectionString"/> with the gateway's timeouts, and its
    /// interactive connections over <see cref="RedisSocketTunnel"/> unless the string names a tunnel of its own.
    /// </summary>
    public static ConfigurationOptions GatewayOptions(string connectionString, TimeSpan redisTimeout)
    {
        var options = ConfigurationOptions.Parse(connectionString);
        options.AbortOnConnectFail = false; // start even if Redis is down; OnStoreFailure decides what happens
        options.ConnectTimeout = (int)Math.Max(1000, redisTimeout.TotalMilliseconds * 4);
        options.SyncTimeout = (int)redisTimeout.TotalMilliseconds;
        options.AsyncTimeout = (int)redisTimeout.TotalMilliseconds;
        options.ClientName ??= "llm-gateway";
        options.Tunnel ??= new RedisSocketTunnel(TimeSpan.FromMilliseconds(options.ConnectTimeout));
        return options;
    }

    /// <summary>Connections this tunnel opened (reconnects included).</summary>
    public long ConnectionsOpened => Interlocked.Read(ref _connectionsOpened);

    public override async ValueTask<DuplexTransport?> ConnectTransportAsync(EndPoint endpoint, ConnectionType connectionType, TlsOptions tls, CancellationToken cancellationToken)
    {
        if (tls.IsEnabled || connectionType != ConnectionType.Interactive)
        {
            return null;
        }

        var socket = endpoint is IPEndPoint ip
            ? new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp)
            : new Socket(SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.NoDelay = true;
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
            // A command is sent by the request's own thread: a Redis that stops reading must not hold it for ever.
            socket.SendTimeout = (int)connectTimeout.TotalMilliseconds;
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(connectTimeout);
            await socket.ConnectAsync(endpoint, timeout.Token);
            Interlocked.Increment(ref _connectionsOpened);
            return new RedisSocketTransport(socket);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public override string ToString() => "gateway-socket";
}

/// <summary>
/// One interactive connection's socket: sends on flush, pushes what it receives to the library's parser. The receiver is
/// only ever called from the receive loop (so <see cref="TransportReceiver.OnClosed"/> never races a delivery): a
/// failed send or a dispose shuts the socket down, and the loop reports the close, once, when its receive ends.
/// </summary>
internal sealed class RedisSocketTransport(Socket socket) : DuplexTransport
{
    private const int ReceiveBufferSize = 16 * 1024;
    private byte[] _staged = new byte[4096];
    private int _stagedCount;
    private int _closed;
    private Exception? _fault;

    public override Memory<byte> GetMemory(int sizeHint = 0)
    {
        var needed = _stagedCount + Math.Max(sizeHint, 1);
        if (needed > _staged.Length)
        {
            Array.Resize(ref _staged, Math.Max(needed, _staged.Length * 2));
        }

        return _staged.AsMemory(_stagedCount);
    }

    public override Span<byte> GetSpan(int sizeHint = 0) => GetMemory(sizeHint).Span;

    public override void Advance(int count) => _stagedCount += count;

    public override bool Flush()
    {
        try
        {
            if (Volatile.Read(ref _closed) != 0)
            {
                return false;
            }

            var sent = 0;
            while (sent < _stagedCount)
            {
                sent += socket.Send(_staged, sent, _stagedCount - sent, SocketFlags.None);
            }

            return true;
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            Close(ex);
            return false;
        }
        finally
        {
            _stagedCount = 0;
        }
    }

    public override void Start(TransportReceiver receiver) => _ = ReceiveAsync(receiver);

    public override ValueTask DisposeAsync()
    {
        Close(null);
        return ValueTask.CompletedTask;
    }

    private async Task ReceiveAsync(TransportReceiver receiver)
    {
        var buffer = GC.AllocateUninitializedArray<byte>(ReceiveBufferSize);
        Exception? fault = null;
        try
        {
            while (true)
            {
                var received = await socket.ReceiveAsync(buffer.AsMemory(), SocketFlags.None);
                if (received == 0 || !receiver.OnReceived(buffer.AsSpan(0, received)))
                {
                    break;
                }

                receiver.OnBatchEnd();
            }
        }
        catch (Exception ex)
        {
            fault = ex;
        }

        Close(null);
        receiver.OnClosed(Volatile.Read(ref _fault) ?? (fault is ObjectDisposedException ? null : fault));
    }

    private void Close(Exception? fault)
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0)
        {
            return;
        }

        Volatile.Write(ref _fault, fault);
        try
        {
            socket.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
            // the peer is gone already
        }

        socket.Dispose();
    }
}
