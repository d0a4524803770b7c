using System.Collections.Concurrent;
using Gateway.Configuration;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;

namespace Gateway.Pricing;

/// <summary>
/// Prices requests. Holds the price table in force (the price file plus <c>Gateway:Pricing:Models</c> overrides), reloads
/// it when the file or the configuration changes (a bad edit is logged and ignored, the last good table stays), and
/// applies the upstream's <c>PriceMultiplier</c>. A model without a price costs null: counted and warned about (once per
/// model per hour), never guessed.
/// </summary>
internal sealed class PriceBook : IDisposable
{
    private static readonly TimeSpan WarningInterval = TimeSpan.FromHours(1);

    // Bounds the "already warned" memory: model names come from upstream answers, but a hostile stream of names must not grow it forever.
    private const int MaxWarnedModels = 1024;

    // An editor's save is often several writes (truncate, then the content): the file is read once it has been quiet
    // this long, as configuration files are, so a half-written file is not read and rejected with an error line.
    private static readonly TimeSpan FileSettleDelay = TimeSpan.FromMilliseconds(250);

    private readonly GatewaySettings _settings;
    private readonly SpendMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger<PriceBook> _logger;
    private readonly string[] _searchDirectories;
    private readonly ConcurrentDictionary<string, DateTimeOffset> _warned = new(StringComparer.Ordinal);
    private readonly Lock _reloadLock = new();
    private PhysicalFileProvider? _watchedDirectory;
    private IDisposable? _watch;
    private string? _watchedPath;
    private ITimer? _settleTimer;
    private bool _disposed;
    private volatile PriceTable _current;

    public PriceBook(GatewaySettings settings, IHostEnvironment environment, SpendMetrics metrics, TimeProvider time, ILogger<PriceBook> logger)
    {
        _settings = settings;
        _metrics = metrics;
        _time = time;
        _logger = logger;
        _searchDirectories = [environment.ContentRootPath, AppContext.BaseDirectory];
        try
        {
            _current = Load(settings.Current);
        }
        catch (PriceTableException ex)
        {
            // Surfaces as a configuration error at start: the process exits with the message, no stack trace.
            throw new OptionsValidationException(Options.DefaultName, typeof(PricingOptions), [ex.Message]);
        }

        settings.Changed += OnSettingsChanged;
    }

    public PriceTable Current => _current;

    /// <summary>
    /// The cost in USD of the given tokens on <paramref name="model"/>, or null when it has no price (or there are no tokens).
    /// <paramref name="multiplier"/>: the answering pool upstream's <c>PriceMultiplier</c>; null: <c>Gateway:Upstream</c>'s.
    /// </summary>
    public decimal? Cost(string? model, long? input, long? cachedInput, long? output, decimal? multiplier = null)
    {
        if ((input is null && output is null) || !_current.TryGet(model, out var price))
        {
            return null;
        }

        return price.Cost(input ?? 0, cachedInput ?? 0, output ?? 0, multiplier ?? _settings.Current.Upstream.PriceMultiplier);
    }

    /// <summary>
    /// Counts a request whose usage could not be priced, and warns once per model per hour. <paramref name="metricModel"/>
    /// names the model in the counter and warning: the upstream's model only, never a client-supplied name (a tenant
    /// could mint label values with it).
    /// </summary>
    public void ReportUnpriced(string? metricModel) => Unpriced(metricModel ?? "unknown");

    /// <summary>The model's price (before the multiplier), for reservations; false when it has none.</summary>
    public bool TryGetPrice(string? model, out ModelPrice price) => _current.TryGet(model, out price);

    public decimal Multiplier => _settings.Current.Upstream.PriceMultiplier;

    private void Unpriced(string model)
    {
        _metrics.RecordUnpriced(model);
        var now = _time.GetUtcNow();
        if (_warned.TryGetValue(model, out var last) && now - last < WarningInterval)
        {
            return;
        }

        if (_warned.Count >= MaxWarnedModels)
        {
            _warned.Clear();
        }

        _warned[model] = now;
        PricingLog.Unpriced(_logger, model, _current.Source);
    }

    private PriceTable Load(GatewayOptions options)
    {
        var path = ResolveFile(options.Pricing.File);
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new PriceTableException($"Gateway:Pricing:File: cannot read the price file {path}: {ex.Message}");
        }

        var overrides = new Dictionary<string, ModelPrice>(StringComparer.Ordinal);
        foreach (var (model, entry) in options.Pricing.Models)
        {
            var price = new ModelPrice(entry.Input ?? 0m, entry.CachedInput ?? entry.Input ?? 0m, entry.Output ?? 0m);
            if (PriceTable.Validate(model, price.Input, price.CachedInput, price.Output) is { } failure)
            {
                throw new PriceTableException("Gateway:Pricing:" + failure);
            }

            overrides[model] = price;
        }

        var table = PriceTable.Parse(bytes, path).With(overrides);
        Watch(path);
        return table;
    }

    private string ResolveFile(string? configured)
    {
        var name = string.IsNullOrWhiteSpace(configured) ? PricingOptions.DefaultFile : configured;
        if (Path.IsPathRooted(name))
        {
            return name;
        }

        foreach (var directory in _searchDirectories)
        {
            var candidate = Path.GetFullPath(Path.Combine(directory, name));
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new PriceTableException(
            $"Gateway:Pricing:File: no price file '{name}' in {string.Join(" or ", _searchDirectories.Distinct())}; ship pricing.json beside appsettings.json or set Gateway:Pricing:File.");
    }

    /// <summary>Watches the price file (honours DOTNET_USE_POLLING_FILE_WATCHER, like the configuration file).</summary>
    private void Watch(string path)
    {
        lock (_reloadLock)
        {
            if (string.Equals(_watchedPath, path, StringComparison.Ordinal))
            {
                return;
            }

            _watch?.Dispose();
            _watchedDirectory?.Dispose();
            _watchedDirectory = new PhysicalFileProvider(Path.GetDirectoryName(path)!);
            var fileName = Path.GetFileName(path);
            _watch = ChangeToken.OnChange(() => _watchedDirectory.Watch(fileName), ReloadWhenSettled);
            _watchedPath = path;
        }
    }

    private void OnSettingsChanged(GatewayOptions options) => Reload(options);

    /// <summary>Each change of the file restarts the wait; the reload runs once it has been quiet for <see cref="FileSettleDelay"/>.</summary>
    private void ReloadWhenSettled()
    {
        lock (_reloadLock)
        {
            if (_disposed)
            {
                return;
            }

            _settleTimer ??= _time.CreateTimer(static state => ((PriceBook)state!).Reload(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            _settleTimer.Change(FileSettleDelay, Timeout.InfiniteTimeSpan);
        }
    }

    private void Reload() => Reload(_settings.Current);

    private void Reload(GatewayOptions options)
    {
        try
        {
            var next = Load(options);
            _current = next;
            PricingLog.Reloaded(_logger, next.Source, next.AsOf?.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture) ?? "", next.Count);
        }
        catch (PriceTableException ex)
        {
            PricingLog.ReloadRejected(_logger, ex.Message);
        }
    }

    public void Dispose()
    {
        _settings.Changed -= OnSettingsChanged;
        lock (_reloadLock)
        {
            _watch?.Dispose();
            _watchedDirectory?.Dispose();
            _settleTimer?.Dispose();
            _disposed = true;
        }
    }
}

internal static partial class PricingLog
{
    [LoggerMessage(EventId = 14001, EventName = "ModelUnpriced", Level = LogLevel.Warning,
        Message = "Model {Model} has no price in {PriceFile}: its usage events carry CostUsd null (warned once per model per hour); add it to the price file or Gateway:Pricing:Models")]
    public static partial void Unpriced(ILogger logger, string model, string priceFile);

    [LoggerMessage(EventId = 14002, EventName = "PricesReloaded", Level = LogLevel.Information,
        Message = "Prices reloaded from {PriceFile} (as of {AsOf}): {ModelCount} models")]
    public static partial void Reloaded(ILogger logger, string priceFile, string asOf, int modelCount);

    [LoggerMessage(EventId = 14003, EventName = "PricesReloadRejected", Level = LogLevel.Error,
        Message = "Price change rejected, the previous prices stay in force: {Reason}")]
    public static partial void ReloadRejected(ILogger logger, string reason);
}
