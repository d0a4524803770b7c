using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Gateway.Configuration;
using Gateway.Upstreams;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace Gateway.Tests.Upstreams;

/// <summary>Builds the pool's parts from in-memory configuration, with a fake clock, a log recorder and a metrics listener.</summary>
internal sealed class PoolTestKit : IDisposable
{
    private readonly ServiceProvider _services;
    private readonly ReplaceableConfigurationSource _source;
    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<string, long> _measurements = new();

    public PoolTestKit(Dictionary<string, string?> configuration, int seed = 12345)
    {
        _source = new ReplaceableConfigurationSource(configuration);
        Configuration = new ConfigurationBuilder().Add(_source).Build();
        Settings = new GatewaySettings(Configuration, new GatewayOptionsValidator(Configuration), NullLogger<GatewaySettings>.Instance);
        _services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        StartListening();
        Metrics = new UpstreamMetrics(_services.GetRequiredService<IMeterFactory>());
        Health = new UpstreamHealth(Time, Metrics, Log.For<UpstreamHealth>());
        Pool = new UpstreamPool(Settings, Configuration, Time, Log.For<UpstreamPool>(), () => Entra);
        Metrics.ObserveAvailability(Pool, Health);
        Router = new UpstreamRouter(Pool, Health, new Random(seed));
    }

    public FakeTimeProvider Time { get; } = new(new DateTimeOffset(2026, 11, 30, 8, 0, 0, TimeSpan.Zero));

    public RecordingLogger Log { get; } = new();

    public FakeEntraCredential Entra { get; } = new();

    public IConfigurationRoot Configuration { get; }

    public GatewaySettings Settings { get; }

    public UpstreamMetrics Metrics { get; }

    public UpstreamHealth Health { get; }

    public UpstreamPool Pool { get; }

    public UpstreamRouter Router { get; }

    public RoutingOptions Routing => Pool.Current.Routing;

    /// <summary>A pool configuration: each name with a key, plus whatever <paramref name="extra"/> adds.</summary>
    public static Dictionary<string, string?> Config(IEnumerable<string> names, params (string Key, string? Value)[] extra)
    {
        var config = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase)
        {
            ["Gateway:Upstream:ApiKey"] = "sk-single",
        };
        foreach (var name in names)
        {
            config[$"Gateway:Upstreams:{name}:BaseUrl"] = $"http://127.0.0.1:9/{name}/v1";
            config[$"Gateway:Upstreams:{name}:ApiKey"] = $"sk-{name}";
        }

        foreach (var (key, value) in extra)
        {
            config[key] = value;
        }

        return config;
    }

    /// <summary>Swaps the whole configuration, as an edited file would, and signals the reload.</summary>
    public void ReplaceConfiguration(Dictionary<string, string?> configuration) => _source.Provider.Replace(configuration);

    /// <summary>Reports <paramref name="outcome"/> for one attempt at <paramref name="upstream"/>, as the request path will.</summary>
    public void Report(string upstream, string? model, UpstreamAttemptOutcome outcome)
    {
        var attempt = Health.TryBeginAttempt(Pool.Current.Find(upstream)!, model);
        Assert.NotNull(attempt);
        Health.Report(attempt, outcome, Routing);
    }

    /// <summary>Totals of a counter since the kit started, or the current value of a gauge, per tag set.</summary>
    public Dictionary<string, long> Measure(string instrument)
    {
        _listener.RecordObservableInstruments();
        return _measurements.Where(m => m.Key.StartsWith(instrument + "|", StringComparison.Ordinal))
            .ToDictionary(m => m.Key[(instrument.Length + 1)..], m => m.Value);
    }

    private void StartListening()
    {
        // Meters from this kit's own factory only: other tests' kits run in parallel.
        var meterFactory = _services.GetRequiredService<IMeterFactory>();
        _listener.InstrumentPublished = (i, l) =>
        {
            if (ReferenceEquals(i.Meter.Scope, meterFactory))
            {
                l.EnableMeasurementEvents(i);
            }
        };
        _listener.SetMeasurementEventCallback<long>((i, value, tags, _) => _measurements.AddOrUpdate(Key(i, tags), value, (_, old) => old + value));
        _listener.SetMeasurementEventCallback<int>((i, value, tags, _) => _measurements[Key(i, tags)] = value);
        _listener.Start();

        static string Key(Instrument instrument, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var parts = new List<string>();
            foreach (var tag in tags)
            {
                parts.Add($"{tag.Key}={tag.Value}");
            }

            parts.Sort(StringComparer.Ordinal);
            return instrument.Name + "|" + string.Join(',', parts);
        }
    }

    public void Dispose()
    {
        _listener.Dispose();
        Pool.Dispose();
        Settings.Dispose();
        _services.Dispose();
    }
}

/// <summary>Keeps every log event (level, event name, rendered message) for assertions.</summary>
internal sealed class RecordingLogger
{
    private readonly ConcurrentQueue<(LogLevel Level, string Event, string Message)> _events = new();

    public IReadOnlyList<(LogLevel Level, string Event, string Message)> Events => _events.ToArray();

    public IEnumerable<(LogLevel Level, string Event, string Message)> Named(string name) => Events.Where(e => e.Event == name);

    public ILogger<T> For<T>() => new Logger<T>(this);

    private sealed class Logger<T>(RecordingLogger owner) : ILogger<T>
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner._events.Enqueue((logLevel, eventId.Name ?? "", formatter(state, exception)));
    }
}

/// <summary>An Entra token source that counts calls and hands out tokens valid for <see cref="Lifetime"/>.</summary>
internal sealed class FakeEntraCredential : Azure.Core.TokenCredential
{
    private int _calls;

    public TimeProvider Clock { get; set; } = TimeProvider.System;

    public TimeSpan Lifetime { get; set; } = TimeSpan.FromHours(1);

    public bool Fail { get; set; }

    public int Calls => Volatile.Read(ref _calls);

    public override Azure.Core.AccessToken GetToken(Azure.Core.TokenRequestContext requestContext, CancellationToken cancellationToken) =>
        GetTokenAsync(requestContext, cancellationToken).AsTask().GetAwaiter().GetResult();

    public override ValueTask<Azure.Core.AccessToken> GetTokenAsync(Azure.Core.TokenRequestContext requestContext, CancellationToken cancellationToken)
    {
        Assert.Equal([EntraTokenCredentialSource.Scope], requestContext.Scopes);
        var n = Interlocked.Increment(ref _calls);
        if (Fail)
        {
            throw new Azure.Identity.CredentialUnavailableException("no identity here");
        }

        return ValueTask.FromResult(new Azure.Core.AccessToken($"entra-token-{n}", Clock.GetUtcNow() + Lifetime));
    }
}

internal sealed class ReplaceableConfigurationSource(Dictionary<string, string?> initial) : IConfigurationSource
{
    public ReplaceableConfigurationProvider Provider { get; } = new(initial);

    public IConfigurationProvider Build(IConfigurationBuilder builder) => Provider;
}

internal sealed class ReplaceableConfigurationProvider : ConfigurationProvider
{
    public ReplaceableConfigurationProvider(Dictionary<string, string?> initial) => Data = new Dictionary<string, string?>(initial, StringComparer.OrdinalIgnoreCase);

    public void Replace(Dictionary<string, string?> configuration)
    {
        Data = new Dictionary<string, string?>(configuration, StringComparer.OrdinalIgnoreCase);
        OnReload();
    }
}
