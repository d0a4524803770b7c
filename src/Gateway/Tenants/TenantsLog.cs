namespace Gateway.Tenants;

internal static partial class TenantsLog
{
    [LoggerMessage(EventId = 3001, EventName = "TenantsReloaded", Level = LogLevel.Information,
        Message = "Tenant configuration reloaded: {TenantCount} tenants, {KeyCount} keys")]
    public static partial void TenantsReloaded(ILogger logger, int tenantCount, int keyCount);

}
