// Load client for the streaming benchmarks (wrk covers the non-streamed ones).
//   stream       K concurrent streams of N events: time to first byte and total time, p50/p99, and completeness.
//   open-streams C streams held open at once (slow events): how many finish with their terminal event.
// --pause-ms P (stream, diagnostic; default 0 = back to back as the bench runs): each worker waits P ms (fractions
// allowed) after a stream ends before it sends the next, so the target's work after an answer is not inside the next
// stream's time to first byte. The wait spins (the client has its own CPU in the bench): a sleeping client would add
// its own wake-up to every TTFB.
// --body JSON (stream, diagnostic): the request body instead of the default streamed create.
// Prints one JSON object on stdout. Only ever talks to the URL it is given (127.0.0.1 in bench/run.sh).
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;

var options = Options.Parse(args);
using var handler = new SocketsHttpHandler
{
    MaxConnectionsPerServer = int.MaxValue,
    PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
    AutomaticDecompression = DecompressionMethods.None,
    UseProxy = false,
    ConnectTimeout = TimeSpan.FromSeconds(30),
};
using var client = new HttpClient(handler) { Timeout = TimeSpan.FromMinutes(10) };

return options.Command switch
{
    "stream" => await StreamBench.RunAsync(client, options),
    "open-streams" => await OpenStreams.RunAsync(client, options),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: LoadClient stream|open-streams --url URL [--key KEY] [--concurrency K] [--requests R] [--events N] [--delay-ms D] [--pause-ms P] [--body JSON] [--count C] [--ramp-seconds S]");
    return 2;
}

internal sealed record Options(string Command, string Url, string? Key, int Concurrency, int Requests, int Events, int DelayMs, int Count, int RampSeconds, double PauseMs, string Body)
{
    public static Options Parse(string[] args)
    {
        string Get(string name, string fallback)
        {
            var i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        }

        int Int(string name, int fallback) => int.Parse(Get(name, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
        return new Options(args.Length > 0 ? args[0] : "", Get("--url", "http://127.0.0.1:8080/v1"), args.Contains("--key") ? Get("--key", "") : null,
            Int("--concurrency", 32), Int("--requests", 2000), Int("--events", 20), Int("--delay-ms", 0), Int("--count", 10_000), Int("--ramp-seconds", 20), double.Parse(Get("--pause-ms", "0"), CultureInfo.InvariantCulture),
            Get("--body", DefaultBody));
    }

    private const string DefaultBody = """{"model":"gpt-4o-mini","input":"Write a short greeting.","stream":true}""";

    public HttpRequestMessage NewStreamRequest()
    {
        var request = new HttpRequestMessage(HttpMethod.Post, Url.TrimEnd('/') + "/responses")
        {
            Content = new StringContent(Body, Encoding.UTF8, "application/json"),
        };
        request.Headers.TryAddWithoutValidation("Authorization", "Bearer " + (Key ?? "direct"));
        request.Headers.TryAddWithoutValidation("x-fake-deltas", Events.ToString(CultureInfo.InvariantCulture));
        request.Headers.TryAddWithoutValidation("x-fake-delay-ms", DelayMs.ToString(CultureInfo.InvariantCulture));
        return request;
    }
}

/// <summary>Reads one SSE response to its end: when the first bytes came, when it ended, whether the terminal event was there.</summary>
internal static class StreamReading
{
    private static readonly byte[] Terminal = "event: response.completed"u8.ToArray();

    public static async Task<(double TtfbMs, double TotalMs, bool Complete, int Events)> ReadAsync(HttpClient client, HttpRequestMessage request)
    {
        var start = Stopwatch.GetTimestamp();
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        response.EnsureSuccessStatusCode();
        await using var body = await response.Content.ReadAsStreamAsync();
        var buffer = new byte[16 * 1024];
        double ttfb = -1;
        var complete = false;
        var events = 0;
        var tail = new byte[Terminal.Length];
        var tailLength = 0;
        int read;
        while ((read = await body.ReadAsync(buffer)) > 0)
        {
            if (ttfb < 0)
            {
                ttfb = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            }

            var span = buffer.AsSpan(0, read);
            events += span.Count("\n\n"u8);
            // The terminal event may straddle two reads: search the previous tail plus this chunk's start.
            var joined = new byte[tailLength + Math.Min(read, Terminal.Length)];
            tail.AsSpan(0, tailLength).CopyTo(joined);
            span[..Math.Min(read, Terminal.Length)].CopyTo(joined.AsSpan(tailLength));
            complete |= span.IndexOf(Terminal) >= 0 || joined.AsSpan().IndexOf(Terminal) >= 0;
            tailLength = Math.Min(read, Terminal.Length - 1);
            span[^tailLength..].CopyTo(tail);
        }

        return (ttfb, Stopwatch.GetElapsedTime(start).TotalMilliseconds, complete, events);
    }
}

internal static class StreamBench
{
    public static async Task<int> RunAsync(HttpClient client, Options options)
    {
        var ttfb = new List<double>(options.Requests);
        var total = new List<double>(options.Requests);
        var incomplete = 0;
        var errors = 0;
        var next = 0;
        var gate = new object();
        var wall = Stopwatch.StartNew();
        var workers = Enumerable.Range(0, options.Concurrency).Select(async _ =>
        {
            while (Interlocked.Increment(ref next) <= options.Requests)
            {
                try
                {
                    var result = await StreamReading.ReadAsync(client, options.NewStreamRequest());
                    lock (gate)
                    {
                        ttfb.Add(result.TtfbMs);
                        total.Add(result.TotalMs);
                        incomplete += result.Complete ? 0 : 1;
                    }
                }
                catch (Exception ex) when (ex is HttpRequestException or IOException or TaskCanceledException)
                {
                    Interlocked.Increment(ref errors);
                }

                if (options.PauseMs > 0)
                {
                    var until = Stopwatch.GetTimestamp() + (long)(options.PauseMs * Stopwatch.Frequency / 1000);
                    while (Stopwatch.GetTimestamp() < until)
                    {
                        Thread.SpinWait(20);
                    }
                }
            }
        }).ToArray();
        await Task.WhenAll(workers);
        wall.Stop();
        Console.WriteLine(JsonSerializer.Serialize(new
        {
            command = "stream",
            options.Concurrency,
            options.Requests,
            options.Events,
            options.DelayMs,
            options.PauseMs,
            completed = total.Count,
            incomplete,
            errors,
            streams_per_second = Math.Round(total.Count / wall.Elapsed.TotalSeconds, 1),
            ttfb_p50_ms = Percentile(ttfb, 0.50),
            ttfb_p99_ms = Percentile(ttfb, 0.99),
            total_p50_ms = Percentile(total, 0.50),
            total_p99_ms = Percentile(total, 0.99),
        }));
        return errors == 0 && incomplete == 0 ? 0 : 1;
    }

    public static double Percentile(List<double> values, double p)
    {
        if (values.Count == 0)
        {
            return double.NaN;
        }

        values.Sort();
        var index = (int)Math.Ceiling(p * values.Count) - 1;
        return Math.Round(values[Math.Clamp(index, 0, values.Count - 1)], 3);
    }
}

internal static class OpenStreams
{
    public static async Task<int> RunAsync(HttpClient client, Options options)
    {
        var complete = 0;
        var incomplete = 0;
        var errors = 0;
        var open = 0;
        var peakOpen = 0;
        var firstError = "";
        var wall = Stopwatch.StartNew();
        var delayPerStream = TimeSpan.FromSeconds((double)options.RampSeconds / options.Count);
        var tasks = new List<Task>(options.Count);
        for (var i = 0; i < options.Count; i++)
        {
            tasks.Add(Task.Run(async () =>
            {
                var now = Interlocked.Increment(ref open);
                InterlockedMax(ref peakOpen, now);
                try
                {
                    var result = await StreamReading.ReadAsync(client, options.NewStreamRequest());
                    if (result.Complete)
                    {
                        Interlocked.Increment(ref complete);
                    }
                    else
                    {
                        Interlocked.Increment(ref incomplete);
                    }
                }
                catch (Exception ex) when (ex is HttpRequestException or IOException or TaskCanceledException)
                {
                    if (Interlocked.Increment(ref errors) == 1)
                    {
                        firstError = ex.GetType().Name + ": " + ex.Message;
                    }
                }
                finally
                {
                    Interlocked.Decrement(ref open);
                }
            }));
            if (delayPerStream > TimeSpan.Zero && i % 50 == 49)
            {
                await Task.Delay(delayPerStream * 50);
            }
        }

        await Task.WhenAll(tasks);
        Console.WriteLine(JsonSerializer.Serialize(new
        {
            command = "open-streams",
            options.Count,
            options.Events,
            options.DelayMs,
            complete,
            incomplete,
            errors,
            first_error = firstError,
            peak_open = peakOpen,
            seconds = Math.Round(wall.Elapsed.TotalSeconds, 1),
        }));
        return complete == options.Count ? 0 : 1;
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int current;
        while (value > (current = Volatile.Read(ref target)) && Interlocked.CompareExchange(ref target, value, current) != current)
        {
        }
    }
}
