using System.Collections.Concurrent;

namespace FakeUpstream;

/// <summary>
/// Named one-shot gates (<c>x-fake-gate</c>): a stream pauses after its first event until the test releases the gate,
/// which lets a test act (cancel, disconnect, inspect the gateway) while a response is provably in flight.
/// A gate is created on first use; releasing a gate nobody waits on yet opens it in advance. Once open it stays open.
/// </summary>
internal sealed class GateRegistry
{
    private readonly ConcurrentDictionary<string, TaskCompletionSource> _gates = new(StringComparer.Ordinal);

    public Task WaitAsync(string name, CancellationToken cancellationToken) =>
        Get(name).Task.WaitAsync(cancellationToken);

    public void Release(string name) => Get(name).TrySetResult();

    private TaskCompletionSource Get(string name) =>
        _gates.GetOrAdd(name, static _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
}
