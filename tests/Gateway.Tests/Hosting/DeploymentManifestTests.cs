using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Gateway.Configuration;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace Gateway.Tests.Hosting;

/// <summary>
/// The deployment files (Dockerfile, .dockerignore, docker-compose.yml, deploy/) are code: linted with yamllint,
/// rendered with kubectl kustomize, and checked against each other and against the gateway's own configuration,
/// since no Docker engine or cluster runs here. yamllint is required under CI=true (.ci/run installs it); the only
/// kubectl in Debian's archive (kubernetes-client 1.20, kustomize v2) fails on `labels:` ("unknown field"), so
/// the render needs a current kubectl and is skipped where none is installed.
/// </summary>
public sealed partial class DeploymentManifestTests
{
    private const string OverlayDirectory = "deploy/overlays/example";

    [SkippableFact]
    public async Task YamlFiles_Yamllint_NoProblems()
    {
        RequireTool("yamllint", requiredUnderCi: true, "apt-get install -y yamllint");

        var (exitCode, output) = await RunAsync("yamllint", "-s", "-f", "parsable", "-c", ".yamllint.yml", "deploy", "docker-compose.yml", ".yamllint.yml");

        Assert.True(exitCode == 0, $"yamllint found problems:\n{output}");
    }

    [SkippableFact]
    public async Task ExampleOverlay_KustomizeRender_EveryResourceInTheNamespaceAndWired()
    {
        RequireTool("kubectl", requiredUnderCi: false, "install a current kubectl (Debian's kubernetes-client 1.20 is too old for these kustomizations)");

        var (exitCode, rendered) = await RunAsync("kubectl", "kustomize", OverlayDirectory);
        Assert.True(exitCode == 0, $"kubectl kustomize {OverlayDirectory} failed:\n{rendered}");
        var documents = Documents(rendered);

        Assert.Equal(
            ["ConfigMap/llm-gateway-config", "Deployment/llm-gateway", "Deployment/llm-gateway-redis", "HorizontalPodAutoscaler/llm-gateway",
             "Namespace/llm-gateway", "NetworkPolicy/llm-gateway-redis", "PodDisruptionBudget/llm-gateway", "Service/llm-gateway",
             "Service/llm-gateway-redis", "ServiceAccount/llm-gateway"],
            documents.Select(d => $"{d.Kind}/{d.Name}").Order(StringComparer.Ordinal));
        Assert.All(documents.Where(d => d.Kind != "Namespace"), d => Assert.Equal("llm-gateway", d.Namespace));

        var gateway = documents.Single(d => d is { Kind: "Deployment", Name: "llm-gateway" }).Text;
        Assert.Contains("image: registry.example.com/platform/llm-gateway:1.0.0", gateway, StringComparison.Ordinal);
        Assert.Contains("name: llm-gateway-config", gateway, StringComparison.Ordinal); // the ConfigMap, by its unhashed name

        // The ConfigMap carries the overlay's appsettings.json as the file the Deployment's GATEWAY_CONFIG names.
        var configMap = documents.Single(d => d.Kind == "ConfigMap").Text;
        Assert.Contains("  appsettings.json: |", configMap, StringComparison.Ordinal);
        var overlayConfig = OverlaySettings();
        Assert.All(
            overlayConfig.GetSection("Gateway:Tenants").GetChildren().SelectMany(t => t.GetSection("KeyHashes").GetChildren()),
            hash => Assert.Contains(hash.Value!, configMap, StringComparison.Ordinal));

        // The base renders on its own too (what another overlay builds on).
        var (baseExit, baseOutput) = await RunAsync("kubectl", "kustomize", "deploy/base");
        Assert.True(baseExit == 0, baseOutput);
    }

    [Fact]
    public void Deployment_TerminationGracePeriod_CoversDrainDelayTimeoutAndFlush()
    {
        var deployment = RepositoryPaths.Read("deploy", "base", "deployment.yaml");
        var grace = TimeSpan.FromSeconds(int.Parse(YamlValue(deployment, "terminationGracePeriodSeconds"), CultureInfo.InvariantCulture));
        var delay = Duration(EnvValue(deployment, "Gateway__Shutdown__DrainDelay"));
        var timeout = Duration(EnvValue(deployment, "Gateway__Shutdown__DrainTimeout"));

        // The gateway's own shutdown budget (HostOptions.ShutdownTimeout) is DrainDelay + DrainTimeout + 2 s; the pod's
        // grace period must outlast it with room to flush logs and exit, and not by so much that it stops meaning it.
        var hostShutdown = delay + timeout + TimeSpan.FromSeconds(2);
        Assert.InRange(grace, hostShutdown + TimeSpan.FromSeconds(3), hostShutdown + TimeSpan.FromSeconds(30));

        // docker compose stop: the same budget, for the defaults of appsettings.json.
        var compose = RepositoryPaths.Read("docker-compose.yml");
        var stopGrace = TimeSpan.FromSeconds(int.Parse(StopGracePeriod().Match(compose).Groups[1].Value, CultureInfo.InvariantCulture));
        var defaults = new ConfigurationBuilder().AddJsonFile(RepositoryPaths.File("appsettings.json")).Build();
        var defaultBudget = defaults.GetValue<TimeSpan>("Gateway:Shutdown:DrainDelay") + defaults.GetValue<TimeSpan>("Gateway:Shutdown:DrainTimeout") + TimeSpan.FromSeconds(2);
        Assert.InRange(stopGrace, defaultBudget + TimeSpan.FromSeconds(3), defaultBudget + TimeSpan.FromSeconds(30));
    }

    [Fact]
    public void Deployment_Container_HardenedProbedAndFedFromVolumes()
    {
        var deployment = RepositoryPaths.Read("deploy", "base", "deployment.yaml");

        Assert.Equal("3", YamlValue(deployment, "replicas"));
        Assert.Equal("true", YamlValue(deployment, "runAsNonRoot"));
        Assert.Equal("true", YamlValue(deployment, "readOnlyRootFilesystem"));
        Assert.Equal("false", YamlValue(deployment, "allowPrivilegeEscalation"));
        Assert.Matches(@"capabilities:\s*\n\s*drop:\s*\n\s*- ALL\b", deployment);
        Assert.Matches(@"livenessProbe:\s*\n\s*httpGet:\s*\n\s*path: /healthz\b", deployment);
        Assert.Matches(@"readinessProbe:\s*\n(\s*#[^\n]*\n)?\s*httpGet:\s*\n\s*path: /readyz\b", deployment);
        Assert.Matches(@"resources:\s*\n\s*requests:", deployment);

        // ConfigMap updates reach the gateway only as a symlink swap in a directory mount (never subPath), seen by polling.
        Assert.DoesNotMatch(@"(?m)^\s*subPath:", deployment);
        Assert.Equal("\"true\"", EnvValue(deployment, "DOTNET_USE_POLLING_FILE_WATCHER"));
        Assert.Equal(Path.GetDirectoryName(EnvValue(deployment, "GATEWAY_CONFIG")), MountPath(deployment, "config"));
        Assert.Equal(Path.GetDirectoryName(EnvValue(deployment, "Gateway__Upstream__ApiKeyFile")), MountPath(deployment, "upstream-key"));

        // /metrics only on its own port, which the Service does not expose.
        Assert.Equal("\"9464\"", EnvValue(deployment, "Gateway__Metrics__Port"));
        var service = RepositoryPaths.Read("deploy", "base", "service.yaml");
        Assert.DoesNotContain("9464", service, StringComparison.Ordinal);
        Assert.DoesNotMatch(@"(?m)^\s*- name: metrics", service);
    }

    [Fact]
    public void ExampleOverlaySettings_PassGatewayValidation_WithoutTheDemoTenant()
    {
        var secret = Path.GetTempFileName(); // the mounted upstream key the Deployment points at
        try
        {
            var configuration = new ConfigurationBuilder()
                .AddConfiguration(OverlaySettings())
                .AddInMemoryCollection(new Dictionary<string, string?> { ["Gateway:Upstream:ApiKeyFile"] = secret })
                .Build();
            var options = configuration.GetSection(GatewayOptions.SectionName).Get<GatewayOptions>()!;

            var result = new GatewayOptionsValidator(configuration).Validate(Options.DefaultName, options);

            Assert.True(result.Succeeded, result.FailureMessage);
            Assert.DoesNotContain(TestKeys.Hash("gwk_demo_local_only"), options.Tenants.Values.SelectMany(t => t.KeyHashes));
            Assert.StartsWith("llm-gateway-redis:6379", configuration.GetConnectionString("Redis"), StringComparison.Ordinal);
            Assert.Contains("name: llm-gateway-redis", RepositoryPaths.Read("deploy", "redis", "redis.yaml"), StringComparison.Ordinal);

            // The file's drain timings agree with the Deployment's (which win, and which the grace period is matched to).
            var deployment = RepositoryPaths.Read("deploy", "base", "deployment.yaml");
            Assert.Equal(Duration(EnvValue(deployment, "Gateway__Shutdown__DrainDelay")), options.Shutdown.DrainDelay);
            Assert.Equal(Duration(EnvValue(deployment, "Gateway__Shutdown__DrainTimeout")), options.Shutdown.DrainTimeout);
        }
        finally
        {
            File.Delete(secret);
        }
    }

    [Fact]
    public void Dockerfile_PublishStep_IsTheReadmeCommand_AndFinalStageHoldsOnlyItsOutput()
    {
        var dockerfile = RepositoryPaths.Read("Dockerfile");
        var command = PublishedGateway.Command;
        Assert.Contains("\nRUN " + command + "\n", dockerfile, StringComparison.Ordinal);

        // The last stage (what `docker build .` produces): the chiseled ASP.NET runtime, non-root, port 8080, and
        // nothing from the build context or the SDK stage except the published folder.
        var final = dockerfile[dockerfile.LastIndexOf("\nFROM ", StringComparison.Ordinal)..];
        Assert.Matches(@"^\nFROM \$\{RUNTIME_IMAGE\} AS gateway\n", final);
        Assert.Matches(@"ARG RUNTIME_IMAGE=mcr\.microsoft\.com/dotnet/aspnet:10\.0-[a-z]+-chiseled\n", dockerfile);
        var publishFolder = command.Split(' ')[Array.IndexOf(command.Split(' '), "-o") + 1];
        var copies = final.Split('\n').Where(l => l.StartsWith("COPY ", StringComparison.Ordinal)).ToArray();
        Assert.Equal($"COPY --from=build /src/{publishFolder} ./", Assert.Single(copies));
        Assert.Matches(@"\nUSER \$APP_UID\n", final);
        Assert.Matches(@"\nEXPOSE 8080\n", final);
        Assert.Contains("ENTRYPOINT [\"dotnet\", \"Gateway.dll\"]", final, StringComparison.Ordinal);
    }

    [Fact]
    public void Dockerignore_AllowList_CoversEveryCopyFromTheContext_AndNothingSecret()
    {
        var patterns = RepositoryPaths.Read(".dockerignore").Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).ToArray();
        Assert.Equal("*", patterns[0]); // an allow-list: .env, keys and build output never enter the build context
        var allowed = patterns.Where(p => p.StartsWith('!')).Select(p => p[1..]).ToArray();
        Assert.DoesNotContain(allowed, p => p.Contains(".env", StringComparison.Ordinal) || p.Contains("secret", StringComparison.OrdinalIgnoreCase));
        Assert.Contains("**/bin", patterns);
        Assert.Contains("**/obj", patterns);

        var sources = RepositoryPaths.Read("Dockerfile").Split('\n')
            .Where(l => l.StartsWith("COPY ", StringComparison.Ordinal) && !l.Contains("--from=", StringComparison.Ordinal))
            .SelectMany(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1..^1])
            .ToArray();
        Assert.NotEmpty(sources);
        foreach (var source in sources)
        {
            var path = source.TrimEnd('/');
            Assert.True(allowed.Any(a => path == a || path.StartsWith(a + "/", StringComparison.Ordinal)), $"The Dockerfile copies '{source}', which .dockerignore keeps out of the build context.");
            Assert.True(Path.Exists(RepositoryPaths.File(path)), $"The Dockerfile copies '{source}', which does not exist.");
        }
    }

    [Fact]
    public void Compose_DemoProfile_PointsTheGatewayAtTheFakeUpstream()
    {
        var compose = RepositoryPaths.Read("docker-compose.yml");
        var demoEnv = RepositoryPaths.Read("deploy", "compose", "demo.env");
        var dockerfile = RepositoryPaths.Read("Dockerfile");

        Assert.Matches(@"\n  fake-upstream:\n    profiles: \[""demo""\]\n", compose);
        Assert.Contains("- ./appsettings.json:/app/appsettings.json:ro", compose, StringComparison.Ordinal);
        Assert.Contains("WORKDIR /app", dockerfile, StringComparison.Ordinal);
        Assert.Contains("Gateway__Upstream__BaseUrl=http://fake-upstream:9090/v1", demoEnv, StringComparison.Ordinal);
        Assert.Contains("\"--urls\", \"http://+:9090\"", dockerfile, StringComparison.Ordinal);
        Assert.Matches(@"\nOPENAI_API_KEY=\S+", demoEnv);

        // The demo defaults come first; the user's .env (the real key) overrides them.
        Assert.True(compose.IndexOf("path: deploy/compose/demo.env", StringComparison.Ordinal) < compose.IndexOf("path: .env", StringComparison.Ordinal));
        Assert.Contains("required: false", compose[compose.IndexOf("path: .env", StringComparison.Ordinal)..], StringComparison.Ordinal);
    }

    private static IConfigurationRoot OverlaySettings() =>
        new ConfigurationBuilder().AddJsonFile(RepositoryPaths.File(OverlayDirectory, "appsettings.json")).Build();

    private static string YamlValue(string yaml, string key)
    {
        var match = Regex.Match(yaml, $@"^\s*{Regex.Escape(key)}: (\S+)\s*$", RegexOptions.Multiline);
        Assert.True(match.Success, $"'{key}:' not found");
        return match.Groups[1].Value;
    }

    private static string EnvValue(string yaml, string name)
    {
        var match = Regex.Match(yaml, $@"- name: {Regex.Escape(name)}\s*\n\s*value: (\S+)");
        Assert.True(match.Success, $"environment variable {name} not found");
        return match.Groups[1].Value;
    }

    /// <summary>A quoted YAML duration scalar such as <c>"00:01:00"</c>.</summary>
    private static TimeSpan Duration(string scalar) => TimeSpan.Parse(scalar.Trim('"'), CultureInfo.InvariantCulture);

    private static string MountPath(string yaml, string volume)
    {
        var match = Regex.Match(yaml, $@"- name: {Regex.Escape(volume)}\s*\n\s*mountPath: (\S+)");
        Assert.True(match.Success, $"volume mount {volume} not found");
        return match.Groups[1].Value;
    }

    private static List<(string Kind, string Name, string? Namespace, string Text)> Documents(string rendered) =>
        rendered.Split("\n---\n").Select(text =>
        {
            var kind = Regex.Match(text, "^kind: (\\S+)", RegexOptions.Multiline).Groups[1].Value;
            var metadata = text[text.IndexOf("metadata:", StringComparison.Ordinal)..];
            var name = Regex.Match(metadata, "^  name: (\\S+)", RegexOptions.Multiline).Groups[1].Value;
            var ns = Regex.Match(metadata, "^  namespace: (\\S+)", RegexOptions.Multiline) is { Success: true } m ? m.Groups[1].Value : null;
            return (kind, name, ns, text);
        }).ToList();

    private static void RequireTool(string tool, bool requiredUnderCi, string install)
    {
        if (FindOnPath(tool) is not null)
        {
            return;
        }

        if (requiredUnderCi && string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
        {
            Assert.Fail($"{tool} is required under CI=true ({install}) but was not found.");
        }

        Skip.If(true, $"{tool} is not installed ({install}).");
    }

    private static string? FindOnPath(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, tool)).FirstOrDefault(File.Exists);

    private static async Task<(int ExitCode, string Output)> RunAsync(string tool, params string[] args)
    {
        var info = new ProcessStartInfo(FindOnPath(tool)!)
        {
            WorkingDirectory = RepositoryPaths.Root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }

        return (process.ExitCode, await stdout + await stderr);
    }

    [GeneratedRegex(@"stop_grace_period: (\d+)s")]
    private static partial Regex StopGracePeriod();
}
