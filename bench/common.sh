# Shared by the bench scripts (sourced): the bench tenant's configuration and waiting for a port.

# write_bench_config FILE KEY: one tenant `bench` (the key's SHA-256), every quota limit set but never reached, so the
# gateway does all its quota work; usage events at Information.
write_bench_config() {
  local hash
  hash=$(printf '%s' "$2" | sha256sum | cut -d' ' -f1)
  cat >"$1" <<JSON
{ "Gateway": { "Tenants": { "bench": { "KeyHashes": ["$hash"],
    "Limits": { "RequestsPerMinute": 1000000000, "TokensPerMinute": 1000000000000, "TokensPerDay": 1000000000000,
                "TokensPerMonth": 1000000000000, "MaxConcurrentRequests": 100000 },
    "MaxOutputTokens": 4096 } } },
  "Serilog": { "MinimumLevel": { "Default": "Information" } } }
JSON
}

# wait_port PORT: until 127.0.0.1:PORT accepts (60 s at most: a gateway warms up before its port opens).
wait_port() {
  for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "port $1 never opened" >&2
  return 1
}
