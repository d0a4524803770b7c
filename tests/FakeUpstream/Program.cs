// Standalone fake OpenAI upstream: dotnet run --project tests/FakeUpstream -- --urls http://127.0.0.1:9090
// Configuration (command line, environment, appsettings): --urls / ASPNETCORE_URLS, FakeUpstream:RecordRequests
// (default false: benchmarks must not grow memory), FakeUpstream:RecordingsPath, FakeUpstream:DefaultDeltas,
// FakeUpstream:DefaultDelayMs, FakeUpstream:MaxStoredObjects.
namespace FakeUpstream;

/// <summary>Entry point of the standalone fake (a named class so it never clashes with the gateway's Program in tests).</summary>
internal static class FakeUpstreamProgram
{
    public static async Task<int> Main(string[] args)
    {
        if (args is ["probe", var probeUrl])
        {
            // The compose health check: the chiseled image has no shell or curl.
            using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(3) };
            try
            {
                using var response = await client.GetAsync(new Uri(probeUrl));
                return response.IsSuccessStatusCode ? 0 : 1;
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
            {
                return 1;
            }
        }

        var builder = WebApplication.CreateSlimBuilder(args);
        var section = builder.Configuration.GetSection("FakeUpstream");
        var defaults = new FakeUpstreamSettings();
        var settings = defaults with
        {
            RecordRequests = section.GetValue("RecordRequests", false),
            RecordingsPath = section["RecordingsPath"],
            DefaultDeltas = section.GetValue("DefaultDeltas", defaults.DefaultDeltas),
            DefaultDelayMs = section.GetValue("DefaultDelayMs", defaults.DefaultDelayMs),
            MaxStoredObjects = section.GetValue("MaxStoredObjects", defaults.MaxStoredObjects),
        };

        if (string.IsNullOrEmpty(builder.Configuration["urls"]))
        {
            builder.WebHost.UseUrls("http://127.0.0.1:9090");
        }

        FakeApp.ConfigureBuilder(builder);
        var app = builder.Build();
        var state = new FakeUpstreamState(settings) { StopListening = () => app.StopAsync() };
        FakeApp.Map(app, state);
        await app.RunAsync();
        return 0;
    }
}
