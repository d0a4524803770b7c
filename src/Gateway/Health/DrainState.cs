namespace Gateway.Health;

/// <summary>Set at SIGTERM: <c>/readyz</c> fails at once so load balancers stop sending new requests.</summary>
internal sealed class DrainState
{
    private volatile bool _draining;

    public bool IsDraining => _draining;

    public void Begin() => _draining = true;
}
