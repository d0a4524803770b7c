#!/usr/bin/env bash
# Streamed time to first byte at concurrency 1 (issue #15), per target: TTFB p50, context switches and CPU migrations
# of the target process per streamed request (perf stat on its PID), the fake upstream's context switches per request
# meanwhile, the target's utime+stime per request, for `direct` (the
# fake upstream), `yarp` (bench/BareProxy), and each gateway build on the memory store and on the Redis store; targets
# alternate within a round. Each round runs once per pause: LoadClient's --pause-ms (0 = back to back, as bench/run.sh;
# a pause keeps the previous request's post-answer work out of the next request's TTFB).
# Usage: bash bench/ttfb-hops.sh ROUNDS REQUESTS PAUSES name=/published/gateway/dir[,VAR=value...] ...
#   e.g. bash bench/ttfb-hops.sh 3 1000 0,0.5 base=/work/base/gateway new=/tmp/gw-new   (absolute publish paths)
#   A build may be named twice with different settings: base=/work/base/gateway spin0=/work/base/gateway,DOTNET_X=0
# Environment of the .NET targets: the image's (IMAGE_ENV of bench/common.sh) unless GW_ENV is set, plus a target's own
# VAR=value settings; the fake upstream runs without either.
# Load on CPU 0; targets, the fake upstream and Redis on CPU 1 (as bench/run.sh).
set -euo pipefail
. "$(dirname "$0")/common.sh"
ROUNDS=$1; REQUESTS=$2; IFS=, read -r -a PAUSES <<<"$3"; shift 3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
dotnet publish "$ROOT/tests/FakeUpstream" -c Release -o "$WORK/fake" --nologo -v q >/dev/null
dotnet publish "$ROOT/bench/LoadClient" -c Release -o "$WORK/client" --nologo -v q >/dev/null
dotnet publish "$ROOT/bench/BareProxy" -c Release -o "$WORK/bare" --nologo -v q >/dev/null
KEY=gwk_bench_key; export BENCH_KEY=$KEY
write_bench_config "$WORK/gateway.json" "$KEY"
BASE=$((31000 + RANDOM % 2000))
declare -A URL PID; NAMES=()
start_redis_bed $BASE
NAMES+=(direct); URL[direct]="http://127.0.0.1:$P_FAKE"; PID[direct]=$(pgrep -f -n "$WORK/fake/FakeUpstream.dll")
read -r -a GW_ENV <<<"${GW_ENV:-${IMAGE_ENV[*]}}"
export "${GW_ENV[@]}"
P_YARP=$((BASE + 9))
taskset -c 1 dotnet "$WORK/bare/BareProxy.dll" --urls "http://127.0.0.1:$P_YARP" --upstream "http://127.0.0.1:$P_FAKE" >"$WORK/bare.log" 2>&1 & PIDS+=($!)
wait_port $P_YARP; NAMES+=(yarp); URL[yarp]="http://127.0.0.1:$P_YARP"; PID[yarp]=$(pgrep -f -n "$WORK/bare/BareProxy.dll")
port=$((BASE + 10))
for spec in "$@"; do
  name=${spec%%=*}; rest=${spec#*=}; IFS=, read -r -a extra <<<"$rest"; dir=${extra[0]}; extra=("${extra[@]:1}")
  [ ${#extra[@]} -gt 0 ] && export "${extra[@]}"
  start_gw "$name-memory" "$dir" $port memory; port=$((port + 1))
  start_gw "$name-redis" "$dir" $port redis; port=$((port + 1))
  for v in "${extra[@]}"; do unset "${v%%=*}"; done
done
for v in "${GW_ENV[@]}"; do unset "${v%%=*}"; done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
stream() { taskset -c 0 dotnet "$WORK/client/LoadClient.dll" stream --url "${URL[$1]}/v1" --key "$KEY" --concurrency 1 --requests "$2" --events 20 --pause-ms "$3"; }
for n in "${NAMES[@]}"; do stream "$n" 1000 0 >/dev/null; taskset -c 0 wrk -t1 -c8 -d5s -s "$ROOT/bench/post-responses.lua" "${URL[$n]}/v1/responses" >/dev/null; done # warm-up
for r in $(seq 1 "$ROUNDS"); do
  for pause in "${PAUSES[@]}"; do
    for n in "${NAMES[@]}"; do
      g0=$(ticks "${PID[$n]}")
      perf stat -e context-switches,cpu-migrations -x, -p "${PID[$n]}" -o "$WORK/perf-$n" & PERF=$!
      perf stat -e context-switches -x, -p "${PID[direct]}" -o "$WORK/perf-up-$n" & PERF2=$!
      sleep 0.5
      ttfb=$(stream "$n" "$REQUESTS" "$pause" | python3 -c "import json,sys; print(json.load(sys.stdin)['ttfb_p50_ms'])")
      kill -INT $PERF $PERF2; wait $PERF $PERF2 2>/dev/null || true
      g1=$(ticks "${PID[$n]}")
      cs=$(awk -F, '/context-switches/ {print $1}' "$WORK/perf-$n"); mig=$(awk -F, '/cpu-migrations/ {print $1}' "$WORK/perf-$n")
      ucs=$(awk -F, '/context-switches/ {print $1}' "$WORK/perf-up-$n")
      echo "$n round $r pause_ms $pause ttfb_p50_ms $ttfb cs_per_req $(awk -v a="$cs" -v q="$REQUESTS" 'BEGIN {printf "%.1f", a/q}') migr_per_req $(awk -v a="$mig" -v q="$REQUESTS" 'BEGIN {printf "%.2f", a/q}') upstream_cs_per_req $(awk -v a="$ucs" -v q="$REQUESTS" 'BEGIN {printf "%.1f", a/q}') us_per_req $(( (g1 - g0) * 1000000 / HZ / REQUESTS ))"
    done
  done
done
