using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;

namespace FakeUpstream;

/// <summary>
/// An in-process fake of the OpenAI API (real wire format, deterministic output, fault injection through
/// <c>x-fake-*</c> request headers), listening on a real Kestrel socket so the gateway under test talks HTTP to it.
/// </summary>
public sealed class FakeUpstreamServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly FakeUpstreamState _state;

    private FakeUpstreamServer(WebApplication app, FakeUpstreamState state, Uri rootUrl)
    {
        _app = app;
        _state = state;
        RootUrl = rootUrl;
        BaseUrl = new Uri(rootUrl, "v1");
    }

    /// <summary>Root plus <c>/v1</c>, e.g. <c>http://127.0.0.1:5123/v1</c>: what an OpenAI client or the gateway uses as endpoint.</summary>
    public Uri BaseUrl { get; }

    /// <summary>e.g. <c>http://127.0.0.1:5123/</c>.</summary>
    public Uri RootUrl { get; }

    /// <summary>Requests received so far, in arrival order (a snapshot; empty when <see cref="FakeUpstreamSettings.RecordRequests"/> is off).</summary>
    public IReadOnlyList<RecordedRequest> Requests => _state.Recorder.Snapshot();

    /// <summary>Number of <c>/v1</c> requests received (counted even when recording is off).</summary>
    public int RequestCount => _state.Recorder.Count;

    /// <summary>Number of <c>/v1</c> requests the caller aborted while the fake was serving them (counted even when recording is off).</summary>
    public int AbortedRequestCount => _state.Recorder.AbortedCount;

    /// <summary>Usage this fake has delivered.</summary>
    public UsageLedger Ledger => _state.Ledger;

    /// <summary>Folder that <c>x-fake-replay</c> reads recordings from, or null if none was found.</summary>
    public string? RecordingsPath => _state.Replays.Root;

    public static async Task<FakeUpstreamServer> StartAsync(FakeUpstreamSettings? settings = null, CancellationToken ct = default)
    {
        settings ??= new FakeUpstreamSettings();

        // An empty builder: the test process's environment variables and appsettings (e.g. the gateway's own Kestrel
        // endpoints or ASPNETCORE_URLS) must not leak into the fake.
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.WebHost.UseKestrelCore();
        builder.WebHost.UseUrls(settings.Url);
        builder.Services.AddRoutingCore();
        builder.Logging.AddConsole();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        FakeApp.ConfigureBuilder(builder);

        var app = builder.Build();
        var state = new FakeUpstreamState(settings);
        FakeApp.Map(app, state);
        state.StopListening = () => app.StopAsync();
        await app.StartAsync(ct);

        var address = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.First();
        return new FakeUpstreamServer(app, state, new Uri(address.TrimEnd('/') + "/"));
    }

    /// <summary>Makes every later /v1 request fail, throttle, hang or behave normally, whatever its headers say.</summary>
    public void SetMode(FakeUpstreamMode mode) => _state.Mode = mode;

    /// <summary>Closes the listener: later connections are refused (an upstream that went away).</summary>
    public async Task StopListeningAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try
        {
            await _app.StopAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            // Remaining connections were aborted.
        }
    }

    public void ClearRequests() => _state.Recorder.Clear();

    /// <summary>Opens the named <c>x-fake-gate</c> (streams waiting on it continue; later ones pass straight through).</summary>
    public void ReleaseGate(string name) => _state.Gates.Release(name);

    /// <summary>The exact bytes the fake sends for <c>x-fake-replay: file#entry</c> (before any content encoding).</summary>
    public static byte[] RecordedBody(string recordingsPath, string file, int entry) =>
        new ReplayCatalog(recordingsPath).Get(file, entry).Body;

    public async ValueTask DisposeAsync()
    {
        // Streams parked on gates or delays would hold shutdown for the default 30 s; give up on them quickly.
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try
        {
            await _app.StopAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            // Remaining connections were aborted.
        }

        await _app.DisposeAsync();
    }
}
