using Gateway.Configuration;
using Gateway.SharedState;
using Gateway.Upstreams;

namespace Gateway.Health;

/// <summary>
/// <c>/healthz</c>: the process is alive. <c>/readyz</c>: the configuration is valid, the gateway is not draining,
/// and the shared store answers. With <c>OnStoreFailure: Allow</c> a store outage is reported but the replica stays
/// ready (it keeps serving with per-replica limits; failing every replica at once would be an outage of its own).
/// With an upstream pool, ready only while at least one upstream takes traffic (not every one cooling as a whole).
/// </summary>
internal static class HealthEndpoints
{
    public static void MapHealthEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapGet("/healthz", static () => Results.Json(new { status = "ok" }));
        app.MapGet("/readyz", static async (ISharedStateStore store, DrainState drain, GatewaySettings settings, UpstreamRouter upstreams, CancellationToken ct) =>
        {
            bool storeUp;
            try
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
                timeout.CancelAfter(TimeSpan.FromSeconds(2));
                storeUp = await store.PingAsync(timeout.Token);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !ct.IsCancellationRequested)
            {
                storeUp = false;
            }

            var denyWhenDown = settings.Current.Quotas.OnStoreFailure == StoreFailureMode.Deny;
            var upstreamUsable = upstreams.IsAnyUsable();
            var ready = !drain.IsDraining && (storeUp || !denyWhenDown) && upstreamUsable;
            return Results.Json(
                new { status = ready ? "ready" : "not_ready", draining = drain.IsDraining, store = store.Kind, store_state = storeUp ? "up" : "down", upstreams = upstreamUsable ? "usable" : "none_usable" },
                statusCode: ready ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
        });
    }
}
