namespace Gateway.Routing;

/// <summary>How a route's request body is treated before forwarding.</summary>
internal enum BodyPolicy
{
    /// <summary>No body expected; whatever comes is forwarded untouched.</summary>
    None,

    /// <summary>A JSON object is required (400/415 otherwise) and inspected.</summary>
    JsonRequired,

    /// <summary>A JSON object if a body is sent at all (e.g. cancel, conversation create).</summary>
    JsonOptional,
}

/// <summary>Where the billable usage sits in the route's response.</summary>
internal enum UsageShape
{
    None,

    /// <summary>Responses API: top-level <c>usage</c> in JSON, terminal events in SSE.</summary>
    Responses,

    /// <summary>Chat Completions: <c>usage</c> in JSON, the final usage chunk in SSE.</summary>
    Chat,

    /// <summary>Embeddings: <c>usage.prompt_tokens</c>.</summary>
    Embeddings,
}

/// <summary>The kind of upstream object an id names; ownership is tracked per kind.</summary>
internal enum ObjectKind
{
    None,
    Response,
    Conversation,
    ChatCompletion,
}

/// <summary>One allow-listed upstream operation. Anything not in <see cref="ApiRouteTable"/> is answered 404.</summary>
internal sealed record ApiRoute(
    string Endpoint,
    BodyPolicy Body,
    UsageShape Usage,
    ObjectKind PathObject = ObjectKind.None,
    ObjectKind CreatesObject = ObjectKind.None,
    bool CarriesModel = false,
    bool IsGatewayLocal = false,
    bool IsListing = false)
{
    /// <summary>True for routes whose answer can carry billable usage (created now or seen later).</summary>
    public bool SpendsTokens => Usage != UsageShape.None;

    /// <summary>True for routes that make the model generate (a reservation is taken, aborted streams are estimated).</summary>
    public bool Generates => Usage != UsageShape.None && Body == BodyPolicy.JsonRequired;
}

/// <summary>
/// A matched route plus the object id found in the path, if any. <see cref="OverlongIdParam"/> names the path
/// parameter whose id is longer than any OpenAI issues (the request is refused with a 400 naming it).
/// </summary>
internal readonly record struct RouteMatch(ApiRoute Route, string? PathId, string? OverlongIdParam = null);
