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

    public async ValueTask<OpenAIError?> CheckAsync(AuthenticatedRequest request)
    {
        var route = request.Route!;
        if (route.IsListing)
        {
            IsolationLog.ListingRefused(logger, request.Tenant.Id, route.Endpoint, request.RequestId);
            return ListingRefused;
        }

        try
        {
            if (route.PathObject != ObjectKind.None && request.PathId is { } pathId
                && await RefuseAsync(request, pathId, route.PathObject, "path") is { } pathRefusal)
            {
                return pathRefusal;
            }

            var facts = request.Facts;
            if (facts?.PreviousResponseId is { } previous && await RefuseAsync(request, previous, ObjectKind.Response, "previous_response_id") is { } previousRefusal)
            {
                return previousRefusal;
            }

            if (facts?.ConversationId is { } conversation && await RefuseAsync(request, conversation, ObjectKind.Conversation, "conversation") is { } conversationRefusal)
            {
                return conversationRefusal;
            }
        }
        catch (StoreUnavailableException)
        {
            return OpenAIError.StoreUnavailable();
        }

        return null;
    }

    /// <summary>
    /// Records ownership of the object this request created (and of the conversation it names); awaited by Forwarding
    /// before the chunk that carries the id is released to the client.
    /// </summary>
    public async ValueTask RecordCreatedAsync(AuthenticatedRequest request, string? objectId, string? conversationId)
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
                await store.RecordOwnerAsync(id, tenant, created == ObjectKind.Conversation ? Timeout.InfiniteTimeSpan : retention, CancellationToken.None);
            }

            if (conversationId is { } conversation)
            {
                // OpenAI never expires conversations, so neither does their ownership record.
                await store.RecordOwnerAsync(conversation, tenant, Timeout.InfiniteTimeSpan, CancellationToken.None);
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

    private async ValueTask<OpenAIError?> RefuseAsync(AuthenticatedRequest request, string id, ObjectKind kind, string where)
    {
        var tenant = request.Tenant.Id;
        var owner = await store.GetOwnerAsync(id, request.Http.RequestAborted);
        if (owner == tenant || (owner is null && settings.Current.Isolation.UnknownIds == UnknownIdMode.Allow))
        {
            return null;
        }

        IsolationLog.Refused(logger, tenant, owner ?? "(unknown)", kind.ToString(), id, where, request.RequestId);
        return NotFound(kind, id, where);
    }

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
}
