using System.Net;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using FakeUpstream;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Hosting;

/// <summary>
/// The published gateway configured the way deploy/base/deployment.yaml configures it: the configuration file from a
/// ConfigMap volume (GATEWAY_CONFIG, DOTNET_USE_POLLING_FILE_WATCHER=true), the upstream key from a Secret volume.
/// Both volumes are laid out as the kubelet lays them out, and updated as it updates them: a new timestamped folder,
/// then an atomic swap of the <c>..data</c> symlink that the visible files point through.
/// </summary>
public sealed class ClusterConfigurationTests : IAsyncLifetime
{
    private static readonly TimeSpan PropagationGuard = TimeSpan.FromSeconds(60);

    // The key or config swap takes effect before its log line leaves the batched stdout sink.
    private static readonly TimeSpan LogFlushGuard = TimeSpan.FromSeconds(10);

    private FakeUpstreamServer _upstream = null!;
    private readonly List<KubeletVolume> _volumes = [];

    public async Task InitializeAsync() => _upstream = await FakeUpstreamServer.StartAsync();

    public async Task DisposeAsync()
    {
        await _upstream.DisposeAsync();
        _volumes.ForEach(v => v.Dispose());
    }

    [Fact]
    public async Task ConfigMapUpdated_SymlinkSwap_NewTenantKeyAcceptedWithoutRestart()
    {
        var config = Volume();
        config.Write(("appsettings.json", Settings(withTenantB: false)));
        await using var gateway = GatewayProcess.Start(await PublishedGateway.DirectoryAsync(), new Dictionary<string, string>
        {
            ["GATEWAY_CONFIG"] = config.PathOf("appsettings.json"),
            ["DOTNET_USE_POLLING_FILE_WATCHER"] = "true",
            ["Gateway__Upstream__BaseUrl"] = _upstream.BaseUrl.ToString(),
            ["OPENAI_API_KEY"] = TestKeys.UpstreamKey,
        });
        await gateway.WaitUntilListeningAsync();
        using var clientA = gateway.CreateClient(TestKeys.KeyA);
        using var clientB = gateway.CreateClient(TestKeys.KeyB);
        using (var before = await clientB.GetAsync("models"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, before.StatusCode);
        }

        config.Write(("appsettings.json", Settings(withTenantB: true)));

        await Eventually.ValueAsync(
            async () =>
            {
                using var after = await clientB.GetAsync("models");
                return after.StatusCode;
            },
            status => status == HttpStatusCode.OK,
            "tenant B's key, added to the mounted configuration, is accepted",
            PropagationGuard);
        using (var stillA = await clientA.GetAsync("models"))
        {
            Assert.Equal(HttpStatusCode.OK, stillA.StatusCode);
        }

        Assert.NotEmpty(await gateway.WaitForEventsAsync("ConfigurationReloaded", LogFlushGuard));
        Assert.False(gateway.HasExited);
    }

    [Fact]
    public async Task UpstreamKeySecretRotated_SymlinkSwap_NextRequestsCarryNewKeyWithoutErrors()
    {
        var secret = Volume();
        secret.Write(("api-key", "upstream-key-before-rotation\n"));
        await using var gateway = GatewayProcess.Start(await PublishedGateway.DirectoryAsync(), new Dictionary<string, string>
        {
            ["Gateway__Upstream__ApiKeyFile"] = secret.PathOf("api-key"),
            ["Gateway__Upstream__BaseUrl"] = _upstream.BaseUrl.ToString(),
            ["Gateway__Tenants__tenant-a__KeyHashes__0"] = TestKeys.Hash(TestKeys.KeyA),
        });
        await gateway.WaitUntilListeningAsync();
        using var client = gateway.CreateClient();
        using (var first = await client.GetAsync("models"))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        }

        Assert.Equal("Bearer upstream-key-before-rotation", _upstream.Requests[^1].Header("Authorization"));

        secret.Write(("api-key", "upstream-key-after-rotation\n"));

        var statuses = new List<HttpStatusCode>();
        await Eventually.ValueAsync(
            async () =>
            {
                using var response = await client.GetAsync("models");
                statuses.Add(response.StatusCode);
                return _upstream.Requests[^1].Header("Authorization");
            },
            authorization => authorization == "Bearer upstream-key-after-rotation",
            "the upstream receives the rotated key",
            PropagationGuard);
        Assert.All(statuses, s => Assert.Equal(HttpStatusCode.OK, s));
        var changed = Assert.Single(await gateway.WaitForEventsAsync("UpstreamKeyChanged", LogFlushGuard));
        Assert.Equal("Gateway:Upstream:ApiKeyFile", changed.GetProperty("Source").GetString());
        Assert.DoesNotContain("upstream-key-", gateway.Stdout, StringComparison.Ordinal);
    }

    private KubeletVolume Volume()
    {
        var volume = new KubeletVolume();
        _volumes.Add(volume);
        return volume;
    }

    /// <summary>The shipped appsettings.json with the test tenants in place of the demo one.</summary>
    private static string Settings(bool withTenantB)
    {
        var root = JsonNode.Parse(RepositoryPaths.Read("appsettings.json"))!;
        var tenants = new JsonObject { ["tenant-a"] = new JsonObject { ["KeyHashes"] = new JsonArray(TestKeys.Hash(TestKeys.KeyA)) } };
        if (withTenantB)
        {
            tenants["tenant-b"] = new JsonObject { ["KeyHashes"] = new JsonArray(TestKeys.Hash(TestKeys.KeyB)) };
        }

        root["Gateway"]!["Tenants"] = tenants;
        return root.ToJsonString();
    }

    /// <summary>A ConfigMap or Secret volume as the kubelet writes it (atomic writer): <c>name -> ..data/name</c>,
    /// <c>..data -> ..&lt;timestamp&gt;</c>; an update writes a new folder and renames a new symlink over <c>..data</c>.</summary>
    private sealed class KubeletVolume : IDisposable
    {
        private readonly string _root = Directory.CreateTempSubdirectory("gateway-volume-").FullName;
        private int _version;

        public string PathOf(string name) => Path.Combine(_root, name);

        public void Write(params (string Name, string Content)[] files)
        {
            var folder = $"..{DateTime.UtcNow:yyyy_MM_dd_HH_mm_ss}.{++_version}";
            Directory.CreateDirectory(Path.Combine(_root, folder));
            foreach (var (name, content) in files)
            {
                File.WriteAllText(Path.Combine(_root, folder, name), content);
            }

            var next = Path.Combine(_root, "..data_tmp");
            File.CreateSymbolicLink(next, folder);
            // rename(2), as the kubelet does: atomic, and it replaces the old link itself (File.Move follows links).
            if (Rename(next, Path.Combine(_root, "..data")) != 0)
            {
                throw new IOException($"rename failed: errno {Marshal.GetLastPInvokeError()}");
            }

            foreach (var (name, _) in files)
            {
                if (!Path.Exists(PathOf(name)))
                {
                    File.CreateSymbolicLink(PathOf(name), Path.Combine("..data", name));
                }
            }
        }

        public void Dispose() => Directory.Delete(_root, recursive: true);

#pragma warning disable SYSLIB1054 // DllImport: string marshalling as UTF-8, no AllowUnsafeBlocks for the test project
        [DllImport("libc", EntryPoint = "rename", SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        private static extern int Rename([MarshalAs(UnmanagedType.LPUTF8Str)] string from, [MarshalAs(UnmanagedType.LPUTF8Str)] string to);
#pragma warning restore SYSLIB1054
    }
}
