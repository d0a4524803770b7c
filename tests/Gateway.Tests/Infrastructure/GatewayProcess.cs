using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Headers;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace Gateway.Tests.Infrastructure;

/// <summary>
/// The published gateway as a real operating-system process (<c>dotnet Gateway.dll</c>), configured only the way a
/// container is: environment variables, files and its shipped appsettings.json. Listens on 127.0.0.1 and a port the
/// OS picks (read back from its "Now listening on" log line); stdout and stderr are captured line by line.
/// </summary>
public sealed class GatewayProcess : IAsyncDisposable
{
    private const int SigTerm = 15;

    // Variables of the developer's or CI's environment that would change the gateway's configuration.
    private static readonly string[] ScrubbedPrefixes = ["Gateway__", "ConnectionStrings__", "Serilog__", "ASPNETCORE_", "DOTNET_ENVIRONMENT", "OPENAI_", "GATEWAY_", "Urls", "Logging__"];

    private readonly Process _process;
    private readonly ConcurrentQueue<string> _stdout = new();
    private readonly ConcurrentQueue<string> _stderr = new();
    private readonly TaskCompletionSource<Uri> _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _stdoutClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _stderrClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private GatewayProcess(Process process) => _process = process;

    public int Id => _process.Id;

    /// <summary><c>http://127.0.0.1:port/</c>, known once the gateway listens (<see cref="WaitUntilListeningAsync"/>).</summary>
    public Uri RootUrl { get; private set; } = null!;

    public Uri BaseUrl => new(RootUrl, "/v1/");

    public bool HasExited => _process.HasExited;

    public IReadOnlyList<string> StdoutLines => _stdout.ToArray();

    public string Stdout => string.Join('\n', _stdout);

    public string Stderr => string.Join('\n', _stderr);

    /// <summary>Every stdout line that is a CLEF event.</summary>
    public IReadOnlyList<JsonElement> Events =>
        _stdout.Where(l => l.StartsWith('{')).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToArray();

    public IReadOnlyList<JsonElement> UsageEvents => Events.Where(e => EventName(e) == "Usage").ToArray();

    public static string? EventName(JsonElement e) =>
        e.TryGetProperty("EventId", out var id) && id.TryGetProperty("Name", out var name) ? name.GetString() : null;

    /// <summary>
    /// The events named <paramref name="name"/> once at least one is on stdout. The gateway's log sink writes in
    /// batches, so a line can reach stdout after the request that shows its effect; fails with the output after
    /// <paramref name="timeout"/>.
    /// </summary>
    public async Task<IReadOnlyList<JsonElement>> WaitForEventsAsync(string name, TimeSpan timeout)
    {
        var matching = await Eventually.LastValueAsync(() => Events.Where(e => EventName(e) == name).ToArray(), found => found.Length > 0 || _process.HasExited, timeout);
        if (matching.Length == 0)
        {
            throw new TimeoutException($"No {name} event on the gateway's stdout within {timeout} (exited: {_process.HasExited}).\nstdout:\n{Stdout}");
        }

        return matching;
    }

    /// <summary>
    /// Starts <c>dotnet Gateway.dll</c> from <paramref name="publishDirectory"/> in <paramref name="workingDirectory"/>
    /// (default: a fresh empty folder, so the appsettings.json beside the binary is the one loaded) with
    /// <paramref name="environment"/> on top of a scrubbed copy of this process's environment, and
    /// <paramref name="arguments"/> (e.g. <c>--Gateway:Limits:MaxRequestBodyBytes=1024</c>) after the dll.
    /// </summary>
    public static GatewayProcess Start(string publishDirectory, IReadOnlyDictionary<string, string> environment, string? workingDirectory = null, IReadOnlyList<string>? arguments = null)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            ArgumentList = { Path.Combine(publishDirectory, "Gateway.dll") },
            WorkingDirectory = workingDirectory ?? Directory.CreateTempSubdirectory("gateway-process-").FullName,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments ?? [])
        {
            info.ArgumentList.Add(argument);
        }

        foreach (var name in info.Environment.Keys.Where(k => ScrubbedPrefixes.Any(p => k.StartsWith(p, StringComparison.OrdinalIgnoreCase))).ToArray())
        {
            info.Environment.Remove(name);
        }

        info.Environment["Urls"] = "http://127.0.0.1:0";
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        // The start-up warm-up costs seconds per process; tests that want it pass Gateway__Warmup__Enabled=true.
        info.Environment["Gateway__Warmup__Enabled"] = "false";
        foreach (var (name, value) in environment)
        {
            info.Environment[name] = value;
        }

        var gateway = new GatewayProcess(new Process { StartInfo = info });
        gateway._process.OutputDataReceived += (_, e) => gateway.OnStdout(e.Data);
        gateway._process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                gateway._stderrClosed.TrySetResult();
            }
            else
            {
                gateway._stderr.Enqueue(e.Data);
            }
        };
        gateway._process.Start();
        gateway._process.BeginOutputReadLine();
        gateway._process.BeginErrorReadLine();
        return gateway;
    }

    private void OnStdout(string? line)
    {
        if (line is null)
        {
            _stdoutClosed.TrySetResult();
            _listening.TrySetException(new InvalidOperationException("The gateway closed stdout before it listened."));
            return;
        }

        _stdout.Enqueue(line);
        if (line.Contains("\"ListeningOnAddress\"", StringComparison.Ordinal))
        {
            var address = JsonDocument.Parse(line).RootElement.GetProperty("address").GetString()!;
            _listening.TrySetResult(new Uri(address.TrimEnd('/') + "/"));
        }
    }

    /// <summary>Waits for the "Now listening on" line; fails with the process output if it exits first.</summary>
    public async Task WaitUntilListeningAsync(TimeSpan? timeout = null)
    {
        var exited = _process.WaitForExitAsync();
        var listening = _listening.Task;
        var limit = Task.Delay(timeout ?? TimeSpan.FromSeconds(60));
        var first = await Task.WhenAny(listening, exited, limit);
        if (first != listening || !listening.IsCompletedSuccessfully)
        {
            throw new InvalidOperationException($"The gateway did not start listening (exited: {_process.HasExited}).\nstdout:\n{Stdout}\nstderr:\n{Stderr}");
        }

        RootUrl = listening.Result;
    }

    /// <summary>An HttpClient on a connection pool of its own, for <c>/v1</c> with a tenant key (or none).</summary>
    public HttpClient CreateClient(string? key = TestKeys.KeyA)
    {
        var client = new HttpClient { BaseAddress = BaseUrl, Timeout = TimeSpan.FromSeconds(60) };
        if (key is not null)
        {
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        }

        return client;
    }

    /// <summary>Sends SIGTERM, as the kubelet and <c>docker stop</c> do (<see cref="Process.Kill()"/> sends SIGKILL).</summary>
    public void Terminate()
    {
        if (Kill(_process.Id, SigTerm) != 0)
        {
            throw new InvalidOperationException($"kill({_process.Id}, SIGTERM) failed: errno {Marshal.GetLastPInvokeError()}.");
        }
    }

    /// <summary>Waits for the process to exit and for its output to be read to the end; returns the exit code.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
            await Task.WhenAll(_stdoutClosed.Task, _stderrClosed.Task).WaitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"The gateway did not exit within {timeout}.\nstdout:\n{Stdout}\nstderr:\n{Stderr}");
        }

        return _process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }

    // DllImport rather than LibraryImport: blittable arguments, and no AllowUnsafeBlocks for the test project.
#pragma warning disable SYSLIB1054
    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern int Kill(int pid, int signal);
#pragma warning restore SYSLIB1054
}
