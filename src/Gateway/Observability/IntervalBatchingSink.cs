using System.Collections.Concurrent;
using Serilog.Core;
using Serilog.Debugging;
using Serilog.Events;

namespace Gateway.Observability;

/// <summary>
/// Batches events for <see cref="StdoutClefSink"/> by time: a request thread only enqueues its event, and one timer
/// writes whatever is queued once per interval. Serilog's batching sink instead woke its loop for almost every event
/// (a channel read completing, a thread-pool work item and a <c>Task.WhenAny</c> per event), so a request paid a hand-off
/// for its log line. The queue is unbounded (usage events are billing records, never dropped); the timer is armed only
/// while something is queued (no wake-ups when idle); one drain at a time keeps the lines in the order they were logged;
/// disposal (the host's shutdown) writes everything still queued.
/// </summary>
internal sealed class IntervalBatchingSink : ILogEventSink, IDisposable
{
    private readonly StdoutClefSink _output;
    private readonly TimeSpan _interval;
    private readonly int _batchSizeLimit;
    private readonly ConcurrentQueue<LogEvent> _queue = new();
    private readonly List<LogEvent> _batch;
    private readonly Lock _drainGate = new();
    private readonly ITimer _timer;
    private int _armed;
    private volatile bool _disposed;

    public IntervalBatchingSink(StdoutClefSink output, TimeSpan interval, int batchSizeLimit, TimeProvider time)
    {
        _output = output;
        _interval = interval;
        _batchSizeLimit = batchSizeLimit;
        _batch = new List<LogEvent>(batchSizeLimit);
        _timer = time.CreateTimer(static state => ((IntervalBatchingSink)state!).OnTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    public void Emit(LogEvent logEvent)
    {
        _queue.Enqueue(logEvent);
        if (_disposed)
        {
            Drain();
            return;
        }

        // Arm once per batch: the first event after a drain starts the interval, the rest only enqueue.
        if (Volatile.Read(ref _armed) == 0 && Interlocked.Exchange(ref _armed, 1) == 0)
        {
            _timer.Change(_interval, Timeout.InfiniteTimeSpan);
        }
    }

    private void OnTimer()
    {
        Drain();
        Interlocked.Exchange(ref _armed, 0);
        // An event enqueued after the drain's last read, while still armed, did not arm the timer: arm it for that one.
        if (!_queue.IsEmpty && !_disposed && Interlocked.Exchange(ref _armed, 1) == 0)
        {
            _timer.Change(_interval, Timeout.InfiniteTimeSpan);
        }
    }

    private void Drain()
    {
        lock (_drainGate)
        {
            while (!_queue.IsEmpty)
            {
                while (_batch.Count < _batchSizeLimit && _queue.TryDequeue(out var next))
                {
                    _batch.Add(next);
                }

                try
                {
                    _output.EmitBatch(_batch);
                }
                catch (Exception ex)
                {
                    // stdout is gone (a closed pipe, or written after disposal): there is nowhere to keep them for; a timer
                    // callback must not throw (it would end the process).
                    SelfLog.WriteLine("Writing {0} events to stdout failed: {1}", _batch.Count, ex);
                }
                finally
                {
                    _batch.Clear();
                }
            }
        }
    }

    public void Dispose()
    {
        _disposed = true;
        _timer.Dispose();
        Drain();
        _output.Dispose();
    }
}
