using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Options;

namespace Gateway.Hosting;

/// <summary>
/// Turns a configuration error found while the gateway starts into lines an operator can act on: the key at fault
/// and the fix. Two kinds exist: the gateway's own validation (<see cref="OptionsValidationException"/>, whose
/// failures already name key and fix) and a value the configuration binder cannot convert (a duration, number or
/// enum typo, e.g. in an environment variable). Anything else is a genuine crash and keeps its stack trace.
/// </summary>
internal static partial class StartupFailure
{
    public const string Headline = "The gateway cannot start: the configuration is invalid.";

    /// <summary>The failures, or null when <paramref name="exception"/> is not a configuration error.</summary>
    public static IReadOnlyList<string>? Describe(Exception exception)
    {
        for (var ex = exception; ex is not null; ex = ex.InnerException)
        {
            switch (ex)
            {
                case OptionsValidationException validation:
                    return validation.Failures.ToArray();
                case AggregateException aggregate:
                    return aggregate.InnerExceptions.Select(Describe).FirstOrDefault(d => d is not null);
                case InvalidOperationException when ConversionFailure().Match(ex.Message) is { Success: true } match:
                    return [DescribeConversion(match.Groups["value"].Value, match.Groups["key"].Value, match.Groups["type"].Value)];
            }
        }

        return null;
    }

    public static async Task WriteAsync(TextWriter error, IReadOnlyList<string> failures)
    {
        await error.WriteLineAsync(Headline);
        foreach (var failure in failures)
        {
            await error.WriteLineAsync("  - " + failure);
        }

        await error.WriteLineAsync("Configuration keys can be set in the configuration file or as environment variables with '__' for ':' (see README.md#configuration).");
    }

    private static string DescribeConversion(string value, string key, string typeName)
    {
        var hint = typeName switch
        {
            "System.TimeSpan" => "write a duration as hh:mm:ss or d.hh:mm:ss, e.g. \"00:00:30\" or \"45.00:00:00\"",
            "System.Int32" or "System.Int64" => "write a whole number, e.g. \"600\"",
            "System.Boolean" => "write true or false",
            _ when typeof(StartupFailure).Assembly.GetType(typeName) is { IsEnum: true } enumType =>
                "use one of: " + string.Join(", ", Enum.GetNames(enumType)),
            _ => $"write a valid {typeName.Split('.')[^1]}",
        };
        return string.Create(CultureInfo.InvariantCulture, $"{key} has the value '{value}', which is not valid here: {hint}.");
    }

    // Microsoft.Extensions.Configuration.Binder's message for a value it cannot convert.
    [GeneratedRegex("^Failed to convert configuration value '(?<value>.*)' at '(?<key>[^']+)' to type '(?<type>[^']+)'", RegexOptions.Singleline)]
    private static partial Regex ConversionFailure();
}
