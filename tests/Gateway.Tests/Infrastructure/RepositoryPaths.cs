namespace Gateway.Tests.Infrastructure;

/// <summary>Files of the repository itself (README, Dockerfile, deploy/), found from the test binaries upwards.</summary>
public static class RepositoryPaths
{
    private static readonly Lazy<string> RootPath = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (System.IO.File.Exists(Path.Combine(dir.FullName, "Gateway.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"No Gateway.sln above {AppContext.BaseDirectory}.");
    });

    public static string Root => RootPath.Value;

    public static string File(params string[] relative) => Path.Combine([Root, .. relative]);

    public static string Read(params string[] relative) => System.IO.File.ReadAllText(File(relative));
}
