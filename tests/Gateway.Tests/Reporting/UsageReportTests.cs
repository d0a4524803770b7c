using System.Globalization;
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using Gateway.Reporting;
using Gateway.Tests.Infrastructure;
using Gateway.Tests.Pricing;
using Gateway.Tests.Usage;

namespace Gateway.Tests.Reporting;

/// <summary>
/// <c>usage-report</c> over the real CLEF lines a gateway wrote (mixed with its other log lines): totals equal the sum of
/// the events read, each request counted once across overlapping files and replicas, plain and gzip alike.
/// </summary>
public sealed class UsageReportTests : GatewayTestBed, IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("gw-report-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task Report_RealGatewayLogInOverlappingPlainAndGzipFiles_TotalsEqualTheSumOfDistinctEvents()
    {
        var (lines, events) = await DriveTrafficAsync();
        // Two "replicas" whose files overlap: the first half and all of it, one plain and one gzip, plus the whole again from stdin.
        var half = lines.Length / 2;
        var first = await WriteAsync("replica-1.log", lines[..half], gzip: false);
        var second = await WriteAsync("replica-2.log.gz", lines, gzip: true);

        var (exit, json, error) = Run([first, second, "-", "--by", "tenant,model,endpoint,day,upstream", "--format", "json"], stdin: string.Join('\n', lines));

        Assert.Equal(0, exit);
        var rows = JsonDocument.Parse(json).RootElement.EnumerateArray().ToArray();
        Assert.Equal(events.Count, rows.Sum(r => r.GetProperty("requests").GetInt64()));
        Assert.Equal(events.Sum(e => UsageEvents.Long(e, "InputTokens") ?? 0), rows.Sum(r => r.GetProperty("input_tokens").GetInt64()));
        Assert.Equal(events.Sum(e => UsageEvents.Long(e, "CachedInputTokens") ?? 0), rows.Sum(r => r.GetProperty("cached_input_tokens").GetInt64()));
        Assert.Equal(events.Sum(e => UsageEvents.Long(e, "OutputTokens") ?? 0), rows.Sum(r => r.GetProperty("output_tokens").GetInt64()));
        Assert.Equal(events.Sum(e => UsageEvents.Long(e, "ReasoningTokens") ?? 0), rows.Sum(r => r.GetProperty("reasoning_tokens").GetInt64()));
        Assert.Equal(events.Sum(e => PricingTestKit.Cost(e) ?? 0m), rows.Sum(r => r.GetProperty("cost_usd").GetDecimal()));
        Assert.True(events.Sum(e => PricingTestKit.Cost(e) ?? 0m) > 0);
        Assert.Equal(events.Count(e => UsageEvents.Long(e, "StatusCode") >= 400 || UsageEvents.Text(e, "Outcome") is "upstream_error" or "failed"),
            rows.Sum(r => r.GetProperty("errors").GetInt64()));

        // Per group, against the events grouped the same way.
        foreach (var group in events.GroupBy(e => (UsageEvents.Text(e, "Tenant"), UsageEvents.Text(e, "Model") ?? UsageEvents.Text(e, "RequestedModel") ?? "", UsageEvents.Text(e, "Endpoint"))))
        {
            var row = Assert.Single(rows, r => (r.GetProperty("tenant").GetString(), r.GetProperty("model").GetString(), r.GetProperty("endpoint").GetString()) == group.Key);
            Assert.Equal(group.Count(), row.GetProperty("requests").GetInt64());
            Assert.Equal(group.Sum(e => PricingTestKit.Cost(e) ?? 0m), row.GetProperty("cost_usd").GetDecimal());
            Assert.Equal("default", row.GetProperty("upstream").GetString());
            Assert.Equal(DateTime.UtcNow.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture)[..7], row.GetProperty("day").GetString()![..7]);
            Assert.Equal(["tenant", "model", "day", "upstream", "endpoint", "requests", "input_tokens", "cached_input_tokens", "output_tokens",
                "reasoning_tokens", "cost_usd", "errors", "estimated", "p50_ms", "p95_ms"], row.EnumerateObject().Select(p => p.Name));
        }

        // Every line read is accounted for: counted, duplicate, or skipped as not a usage event.
        var usageInFirstHalf = lines[..half].Count(l => l.Contains("\"Name\":\"Usage\"", StringComparison.Ordinal));
        var duplicates = usageInFirstHalf + events.Count;
        var read = half + (2 * lines.Length);
        Assert.Contains($"{read} lines: {events.Count} requests counted, {duplicates} duplicates", error, StringComparison.Ordinal);
        Assert.Contains($"{read - events.Count - duplicates} skipped", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Report_GroupedByTenant_TableAndCsvAgreeWithJson()
    {
        var (lines, events) = await DriveTrafficAsync();
        var file = await WriteAsync("gateway.log", lines, gzip: false);

        var (_, csv, _) = Run([file, "--by", "tenant", "--format", "csv"]);
        var (_, table, _) = Run([file, "--by", "tenant"]);

        var csvLines = csv.TrimEnd().Split('\n');
        Assert.Equal("tenant,requests,input_tokens,cached_input_tokens,output_tokens,reasoning_tokens,cost_usd,errors,estimated,p50_ms,p95_ms", csvLines[0]);
        Assert.Equal(2, csvLines.Length - 1);
        foreach (var tenant in new[] { TestKeys.TenantA, TestKeys.TenantB })
        {
            var mine = events.Where(e => UsageEvents.Text(e, "Tenant") == tenant).ToArray();
            var cells = csvLines.Single(l => l.StartsWith(tenant + ",", StringComparison.Ordinal)).Split(',');
            Assert.Equal(mine.Length.ToString(CultureInfo.InvariantCulture), cells[1]);
            Assert.Equal(mine.Sum(e => PricingTestKit.Cost(e) ?? 0m).ToString("0.000000", CultureInfo.InvariantCulture), cells[6]);

            var tableRow = table.Split('\n').Single(l => l.StartsWith(tenant + " ", StringComparison.Ordinal));
            Assert.Equal(cells[1..7], tableRow.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1..7]);
        }

        var header = table.Split('\n')[0];
        Assert.StartsWith("tenant", header, StringComparison.Ordinal);
        Assert.EndsWith("p95_ms", header.TrimEnd(), StringComparison.Ordinal);
        var total = table.Split('\n').Single(l => l.StartsWith("TOTAL", StringComparison.Ordinal));
        Assert.Equal(events.Count.ToString(CultureInfo.InvariantCulture), total.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
    }

    [Fact]
    public void Report_FromTo_KeepsOnlyEventsInsideTheUtcRange()
    {
        string[] lines =
        [
            Event("gw-1", "2026-10-31T23:59:59.9999999Z", 1), Event("gw-2", "2026-11-01T00:00:00.0000000Z", 10),
            Event("gw-3", "2026-11-30T23:59:59.0000000Z", 100), Event("gw-4", "2026-12-01T00:00:00.0000000Z", 1000),
        ];

        var (exit, json, error) = Run(["--from", "2026-11-01", "--to", "2026-11-30", "--by", "day", "--format", "json"], stdin: string.Join('\n', lines));

        Assert.Equal(0, exit);
        var rows = JsonDocument.Parse(json).RootElement.EnumerateArray().ToArray();
        Assert.Equal(["2026-11-01", "2026-11-30"], rows.Select(r => r.GetProperty("day").GetString()));
        Assert.Equal(110, rows.Sum(r => r.GetProperty("input_tokens").GetInt64()));
        Assert.Contains("2 outside --from/--to", error, StringComparison.Ordinal);

        var (_, instantJson, _) = Run(["--from", "2026-11-30T23:59:59Z", "--by", "none", "--format", "json"], stdin: string.Join('\n', lines));
        Assert.Equal(1100, JsonDocument.Parse(instantJson).RootElement[0].GetProperty("input_tokens").GetInt64());
    }

    [Fact]
    public void Report_UpstreamMissingOrNamedDefault_OneGroup()
    {
        var named = Event("gw-2", "2026-11-02T00:00:00Z", 2).Replace("\"Tenant\":\"t\"", "\"Tenant\":\"t\",\"Upstream\":\"default\"", StringComparison.Ordinal);
        var other = Event("gw-3", "2026-11-02T00:00:00Z", 4).Replace("\"Tenant\":\"t\"", "\"Tenant\":\"t\",\"Upstream\":\"eastus\"", StringComparison.Ordinal);
        var (_, json, _) = Run(["--by", "tenant,upstream", "--format", "json"], stdin: string.Join('\n', Event("gw-1", "2026-11-02T00:00:00Z", 1), named, other));

        var rows = JsonDocument.Parse(json).RootElement.EnumerateArray().ToArray();
        Assert.Equal(["default", "eastus"], rows.Select(r => r.GetProperty("upstream").GetString()));
        Assert.Equal([3L, 4L], rows.Select(r => r.GetProperty("input_tokens").GetInt64()));
    }

    [Fact]
    public void Report_Percentiles_WithinTheDocumentedError()
    {
        // Durations 1..1000 ms: p50 = 500, p95 = 950 (nearest rank).
        var lines = Enumerable.Range(1, 1000).Select(i => Event("gw-" + i, "2026-11-02T00:00:00Z", 1, durationMs: i)).ToArray();
        var (_, json, _) = Run(["--by", "none", "--format", "json"], stdin: string.Join('\n', lines.Reverse()));

        var row = JsonDocument.Parse(json).RootElement[0];
        Assert.InRange(row.GetProperty("p50_ms").GetDouble(), 500 * 0.989, 500 * 1.011);
        Assert.InRange(row.GetProperty("p95_ms").GetDouble(), 950 * 0.989, 950 * 1.011);
    }

    [Theory]
    [InlineData("{\"not\":\"clef\"}")]
    [InlineData("{\"@t\":\"2026-11-02T00:00:00Z\",\"EventId\":{\"Id\":1000,\"Name\":\"Usage\"},\"InputTokens\":")] // truncated
    [InlineData("garbage \"Usage\" ]]]")]
    [InlineData("{\"@t\":\"2026-11-02T00:00:00Z\",\"EventId\":{\"Id\":2001,\"Name\":\"Other\"},\"Message\":\"Usage\"}")]
    public void Report_LinesThatAreNotUsageEvents_SkippedAndCounted(string junk)
    {
        var (exit, json, error) = Run(["--by", "none", "--format", "json"], stdin: junk + "\n" + Event("gw-1", "2026-11-02T00:00:00Z", 7) + "\r\n\n" + junk);

        Assert.Equal(0, exit);
        Assert.Equal(7, JsonDocument.Parse(json).RootElement[0].GetProperty("input_tokens").GetInt64());
        Assert.Contains("1 requests counted, 0 duplicates (same RequestId), 2 skipped", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Report_HugeLineWithoutNewline_SkippedInBoundedMemory()
    {
        var huge = new string('x', (UsageLogInput.MaxLineBytes * 3) + 17);
        var (exit, json, error) = Run(["--by", "none", "--format", "json"], stdin: huge + "\n" + Event("gw-1", "2026-11-02T00:00:00Z", 5) + "\n" + huge);

        Assert.Equal(0, exit);
        Assert.Equal(5, JsonDocument.Parse(json).RootElement[0].GetProperty("input_tokens").GetInt64());
        Assert.Contains("2 skipped", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Report_UnreadableInput_NonZeroExitAndClearMessage()
    {
        var missing = Path.Combine(_directory, "nope.log");
        var (exit, output, error) = Run([missing]);
        Assert.Equal(1, exit);
        Assert.Equal("", output);
        Assert.Contains($"cannot read '{missing}': no such file", error, StringComparison.Ordinal);

        var corrupt = Path.Combine(_directory, "corrupt.log.gz");
        await File.WriteAllBytesAsync(corrupt, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff, 0x42]);
        (exit, _, error) = Run([corrupt]);
        Assert.Equal(1, exit);
        Assert.Contains($"cannot read '{corrupt}': corrupt gzip data", error, StringComparison.Ordinal);

        (exit, _, error) = Run([_directory]);
        Assert.Equal(1, exit);
        Assert.Contains("cannot read", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--by", "tenant,colour")]
    [InlineData("--format", "xml")]
    [InlineData("--from", "yesterday")]
    [InlineData("--from")]
    [InlineData("--verbose")]
    public void Report_BadArguments_ExitTwoWithUsage(params string[] args)
    {
        var (exit, output, error) = Run(args);
        Assert.Equal(2, exit);
        Assert.Equal("", output);
        Assert.Contains("usage: Gateway usage-report", error, StringComparison.Ordinal);
    }

    [Fact]
    public void TryRunCommand_OtherArguments_NotTheReport() =>
        Assert.False(UsageReportCommand.TryRun(["new-key"], out _));

    private async Task<(string[] Lines, IReadOnlyList<JsonElement> Events)> DriveTrafficAsync()
    {
        using var a = Gateway.CreateClient(TestKeys.KeyA);
        using var b = Gateway.CreateClient(TestKeys.KeyB);
        await PricingTestKit.PostAsync(Gateway, a, "responses", """{"model":"gpt-4o-mini","input":"one"}""", ("x-fake-input-tokens", "1234"), ("x-fake-cached-tokens", "200"));
        await PricingTestKit.PostAsync(Gateway, a, "responses", """{"model":"gpt-4o-mini","input":"two","stream":true}""", ("x-fake-reasoning-tokens", "9"));
        await PricingTestKit.PostAsync(Gateway, a, "chat/completions", """{"model":"gpt-4.1","messages":[{"role":"user","content":"three"}]}""");
        await PricingTestKit.PostAsync(Gateway, a, "responses", """{"model":"gpt-4o-mini","input":"four"}""", ("x-fake-status", "500"));
        await PricingTestKit.PostAsync(Gateway, b, "embeddings", """{"model":"text-embedding-3-small","input":"five"}""", ("x-fake-input-tokens", "4000"));
        await PricingTestKit.PostAsync(Gateway, b, "responses", """{"model":"gpt-9-unpriced","input":"six"}""");
        await PricingTestKit.PostAsync(Gateway, b, "files", "{}");
        var events = await Gateway.Logs.WaitForUsageEventsAsync(7);
        Assert.Equal(7, events.Count);
        var lines = Gateway.Logs.Lines.ToArray();
        Assert.True(lines.Length > events.Count, "the log should hold other lines too");
        return (lines, events);
    }

    private async Task<string> WriteAsync(string name, string[] lines, bool gzip)
    {
        var path = Path.Combine(_directory, name);
        await using var file = File.Create(path);
        await using Stream target = gzip ? new GZipStream(file, CompressionLevel.Fastest) : file;
        await target.WriteAsync(Encoding.UTF8.GetBytes(string.Join('\n', lines) + "\n"));
        return path;
    }

    private static (int Exit, string Output, string Error) Run(string[] args, string stdin = "")
    {
        using var input = new MemoryStream(Encoding.UTF8.GetBytes(stdin));
        var output = new StringWriter();
        var error = new StringWriter();
        var exit = UsageReportCommand.Run(args, input, output, error);
        return (exit, output.ToString(), error.ToString());
    }

    private static string Event(string requestId, string timestamp, long input, double durationMs = 10) =>
        $$"""{"@t":"{{timestamp}}","@mt":"x","Tenant":"t","Endpoint":"responses.create","Model":"gpt-4o","StatusCode":200,"Outcome":"completed","InputTokens":{{input}},"CachedInputTokens":null,"OutputTokens":0,"CostUsd":0.000001,"UsageSource":"upstream","DurationMs":{{durationMs.ToString(CultureInfo.InvariantCulture)}},"RequestId":"{{requestId}}","EventId":{"Id":1000,"Name":"Usage"}""" + "}";
}
