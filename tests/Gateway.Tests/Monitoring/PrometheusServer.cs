using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;

namespace Gateway.Tests.Monitoring;

/// <summary>
/// A real Prometheus server (Debian's <c>prometheus</c> package) on 127.0.0.1 and a free port, with its own config and
/// storage in a temp directory, queried through its HTTP API. Skips locally when Prometheus is not installed; fails under
/// CI=true, where .ci/run installs it.
/// </summary>
internal sealed class PrometheusServer : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _directory;
    private readonly HttpClient _http;
    private readonly List<string> _output = [];

    private PrometheusServer(Process process, string directory, Uri url)
    {
        _process = process;
        _directory = directory;
        _http = new HttpClient { BaseAddress = url, Timeout = TimeSpan.FromSeconds(30) };
    }

    public string Output
    {
        get
        {
            lock (_output)
            {
                return string.Join('\n', _output);
            }
        }
    }

    public static void RequireTool(string tool)
    {
        if (FindOnPath(tool) is not null)
        {
            return;
        }

        if (string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
        {
            Assert.Fail($"{tool} is required under CI=true (apt-get install -y prometheus; .ci/run does) but was not found.");
        }

        Skip.If(true, $"{tool} is not installed (apt-get install -y prometheus).");
    }

    public static string? FindOnPath(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, tool)).FirstOrDefault(File.Exists);

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public static async Task<PrometheusServer> StartAsync(string configYaml)
    {
        RequireTool("prometheus");
        var directory = Directory.CreateTempSubdirectory("gw-prometheus-").FullName;
        var config = Path.Combine(directory, "prometheus.yml");
        await File.WriteAllTextAsync(config, configYaml);
        var port = FreePort();
        var info = new ProcessStartInfo(FindOnPath("prometheus")!)
        {
            ArgumentList =
            {
                "--config.file=" + config, "--storage.tsdb.path=" + Path.Combine(directory, "data"),
                $"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
            },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = directory,
        };
        var process = new Process { StartInfo = info };
        var server = new PrometheusServer(process, directory, new Uri($"http://127.0.0.1:{port}/"));
        process.OutputDataReceived += (_, e) => server.Collect(e.Data);
        process.ErrorDataReceived += (_, e) => server.Collect(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            try
            {
                using var ready = await server._http.GetAsync("-/ready");
                if (ready.IsSuccessStatusCode)
                {
                    return server;
                }
            }
            catch (HttpRequestException)
            {
            }

            if (process.HasExited || DateTime.UtcNow > deadline)
            {
                await server.DisposeAsync();
                throw new InvalidOperationException($"Prometheus did not become ready (exited: {process.HasExited}):\n{server.Output}");
            }

            await Task.Delay(100);
        }
    }

    /// <summary>Evaluates <paramref name="expression"/> now; fails the test with Prometheus's error if it does not evaluate.</summary>
    public async Task<JsonElement[]> QueryAsync(string expression)
    {
        using var response = await _http.GetAsync("api/v1/query?query=" + Uri.EscapeDataString(expression));
        var body = await response.Content.ReadAsStringAsync();
        using var document = JsonDocument.Parse(body);
        var root = document.RootElement;
        Assert.True(root.GetProperty("status").GetString() == "success", $"'{expression}' did not evaluate: {body}");
        var data = root.GetProperty("data");
        Assert.Equal("vector", data.GetProperty("resultType").GetString());
        return data.GetProperty("result").EnumerateArray().Select(e => e.Clone()).ToArray();
    }

    /// <summary>Polls <paramref name="expression"/> until it returns at least one series or <paramref name="timeout"/> passes.</summary>
    public async Task<JsonElement[]> QueryUntilAsync(string expression, Func<JsonElement[], bool> done, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var result = await QueryAsync(expression);
            if (done(result) || DateTime.UtcNow > deadline)
            {
                return result;
            }

            await Task.Delay(250);
        }
    }

    public async Task<JsonElement> GetAsync(string path)
    {
        var body = await _http.GetStringAsync(path);
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
        }
        catch (InvalidOperationException)
        {
            // Never started.
        }

        _process.Dispose();
        _http.Dispose();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private void Collect(string? line)
    {
        if (line is not null)
        {
            lock (_output)
            {
                _output.Add(line);
            }
        }
    }

    public static string Label(JsonElement series, string name) =>
        series.GetProperty("metric").TryGetProperty(name, out var value) ? value.GetString()! : "";

    public static double Value(JsonElement series) =>
        double.Parse(series.GetProperty("value")[1].GetString()!, System.Globalization.CultureInfo.InvariantCulture);
}
