using System.Collections.Concurrent;
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
    /// <summary>
    /// How long a refusal waits on a shared store before it is answered (a miss is looked up again after it): an owner's
    /// record is written without holding back the id (see <see cref="RecordCreatedAsync"/>), so the owner's client may
    /// ask another replica before that replica can read the record.
    /// </summary>
    internal static readonly TimeSpan RecordGrace = TimeSpan.FromMilliseconds(50);

    private static readonly Task<ObjectOwner?> NoLookup = Task.FromResult<ObjectOwner?>(null);

    /// <summary>This replica's ownership writes still in flight, by object id: a lookup of such an id waits for its write.</summary>
    private readonly ConcurrentDictionary<string, Task> _pendingRecords = new(StringComparer.Ordinal);

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

        var facts = request.Facts;
        var pathId = route.PathObject != ObjectKind.None ? request.PathId : null;
        if (pathId is null && facts?.PreviousResponseId is null && facts?.ConversationId is null)
        {
            return default;
        }

        try
        {
            // Every lookup is issued before any is awaited: one store round trip for all of them (issue #15).
            var pathOwner = pathId is null ? NoLookup : OwnerAsync(pathId, request);
            var previousOwner = facts?.PreviousResponseId is { } previous ? OwnerAsync(previous, request) : NoLookup;
            var conversationOwner = facts?.ConversationId is { } conversation ? OwnerAsync(conversation, request) : NoLookup;
            await Task.WhenAll(pathOwner, previousOwner, conversationOwner);

            var check = await CheckIdAsync(request, pathId, pathOwner.Result, route.PathObject, "path", null);
            if (check.Refusal is null)
            {
                check = await CheckIdAsync(request, facts?.PreviousResponseId, previousOwner.Result, ObjectKind.Response, "previous_response_id", check.Pin);
            }

            if (check.Refusal is null)
            {
                check = await CheckIdAsync(request, facts?.ConversationId, conversationOwner.Result, ObjectKind.Conversation, "conversation", check.Pin);
            }

            return check;
        }
        catch (StoreUnavailableException)
        {
            return new IsolationCheck(OpenAIError.StoreUnavailable(), null);
        }
    }

    /// <summary>
    /// Records ownership of the object this request created (and of the conversation it names). The writes are issued
    /// (on the store's connection) before this returns, and Forwarding releases the chunk carrying the id without waiting
    /// for their answer: the record costs no round trip before the first byte. The returned task is awaited before the
    /// request finishes (its usage event); a write that fails is logged as <c>OwnershipNotRecorded</c>. A lookup of the id
    /// on this replica waits for the write; one on another replica that misses looks again after <see cref="RecordGrace"/>.
    /// </summary>
    /// <param name="upstream">The pool upstream that created it (null without <c>Gateway:Upstreams</c>: not pinned).</param>
    public Task RecordCreatedAsync(AuthenticatedRequest request, string? objectId, string? conversationId, string? upstream)
    {
        var retention = settings.Current.Isolation.Retention;
        var created = request.Route!.CreatesObject;
        var storedByUpstream = request.Facts?.Store ?? created != ObjectKind.ChatCompletion; // chat stores only on request
        // OpenAI never expires conversations, however they were created: neither does their ownership record.
        var objectWrite = objectId is { } id && storedByUpstream
            ? Track(id, RecordOwnerAsync(request, id, upstream, created == ObjectKind.Conversation ? Timeout.InfiniteTimeSpan : retention))
            : Task.CompletedTask;
        var conversationWrite = conversationId is { } conversation
            ? Track(conversation, RecordOwnerAsync(request, conversation, upstream, Timeout.InfiniteTimeSpan))
            : Task.CompletedTask;
        return conversationWrite.IsCompleted ? objectWrite : objectWrite.IsCompleted ? conversationWrite : Task.WhenAll(objectWrite, conversationWrite);
    }

    private async Task RecordOwnerAsync(AuthenticatedRequest request, string objectId, string? upstream, TimeSpan retention)
    {
        try
        {
            await store.RecordOwnerAsync(objectId, request.Tenant.Id, upstream, retention, CancellationToken.None);
        }
        catch (Exception)
        {
            // Store down under OnStoreFailure: Deny, or any other failure. The id may already be with the client; the
            // object has no owner (under UnknownIds: Deny even its creator is refused). Never thrown: lookups await this.
            IsolationLog.OwnershipNotRecorded(logger, request.Tenant.Id, request.RequestId);
        }
    }

    /// <summary>A write not yet answered is remembered until it is, so that lookups of its id on this replica wait for it.</summary>
    private Task Track(string objectId, Task write)
    {
        if (write.IsCompleted)
        {
            return write;
        }

        _pendingRecords[objectId] = write;
        return ForgetWhenDoneAsync(objectId, write);
    }

    private async Task ForgetWhenDoneAsync(string objectId, Task write)
    {
        try
        {
            await write;
        }
        finally
        {
            _pendingRecords.TryRemove(KeyValuePair.Create(objectId, write));
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

    private async Task<ObjectOwner?> OwnerAsync(string id, AuthenticatedRequest request)
    {
        if (_pendingRecords.TryGetValue(id, out var pending))
        {
            await pending;
        }

        return await store.GetOwnerAsync(id, request.Http.RequestAborted);
    }

    /// <summary>
    /// The owner's id passes and may pin the request (<paramref name="pin"/> is what earlier ids pinned); anyone else's is
    /// refused. A null <paramref name="id"/> (not named) passes with the earlier pin.
    /// </summary>
    private async ValueTask<IsolationCheck> CheckIdAsync(AuthenticatedRequest request, string? id, ObjectOwner? owner, ObjectKind kind, string where, UpstreamPin? pin)
    {
        var tenant = request.Tenant.Id;
        if (id is null)
        {
            return new IsolationCheck(null, pin);
        }

        if (!Allowed(owner, tenant) && store.Kind != "memory")
        {
            // The owner's record may still be on its way from the replica that created the object (it released the id
            // while the write was in flight): it is looked up again after the grace. A foreign id takes the same path, so
            // the time of the answer does not tell an unknown id from another tenant's. Wall-clock time on purpose: this
            // waits for a network write, not for the gateway's notion of now (which tests may stop).
            await Task.Delay(RecordGrace, request.Http.RequestAborted);
            owner = await OwnerAsync(id, request);
        }

        if (!Allowed(owner, tenant))
        {
            IsolationLog.Refused(logger, tenant, owner?.Tenant ?? "(unknown)", kind.ToString(), id, where, request.RequestId);
            return new IsolationCheck(NotFound(kind, id, where), null);
        }

        // Without Gateway:Upstreams there is one upstream: a pin left by an earlier pool configuration means nothing.
        if (owner?.Upstream is not { } upstream || settings.Current.Upstreams.Count == 0)
        {
            return new IsolationCheck(null, pin); // unknown id allowed, or recorded without a pool (or by an earlier version)
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

    private bool Allowed(ObjectOwner? owner, string tenant) =>
        owner?.Tenant == tenant || (owner is null && settings.Current.Isolation.UnknownIds == UnknownIdMode.Allow);

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
