using Gateway.Routing;

namespace Gateway.Requests;

/// <summary>
/// A request names an object that lives on one upstream of the pool (issue #12): it goes there only. The object is
/// kept to answer as OpenAI does for an unknown id when that upstream is no longer configured.
/// </summary>
/// <param name="Upstream">The upstream recorded beside the object's owner.</param>
/// <param name="Kind">What the id is (response, conversation, chat completion).</param>
/// <param name="ObjectId">The id that pinned the request.</param>
/// <param name="Where">Where the request named it: <c>path</c>, <c>previous_response_id</c> or <c>conversation</c>.</param>
internal sealed record UpstreamPin(string Upstream, ObjectKind Kind, string ObjectId, string Where);
