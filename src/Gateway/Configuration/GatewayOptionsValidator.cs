using System.Text.RegularExpressions;
using Microsoft.Extensions.Options;

namespace Gateway.Configuration;

/// <summary>
/// Checks the whole <c>Gateway</c> section at start and on every reload. Each failure names the
/// configuration key at fault and how to fix it, because the reader is an operator at 3 a.m.
/// </summary>
internal sealed partial class GatewayOptionsValidator(IConfiguration configuration) : IValidateOptions<GatewayOptions>
{
    public ValidateOptionsResult Validate(string? name, GatewayOptions options)
    {
        var failures = new List<string>();
        // Once Gateway:Upstreams has an entry, Gateway:Upstream is not used (the pool warns at start): no key needed there.
        if (options.Upstreams.Count == 0 && !configuration.GetSection("Gateway:Upstreams").Exists())
        {
            ValidateUpstream(options.Upstream, failures);
        }

        UpstreamPoolOptionsValidator.Validate(options, configuration, failures);

        if (options.Limits.MaxRequestBodyBytes <= 0)
        {
            failures.Add("Gateway:Limits:MaxRequestBodyBytes must be a positive number of bytes.");
        }

        if (options.Limits.MaxConcurrentBodyReadsPerTenant <= 0)
        {
            failures.Add("Gateway:Limits:MaxConcurrentBodyReadsPerTenant must be a positive number (e.g. 16).");
        }

        if (options.Metrics.Port is < 1 or > 65535)
        {
            failures.Add($"Gateway:Metrics:Port {options.Metrics.Port} is not a TCP port (1-65535); remove it to turn the metrics port off.");
        }

        var seenHashes = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (tenantId, tenant) in options.Tenants)
        {
            ValidateTenant(tenantId, tenant, seenHashes, failures);
        }

        if (options.Quotas.DefaultOutputTokenReservation < 0)
        {
            failures.Add("Gateway:Quotas:DefaultOutputTokenReservation must be 0 or more.");
        }

        ValidateQuotaTimings(options.Quotas, failures);
        ValidateRedis(options.Quotas, failures);

        if (options.Quotas.MemoryStore.MaxRecords <= 0)
        {
            failures.Add($"Gateway:Quotas:MemoryStore:MaxRecords must be a positive number of records (default {MemoryStoreOptions.DefaultMaxRecords}).");
        }

        if (options.Upstream.PriceMultiplier is < 0 or > 100)
        {
            failures.Add("Gateway:Upstream:PriceMultiplier must be between 0 (prepaid) and 100; 1 is list price.");
        }

        if (!(options.Warmup.MaxSeconds > 0 && options.Warmup.MaxSeconds <= WarmupOptions.LargestMaxSeconds))
        {
            failures.Add($"Gateway:Warmup:MaxSeconds must be more than 0 and at most {WarmupOptions.LargestMaxSeconds} (default {WarmupOptions.DefaultMaxSeconds}); set Gateway:Warmup:Enabled to false to start without a warm-up.");
        }

        if (options.Isolation.Retention <= TimeSpan.Zero)
        {
            failures.Add("Gateway:Isolation:Retention must be a positive duration such as \"45.00:00:00\".");
        }

        if (options.Shutdown.DrainDelay < TimeSpan.Zero || options.Shutdown.DrainTimeout < TimeSpan.Zero)
        {
            failures.Add("Gateway:Shutdown:DrainDelay and DrainTimeout must not be negative.");
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    private void ValidateUpstream(UpstreamOptions upstream, List<string> failures)
    {
        UpstreamTransportValidator.Validate("Gateway:Upstream", upstream.BaseUrl, upstream.HttpVersion, upstream.ActivityTimeout, upstream.ConnectTimeout, failures);
        var hasKey = !string.IsNullOrWhiteSpace(upstream.ApiKey)
            || !string.IsNullOrWhiteSpace(configuration[UpstreamOptions.DefaultKeyEnvironmentVariable])
            || !string.IsNullOrWhiteSpace(upstream.ApiKeyFile);
        if (!hasKey)
        {
            failures.Add(
                "No upstream API key: set Gateway:Upstream:ApiKey (environment variable Gateway__Upstream__ApiKey), " +
                $"or the {UpstreamOptions.DefaultKeyEnvironmentVariable} environment variable, or Gateway:Upstream:ApiKeyFile (a mounted secret file).");
        }
        else if (!string.IsNullOrWhiteSpace(upstream.ApiKeyFile) && string.IsNullOrWhiteSpace(upstream.ApiKey)
            && string.IsNullOrWhiteSpace(configuration[UpstreamOptions.DefaultKeyEnvironmentVariable]) && !File.Exists(upstream.ApiKeyFile))
        {
            failures.Add($"Gateway:Upstream:ApiKeyFile '{upstream.ApiKeyFile}' does not exist; mount the secret there or fix the path.");
        }

        if (!string.Equals(upstream.AuthHeader, "Authorization", StringComparison.OrdinalIgnoreCase)
            && !string.Equals(upstream.AuthHeader, "api-key", StringComparison.OrdinalIgnoreCase))
        {
            failures.Add($"Gateway:Upstream:AuthHeader '{upstream.AuthHeader}' must be \"Authorization\" (OpenAI) or \"api-key\" (Azure OpenAI).");
        }
    }

    private static void ValidateQuotaTimings(QuotaOptions quotas, List<string> failures)
    {
        if (quotas.TokenizeBodyBytesThreshold < 0)
        {
            failures.Add("Gateway:Quotas:TokenizeBodyBytesThreshold must be 0 (always estimate at bytes/4) or a positive number of bytes (default 65536).");
        }

        RequireBetween("Gateway:Quotas:BackgroundReservationTimeout", quotas.BackgroundReservationTimeout, TimeSpan.FromSeconds(1), TimeSpan.FromDays(30), "\"01:00:00\"", failures);
        RequireBetween("Gateway:Quotas:ConcurrencyLeaseTimeout", quotas.ConcurrencyLeaseTimeout, TimeSpan.FromSeconds(1), TimeSpan.FromDays(1), "\"00:15:00\"", failures);
        RequireBetween("Gateway:Quotas:RedisTimeout", quotas.RedisTimeout, TimeSpan.FromMilliseconds(10), TimeSpan.FromMinutes(1), "\"00:00:00.500\"", failures);
        RequireBetween("Gateway:Quotas:RedisRetryInterval", quotas.RedisRetryInterval, TimeSpan.FromMilliseconds(10), TimeSpan.FromDays(1), "\"00:00:02\"", failures);
        RequireBetween("Gateway:Quotas:RedisDataLossCheckInterval", quotas.RedisDataLossCheckInterval, TimeSpan.FromMilliseconds(10), TimeSpan.FromDays(1), "\"00:00:30\"", failures);
    }

    private static void RequireBetween(string key, TimeSpan value, TimeSpan min, TimeSpan max, string example, List<string> failures)
    {
        if (value < min || value > max)
        {
            failures.Add($"{key} {value:c} is out of range: use a duration between {min:c} and {max:c}, such as {example}.");
        }
    }

    private static void ValidateRedis(QuotaOptions quotas, List<string> failures)
    {
        // The prefix starts every key; a brace would break the per-tenant hash tags that keep a tenant's keys in one slot.
        if (!RedisKeyPrefixPattern().IsMatch(quotas.RedisKeyPrefix))
        {
            failures.Add($"Gateway:Quotas:RedisKeyPrefix '{quotas.RedisKeyPrefix}' must be 1-64 letters, digits, '-', '_', '.' or ':' (default \"{QuotaOptions.DefaultRedisKeyPrefix}\").");
        }

        if (string.IsNullOrWhiteSpace(quotas.RedisConnectionString))
        {
            return;
        }

        // The parser's message can quote the string, and the string holds the password: say only what is expected.
        int endpoints;
        try
        {
            endpoints = StackExchange.Redis.ConfigurationOptions.Parse(quotas.RedisConnectionString).EndPoints.Count;
        }
        catch (ArgumentException)
        {
            endpoints = -1;
        }

        if (endpoints <= 0)
        {
            failures.Add(
                $"{QuotaOptions.RedisConnectionStringKey} is not a Redis connection string: use \"host:port\" (several, comma-separated, for a cluster) " +
                "followed by options such as \",password=...,ssl=true\"; leave it empty for the in-process store.");
        }
    }

    private static void ValidateTenant(string tenantId, TenantOptions tenant, Dictionary<string, string> seenHashes, List<string> failures)
    {
        if (!TenantIdPattern().IsMatch(tenantId))
        {
            failures.Add($"Gateway:Tenants:{tenantId}: tenant ids may use letters, digits, '-', '_' and '.', up to 64 characters.");
        }

        for (var i = 0; i < tenant.KeyHashes.Count; i++)
        {
            var hash = tenant.KeyHashes[i];
            if (!KeyHashPattern().IsMatch(hash))
            {
                failures.Add(
                    $"Gateway:Tenants:{tenantId}:KeyHashes:{i} is not a lowercase hex SHA-256 digest (64 characters 0-9a-f). " +
                    "Mint a key and its hash with: dotnet run --project src/Gateway -- new-key");
            }
            else if (!seenHashes.TryAdd(hash, tenantId))
            {
                failures.Add($"Gateway:Tenants:{tenantId}:KeyHashes:{i} is also a key of tenant '{seenHashes[hash]}'; a key belongs to one tenant.");
            }
        }

        var limits = tenant.Limits;
        if (limits.RequestsPerMinute < 0 || limits.TokensPerMinute < 0 || limits.TokensPerDay < 0 || limits.TokensPerMonth < 0 || limits.MaxConcurrentRequests < 0)
        {
            failures.Add($"Gateway:Tenants:{tenantId}:Limits: limits must be 0 (unlimited) or positive.");
        }

        if (limits.UsdPerDay < 0 || limits.UsdPerMonth < 0 || limits.UsdPerDay > MaxUsdBudget || limits.UsdPerMonth > MaxUsdBudget)
        {
            failures.Add($"Gateway:Tenants:{tenantId}:Limits: UsdPerDay and UsdPerMonth must be 0 (unlimited) or positive USD amounts up to {MaxUsdBudget}.");
        }

        if (tenant.MaxOutputTokens is < 1)
        {
            failures.Add($"Gateway:Tenants:{tenantId}:MaxOutputTokens must be positive, or absent for no cap.");
        }
    }

    // Dollar budgets are held in micro-dollars in 64-bit counters; a trillion dollars is far inside that and far above any real budget.
    private const decimal MaxUsdBudget = 1_000_000_000_000m;

    [GeneratedRegex("^[a-f0-9]{64}$")]
    private static partial Regex KeyHashPattern();

    [GeneratedRegex("^[A-Za-z0-9._-]{1,64}$")]
    private static partial Regex TenantIdPattern();

    [GeneratedRegex("^[A-Za-z0-9._:-]{1,64}$")]
    private static partial Regex RedisKeyPrefixPattern();
}
