
namespace Gateway.Configuration;

/// <summary>The <c>Gateway</c> configuration section. Bound on every reload of the configuration file.</summary>
internal sealed class GatewayOptions
{
    public const string SectionName = "Gateway";

    public UpstreamOptions Upstream { get; init; } = new();

    public RequestLimitsOptions Limits { get; init; } = new();

    /// <summary>Tenants by id. The id appears in logs and metrics; keep it short and stable.</summary>
    public Dictionary<string, TenantOptions> Tenants { get; init; } = new(StringComparer.Ordinal);

    public QuotaOptions Quotas { get; init; } = new();

    public IsolationOptions Isolation { get; init; } = new();

    public ShutdownOptions Shutdown { get; init; } = new();

    public MetricsOptions Metrics { get; init; } = new();

    /// <summary>The price file and per-model overrides (docs/usage-events.md#cost).</summary>
    public PricingOptions Pricing { get; init; } = new();

    /// <summary>The upstream pool by name (docs/upstreams.md); when empty, <see cref="Upstream"/> is the one upstream, named "default".</summary>
    public Dictionary<string, PoolUpstreamOptions> Upstreams { get; init; } = new(StringComparer.Ordinal);

    public RoutingOptions Routing { get; init; } = new();

    /// <summary>The start-up warm-up (docs/operations.md#start-up).</summary>
    public WarmupOptions Warmup { get; init; } = new();
}

internal sealed class UpstreamOptions
{
    public const string DefaultBaseUrl = "https://api.openai.com/v1";

    /// <summary>Where the key comes from when neither <see cref="ApiKey"/> nor <see cref="ApiKeyFile"/> gives one.</summary>
    public const string DefaultKeyEnvironmentVariable = "OPENAI_API_KEY";

    /// <summary>The upstream's <c>/v1</c> equivalent; the client's path after <c>/v1</c> is appended to it.</summary>
    public string BaseUrl { get; init; } = DefaultBaseUrl;

    /// <summary>The real upstream key. Falls back to the <c>OPENAI_API_KEY</c> environment variable.</summary>
    public string? ApiKey { get; set; }

    /// <summary>A file holding the upstream key (a mounted secret); re-read at most every 5 s when used.</summary>
    public string? ApiKeyFile { get; init; }

    /// <summary><c>Authorization</c> (Bearer, OpenAI) or <c>api-key</c> (Azure OpenAI key auth).</summary>
    public string AuthHeader { get; init; } = "Authorization";

    public string? Organization { get; init; }

    public string? Project { get; init; }

    /// <summary>Longest silence allowed from the upstream (before headers or between body chunks). Reasoning models think for minutes.</summary>
    public TimeSpan ActivityTimeout { get; init; } = TimeSpan.FromMinutes(10);

    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// <c>auto</c> (HTTP/2 over TLS when the upstream offers it, else HTTP/1.1), <c>1.1</c>, or <c>2</c> (HTTP/2 only,
    /// also in cleartext with prior knowledge: thousands of streams share a few connections).
    /// </summary>
    public string HttpVersion { get; init; } = "auto";

    /// <summary>Send upstream requests through the proxy named by HTTPS_PROXY/HTTP_PROXY.</summary>
    public bool UseSystemProxy { get; init; }

    /// <summary>Multiplies every price of this upstream: 0 for a prepaid deployment, 1.1 for a 10 % regional surcharge.</summary>
    public decimal PriceMultiplier { get; init; } = 1m;
}

internal sealed class RequestLimitsOptions
{
    /// <summary>32 MiB: room for a few inline base64 images while still refusing absurd bodies early.</summary>
    public const long DefaultMaxRequestBodyBytes = 32L * 1024 * 1024;

    public long MaxRequestBodyBytes { get; init; } = DefaultMaxRequestBodyBytes;

    /// <summary>
    /// Request bodies one tenant may have in flight (being received) at once. A slow client holds a connection and
    /// a growing buffer while its body trickles in; this bounds what one tenant can pin that way.
    /// </summary>
    public int MaxConcurrentBodyReadsPerTenant { get; init; } = 16;
}

internal sealed class TenantOptions
{
    /// <summary>Lowercase hex SHA-256 digests of the tenant's gateway keys. Several allow rotation without downtime.</summary>
    public List<string> KeyHashes { get; init; } = [];

    public TenantLimitsOptions Limits { get; init; } = new();

    /// <summary>Models the tenant may use; empty means all.</summary>
    public List<string> Models { get; init; } = [];

    /// <summary>Cap on output tokens per request; requests without a limit get this one.</summary>
    public int? MaxOutputTokens { get; init; }
}

/// <summary>Per-tenant limits; absent or 0 means unlimited.</summary>
internal sealed class TenantLimitsOptions
{
    public long RequestsPerMinute { get; init; }

    public long TokensPerMinute { get; init; }

    public long TokensPerDay { get; init; }

    public long TokensPerMonth { get; init; }

    public long MaxConcurrentRequests { get; init; }

    /// <summary>Dollar budget per UTC day (USD, at the price table's prices).</summary>
    public decimal UsdPerDay { get; init; }

    /// <summary>Dollar budget per calendar month (USD).</summary>
    public decimal UsdPerMonth { get; init; }
}

internal enum StoreFailureMode
{
    /// <summary>Keep serving and enforce limits per replica in memory until the shared store is back.</summary>
    Allow,

    /// <summary>Answer 503 while the shared store is unreachable.</summary>
    Deny,
}

internal sealed class QuotaOptions
{
    public StoreFailureMode OnStoreFailure { get; init; } = StoreFailureMode.Allow;

    /// <summary>Output tokens reserved for a request that sets no output limit.</summary>
    public int DefaultOutputTokenReservation { get; init; } = 4096;

    /// <summary>Request bodies larger than this are estimated at bytes/4 instead of being tokenized.</summary>
    public int TokenizeBodyBytesThreshold { get; init; } = 64 * 1024;

    /// <summary>How long a background response keeps its reservation before the estimate is simply kept as the charge.</summary>
    public TimeSpan BackgroundReservationTimeout { get; init; } = TimeSpan.FromHours(1);

    /// <summary>Longest a concurrency slot is held if a replica dies without releasing it.</summary>
    public TimeSpan ConcurrencyLeaseTimeout { get; init; } = TimeSpan.FromMinutes(15);

    /// <summary>Per-command timeout against Redis; past it the store counts as failed.</summary>
    public TimeSpan RedisTimeout { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>After a Redis failure, how long to stay on the fallback before trying Redis again.</summary>
    public TimeSpan RedisRetryInterval { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Prefix of every Redis key; one per gateway installation sharing a Redis.</summary>
    public string RedisKeyPrefix { get; init; } = DefaultRedisKeyPrefix;

    /// <summary>How often the Redis instance marker is checked for data loss (besides after every reconnect).</summary>
    public TimeSpan RedisDataLossCheckInterval { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// <c>ConnectionStrings:Redis</c> (outside this section, where hosting conventions put it): Redis when set,
    /// else the in-process store. Filled by <see cref="GatewaySettings"/>; not bindable from <c>Gateway:Quotas</c>.
    /// </summary>
    public string? RedisConnectionString { get; internal set; }

    public const string DefaultRedisKeyPrefix = "gw";

    public const string RedisConnectionStringKey = "ConnectionStrings:Redis";

    public MemoryStoreOptions MemoryStore { get; init; } = new();
}

internal sealed class MemoryStoreOptions
{
    public const int DefaultMaxRecords = 1_000_000;

    /// <summary>
    /// Most records of each kind (ownership, usage marks, held reservations, context sizes) the in-process store keeps;
    /// past it the oldest is evicted. About 250 MB of ownership records at the default.
    /// </summary>
    public int MaxRecords { get; init; } = DefaultMaxRecords;
}

internal enum UnknownIdMode
{
    Deny,
    Allow,
}

internal sealed class IsolationOptions
{
    public UnknownIdMode UnknownIds { get; init; } = UnknownIdMode.Deny;

    /// <summary>How long ownership of an object id is remembered. OpenAI keeps responses 30 days; outlive it.</summary>
    public TimeSpan Retention { get; init; } = TimeSpan.FromDays(45);
}

internal sealed class ShutdownOptions
{
    /// <summary>After SIGTERM, keep accepting requests this long while load balancers notice /readyz failing.</summary>
    public TimeSpan DrainDelay { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How long in-flight requests and streams may take to finish after the delay.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(60);
}

/// <summary>Where <c>/metrics</c> is served. Read at start (the listening ports do not change on reload).</summary>
internal sealed class MetricsOptions
{
    /// <summary>
    /// The port (of the connection's local end) that serves <c>/metrics</c>, <c>/healthz</c> and <c>/readyz</c> and
    /// nothing else; <c>/metrics</c> is served on no other port. Add it to <c>Urls</c> and keep it off the Service.
    /// </summary>
    public int? Port { get; init; }

    /// <summary>Without <see cref="Port"/>: serve <c>/metrics</c> on every port (every tenant's series to anyone). Off by default.</summary>
    public bool Public { get; init; }
}
