namespace Gateway.SharedState;

/// <summary>
/// An ownership record: the tenant that created an object and, with an upstream pool, the upstream that holds it
/// (issue #12). <see cref="Upstream"/> is null for records written without a pool, or by a version that did not record
/// it: such an object is routed like any request (no pin).
/// </summary>
internal readonly record struct ObjectOwner(string Tenant, string? Upstream)
{
    /// <summary>The same tenant: the owner may extend its record, and teach it the upstream it lacked.</summary>
    public static (bool Same, ObjectOwner Kept) Merge(ObjectOwner existing, ObjectOwner incoming) =>
        existing.Tenant != incoming.Tenant ? (false, existing)
        : (true, existing.Upstream is null && incoming.Upstream is not null ? incoming : existing);

    public static bool SameTenant(ObjectOwner existing, ObjectOwner other) => existing.Tenant == other.Tenant;
}
