using System.Diagnostics;
using System.Text;

namespace Gateway.Tests.Infrastructure;

/// <summary>
/// The gateway as it ships: published by running the README's "Publish / container" command verbatim (the same
/// line the Dockerfile runs) in the repository root, once per test run, shared by every test that needs it.
/// </summary>
public static class PublishedGateway
{
    private static readonly Lazy<Task<string>> Published = new(PublishAsync, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The README's publish command line, e.g. <c>dotnet publish src/Gateway -c Release -o out/gateway</c>.</summary>
    public static string Command
    {
        get
        {
            var readme = RepositoryPaths.Read("README.md");
            var lines = readme.Split('\n').Select(l => l.Trim()).Where(l => l.StartsWith("dotnet publish src/Gateway ", StringComparison.Ordinal)).Distinct().ToArray();
            Assert.True(lines.Length == 1, $"README.md must document exactly one gateway publish command (a line starting 'dotnet publish src/Gateway '), found {lines.Length}.");
            return lines[0];
        }
    }

    /// <summary>The folder holding the published <c>Gateway.dll</c> (and the shipped appsettings.json).</summary>
    public static Task<string> DirectoryAsync() => Published.Value;

    private static async Task<string> PublishAsync()
    {
        var args = Command.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var output = Array.IndexOf(args, "-o") is var o and >= 0 && o + 1 < args.Length
            ? Path.GetFullPath(Path.Combine(RepositoryPaths.Root, args[o + 1]))
            : throw new InvalidOperationException($"The README's publish command '{Command}' names no output folder (-o).");

        var info = new ProcessStartInfo(args[0])
        {
            WorkingDirectory = RepositoryPaths.Root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in args.Skip(1))
        {
            info.ArgumentList.Add(arg);
        }

        // The test host runs under `dotnet test`: keep its MSBuild settings out, and leave no build servers behind.
        foreach (var name in info.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase) || k.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase)).ToArray())
        {
            info.Environment.Remove(name);
        }

        info.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        info.Environment["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0";
        info.Environment["UseSharedCompilation"] = "false";
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";

        using var process = Process.Start(info)!;
        var log = new StringBuilder();
        process.OutputDataReceived += (_, e) => { lock (log) { log.AppendLine(e.Data); } };
        process.ErrorDataReceived += (_, e) => { lock (log) { log.AppendLine(e.Data); } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"'{Command}' did not finish within 10 minutes:\n{log}");
        }

        process.WaitForExit(); // drains the output callbacks
        if (process.ExitCode != 0 || !File.Exists(Path.Combine(output, "Gateway.dll")))
        {
            throw new InvalidOperationException($"'{Command}' failed (exit code {process.ExitCode}):\n{log}");
        }

        return output;
    }
}
