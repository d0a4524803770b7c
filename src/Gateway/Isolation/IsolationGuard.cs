using Gateway.Configuration;
using Gateway.Errors;
using Gateway.Requests;
using Gateway.Routing;
using Gateway.SharedState;

namespace Gateway.Isolation;

/// <summary>
/// Tenant isolation. Every tenant shares one upstream key, so to OpenAI every stored object belongs to the same
/// account; the gateway therefore records which tenant created each object id and refuses every other tenant,
/// before anything reaches the upstream, with exactly the answer OpenAI gives for an id that does not exist.
/// </summary>
internal sealed class IsolationGuard(ISharedStateStore store, GatewaySettings settings, ILogger<IsolationGuard> logger)
{
    private static readonly OpenAIError ListingRefused = new(StatusCodes.Status403Forbidden,
        "Listing stored chat completions is not available through this gateway: the upstream list spans every tenant sharing the API key. " +
        "Retrieve your completions by id instead.", "invalid_request_error", null, "listing_not_supported");

    /// <summary>
    /// Refuses a request naming another tenant's (or an unknown) object; otherwise yields the upstream the named objects
    /// live on, read from the same records (no second store read). Objects on two different upstreams cannot be
    /// continued by one request: 400 naming the later parameter.
    /// </summary>
    public async ValueTask<IsolationCheck> CheckAsync(AuthenticatedRequest request)
    {
        var route = request.Route!;
        if (route.IsListing)
        {
            IsolationLog.ListingRefused(logger, request.Tenant.Id, route.Endpoint, request.RequestId);
            return new IsolationCheck(ListingRefused, null);
        }

        UpstreamPin? pin = null;
        try
        {
            if (route.PathObject != ObjectKind.None && request.PathId is { } pathId)
            {
                var path = await CheckIdAsync(request, pathId, route.PathObject, "path", pin);
                if (path.Refusal is not null)
                {
                    return path;
                }

                pin = path.Pin;
            }

            var facts = request.Facts;
            if (facts?.PreviousResponseId is { } previous)
            {
                var checkedPrevious = await CheckIdAsync(request, previous, ObjectKind.Response, "previous_response_id", pin);
                if (checkedPrevious.Refusal is not null)
                {
                    return checkedPrevious;
                }

                pin = checkedPrevious.Pin;
            }

            if (facts?.ConversationId is { } conversation)
            {
                return await CheckIdAsync(request, conversation, ObjectKind.Conversation, "conversation", pin);
            }
        }
        catch (StoreUnavailableException)
        {
            return new IsolationCheck(OpenAIError.StoreUnavailable(), null);
        }

        return new IsolationCheck(null, pin);
    }

    /// <summary>
    /// Records ownership of the object this request created (and of the conversation it names); awaited by Forwarding
    /// before the chunk that carries the id is released to the client.
    /// </summary>
    /// <param name="upstream">The pool upstream that created it (null without <c>Gateway:Upstreams</c>: not pinned).</param>
    public async ValueTask RecordCreatedAsync(AuthenticatedRequest request, string? objectId, string? conversationId, string? upstream)
    {
        var tenant = request.Tenant.Id;
        var retention = settings.Current.Isolation.Retention;
        var created = request.Route!.CreatesObject;
        var storedByUpstream = request.Facts?.Store ?? created != ObjectKind.ChatCompletion; // chat stores only on request
        try
        {
            if (objectId is { } id && storedByUpstream)
            {
                // OpenAI never expires conversations, however they were created: neither does their ownership record.
                await store.RecordOwnerAsync(id, tenant, upstream, created == ObjectKind.Conversation ? Timeout.InfiniteTimeSpan : retention, CancellationToken.None);
            }

            if (conversationId is { } conversation)
            {
                // OpenAI never expires conversations, so neither does their ownership record.
                await store.RecordOwnerAsync(conversation, tenant, upstream, Timeout.InfiniteTimeSpan, CancellationToken.None);
            }
        }
        catch (StoreUnavailableException)
        {
            IsolationLog.OwnershipNotRecorded(logger, tenant, request.RequestId);
        }
    }

    /// <summary>
    /// The owner deleted a conversation: its record, which had no expiry, now lives <c>Retention</c> more (the id keeps
    /// being refused to other tenants for that long, then is forgotten), so deleted conversations do not pile up for ever.
    /// </summary>
    public async ValueTask RecordDeletedAsync(AuthenticatedRequest request)
    {
        if (request.PathId is not { } id)
        {
            return;
        }

        try
        {
            await store.ExpireOwnerAsync(id, request.Tenant.Id, settings.Current.Isolation.Retention, CancellationToken.None);
        }
        catch (StoreUnavailableException)
        {
            // Deny mode with the store down: the record keeps no expiry (it keeps refusing other tenants, as before).
        }
    }

    /// <summary>The owner's id passes and may pin the request (<paramref name="pin"/> is what earlier ids pinned); anyone else's is refused.</summary>
    private async ValueTask<IsolationCheck> CheckIdAsync(AuthenticatedRequest request, string id, ObjectKind kind, string where, UpstreamPin? pin)
    {
        var tenant = request.Tenant.Id;
        var owner = await store.GetOwnerAsync(id, request.Http.RequestAborted);
        if (owner is not { } known)
        {
            if (settings.Current.Isolation.UnknownIds == UnknownIdMode.Allow)
            {
                return new IsolationCheck(null, pin);
            }
        }
        else if (known.Tenant == tenant)
        {
            // Without Gateway:Upstreams there is one upstream: a pin left by an earlier pool configuration means nothing.
            if (known.Upstream is not { } upstream || settings.Current.Upstreams.Count == 0)
            {
                return new IsolationCheck(null, pin); // recorded without a pool (or by an earlier version): routed as any request
            }

            if (pin is null || string.Equals(pin.Upstream, upstream, StringComparison.OrdinalIgnoreCase))
            {
                return new IsolationCheck(null, pin ?? new UpstreamPin(upstream, kind, id, where));
            }

            // Both objects are the tenant's, on two upstreams: no single upstream can serve the request.
            IsolationLog.PinConflict(logger, tenant, pin.Where, pin.Upstream, where, upstream, request.RequestId);
            return new IsolationCheck(new OpenAIError(StatusCodes.Status400BadRequest,
                $"'{where}' cannot be used together with '{pin.Where}' here: the objects they name are held by different upstreams of this gateway.",
                "invalid_request_error", where, "objects_on_different_upstreams"), null);
        }

        IsolationLog.Refused(logger, tenant, owner?.Tenant ?? "(unknown)", kind.ToString(), id, where, request.RequestId);
        return new IsolationCheck(NotFound(kind, id, where), null);
    }

    /// <summary>What OpenAI answers for the pinned id when its upstream is no longer configured: the object is gone for good.</summary>
    public static OpenAIError NotFound(UpstreamPin pin) => NotFound(pin.Kind, pin.ObjectId, pin.Where);

    /// <summary>OpenAI's own not-found answers, so a refusal reveals nothing about whether the id exists.</summary>
    private static OpenAIError NotFound(ObjectKind kind, string id, string where) => (kind, where) switch
    {
        (ObjectKind.Response, "previous_response_id") => new OpenAIError(StatusCodes.Status400BadRequest,
            $"Previous response with id '{id}' not found.", "invalid_request_error", "previous_response_id", "previous_response_not_found"),
        (ObjectKind.Response, _) => new OpenAIError(StatusCodes.Status404NotFound,
            $"Response with id '{id}' not found.", "invalid_request_error"),
        (ObjectKind.Conversation, "conversation") => new OpenAIError(StatusCodes.Status404NotFound,
            $"Conversation with id '{id}' not found.", "invalid_request_error", "conversation"),
        (ObjectKind.Conversation, _) => new OpenAIError(StatusCodes.Status404NotFound,
            $"Conversation with id '{id}' not found.", "invalid_request_error"),
        _ => new OpenAIError(StatusCodes.Status404NotFound,
            $"No chat completion found with id '{id}'.", "invalid_request_error"),
    };
}

/// <summary>Isolation's verdict: a refusal, or the upstream the named objects live on (null: any).</summary>
internal readonly record struct IsolationCheck(OpenAIError? Refusal, UpstreamPin? Pin);

internal static partial class IsolationLog
{
    [LoggerMessage(EventId = 6001, EventName = "IsolationRefused", Level = LogLevel.Warning,
        Message = "Tenant {Tenant} refused access to {ObjectKind} {ObjectId} ({Where}) owned by {OwnerTenant} {RequestId}")]
    public static partial void Refused(ILogger logger, string tenant, string ownerTenant, string objectKind, string objectId, string where, string requestId);

    [LoggerMessage(EventId = 6002, EventName = "IsolationListingRefused", Level = LogLevel.Information,
        Message = "Tenant {Tenant} refused a cross-tenant listing {Endpoint} {RequestId}")]
    public static partial void ListingRefused(ILogger logger, string tenant, string endpoint, string requestId);

    [LoggerMessage(EventId = 6003, EventName = "OwnershipNotRecorded", Level = LogLevel.Error,
        Message = "Ownership of an object created by tenant {Tenant} could not be recorded (store down) {RequestId}")]
    public static partial void OwnershipNotRecorded(ILogger logger, string tenant, string requestId);

    [LoggerMessage(EventId = 6004, EventName = "IsolationPinConflict", Level = LogLevel.Information,
        Message = "Tenant {Tenant} named objects on two upstreams ({FirstWhere} on {FirstUpstream}, {SecondWhere} on {SecondUpstream}); refused 400 {RequestId}")]
    public static partial void PinConflict(ILogger logger, string tenant, string firstWhere, string firstUpstream, string secondWhere, string secondUpstream, string requestId);
}
