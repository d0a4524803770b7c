using System.Globalization;
using System.IO.Compression;
using System.Text;
using System.Text.Json;

namespace Gateway.Reporting;

/// <summary>
/// <c>usage-report</c>: reads CLEF logs (files or stdin, plain or gzip), counts each request once by RequestId, and
/// prints requests, tokens, cost, errors, estimated share and duration percentiles per group, as a table, CSV or JSON.
/// Exit codes: 0 done, 1 an input could not be read, 2 bad arguments.
/// </summary>
internal static class UsageReportCommand
{
    public const string Name = "usage-report";

    public const string Usage = """
        usage: Gateway usage-report [FILE|-]... [--from TIME] [--to TIME] [--by DIMS] [--format table|csv|json]
          FILE          CLEF log files, plain or gzip (detected); none or '-' reads stdin. Overlapping files and
                        several replicas' logs count each request once (by RequestId).
          --from TIME   UTC, inclusive: 2026-11-01 or 2026-11-01T08:00:00Z
          --to TIME     UTC, exclusive; a date alone means the end of that day (2026-11-30 includes the 30th)
          --by DIMS     comma-separated subset of tenant,model,day,upstream,endpoint (default tenant,model; 'none' for one total)
          --format F    table (default), csv or json
        """;

    private static readonly (string Name, ReportDimensions Flag)[] DimensionNames =
    [
        ("tenant", ReportDimensions.Tenant), ("model", ReportDimensions.Model), ("day", ReportDimensions.Day),
        ("upstream", ReportDimensions.Upstream), ("endpoint", ReportDimensions.Endpoint),
    ];

    public static bool TryRun(string[] args, out int exitCode)
    {
        exitCode = 0;
        if (args.Length == 0 || args[0] != Name)
        {
            return false;
        }

        using var stdout = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false), 64 * 1024);
        using var stdin = Console.OpenStandardInput();
        exitCode = Run(args[1..], stdin, stdout, Console.Error);
        return true;
    }

    public static int Run(string[] args, Stream stdin, TextWriter output, TextWriter error)
    {
        if (!TryParseArguments(args, out var options, out var problem))
        {
            error.WriteLine($"{Name}: {problem}");
            error.WriteLine(Usage);
            return 2;
        }

        var report = new UsageReport(options.Dimensions, options.From, options.To);
        var parser = new UsageLineParser(report.NeedsTimestamps);
        foreach (var input in options.Inputs)
        {
            try
            {
                if (input == "-")
                {
                    UsageLogInput.Read(stdin, report, parser);
                }
                else
                {
                    using var file = new FileStream(input, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.SequentialScan);
                    UsageLogInput.Read(file, report, parser);
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidDataException)
            {
                var what = input == "-" ? "stdin" : $"'{input}'";
                var why = ex switch
                {
                    FileNotFoundException or DirectoryNotFoundException => "no such file",
                    UnauthorizedAccessException => "permission denied",
                    InvalidDataException => "corrupt gzip data",
                    _ => ex.Message,
                };
                error.WriteLine($"{Name}: cannot read {what}: {why}. No report was printed.");
                return 1;
            }
        }

        switch (options.Format)
        {
            case "csv":
                WriteCsv(report, output);
                break;
            case "json":
                WriteJson(report, output);
                break;
            default:
                WriteTable(report, output);
                break;
        }

        output.Flush();
        error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{Name}: {report.Lines} lines: {report.Counted} requests counted, {report.Duplicates} duplicates (same RequestId), {report.Skipped} skipped (not usage events), {report.OutsideRange} outside --from/--to."));
        return 0;
    }

    private sealed record Options(List<string> Inputs, ReportDimensions Dimensions, DateTime? From, DateTime? To, string Format);

    private static bool TryParseArguments(string[] args, out Options options, out string problem)
    {
        var inputs = new List<string>();
        var dimensions = ReportDimensions.Tenant | ReportDimensions.Model;
        DateTime? from = null, to = null;
        var format = "table";
        options = null!;
        problem = "";
        for (var i = 0; i < args.Length; i++)
        {
            var arg = args[i];
            if (arg is "--from" or "--to" or "--by" or "--format")
            {
                if (i + 1 >= args.Length)
                {
                    problem = $"{arg} needs a value.";
                    return false;
                }

                var value = args[++i];
                switch (arg)
                {
                    case "--from":
                        if (!TryParseTime(value, endOfDay: false, out var f))
                        {
                            problem = $"--from '{value}' is not a UTC date or time (2026-11-01 or 2026-11-01T08:00:00Z).";
                            return false;
                        }

                        from = f;
                        break;
                    case "--to":
                        if (!TryParseTime(value, endOfDay: true, out var t))
                        {
                            problem = $"--to '{value}' is not a UTC date or time (2026-11-30 or 2026-11-30T18:00:00Z).";
                            return false;
                        }

                        to = t;
                        break;
                    case "--by":
                        if (!TryParseDimensions(value, out dimensions, out problem))
                        {
                            return false;
                        }

                        break;
                    default:
                        if (value is not ("table" or "csv" or "json"))
                        {
                            problem = $"--format '{value}' must be table, csv or json.";
                            return false;
                        }

                        format = value;
                        break;
                }
            }
            else if (arg.StartsWith("--", StringComparison.Ordinal))
            {
                problem = $"unknown option {arg}.";
                return false;
            }
            else
            {
                inputs.Add(arg);
            }
        }

        if (from is not null && to is not null && to <= from)
        {
            problem = "--to must be after --from.";
            return false;
        }

        if (inputs.Count == 0)
        {
            inputs.Add("-");
        }

        options = new Options(inputs, dimensions, from, to, format);
        return true;
    }

    private static bool TryParseDimensions(string value, out ReportDimensions dimensions, out string problem)
    {
        dimensions = ReportDimensions.None;
        problem = "";
        if (value.Trim() is "none" or "")
        {
            return true;
        }

        foreach (var part in value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var match = DimensionNames.FirstOrDefault(d => string.Equals(d.Name, part, StringComparison.OrdinalIgnoreCase));
            if (match.Name is null)
            {
                problem = $"--by: unknown dimension '{part}'; use any of tenant, model, day, upstream, endpoint.";
                return false;
            }

            dimensions |= match.Flag;
        }

        return true;
    }

    private static bool TryParseTime(string value, bool endOfDay, out DateTime time)
    {
        if (DateOnly.TryParseExact(value, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var date))
        {
            time = date.ToDateTime(TimeOnly.MinValue, DateTimeKind.Utc);
            if (endOfDay)
            {
                time = time.AddDays(1);
            }

            return true;
        }

        if (DateTimeOffset.TryParse(value, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var instant))
        {
            time = instant.UtcDateTime;
            return true;
        }

        time = default;
        return false;
    }

    private static readonly string[] MetricColumns =
    [
        "requests", "input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens", "cost_usd", "errors", "estimated", "p50_ms", "p95_ms",
    ];

    private static IEnumerable<(string Name, Func<ReportKey, string?> Value)> SelectedDimensions(ReportDimensions dimensions) =>
        DimensionNames.Where(d => dimensions.HasFlag(d.Flag)).Select(d => (d.Name, (Func<ReportKey, string?>)(d.Flag switch
        {
            ReportDimensions.Tenant => k => k.Tenant,
            ReportDimensions.Model => k => k.Model,
            ReportDimensions.Day => k => k.Day,
            ReportDimensions.Upstream => k => k.Upstream,
            _ => k => k.Endpoint,
        })));

    private static string[] Cells(ReportRow row, bool percentShare)
    {
        var c = CultureInfo.InvariantCulture;
        return
        [
            row.Requests.ToString(c), row.InputTokens.ToString(c), row.CachedInputTokens.ToString(c), row.OutputTokens.ToString(c),
            row.ReasoningTokens.ToString(c), row.CostUsd.ToString("0.000000", c), row.Errors.ToString(c),
            percentShare ? (row.EstimatedShare * 100).ToString("0.0", c) + "%" : Math.Round(row.EstimatedShare, 4).ToString(c),
            Ms(row.Durations.Percentile(0.50)), Ms(row.Durations.Percentile(0.95)),
        ];
    }

    private static string Ms(double? value) => value is { } v ? Math.Round(v, 1).ToString("0.0", CultureInfo.InvariantCulture) : "";

    private static void WriteTable(UsageReport report, TextWriter output)
    {
        var dims = SelectedDimensions(report.Dimensions).ToArray();
        var header = dims.Select(d => d.Name).Concat(MetricColumns).ToArray();
        var rows = new List<string[]>();
        foreach (var (key, row) in report.Sorted())
        {
            rows.Add([.. dims.Select(d => d.Value(key) ?? ""), .. Cells(row, percentShare: true)]);
        }

        var widths = header.Select((h, i) => Math.Max(h.Length, rows.Count == 0 ? 0 : rows.Max(r => r[i].Length))).ToArray();
        var totals = Totals(report);
        var totalCells = Enumerable.Repeat("", dims.Length).ToArray();
        if (dims.Length > 0)
        {
            totalCells[0] = "TOTAL";
        }

        string[] totalRow = [.. totalCells, .. Cells(totals, percentShare: true)];
        widths = widths.Select((w, i) => Math.Max(w, totalRow[i].Length)).ToArray();

        void Line(string[] cells)
        {
            var line = new StringBuilder();
            for (var i = 0; i < cells.Length; i++)
            {
                if (i > 0)
                {
                    line.Append("  ");
                }

                // Dimensions left-aligned, numbers right-aligned.
                line.Append(i < dims.Length ? cells[i].PadRight(widths[i]) : cells[i].PadLeft(widths[i]));
            }

            output.WriteLine(line.ToString().TrimEnd());
        }

        Line(header);
        foreach (var row in rows)
        {
            Line(row);
        }

        if (dims.Length > 0)
        {
            Line(widths.Select(w => new string('-', w)).ToArray());
        }

        Line(totalRow);
    }

    /// <summary>All groups together; percentiles come from the merged durations, so they are recomputed, not averaged.</summary>
    private static ReportRow Totals(UsageReport report)
    {
        var total = new ReportRow();
        foreach (var row in report.Rows.Values)
        {
            total.Requests += row.Requests;
            total.InputTokens += row.InputTokens;
            total.CachedInputTokens += row.CachedInputTokens;
            total.OutputTokens += row.OutputTokens;
            total.ReasoningTokens += row.ReasoningTokens;
            total.CostUsd += row.CostUsd;
            total.Errors += row.Errors;
            total.Estimated += row.Estimated;
            total.Durations.Merge(row.Durations);
        }

        return total;
    }

    private static void WriteCsv(UsageReport report, TextWriter output)
    {
        var dims = SelectedDimensions(report.Dimensions).ToArray();
        output.WriteLine(string.Join(',', dims.Select(d => d.Name).Concat(MetricColumns)));
        foreach (var (key, row) in report.Sorted())
        {
            output.WriteLine(string.Join(',', dims.Select(d => Csv(d.Value(key) ?? "")).Concat(Cells(row, percentShare: false))));
        }
    }

    private static string Csv(string value) =>
        value.AsSpan().IndexOfAny(",\"\r\n") >= 0 ? "\"" + value.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"" : value;

    private static void WriteJson(UsageReport report, TextWriter output)
    {
        var dims = SelectedDimensions(report.Dimensions).ToArray();
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartArray();
            foreach (var (key, row) in report.Sorted())
            {
                json.WriteStartObject();
                foreach (var (name, value) in dims)
                {
                    json.WriteString(name, value(key));
                }

                json.WriteNumber("requests", row.Requests);
                json.WriteNumber("input_tokens", row.InputTokens);
                json.WriteNumber("cached_input_tokens", row.CachedInputTokens);
                json.WriteNumber("output_tokens", row.OutputTokens);
                json.WriteNumber("reasoning_tokens", row.ReasoningTokens);
                json.WriteNumber("cost_usd", row.CostUsd);
                json.WriteNumber("errors", row.Errors);
                json.WriteNumber("estimated", Math.Round(row.EstimatedShare, 4));
                WriteMs(json, "p50_ms", row.Durations.Percentile(0.50));
                WriteMs(json, "p95_ms", row.Durations.Percentile(0.95));
                json.WriteEndObject();
            }

            json.WriteEndArray();
        }

        output.WriteLine(Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length));
    }

    private static void WriteMs(Utf8JsonWriter json, string name, double? value)
    {
        if (value is { } v)
        {
            json.WriteNumber(name, Math.Round(v, 1));
        }
        else
        {
            json.WriteNull(name);
        }
    }
}
