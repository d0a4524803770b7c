namespace Gateway.SharedState;

/// <summary>Thrown when the shared store is down and <c>Gateway:Quotas:OnStoreFailure</c> is <c>Deny</c>.</summary>
internal sealed class StoreUnavailableException(string message, Exception? inner = null) : Exception(message, inner);
