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

# publish_bench_targets DIR: the gateway as the image publishes it (Dockerfile: ReadyToRun for this architecture), the
# fake upstream, the load client and bench/BareProxy, each into DIR/<name>.
publish_bench_targets() {
  local root arch
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  arch=$(case "$(uname -m)" in aarch64|arm64) echo arm64 ;; *) echo x64 ;; esac)
  dotnet publish "$root/src/Gateway" -c Release -o "$1/gateway" -a "$arch" --self-contained false -p:PublishReadyToRun=true --nologo -v q
  dotnet publish "$root/tests/FakeUpstream" -c Release -o "$1/fake" --nologo -v q
  dotnet publish "$root/bench/LoadClient" -c Release -o "$1/client" --nologo -v q
  dotnet publish "$root/bench/BareProxy" -c Release -o "$1/bare" --nologo -v q
}
