using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Gateway.Tests.Infrastructure;

/// <summary>
/// A real <c>redis-server</c> on 127.0.0.1 and a free port, started by the test itself (no mocks, no containers).
/// Can be stopped and started again on the same port to test store failures. Without the binary the test is
/// skipped locally, and fails under CI (CI=true), where Redis must be installed.
/// </summary>
public sealed class RedisServer : IAsyncDisposable
{
    private readonly string _directory;
    private Process? _process;

    private RedisServer(int port, string directory)
    {
        Port = port;
        _directory = directory;
    }

    public int Port { get; }

    public string ConnectionString => $"127.0.0.1:{Port},abortConnect=false,connectTimeout=2000";

    private static readonly string[] Candidates = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"];

    public static string? BinaryPath => Candidates.FirstOrDefault(File.Exists);

    /// <summary>Skips (locally) or fails (CI) when redis-server is not installed.</summary>
    public static void RequireInstalled() =>
        RequireInstalled(BinaryPath, string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase));

    /// <summary>The decision itself, for its own test: present passes, missing fails under CI, else skips.</summary>
    internal static void RequireInstalled(string? binaryPath, bool underCi)
    {
        if (binaryPath is not null)
        {
            return;
        }

        if (underCi)
        {
            Assert.Fail("redis-server is required under CI=true (apt-get install -y redis-server) but was not found.");
        }

        Skip.If(true, "redis-server is not installed; install it to run the Redis tests (they fail instead of skipping under CI=true).");
    }

    public static async Task<RedisServer> StartAsync()
    {
        RequireInstalled();
        var directory = Directory.CreateTempSubdirectory("gateway-redis-").FullName;
        var server = new RedisServer(FreePort(), directory);
        await server.StartProcessAsync();
        return server;
    }

    public async Task StartProcessAsync()
    {
        var info = new ProcessStartInfo(BinaryPath!)
        {
            ArgumentList = { "--port", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", _directory, "--protected-mode", "yes" },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        _process = Process.Start(info)!;
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        await Eventually.UntilAsync(AcceptsConnectionsAsync, $"redis-server accepts connections on port {Port}", TimeSpan.FromSeconds(10));
    }

    private async Task<bool> AcceptsConnectionsAsync()
    {
        try
        {
            using var client = new TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, Port);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    public async Task StopProcessAsync()
    {
        if (_process is { HasExited: false } process)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }

        _process?.Dispose();
        _process = null;
    }

    public async ValueTask DisposeAsync()
    {
        await StopProcessAsync();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
