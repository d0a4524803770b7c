using Gateway.Pipeline;
using Microsoft.Extensions.ObjectPool;

namespace Gateway.Usage;

/// <summary>Hands out pooled <see cref="UsageObserver"/>s (each ~5 KB of scanner state) and takes them back.</summary>
internal sealed class UsageObserverFactory(TokenCounter counter)
{
    private readonly ObjectPool<UsageObserver> _pool = new DefaultObjectPool<UsageObserver>(new Policy(counter), maximumRetained: 1024);

    public UsageObserver Attach(GatewayExchange exchange, BodyFormat format)
    {
        var observer = _pool.Get();
        observer.Begin(format, exchange.Route!.Usage, exchange.Usage);
        exchange.Observer = observer;
        return observer;
    }

    public void Release(GatewayExchange exchange)
    {
        if (exchange.Observer is { } observer)
        {
            exchange.Observer = null;
            observer.Dispose();
            _pool.Return(observer);
        }
    }

    private sealed class Policy(TokenCounter counter) : PooledObjectPolicy<UsageObserver>
    {
        public override UsageObserver Create() => new(counter);

        public override bool Return(UsageObserver obj) => true;
    }
}
