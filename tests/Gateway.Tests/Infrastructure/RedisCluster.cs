using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using StackExchange.Redis;

namespace Gateway.Tests.Infrastructure;

/// <summary>
/// A real three-node Redis Cluster on 127.0.0.1: three <c>redis-server --cluster-enabled yes</c> processes on free
/// ports (client and bus port both chosen, in temp directories), joined by <c>redis-cli --cluster create</c> with no
/// replicas, so the 16384 slots are split three ways. Skipped locally without the binaries; fails under CI=true.
/// </summary>
public sealed class RedisCluster : IAsyncDisposable
{
    private const int NodeCount = 3;
    private static readonly string[] CliCandidates = ["/usr/bin/redis-cli", "/usr/local/bin/redis-cli"];

    private readonly List<Process> _nodes = [];
    private readonly List<string> _directories = [];
    private readonly List<int> _clientPorts = [];

    private RedisCluster()
    {
    }

    public IReadOnlyList<int> Ports { get; private set; } = [];

    /// <summary>Every node, as StackExchange.Redis takes a cluster: it follows MOVED/ASK redirections itself.</summary>
    public string ConnectionString => string.Join(',', Ports.Select(p => $"127.0.0.1:{p}")) + ",abortConnect=false,connectTimeout=2000";

    public static async Task<RedisCluster> StartAsync()
    {
        RedisServer.RequireInstalled();
        var cli = CliCandidates.FirstOrDefault(File.Exists);
        if (cli is null)
        {
            Assert.Fail("redis-cli is required for the Redis Cluster tests (it comes with redis-server, apt-get install -y redis-server).");
        }

        var cluster = new RedisCluster();
        try
        {
            var ports = new List<int>();
            for (var i = 0; i < NodeCount; i++)
            {
                var (port, busPort) = (FreePort(ports), FreePort(ports));
                var directory = Directory.CreateTempSubdirectory("gateway-redis-cluster-").FullName;
                cluster._directories.Add(directory);
                cluster._nodes.Add(StartNode(port, busPort, directory));
                cluster._clientPorts.Add(port);
            }

            cluster.Ports = cluster._clientPorts;
            foreach (var port in cluster.Ports)
            {
                await WaitUntilAcceptingAsync(port);
            }

            var create = new ProcessStartInfo(cli!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            create.ArgumentList.Add("--cluster");
            create.ArgumentList.Add("create");
            foreach (var port in cluster.Ports)
            {
                create.ArgumentList.Add($"127.0.0.1:{port}");
            }

            create.ArgumentList.Add("--cluster-replicas");
            create.ArgumentList.Add("0");
            create.ArgumentList.Add("--cluster-yes");
            using (var process = Process.Start(create)!)
            {
                var output = process.StandardOutput.ReadToEndAsync();
                var error = process.StandardError.ReadToEndAsync();
                await process.WaitForExitAsync();
                if (process.ExitCode != 0)
                {
                    throw new InvalidOperationException($"redis-cli --cluster create failed ({process.ExitCode}):\n{await output}\n{await error}");
                }
            }

            await cluster.WaitUntilHealthyAsync();
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>Waits until every node reports <c>cluster_state:ok</c> and knows all three masters.</summary>
    private async Task WaitUntilHealthyAsync()
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        string last = "";
        while (DateTime.UtcNow < deadline)
        {
            var healthy = true;
            foreach (var port in Ports)
            {
                await using var node = await ConnectionMultiplexer.ConnectAsync($"127.0.0.1:{port},abortConnect=false,allowAdmin=true");
                var server = node.GetServer("127.0.0.1", port);
                last = (string?)await server.ExecuteAsync("CLUSTER", "INFO") ?? "";
                healthy &= last.Contains("cluster_state:ok", StringComparison.Ordinal)
                    && last.Contains($"cluster_known_nodes:{NodeCount}", StringComparison.Ordinal);
            }

            if (healthy)
            {
                return;
            }

            await Task.Delay(100);
        }

        throw new InvalidOperationException($"The Redis Cluster on {string.Join(',', Ports)} did not become healthy:\n{last}");
    }

    private static Process StartNode(int port, int busPort, string directory)
    {
        var info = new ProcessStartInfo(RedisServer.BinaryPath!)
        {
            ArgumentList =
            {
                "--port", port.ToString(CultureInfo.InvariantCulture), "--cluster-port", busPort.ToString(CultureInfo.InvariantCulture),
                "--bind", "127.0.0.1", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--save", "", "--appendonly", "no", "--dir", directory, "--protected-mode", "yes",
            },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        var process = Process.Start(info)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private static async Task WaitUntilAcceptingAsync(int port)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, port);
                return;
            }
            catch (SocketException)
            {
                await Task.Delay(50);
            }
        }

        throw new InvalidOperationException($"redis-server (cluster node) did not start on port {port}.");
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in _nodes)
        {
            if (!node.HasExited)
            {
                node.Kill(entireProcessTree: true);
                await node.WaitForExitAsync();
            }

            node.Dispose();
        }

        foreach (var directory in _directories)
        {
            try
            {
                Directory.Delete(directory, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>A free port not yet in <paramref name="taken"/>, which it joins (client and bus ports must all differ).</summary>
    private static int FreePort(List<int> taken)
    {
        while (true)
        {
            using var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            var port = ((IPEndPoint)listener.LocalEndpoint).Port;
            if (!taken.Contains(port))
            {
                taken.Add(port);
                return port;
            }
        }
    }
}
