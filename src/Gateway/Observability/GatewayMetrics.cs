using System.Diagnostics;
using System.Diagnostics.Metrics;
using Gateway.Requests;
using Gateway.Tenants;

namespace Gateway.Observability;

/// <summary>
/// The gateway's metrics. Names follow the OpenTelemetry GenAI semantic conventions where they define one
/// (<c>gen_ai.client.token.usage</c>, <c>gen_ai.client.operation.duration</c>); the rest are <c>gateway.*</c>.
/// Tag values are bounded: tenants come from configuration, models from the upstream's answer (see <see cref="ModelLabel"/>), never from the client.
/// </summary>
internal sealed class GatewayMetrics
{
    public const string MeterName = "Gateway";

    private readonly Counter<long> _tokens;
    private readonly Histogram<long> _tokenUsage;
    private readonly Counter<long> _requests;
    private readonly Histogram<double> _duration;
    private readonly Histogram<double> _timeToFirstByte;
    private readonly Counter<long> _storeFailures;
    private readonly Counter<long> _upstreamAuthFailures;
    private readonly Counter<long> _storeEvictions;
    private readonly Counter<long> _missingUsage;

    public GatewayMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(MeterName);
        _tokens = meter.CreateCounter<long>("gateway.tokens", "{token}", "Tokens billed by the upstream (or estimated), by tenant, model and kind.");
        _tokenUsage = meter.CreateHistogram<long>("gen_ai.client.token.usage", "{token}", "Tokens per request, by type (GenAI semantic conventions).",
            advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304] });
        _requests = meter.CreateCounter<long>("gateway.requests", "{request}", "Requests by tenant, endpoint, outcome and status code.");
        _duration = meter.CreateHistogram<double>("gen_ai.client.operation.duration", "s", "Request duration through the gateway.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600] });
        _timeToFirstByte = meter.CreateHistogram<double>("gateway.time_to_first_byte", "s", "Time until the first body byte of the upstream's answer.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] });
        _storeFailures = meter.CreateCounter<long>("gateway.quota.store_failures", "{failure}", "Quota store operations that failed and fell back or denied.");
        _upstreamAuthFailures = meter.CreateCounter<long>("gateway.upstream.auth_failures", "{response}",
            "Upstream 401/403 answers to the gateway's credentials (tenants get a 502 upstream_auth_failed).");
        _storeEvictions = meter.CreateCounter<long>("gateway.store.evictions", "{record}", "Live records the memory store evicted to stay within MaxRecords, by kind.");
        _missingUsage = meter.CreateCounter<long>("gateway.requests_without_usage", "{request}", "Generating requests answered 2xx without any usage (unbilled).");
    }

    /// <summary>The label <c>other</c> stands for every model a tenant may not use.</summary>
    public const string OtherModel = "other";

    /// <summary>
    /// The model label of a request: the upstream's model name when it is one the tenant may use (a listed model, or
    /// a dated snapshot of one such as <c>gpt-4o-mini-2024-07-18</c>), otherwise <c>other</c>, so a tenant cannot
    /// mint series, whatever a compatible upstream echoes back.
    /// </summary>
    public static string ModelLabel(Tenant tenant, string? model)
    {
        if (string.IsNullOrEmpty(model))
        {
            return "";
        }

        if (model.Length > RequestInspector.MaxIdLength)
        {
            return OtherModel;
        }

        if (tenant.AllowedModels is not { } allowed || allowed.Contains(model))
        {
            return model;
        }

        foreach (var listed in allowed)
        {
            if (model.Length > listed.Length + 1 && model.StartsWith(listed, StringComparison.Ordinal) && model[listed.Length] == '-'
                && char.IsAsciiDigit(model[listed.Length + 1]))
            {
                return model;
            }
        }

        return OtherModel;
    }

    public void RecordRequest(string tenant, string endpoint, string outcome, int statusCode, string? model, double durationSeconds, double? ttfbSeconds)
    {
        var tags = new TagList
        {
            { "tenant", tenant },
            { "endpoint", endpoint },
            { "outcome", outcome },
            { "http.response.status_code", StatusCodeTag(statusCode) },
        };
        _requests.Add(1, tags);

        var timing = new TagList { { "tenant", tenant }, { "gen_ai.operation.name", endpoint }, { "gen_ai.response.model", model ?? "" } };
        _duration.Record(durationSeconds, timing);
        if (ttfbSeconds is { } ttfb)
        {
            _timeToFirstByte.Record(ttfb, timing);
        }
    }

    public void RecordTokens(string tenant, string endpoint, string? model, long? input, long? cached, long? output, long? reasoning)
    {
        var responseModel = model ?? "";
        Add(tenant, responseModel, "input", input);
        Add(tenant, responseModel, "cached", cached);
        Add(tenant, responseModel, "output", output);
        Add(tenant, responseModel, "reasoning", reasoning);

        if (input is { } i)
        {
            _tokenUsage.Record(i, new TagList { { "tenant", tenant }, { "gen_ai.token.type", "input" }, { "gen_ai.operation.name", endpoint }, { "gen_ai.response.model", responseModel }, { "gen_ai.provider.name", "openai" } });
        }

        if (output is { } o)
        {
            _tokenUsage.Record(o, new TagList { { "tenant", tenant }, { "gen_ai.token.type", "output" }, { "gen_ai.operation.name", endpoint }, { "gen_ai.response.model", responseModel }, { "gen_ai.provider.name", "openai" } });
        }
    }

    public void RecordStoreFailure(string store, string operation, string mode) =>
        _storeFailures.Add(1, new TagList { { "store", store }, { "operation", operation }, { "mode", mode } });

    public void RecordUpstreamAuthFailure(int upstreamStatus) =>
        _upstreamAuthFailures.Add(1, new TagList { { "http_response_status_code", upstreamStatus } });
    public void RecordStoreEviction(string kind) => _storeEvictions.Add(1, new TagList { { "kind", kind } });

    public void RecordMissingUsage(string tenant, string endpoint) =>
        _missingUsage.Add(1, new TagList { { "tenant", tenant }, { "endpoint", endpoint } });

    // Tag values are objects: the status codes an HTTP answer can have are boxed once, not per request.
    private static readonly object[] BoxedStatusCodes = [.. Enumerable.Range(0, 600).Select(code => (object)code)];

    private static object StatusCodeTag(int statusCode) => (uint)statusCode < (uint)BoxedStatusCodes.Length ? BoxedStatusCodes[statusCode] : statusCode;

    private void Add(string tenant, string model, string kind, long? value)
    {
        if (value is > 0)
        {
            _tokens.Add(value.Value, new TagList { { "tenant", tenant }, { "model", model }, { "kind", kind } });
        }
    }
}
