namespace Gateway.Configuration;

/// <summary>
/// Checks <c>Gateway:Upstreams</c> and <c>Gateway:Routing</c> (called by <see cref="GatewayOptionsValidator"/>, so at
/// start and on every reload). Each failure names the key and the fix.
/// </summary>
internal static class UpstreamPoolOptionsValidator
{
    public static void Validate(GatewayOptions options, IConfiguration configuration, List<string> failures)
    {
        var seen = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (name, upstream) in options.Upstreams)
        {
            var key = $"Gateway:Upstreams:{name}";
            if (!seen.TryAdd(name, name))
            {
                failures.Add($"{key}: the name is also used by '{seen[name]}' (names are compared ignoring case); give each upstream its own name.");
            }

            if (name.Length == 0 || name.Length > 64 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
            {
                failures.Add($"{key}: upstream names may use letters, digits, '-', '_' and '.', up to 64 characters (they appear in logs and metrics).");
            }

            ValidateUpstream(key, upstream, configuration, failures);
        }

        // The binder silently drops a dictionary entry with a value it cannot convert (a duration, number or
        // AuthHeader typo): the upstream would just be missing from the pool. Bind such an entry alone to name the key.
        foreach (var section in configuration.GetSection("Gateway:Upstreams").GetChildren())
        {
            if (!options.Upstreams.ContainsKey(section.Key))
            {
                failures.Add(DescribeUnbindable(section));
            }
        }

        var routing = options.Routing;
        if (routing.MaxAttempts < 1)
        {
            failures.Add("Gateway:Routing:MaxAttempts must be 1 or more (1 turns failover off).");
        }

        if (routing.CooldownWithoutHint <= TimeSpan.Zero)
        {
            failures.Add("Gateway:Routing:CooldownWithoutHint must be a positive duration such as \"00:00:10\".");
        }

        if (routing.FailuresBeforeCooldown < 1)
        {
            failures.Add("Gateway:Routing:FailuresBeforeCooldown must be 1 or more.");
        }
    }

    private static string DescribeUnbindable(IConfigurationSection section)
    {
        try
        {
            section.Bind(new PoolUpstreamOptions());
        }
        catch (InvalidOperationException ex)
        {
            return $"{ex.Message} {ex.InnerException?.Message}".TrimEnd() + $" Fix it, or Gateway:Upstreams:{section.Key} stays out of the pool.";
        }

        return $"Gateway:Upstreams:{section.Key} could not be read; give it BaseUrl and a key (see docs/upstreams.md).";
    }

    private static void ValidateUpstream(string key, PoolUpstreamOptions upstream, IConfiguration configuration, List<string> failures)
    {
        UpstreamTransportValidator.Validate(key, upstream.BaseUrl, upstream.HttpVersion, upstream.ActivityTimeout, upstream.ConnectTimeout, failures);

        if (upstream.AuthHeader != UpstreamAuthHeader.AzureIdentity)
        {
            ValidateKey(key, upstream, configuration, failures);
        }
        else if (!string.IsNullOrWhiteSpace(upstream.ApiKey) || !string.IsNullOrWhiteSpace(upstream.ApiKeyFile) || !string.IsNullOrWhiteSpace(upstream.ApiKeyEnvironmentVariable))
        {
            failures.Add($"{key}: AuthHeader AzureIdentity uses a Microsoft Entra token, not a key; remove ApiKey/ApiKeyFile/ApiKeyEnvironmentVariable or use AuthHeader \"api-key\".");
        }

        if (upstream.Weight <= 0)
        {
            failures.Add($"{key}:Weight must be a positive whole number (its share within the priority group); remove the upstream to take it out of the pool.");
        }

        if (upstream.Priority < 0)
        {
            failures.Add($"{key}:Priority must be 0 or more (lower is tried first; default 1).");
        }

        if (upstream.PriceMultiplier < 0)
        {
            failures.Add($"{key}:PriceMultiplier must be 0 or more (1 = list price, 0 = already paid for, e.g. a PTU deployment).");
        }

        if (upstream.Models is { } models)
        {
            foreach (var (model, deployment) in models)
            {
                if (string.IsNullOrWhiteSpace(deployment))
                {
                    failures.Add($"{key}:Models:{model} is empty; give the model or deployment name this upstream expects.");
                }
            }
        }
    }

    private static void ValidateKey(string key, PoolUpstreamOptions upstream, IConfiguration configuration, List<string> failures)
    {
        if (!string.IsNullOrWhiteSpace(upstream.ApiKey))
        {
            return;
        }

        if (!string.IsNullOrWhiteSpace(upstream.ApiKeyFile))
        {
            if (!File.Exists(upstream.ApiKeyFile))
            {
                failures.Add($"{key}:ApiKeyFile '{upstream.ApiKeyFile}' does not exist; mount the secret there or fix the path.");
            }

            return;
        }

        if (!string.IsNullOrWhiteSpace(upstream.ApiKeyEnvironmentVariable))
        {
            if (string.IsNullOrWhiteSpace(configuration[upstream.ApiKeyEnvironmentVariable]))
            {
                failures.Add($"{key}:ApiKeyEnvironmentVariable names '{upstream.ApiKeyEnvironmentVariable}', which is not set; set that variable or use ApiKey/ApiKeyFile.");
            }

            return;
        }

        failures.Add($"{key} has no key: set {key}:ApiKey, ApiKeyFile (a mounted secret) or ApiKeyEnvironmentVariable, or AuthHeader \"AzureIdentity\" for a managed identity.");
    }
}
