using System.Diagnostics.Metrics;
using Gateway.Forwarding;
using Microsoft.Extensions.DependencyInjection;

namespace Gateway.Tests.Infrastructure;

/// <summary>A <see cref="ThreadPoolHop"/> for tests that build the usage tee by hand (its counter goes to a meter factory of its own).</summary>
internal static class TestHops
{
    public static ThreadPoolHop Instance { get; } = new(new ServiceCollection().AddMetrics().BuildServiceProvider().GetRequiredService<IMeterFactory>());
}
