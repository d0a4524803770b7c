using System.Globalization;
using System.Text;
using Gateway.Errors;
using Gateway.Routing;
using Gateway.Tenants;

namespace Gateway.Requests;

/// <summary>
/// The tenant's request policy: allowed models, the output-token cap, and usage in chat streams. Each edit
/// overwrites the very value the upstream acts on (a <c>null</c> in place), or adds the key when the body has none.
/// </summary>
internal static class RequestPolicy
{
    private static readonly OpenAIError ModelRequired = OpenAIError.BadRequest(
        "you must provide a model parameter", "model", "missing_required_parameter");

    /// <summary>
    /// Refuses the request (the error) or edits <paramref name="body"/> and <paramref name="facts"/> to match.
    /// <paramref name="hideChatUsageChunk"/> is true when the gateway asked for a chat stream's usage itself.
    /// </summary>
    public static OpenAIError? Apply(PooledBody body, RequestFacts facts, ApiRoute route, Tenant tenant, out bool hideChatUsageChunk)
    {
        hideChatUsageChunk = false;
        if (route.CarriesModel && tenant.AllowedModels is not null)
        {
            if (facts.Model is null && route.Generates)
            {
                // Without a model (e.g. a stored prompt names one) the tenant's list could not be checked.
                return ModelRequired;
            }

            if (facts.Model is { } model && !tenant.IsModelAllowed(model))
            {
                return new OpenAIError(StatusCodes.Status404NotFound,
                    $"The model `{model}` does not exist or you do not have access to it.", "invalid_request_error", "model", "model_not_found");
            }
        }

        List<BodyEdit>? edits = null;
        if (route.Usage == UsageShape.Chat && facts.Stream && facts.IncludeUsage != true)
        {
            // Usage exists in a chat stream only when asked for; ask, and hide the answer from the client.
            (edits ??= new(2)).Add(facts.StreamOptionsSlot switch
            {
                { IsPresent: false } => BodyEdit.AddMember(facts.RootObjectStart, "\"stream_options\":{\"include_usage\":true}"u8),
                { IsNull: true } => BodyEdit.Overwrite(facts.StreamOptionsSlot, "{\"include_usage\":true}"u8),
                _ when facts.IncludeUsageSlot.IsPresent => BodyEdit.Overwrite(facts.IncludeUsageSlot, "true"u8),
                _ => BodyEdit.AddMember(facts.StreamOptionsSlot.Start, "\"include_usage\":true"u8),
            });
            facts.IncludeUsage = true;
            hideChatUsageChunk = true;
        }

        if (tenant.MaxOutputTokens is { } cap && route.Usage is UsageShape.Responses or UsageShape.Chat && route.CreatesObject != ObjectKind.None
            && CapOutput(facts, route, cap, ref edits) is { } capError)
        {
            return capError;
        }

        RequestBodyEditor.Apply(body, edits);
        return null;
    }

    /// <summary>
    /// Every output limit the upstream may read must be within the cap: above it is refused, <c>null</c> is
    /// overwritten with the cap, and a body without any limit gets one. On chat both <c>max_completion_tokens</c>
    /// and the deprecated <c>max_tokens</c> are capped, whichever of them the upstream honours.
    /// </summary>
    private static OpenAIError? CapOutput(RequestFacts facts, ApiRoute route, long cap, ref List<BodyEdit>? edits)
    {
        var primary = route.Usage == UsageShape.Chat ? "max_completion_tokens" : "max_output_tokens";
        if (facts.OutputLimit > cap)
        {
            return AboveCap(primary, facts.OutputLimit.Value, cap);
        }

        if (facts.LegacyOutputLimit > cap)
        {
            return AboveCap("max_tokens", facts.LegacyOutputLimit.Value, cap);
        }

        if (facts.OutputLimitSlot.IsNull)
        {
            (edits ??= new(2)).Add(BodyEdit.Overwrite(facts.OutputLimitSlot, Encoding.UTF8.GetBytes(cap.ToString(CultureInfo.InvariantCulture))));
            facts.OutputLimit = cap;
        }

        if (facts.LegacyOutputLimitSlot.IsNull)
        {
            (edits ??= new(2)).Add(BodyEdit.Overwrite(facts.LegacyOutputLimitSlot, Encoding.UTF8.GetBytes(cap.ToString(CultureInfo.InvariantCulture))));
            facts.LegacyOutputLimit = cap;
        }

        if (facts.OutputLimit is null && facts.LegacyOutputLimit is null)
        {
            (edits ??= new(2)).Add(BodyEdit.AddMember(facts.RootObjectStart, Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"\"{primary}\":{cap}"))));
            facts.OutputLimit = cap;
        }

        var legacyWins = facts.OutputLimit is null || facts.LegacyOutputLimit > facts.OutputLimit;
        facts.MaxOutputTokens = legacyWins ? facts.LegacyOutputLimit : facts.OutputLimit;
        facts.MaxOutputTokensParam = legacyWins ? "max_tokens" : primary;
        return null;
    }

    private static OpenAIError AboveCap(string param, long value, long cap) => OpenAIError.BadRequest(
        $"Invalid '{param}': {value} is above this tenant's cap of {cap} output tokens per request.", param, "max_output_tokens_exceeded");
}
