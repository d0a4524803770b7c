using Gateway.Routing;
using Microsoft.Extensions.ObjectPool;

namespace Gateway.Usage;

/// <summary>Hands out pooled <see cref="UsageObserver"/>s (each ~5 KB of scanner state) and takes them back.</summary>
internal sealed class UsageObserverFactory(TokenCounter counter)
{
    private readonly ObjectPool<UsageObserver> _pool = new DefaultObjectPool<UsageObserver>(new Policy(counter), maximumRetained: 1024);

    /// <summary>An observer for one upstream body, filling its own <see cref="ObservedUsage"/>, reset to a new one's values.</summary>
    public UsageObserver Attach(BodyFormat format, UsageShape shape)
    {
        var observer = _pool.Get();
        observer.Begin(format, shape);
        return observer;
    }

    /// <summary>Takes the observer back once its usage has been read out; it must not be used after this.</summary>
    public void Release(UsageObserver observer)
    {
        observer.Dispose();
        _pool.Return(observer);
    }

    private sealed class Policy(TokenCounter counter) : PooledObjectPolicy<UsageObserver>
    {
        public override UsageObserver Create() => new(counter);

        public override bool Return(UsageObserver obj) => true;
    }
}
