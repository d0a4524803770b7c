namespace Gateway.Hosting;

/// <summary>
/// <c>probe &lt;url&gt;</c>: one GET, exit code 0 on a 2xx answer, 1 otherwise. The container's health check
/// (docker compose): the chiseled image has no shell, curl or wget, so the gateway's own binary asks itself.
/// </summary>
internal static class ProbeCommand
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(3);

    public static bool TryRun(string[] args, TextWriter output, out int exitCode)
    {
        exitCode = 0;
        if (args.Length == 0 || args[0] != "probe")
        {
            return false;
        }

        if (args.Length != 2 || !Uri.TryCreate(args[1], UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https"))
        {
            output.WriteLine("usage: Gateway probe http://127.0.0.1:8080/healthz");
            exitCode = 2;
            return true;
        }

        try
        {
            using var client = new HttpClient { Timeout = Timeout };
            using var response = client.GetAsync(url).GetAwaiter().GetResult();
            output.WriteLine($"{(int)response.StatusCode} {url}");
            exitCode = response.IsSuccessStatusCode ? 0 : 1;
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            output.WriteLine($"unreachable {url}: {ex.GetType().Name}");
            exitCode = 1;
        }

        return true;
    }
}
