using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using Gateway.Configuration;
using Gateway.SharedState;
using Gateway.Tests.Infrastructure;
using StackExchange.Redis;

namespace Gateway.Tests.SharedState;

/// <summary>
/// Redis Cluster requires every key a script touches to be passed in KEYS. Redis itself only notices an undeclared key
/// when it hashes to another slot, and a tenant's keys all share one slot, so this watches the server instead: MONITOR
/// shows each EVALSHA with its KEYS and every command the script ran; each key a script command touched must be one
/// the call declared.
/// </summary>
public sealed partial class RedisScriptKeysTests
{
    private const string Tenant = "tenant-k";

    [SkippableFact]
    public async Task SettleScript_HeldReservationFromAnotherMinute_TouchesOnlyDeclaredKeys()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var connection = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var store = new RedisStateStore(connection, "keys");
        await using var monitor = await Monitor.StartAsync(redis.Port);
        var admittedAt = new DateTimeOffset(2031, 3, 12, 10, 15, 50, TimeSpan.Zero);
        var admittedIn = QuotaWindows.At(admittedAt);
        var limits = new TenantLimitsOptions { TokensPerMinute = 1000, UsdPerDay = 5 };

        await store.AdmitAsync(new AdmissionRequest(Tenant, limits, 600, admittedIn, "", TimeSpan.FromMinutes(15), ReserveMicroUsd: 40), CancellationToken.None);
        var reservation = new Gateway.SharedState.QuotaReservation(Tenant, 600, admittedIn.Minute, admittedIn.Day, admittedIn.Month, null) { ReservedMicroUsd = 40 };
        await store.SettleAsync(new SettleRequest(Tenant, reservation, 0, null, "resp_bg", TimeSpan.FromDays(1), TimeSpan.FromHours(1), admittedIn), CancellationToken.None);
        var admission = await monitor.TakeAsync(connection);

        // Two minutes later a retrieval sees the usage: the held reservation is refunded in its own (undeclared before) windows.
        var later = QuotaWindows.At(admittedAt.AddMinutes(2));
        var settled = await store.SettleAsync(new SettleRequest(Tenant, null, 250, "resp_bg", null, TimeSpan.FromDays(1), TimeSpan.FromHours(1), later), CancellationToken.None);
        var claim = await monitor.TakeAsync(connection);

        Assert.True(settled.First);
        Assert.Equal(0, (await store.ReadCountersAsync(Tenant, admittedIn, CancellationToken.None)).MinuteTokens);
        AssertOnlyDeclaredKeys(admission);
        AssertOnlyDeclaredKeys(claim);
        Assert.Contains(claim, c => c.FromScript && c.Arguments[0] is "INCRBY" or "SET" && c.Arguments[1].EndsWith(":tm:" + admittedIn.Minute, StringComparison.Ordinal));
    }

    private static void AssertOnlyDeclaredKeys(IReadOnlyList<MonitoredCommand> commands)
    {
        var declared = new HashSet<string>(StringComparer.Ordinal);
        foreach (var call in commands.Where(c => !c.FromScript && c.Arguments[0] is "EVALSHA" or "EVAL"))
        {
            var count = int.Parse(call.Arguments[2], System.Globalization.CultureInfo.InvariantCulture);
            declared.UnionWith(call.Arguments.Skip(3).Take(count));
        }

        var scriptCommands = commands.Where(c => c.FromScript).ToArray();
        Assert.NotEmpty(scriptCommands);
        foreach (var command in scriptCommands)
        {
            // Every command the scripts use takes one key, first, but MGET, whose arguments are all keys.
            foreach (var key in command.Arguments[0] == "MGET" ? command.Arguments.Skip(1) : command.Arguments.Take(new Range(1, 2)))
            {
                Assert.True(declared.Contains(key),
                    $"The script ran {string.Join(' ', command.Arguments)} on a key not passed in KEYS (declared: {string.Join(", ", declared)}).");
            }
        }
    }

    internal sealed record MonitoredCommand(bool FromScript, IReadOnlyList<string> Arguments);

    /// <summary>A raw MONITOR connection; <see cref="TakeAsync"/> returns what it saw up to a marker command.</summary>
    private sealed partial class Monitor : IAsyncDisposable
    {
        private readonly TcpClient _client;
        private readonly ConcurrentQueue<string> _lines = new();
        private readonly Task _reading;
        private int _markers;

        private Monitor(TcpClient client)
        {
            _client = client;
            _reading = Task.Run(ReadAsync);
        }

        public static async Task<Monitor> StartAsync(int port)
        {
            var client = new TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, port);
            await client.GetStream().WriteAsync("MONITOR\r\n"u8.ToArray());
            return new Monitor(client);
        }

        /// <summary>Sends a marker through <paramref name="connection"/>, waits until MONITOR shows it, returns the commands before it.</summary>
        public async Task<IReadOnlyList<MonitoredCommand>> TakeAsync(ConnectionMultiplexer connection)
        {
            var marker = "monitor-marker-" + Interlocked.Increment(ref _markers);
            await connection.GetDatabase().StringGetAsync(marker);
            var taken = new List<MonitoredCommand>();
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (DateTime.UtcNow < deadline)
            {
                while (_lines.TryDequeue(out var line))
                {
                    var command = Parse(line);
                    if (command is null)
                    {
                        continue;
                    }

                    if (command.Arguments is ["GET", var key] && key == marker)
                    {
                        return taken;
                    }

                    taken.Add(command);
                }

                await Task.Delay(20);
            }

            throw new TimeoutException($"MONITOR did not show {marker} within 10 s.");
        }

        private async Task ReadAsync()
        {
            try
            {
                using var reader = new StreamReader(_client.GetStream(), Encoding.UTF8);
                while (await reader.ReadLineAsync() is { } line)
                {
                    _lines.Enqueue(line);
                }
            }
            catch (IOException)
            {
            }
            catch (ObjectDisposedException)
            {
            }
        }

        // +1700000000.123456 [0 127.0.0.1:4242] "EVALSHA" "..." or [0 lua] "INCRBY" "key" "5"
        private static MonitoredCommand? Parse(string line)
        {
            var source = SourcePattern().Match(line);
            if (!source.Success)
            {
                return null;
            }

            var arguments = ArgumentPattern().Matches(line[(source.Index + source.Length)..]).Select(m => Regex.Unescape(m.Groups[1].Value)).ToArray();
            if (arguments.Length == 0)
            {
                return null;
            }

            arguments[0] = arguments[0].ToUpperInvariant();
            return new MonitoredCommand(source.Groups[1].Value == "lua", arguments);
        }

        [GeneratedRegex(@"\[\d+ ([^\]]+)\]")]
        private static partial Regex SourcePattern();

        [GeneratedRegex("\"((?:[^\"\\\\]|\\\\.)*)\"")]
        private static partial Regex ArgumentPattern();

        public async ValueTask DisposeAsync()
        {
            _client.Dispose();
            await _reading;
        }
    }
}
