#!/usr/bin/env bash
# Thread hand-offs of one Redis-backed request at concurrency 1 (issue #15): context switches and CPU migrations of the
# gateway per streamed request (perf stat on its PID while LoadClient runs one stream at a time), its utime+stime per
# request, and TTFB p50, for the memory store (the first build) and each build on the Redis store, rounds alternating.
# Usage: bash bench/redis-hops.sh ROUNDS REQUESTS name=/published/gateway/dir ...   (absolute publish paths, each its own copy:
# a gateway's PID is found by its path, and another engineer running the same publish would be picked up instead)
# Environment of the gateways: the image's (IMAGE_ENV of bench/common.sh: inline socket completions on) unless GW_ENV is set.
set -euo pipefail
. "$(dirname "$0")/common.sh"
ROUNDS=$1; REQUESTS=$2; shift 2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
dotnet publish "$ROOT/tests/FakeUpstream" -c Release -o "$WORK/fake" --nologo -v q >/dev/null
dotnet publish "$ROOT/bench/LoadClient" -c Release -o "$WORK/client" --nologo -v q >/dev/null
KEY=gwk_bench_key; export BENCH_KEY=$KEY
write_bench_config "$WORK/gateway.json" "$KEY"
BASE=$((29000 + RANDOM % 2000))
declare -A URL PID; NAMES=()
start_redis_bed $BASE
read -r -a GW_ENV <<<"${GW_ENV:-${IMAGE_ENV[*]}}"
export "${GW_ENV[@]}"
port=$((BASE + 10)); first=1
for spec in "$@"; do
  name=${spec%%=*}; dir=${spec#*=}
  if [ $first = 1 ]; then start_gw memory "$dir" $port memory; port=$((port + 1)); first=0; fi
  start_gw "$name" "$dir" $port redis; port=$((port + 1))
done
for v in "${GW_ENV[@]}"; do unset "${v%%=*}"; done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
stream() { taskset -c 0 dotnet "$WORK/client/LoadClient.dll" stream --url "${URL[$1]}/v1" --key "$KEY" --concurrency 1 --requests "$2" --events 20; }
for n in "${NAMES[@]}"; do stream "$n" 1000 >/dev/null; taskset -c 0 wrk -t1 -c8 -d5s -s "$ROOT/bench/post-responses.lua" "${URL[$n]}/v1/responses" >/dev/null; done # warm-up
for r in $(seq 1 "$ROUNDS"); do
  for n in "${NAMES[@]}"; do
    g0=$(ticks "${PID[$n]}"); r0=$(ticks "$REDIS_PID")
    perf stat -e context-switches,cpu-migrations -x, -p "${PID[$n]}" -o "$WORK/perf-$n" & PERF=$!
    perf stat -e context-switches -x, -p "$REDIS_PID" -o "$WORK/perf-redis-$n" & PERF2=$!
    sleep 0.5
    ttfb=$(stream "$n" "$REQUESTS" | python3 -c "import json,sys; print(json.load(sys.stdin)['ttfb_p50_ms'])")
    kill -INT $PERF $PERF2; wait $PERF $PERF2 2>/dev/null || true
    g1=$(ticks "${PID[$n]}"); r1=$(ticks "$REDIS_PID")
    cs=$(awk -F, '/context-switches/ {print $1}' "$WORK/perf-$n"); mig=$(awk -F, '/cpu-migrations/ {print $1}' "$WORK/perf-$n")
    rcs=$(awk -F, '/context-switches/ {print $1}' "$WORK/perf-redis-$n")
    echo "$n round $r ttfb_p50_ms $ttfb gw_cs_per_req $(awk -v a="$cs" -v q="$REQUESTS" 'BEGIN {printf "%.1f", a/q}') gw_migr_per_req $(awk -v a="$mig" -v q="$REQUESTS" 'BEGIN {printf "%.2f", a/q}') redis_cs_per_req $(awk -v a="$rcs" -v q="$REQUESTS" 'BEGIN {printf "%.1f", a/q}') gw_us_per_req $(( (g1 - g0) * 1000000 / HZ / REQUESTS )) redis_us_per_req $(( (r1 - r0) * 1000000 / HZ / REQUESTS ))"
  done
done
