#!/usr/bin/env bash
# Cold start of a published gateway: time from exec to the first 200 on /healthz, then requests served in the first
# 10 seconds (wrk, non-streamed Responses requests through the fake upstream), for each published folder given:
#   bash bench/coldstart.sh <runs> <label>=<publish-folder> [<label>=<publish-folder> ...]
# e.g. plain:   dotnet publish src/Gateway -c Release -o /tmp/gw-plain
#      r2r:     dotnet publish src/Gateway -c Release -o /tmp/gw-r2r -a amd64 --self-contained false -p:PublishReadyToRun=true
# Needs wrk and curl; the fake upstream is published to a temporary folder.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RUNS=$1; shift
WORK=$(mktemp -d)
KEY=gwk_bench_key
P_FAKE=19190; P_GW=19180
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

dotnet publish "$ROOT/tests/FakeUpstream" -c Release -o "$WORK/fake" --nologo -v q >/dev/null
dotnet "$WORK/fake/FakeUpstream.dll" --urls "http://127.0.0.1:$P_FAKE" >"$WORK/fake.log" 2>&1 & PIDS+=($!)
until curl -sf "http://127.0.0.1:$P_FAKE/healthz" >/dev/null; do sleep 0.05; done
HASH=$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)
printf '{ "Gateway": { "Tenants": { "bench": { "KeyHashes": ["%s"] } } } }\n' "$HASH" > "$WORK/gateway.json"

for run in $(seq 1 "$RUNS"); do
  for target in "$@"; do
    label=${target%%=*}; folder=${target#*=}
    start=$(date +%s.%N)
    env GATEWAY_CONFIG="$WORK/gateway.json" OPENAI_API_KEY=bench Gateway__Upstream__BaseUrl="http://127.0.0.1:$P_FAKE/v1" \
        Urls="http://127.0.0.1:$P_GW" dotnet "$folder/Gateway.dll" >"$WORK/gw.log" 2>&1 &
    gw=$!
    until curl -sf "http://127.0.0.1:$P_GW/healthz" >/dev/null 2>&1; do sleep 0.01; done
    ready=$(date +%s.%N)
    # CPU time spent until ready (user + system, clock ticks): steadier than wall time on a shared machine.
    cpu_ms=$(awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$gw/stat")
    # The first request pays for compiling the request path (what ReadyToRun precompiles).
    first_ms=$(curl -s -o /dev/null -w '%{time_total}' -X POST "http://127.0.0.1:$P_GW/v1/responses" -H "Authorization: Bearer $KEY" \
      -H 'Content-Type: application/json' -d '{"model":"gpt-4o-mini","input":"Say hello in five words.","max_output_tokens":64}' \
      | awk '{print int($1 * 1000)}')
    requests=$(BENCH_KEY=$KEY wrk -t1 -c16 -d10s -s "$ROOT/bench/post-responses.lua" "http://127.0.0.1:$P_GW/v1/responses" \
      | awk '/requests in/ {print $1}')
    kill "$gw"; wait "$gw" 2>/dev/null || true
    printf '%s run %s: ready after %.0f ms (%s ms CPU), first request %s ms, %s requests in the next 10 s\n' \
      "$label" "$run" "$(echo "($ready - $start) * 1000" | bc)" "$cpu_ms" "$first_ms" "$requests"
  done
done
