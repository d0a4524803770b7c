using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using Gateway.Observability;

namespace Gateway.Forwarding;

/// <summary>
/// Keeps CPU-heavy stages off the upstream socket's I/O thread. With inline socket completions
/// (<c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1</c>, shipped in the image) everything after an await on the
/// upstream's socket runs on the epoll thread that serves every socket of its engine, so a stage whose CPU grows with
/// its input (the o200k estimate of a large body, observing a large read) would stall all those connections. Such a
/// stage awaits <see cref="Above"/> first: only when its input is large and the thread is not a pool thread does the
/// rest of the caller move to the thread pool, so a small request pays nothing. Large stages are counted by the
/// thread they ran on (<c>gateway.large_input_stages</c>): <c>thread="other"</c> means an I/O thread was held.
/// </summary>
internal sealed class ThreadPoolHop
{
    /// <summary>The body above which closing a request without usage hops: estimating 1 KiB of text tokenizes for ~0.1-0.2 ms (docs/benchmarks.md).</summary>
    public const int EstimateAboveBytes = 1024;

    /// <summary>A single upstream read above which the usage tee hops before observing it (a typical SSE read is a few events).</summary>
    public const int ObserveAboveBytes = 16 * 1024;

    private static readonly KeyValuePair<string, object?> OnThreadPool = new("thread", "thread_pool");
    private static readonly KeyValuePair<string, object?> OnOtherThread = new("thread", "other");

    private readonly Counter<long> _stages;

    public ThreadPoolHop(IMeterFactory meters)
    {
        _stages = meters.Create(GatewayMetrics.MeterName).CreateCounter<long>("gateway.large_input_stages", "{stage}",
            "CPU-heavy stages over a large input, by stage and the thread they ran on (thread=other: a socket I/O thread was held; expected 0).");
    }

    /// <summary>Awaited before <paramref name="stage"/> processes <paramref name="inputBytes"/>; hops above <paramref name="thresholdBytes"/>.</summary>
    public Awaitable Above(long inputBytes, int thresholdBytes, string stage) => new(this, inputBytes > thresholdBytes ? stage : null);

    private void Count(string stage) =>
        _stages.Add(1, new KeyValuePair<string, object?>("stage", stage), Thread.CurrentThread.IsThreadPoolThread ? OnThreadPool : OnOtherThread);

    /// <summary>Completes at once for a small input or on a pool thread; otherwise resumes the caller on the thread pool.</summary>
    internal readonly struct Awaitable(ThreadPoolHop owner, string? stage) : ICriticalNotifyCompletion
    {
        public bool IsCompleted => stage is null || Thread.CurrentThread.IsThreadPoolThread;

        public Awaitable GetAwaiter() => this;

        public void GetResult()
        {
            if (stage is not null)
            {
                owner.Count(stage);
            }
        }

        public void OnCompleted(Action continuation) => ThreadPool.QueueUserWorkItem(static c => c(), continuation, preferLocal: false);

        // The async method's state machine restores its own ExecutionContext, as with Task.Yield.
        public void UnsafeOnCompleted(Action continuation) => ThreadPool.UnsafeQueueUserWorkItem(static c => c(), continuation, preferLocal: false);
    }
}
