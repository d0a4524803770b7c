# Shared by the bench scripts (sourced): the bench tenant's configuration and waiting for a port.

# The image's runtime settings (the Dockerfile's ENV, checked equal by DeploymentManifestTests): every .NET target of a
# bench runs with them, the gateway and the yarp floor alike.
IMAGE_ENV=(DOTNET_TC_CallCountingDelayMs=0 DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1)

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

# The Redis A/B bed of bench/redis-ab.sh and bench/redis-cpu.sh. Expects WORK (with fake/ published and gateway.json
# written), PIDS, and `declare -A URL PID; NAMES=(...)` in the caller.
# start_redis_bed BASE-PORT: redis-server on BASE+1 and the fake upstream on BASE, both on CPU 1; sets P_FAKE, P_REDIS, REDIS_PID.
start_redis_bed() {
  P_FAKE=$1; P_REDIS=$(($1 + 1))
  taskset -c 1 redis-server --port $P_REDIS --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 & PIDS+=($!); REDIS_PID=$!
  taskset -c 1 dotnet "$WORK/fake/FakeUpstream.dll" --urls "http://127.0.0.1:$P_FAKE" >/dev/null 2>&1 & PIDS+=($!)
  wait_port $P_FAKE; wait_port $P_REDIS
}

# start_gw NAME DIR PORT memory|redis: the gateway published in DIR on CPU 1 (with redis: its own key prefix on the bed's
# Redis); adds NAME to NAMES, its URL to URL and the PID of its dotnet process (newest with that path) to PID.
start_gw() {
  local env=(GATEWAY_CONFIG="$WORK/gateway.json" Urls="http://127.0.0.1:$3" Gateway__Upstream__BaseUrl="http://127.0.0.1:$P_FAKE/v1" OPENAI_API_KEY=fake)
  [ "$4" = redis ] && env+=(ConnectionStrings__Redis="127.0.0.1:$P_REDIS" Gateway__Quotas__RedisKeyPrefix="$1")
  (cd "$WORK" && exec env "${env[@]}" taskset -c 1 dotnet "$2/Gateway.dll" >"$WORK/$1.log" 2>&1) & PIDS+=($!)
  wait_port "$3"; NAMES+=("$1"); URL[$1]="http://127.0.0.1:$3"
  PID[$1]=$(pgrep -f -n "$2/Gateway.dll")
}
