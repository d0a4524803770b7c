#!/usr/bin/env bash
# Memory of N concurrent open streams (#15): peak RSS of one proxy process holding N slow SSE streams, with the GC's
# view beside it, for the gateway and for bench/BareProxy (`yarp`: Kestrel + YARP alone, the floor under the gateway).
#   bash bench/open-streams.sh                       publish the tree, run `gateway` then `yarp`, 10,000 streams each
#   bash bench/open-streams.sh --work=DIR --no-publish --target=A:gateway:DIR/gateway-A --target=B:gateway:DIR/gateway-B --rounds=2
#                                                    A/B of two gateway publishes, alternating A B A B
# Options: --work=DIR (publish dirs: gateway, fake, client, bare) --out=DIR --count=N (10000) --events=E (30)
#   --ramp=S (20; streams opened over S seconds) --target=LABEL:gateway|yarp[:PUBLISH_DIR] (repeatable; default
#   gateway:gateway and yarp:yarp) --env=LABEL:NAME=VALUE (repeatable: environment of that target's process)
#   --rounds=R (the target list R times, alternating) --gcdump (a gcdump of each run at the plateau: it forces a full
#   GC, so use it in runs whose peak RSS is not the figure) --no-publish
# Pinning as bench/run.sh: the load client on CPU 0; the proxy and the fake upstream on CPU 1. The upstream side is
# h2c (as api.openai.com is HTTP/2), so N streams share a few upstream connections and stay under `ulimit -n`.
# Results: OUT/results.tsv (one line per run) and OUT/summary.md; raw files beside them. Run under
# `flock /tmp/bench.lock` on a shared machine: the ports are fixed.
set -euo pipefail
. "$(dirname "$0")/common.sh"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK="$ROOT/bench/.work"
OUT="$ROOT/bench/results/open-streams-$(date -u +%Y%m%dT%H%M%SZ)"
COUNT=10000; EVENTS=30; RAMP=20; ROUNDS=1; GCDUMP=0; PUBLISH=1
TARGETS=(); declare -A TARGET_ENV
for arg in "$@"; do
  case "$arg" in
    --work=*) WORK="${arg#*=}" ;;
    --out=*) OUT="${arg#*=}" ;;
    --count=*) COUNT="${arg#*=}" ;;
    --events=*) EVENTS="${arg#*=}" ;;
    --ramp=*) RAMP="${arg#*=}" ;;
    --rounds=*) ROUNDS="${arg#*=}" ;;
    --target=*) TARGETS+=("${arg#*=}") ;;
    --env=*) spec="${arg#*=}"; TARGET_ENV[${spec%%:*}]+="${spec#*:} " ;;
    --gcdump) GCDUMP=1 ;;
    --no-publish) PUBLISH=0 ;;
    *) echo "unknown option $arg" >&2; exit 2 ;;
  esac
done
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("gateway:gateway" "yarp:yarp")
LOAD_CPU=0; TARGET_CPU=1
if [ "$(nproc)" -lt 2 ]; then TARGET_CPU=0; fi
P_UPSTREAM=18090; P_PROXY=18084
KEY=gwk_bench_key
TOOLS="$HOME/.dotnet/tools"
mkdir -p "$WORK" "$OUT"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

if [ $PUBLISH -eq 1 ]; then
  echo "== building (Release)"
  publish_bench_targets "$WORK"
fi
[ -x "$TOOLS/dotnet-counters" ] || dotnet tool install -g dotnet-counters >/dev/null 2>&1 || true
if [ $GCDUMP -eq 1 ] && [ ! -x "$TOOLS/dotnet-gcdump" ]; then dotnet tool install -g dotnet-gcdump >/dev/null; fi

PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

write_bench_config "$WORK/gateway.json" "$KEY"
taskset -c "$TARGET_CPU" dotnet "$WORK/fake/FakeUpstream.dll" --urls "http://127.0.0.1:$P_UPSTREAM" --Kestrel:EndpointDefaults:Protocols=Http2 \
  --Kestrel:Limits:Http2:MaxStreamsPerConnection=1000 >"$OUT/fake-h2.log" 2>&1 & PIDS+=($!)
wait_port $P_UPSTREAM

printf 'label\tkind\tpeak_rss_kib\tidle_rss_kib\tcomplete\tincomplete\terrors\tusage_events\tusage_completed\tgc_heap_peak_mib\tgc_committed_peak_mib\n' >"$OUT/results.tsv"

# run LABEL KIND [PUBLISH_DIR]: one proxy process, N streams through it, then SIGTERM (the gateway drains and writes
# every usage event before it exits).
run() {
  local label=$1 kind=$2 dir=${3:-} log="$OUT/proxy-$1.log" pid
  local -a extra_env
  read -r -a extra_env <<<"${TARGET_ENV[$label]:-}"
  case "$kind" in
    gateway)
      env GATEWAY_CONFIG="$WORK/gateway.json" OPENAI_API_KEY=bench-upstream-key Gateway__Upstream__BaseUrl="http://127.0.0.1:$P_UPSTREAM/v1" \
        Gateway__Upstream__HttpVersion=2 Urls="http://127.0.0.1:$P_PROXY" "${IMAGE_ENV[@]}" "${extra_env[@]}" \
        taskset -c "$TARGET_CPU" dotnet "${dir:-$WORK/gateway}/Gateway.dll" >"$log" 2>&1 & pid=$! ;;
    yarp)
      env "${IMAGE_ENV[@]}" "${extra_env[@]}" taskset -c "$TARGET_CPU" dotnet "${dir:-$WORK/bare}/BareProxy.dll" \
        --urls "http://127.0.0.1:$P_PROXY" --upstream "http://127.0.0.1:$P_UPSTREAM" --upstream-http-version 2 >"$log" 2>&1 & pid=$! ;;
    *) echo "unknown target kind $kind" >&2; return 1 ;;
  esac
  PIDS+=($pid)
  wait_port $P_PROXY
  # One request first so the idle figure includes the first request's code and pools, not only startup.
  curl -s -o /dev/null -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d '{"model":"gpt-4o-mini","input":"hi"}' "http://127.0.0.1:$P_PROXY/v1/responses" || true
  local idle; idle=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
  ( while kill -0 $pid 2>/dev/null; do awk '/VmRSS/{print $2}' /proc/$pid/status 2>/dev/null; sleep 0.5; done ) >"$OUT/rss-open-$label.txt" & local sampler=$!
  local counters=""
  if [ -x "$TOOLS/dotnet-counters" ]; then
    taskset -c "$LOAD_CPU" "$TOOLS/dotnet-counters" collect -p $pid --counters System.Runtime --format csv --refresh-interval 1 \
      -o "$OUT/counters-$label.csv" >/dev/null 2>&1 & counters=$!
  fi
  local dumper=""
  if [ $GCDUMP -eq 1 ]; then
    # The plateau: every stream opened (RAMP s) and a few more seconds, well before the first ones end.
    ( sleep $((RAMP + 4)); taskset -c "$LOAD_CPU" "$TOOLS/dotnet-gcdump" collect -p $pid -o "$OUT/plateau-$label.gcdump" >/dev/null 2>&1 \
      && "$TOOLS/dotnet-gcdump" report "$OUT/plateau-$label.gcdump" >"$OUT/plateau-$label.types.txt" 2>&1 ) & dumper=$!
  fi
  # A bound on the client: a proxy that leaves one connection hanging (seen under the heap cap after an
  # OutOfMemoryException inside Kestrel) must not hold the bench lock forever; that run then shows as incomplete.
  timeout $((RAMP + EVENTS * 3 + 120)) taskset -c "$LOAD_CPU" dotnet "$WORK/client/LoadClient.dll" open-streams --url "http://127.0.0.1:$P_PROXY/v1" --key "$KEY" --count "$COUNT" \
    --events "$EVENTS" --delay-ms 1000 --ramp-seconds "$RAMP" >"$OUT/open-streams-$label.json" || true
  [ -n "$dumper" ] && { wait "$dumper" || true; }
  sleep 2; kill $sampler 2>/dev/null || true
  kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
  # dotnet-counters ends with its target (a background job ignores SIGINT, so it is not asked to stop).
  if [ -n "$counters" ]; then
    for _ in $(seq 1 50); do kill -0 "$counters" 2>/dev/null || break; sleep 0.1; done
    kill "$counters" 2>/dev/null || true; wait "$counters" 2>/dev/null || true
  fi
  local peak usage completed gc
  peak=$(sort -n "$OUT/rss-open-$label.txt" | tail -1)
  usage=$(grep -c '"Name":"Usage"' "$log" || true)
  completed=$(grep '"Name":"Usage"' "$log" | grep -c '"Outcome":"completed"' || true)
  # Peak GC heap size and committed memory over the run (.NET 9+ System.Runtime names, and the older ones).
  gc=$(python3 - "$OUT/counters-$label.csv" <<'PY' 2>/dev/null || printf '?\t?'
import csv, sys
heap = committed = 0.0
try:
    rows = list(csv.reader(open(sys.argv[1])))
except OSError:
    rows = []
for row in rows[1:]:
    if len(row) < 5:
        continue
    name, value = row[2].lower(), row[4]
    try:
        value = float(value)
    except ValueError:
        continue
    scale = 1 / 1048576 if "(b" in name or "bytes" in name or "dotnet.gc" in name else 1
    if "gc heap size" in name or "last_collection.heap.size" in name:
        heap = max(heap, value * (1 if "(mb)" in name else scale))
    elif "committed" in name:
        committed = max(committed, value * (1 if "(mb)" in name else scale))
print(f"{heap:.0f}\t{committed:.0f}" if rows else "?\t?")
PY
)
  local complete incomplete errors
  read -r complete incomplete errors < <(python3 -c "import json;d=json.load(open('$OUT/open-streams-$label.json'));print(d['complete'],d['incomplete'],d['errors'])" 2>/dev/null || echo "? ? ?")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$kind" "$peak" "$idle" "$complete" "$incomplete" "$errors" "$usage" "$completed" "$gc" >>"$OUT/results.tsv"
  echo "$label ($kind): peak RSS $((peak / 1024)) MiB (idle $((idle / 1024)) MiB), complete $complete/$COUNT, GC heap/committed peak (MiB) $(echo "$gc" | tr '\t' '/')"
}

for _ in $(seq 1 "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    IFS=: read -r label kind dir <<<"$t"
    run "$label" "$kind" "$dir"
  done
done

{
  echo "# $COUNT open streams ($EVENTS events 1 s apart, opened over $RAMP s; upstream h2c; proxy on CPU $TARGET_CPU)"
  echo
  echo "| run | peak RSS MiB | idle RSS MiB | per stream KiB (peak-idle)/N | complete | usage events (completed) | GC heap peak MiB | GC committed peak MiB |"
  echo "|---|---|---|---|---|---|---|---|"
  tail -n +2 "$OUT/results.tsv" | awk -F'\t' -v n="$COUNT" '{ printf "| %s (%s) | %d | %d | %.1f | %s | %s (%s) | %s | %s |\n", $1, $2, $3/1024, $4/1024, ($3-$4)/n, $5, $8, $9, $10, $11 }'
  echo
  echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/summary.md"
cat "$OUT/summary.md"
