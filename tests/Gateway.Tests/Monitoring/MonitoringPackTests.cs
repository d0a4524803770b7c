using System.Diagnostics;
using System.Net;
using System.Text.Json;
using FakeUpstream;
using Gateway.Tests.Infrastructure;
using Gateway.Tests.Pricing;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;

namespace Gateway.Tests.Monitoring;

/// <summary>
/// deploy/monitoring checked for real: promtool validates the config and the rules and runs the rule unit tests; then a
/// real Prometheus, configured by the shipped prometheus.yml (targets and intervals swapped for the test's), scrapes a
/// gateway's metrics port while traffic goes through it, and every dashboard and alert expression must evaluate without
/// error and return the series it should.
/// </summary>
[Collection(MetricsTestGroup.Name)]
public sealed class MonitoringPackTests
{
    private static readonly string Pack = RepositoryPaths.File("deploy", "monitoring");

    [SkippableFact]
    public async Task Promtool_ShippedConfigRulesAndRuleTests_Pass()
    {
        PrometheusServer.RequireTool("promtool");

        foreach (var args in new[]
        {
            new[] { "check", "config", "prometheus.yml" },
            ["check", "rules", "alerts.yml"],
            ["test", "rules", "alerts.test.yml"],
        })
        {
            var (exit, output) = await RunAsync("promtool", Pack, args);
            Assert.True(exit == 0, $"promtool {string.Join(' ', args)} failed:\n{output}");
        }
    }

    [Fact]
    public void Dashboard_ImportableWithADataSourceVariableAndEveryPanelQueried()
    {
        using var document = JsonDocument.Parse(File.ReadAllText(Path.Combine(Pack, "dashboard.json")));
        var root = document.RootElement;
        Assert.Equal("llm-gateway", root.GetProperty("uid").GetString());
        var variables = root.GetProperty("templating").GetProperty("list").EnumerateArray().Select(v => v.GetProperty("name").GetString()).ToArray();
        Assert.Contains("datasource", variables);
        Assert.Contains("tenant", variables);
        var panels = root.GetProperty("panels").EnumerateArray().ToArray();
        Assert.True(panels.Length >= 10);
        Assert.Equal(panels.Length, panels.Select(p => p.GetProperty("id").GetInt32()).Distinct().Count());
        foreach (var panel in panels)
        {
            Assert.Equal("${datasource}", panel.GetProperty("datasource").GetProperty("uid").GetString());
            Assert.NotEmpty(panel.GetProperty("targets").EnumerateArray());
        }

        // What the issue asks the dashboard to show.
        var all = string.Join('\n', DashboardExpressions());
        foreach (var metric in new[]
        {
            "gateway_cost_usd_total", "gateway_tokens_total", "gateway_requests_total", "gen_ai_client_operation_duration_seconds_bucket",
            "gateway_time_to_first_byte_seconds_bucket", "gateway_upstream_cooldowns_total", "gateway_budget_used", "gateway_quota_store_failures_total",
        })
        {
            Assert.Contains(metric, all, StringComparison.Ordinal);
        }
    }

    [SkippableFact]
    public async Task RealPrometheus_ScrapingGatewayUnderTraffic_EveryDashboardAndAlertExpressionReturnsItsSeries()
    {
        PrometheusServer.RequireTool("prometheus");
        var metricsPort = PrometheusServer.FreePort();
        var deadPort = PrometheusServer.FreePort();
        await using var upstream = await FakeUpstreamServer.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(upstream.BaseUrl, c =>
        {
            c["Gateway:Metrics:Port"] = metricsPort.ToString(System.Globalization.CultureInfo.InvariantCulture);
            c["Gateway:Tenants:tenant-a:Limits:TokensPerDay"] = "100000";
            // A dollar budget too (tenant-b stays without one: it may use an unpriced model, which the unpriced alert must see).
            c["Gateway:Tenants:tenant-a:Limits:UsdPerMonth"] = "1000";
            // A Redis nobody listens on: the quota store fails (and falls back to memory), as the store alert must notice.
            c["ConnectionStrings:Redis"] = $"127.0.0.1:{deadPort},connectTimeout=200";
            c["Gateway:Isolation:UnknownIds"] = "Allow";
        }, services: s => s.Configure<KestrelServerOptions>(k => k.Listen(IPAddress.Loopback, metricsPort)));

        // /metrics is served on the metrics port only.
        using (var api = new HttpClient { BaseAddress = ApiRoot(gateway, metricsPort) })
        {
            Assert.Equal(HttpStatusCode.NotFound, (await api.GetAsync("metrics")).StatusCode);
        }

        var config = File.ReadAllText(Path.Combine(Pack, "prometheus.yml"));
        config = ReplaceOnce(config, "scrape_interval: 15s", "scrape_interval: 1s");
        config = ReplaceOnce(config, "evaluation_interval: 15s", "evaluation_interval: 1s");
        config = ReplaceOnce(config, "  - alerts.yml", "  - " + Path.Combine(Pack, "alerts.yml"));
        config = ReplaceOnce(config, """- targets: ["llm-gateway:9464"]""", $"""- targets: ["127.0.0.1:{metricsPort}", "127.0.0.1:{deadPort}"]""");
        await using var prometheus = await PrometheusServer.StartAsync(config);

        // Twice: counters first seen at 1 only show an increase from their second sample on.
        await DriveTrafficAsync(gateway, metricsPort);
        await prometheus.QueryUntilAsync("gateway_requests_without_usage_total", r => r.Length > 0, TimeSpan.FromSeconds(30));
        var model = await DriveTrafficAsync(gateway, metricsPort);

        var dashboard = DashboardExpressions();
        foreach (var raw in dashboard)
        {
            var expression = raw.Replace("$__rate_interval", "30s", StringComparison.Ordinal).Replace("$__range", "10m", StringComparison.Ordinal)
                .Replace("$tenant", ".*", StringComparison.Ordinal);
            // Upstream cooldowns included: the four consecutive 5xx of each round cool the single upstream, "default" (#12).
            var result = await prometheus.QueryUntilAsync(expression, r => r.Length > 0 && r.All(s => !double.IsNaN(PrometheusServer.Value(s))), TimeSpan.FromSeconds(30));
            Assert.True(result.Length > 0, $"dashboard expression returned no series: {expression}\n{prometheus.Output}");
        }

        // Every alert rule loaded from the shipped file, evaluated by Prometheus without error.
        var rules = await WaitForEvaluatedRulesAsync(prometheus);
        Assert.Equal(8, rules.Count);
        var expected = new Dictionary<string, Action<JsonElement[]>>
        {
            ["GatewayDown"] = r => Assert.Equal($"127.0.0.1:{deadPort}", PrometheusServer.Label(Assert.Single(r), "instance")),
            ["GatewayAbsent"] = Assert.Empty,
            ["GatewayTenantBudgetNearlyExhausted"] = r =>
            {
                var series = Assert.Single(r);
                Assert.Equal(("tenant-a", "day", "tokens"), (PrometheusServer.Label(series, "tenant"), PrometheusServer.Label(series, "window"), PrometheusServer.Label(series, "unit")));
                // The fake bills far more input than the request's text, so the second round overshoots: the alert still holds.
                Assert.True(PrometheusServer.Value(series) >= 0.9);
            },
            ["GatewayQuotaStoreFailing"] = r => Assert.Equal("redis", PrometheusServer.Label(Assert.Single(r), "store")),
            ["GatewayHigh5xxRatio"] = r => Assert.InRange(PrometheusServer.Value(Assert.Single(r)), 0.05, 1.0),
            // FailuresBeforeCooldown (3) consecutive 5xx cool Gateway:Upstream, the pool's "default" member.
            ["GatewayUpstreamCooldowns"] = r => Assert.Equal("default", PrometheusServer.Label(Assert.Single(r), "upstream")),
            ["GatewayRequestsWithoutUsage"] = r => Assert.Equal(("tenant-b", "responses.create"),
                (PrometheusServer.Label(Assert.Single(r), "tenant"), PrometheusServer.Label(r[0], "endpoint"))),
            ["GatewayUnpricedModel"] = r => Assert.Equal(model, PrometheusServer.Label(Assert.Single(r), "model")),
        };
        Assert.Equal(expected.Keys.Order(), rules.Keys.Order());
        foreach (var (name, query) in rules)
        {
            var result = await prometheus.QueryUntilAsync(query, r => r.Length > 0, name is "GatewayAbsent" ? TimeSpan.Zero : TimeSpan.FromSeconds(30));
            expected[name](result);
        }
    }

    /// <summary>One round of traffic that touches every series the pack reads; returns the unpriced model's name.</summary>
    private static async Task<string> DriveTrafficAsync(GatewayHost gateway, int metricsPort)
    {
        var root = ApiRoot(gateway, metricsPort);
        using var a = new HttpClient { BaseAddress = new Uri(root, "/v1/") };
        a.DefaultRequestHeaders.Authorization = new("Bearer", TestKeys.KeyA);
        using var b = new HttpClient { BaseAddress = new Uri(root, "/v1/") };
        b.DefaultRequestHeaders.Authorization = new("Bearer", TestKeys.KeyB);

        // tenant-a: 95 % of its daily token budget, then refused (429 insufficient_quota).
        await PostAsync(a, "responses", """{"model":"gpt-4o-mini","input":"big","max_output_tokens":16}""", ("x-fake-input-tokens", "47500"));
        await PostAsync(a, "responses", """{"model":"gpt-4o-mini","input":"big","max_output_tokens":16}""", ("x-fake-input-tokens", "47500"));
        Assert.Equal(HttpStatusCode.TooManyRequests, await PostAsync(a, "responses", """{"model":"gpt-4o-mini","input":"refused","max_output_tokens":8000}"""));

        // tenant-b: streamed (TTFB), embeddings, upstream 5xx, an answer without usage, an unpriced model.
        await PostAsync(b, "responses", """{"model":"gpt-4.1","input":"s","stream":true}""");
        await PostAsync(b, "embeddings", """{"model":"text-embedding-3-small","input":"e"}""");
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(HttpStatusCode.InternalServerError, await PostAsync(b, "responses", """{"model":"gpt-4o-mini","input":"x"}""", ("x-fake-status", "500")));
        }

        Assert.Equal(HttpStatusCode.OK, await PostAsync(b, "responses", """{"model":"gpt-4o-mini","input":"n"}""",
            ("x-fake-replay", "ConversationTests/CanCreateGetUpdateAndDeleteConversation.json#0")));
        using var unpriced = new HttpRequestMessage(HttpMethod.Post, "responses")
        {
            Content = new StringContent("""{"model":"gpt-9-unpriced","input":"u"}""", System.Text.Encoding.UTF8, "application/json"),
        };
        using var answer = await b.SendAsync(unpriced);
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        using var body = JsonDocument.Parse(await answer.Content.ReadAsStringAsync());
        return body.RootElement.GetProperty("model").GetString()!;
    }

    private static async Task<HttpStatusCode> PostAsync(HttpClient client, string path, string body, params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, System.Text.Encoding.UTF8, "application/json") };
        foreach (var (name, value) in headers)
        {
            request.Headers.Add(name, value);
        }

        using var response = await client.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync();
        return response.StatusCode;
    }

    /// <summary>The gateway's API address: the one of its two listening ports that is not the metrics port.</summary>
    private static Uri ApiRoot(GatewayHost gateway, int metricsPort)
    {
        var addresses = gateway.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>()
            .Features.Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()!.Addresses;
        var api = addresses.Select(a => new Uri(a.Replace("[::1]", "127.0.0.1", StringComparison.Ordinal))).Single(u => u.Port != metricsPort);
        return new Uri($"http://127.0.0.1:{api.Port}/");
    }

    /// <summary>The alert rules Prometheus loaded, by name, once each was evaluated without error.</summary>
    private static async Task<Dictionary<string, string>> WaitForEvaluatedRulesAsync(PrometheusServer prometheus)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var rules = (await prometheus.GetAsync("api/v1/rules")).GetProperty("data").GetProperty("groups").EnumerateArray()
                .SelectMany(g => g.GetProperty("rules").EnumerateArray()).ToArray();
            var evaluated = rules.Length > 0 && rules.All(r => r.GetProperty("health").GetString() == "ok");
            if (evaluated || DateTime.UtcNow > deadline)
            {
                foreach (var rule in rules)
                {
                    Assert.True(rule.GetProperty("health").GetString() == "ok",
                        $"rule {rule.GetProperty("name").GetString()} health {rule.GetProperty("health").GetString()}: {(rule.TryGetProperty("lastError", out var e) ? e.GetString() : "")}");
                }

                return rules.ToDictionary(r => r.GetProperty("name").GetString()!, r => r.GetProperty("query").GetString()!);
            }

            await Task.Delay(250);
        }
    }

    private static string[] DashboardExpressions()
    {
        using var document = JsonDocument.Parse(File.ReadAllText(Path.Combine(Pack, "dashboard.json")));
        return document.RootElement.GetProperty("panels").EnumerateArray()
            .SelectMany(p => p.GetProperty("targets").EnumerateArray())
            .Select(t => t.GetProperty("expr").GetString()!).ToArray();
    }

    private static string ReplaceOnce(string text, string old, string replacement)
    {
        var at = text.IndexOf(old, StringComparison.Ordinal);
        Assert.True(at >= 0 && text.IndexOf(old, at + old.Length, StringComparison.Ordinal) < 0, $"prometheus.yml must contain '{old}' exactly once");
        return string.Concat(text.AsSpan(0, at), replacement, text.AsSpan(at + old.Length));
    }

    private static async Task<(int ExitCode, string Output)> RunAsync(string tool, string workingDirectory, string[] args)
    {
        var info = new ProcessStartInfo(PrometheusServer.FindOnPath(tool)!)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, await stdout + await stderr);
    }
}
