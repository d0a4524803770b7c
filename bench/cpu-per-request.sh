#!/usr/bin/env bash
# CPU time and bytes allocated per request, gateway vs bench/BareProxy (Kestrel + YARP only), under the same wrk load.
#   bash bench/cpu-per-request.sh                      publish Release, 30 s warm-up, 5 alternating rounds of 10 s
#   bash bench/cpu-per-request.sh --rounds=3 --duration=5 --warmup=20 --connections=16
#   bash bench/cpu-per-request.sh --gateway-dir=/tmp/gw-a --label=a   measure an already published gateway (A/B runs)
#   bash bench/cpu-per-request.sh --baseline-dir=/tmp/gw-before         A/B in one run: a third target `baseline`, rounds alternating
#   bash bench/cpu-per-request.sh --switches ...     also context switches and CPU migrations per request (perf stat -p, each round)
#   CPU_BENCH_BASELINE_ENV="DOTNET_gcServer=0" bash bench/cpu-per-request.sh --baseline-dir=<same build>   A/B of a runtime setting
#   CPU_BENCH_ENV="DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1" ...   environment of the gateway and the yarp floor alike (not the baseline)
#   CPU_BENCH_YARP_ARGS="--unsafe-inline-scheduling"   extra BareProxy arguments, to keep the floor like for like with a gateway setting
# Why CPU per request and not throughput: on a shared machine other processes take the core away, which changes
# req/s a lot but the process's own utime+stime per request much less. Allocations are not affected by load at all.
# CPU: utime+stime of the target process (/proc/PID/stat, all threads) before and after each wrk round, divided by
# the requests wrk completed. Allocations: dotnet-counters' dotnet.gc.heap.total_allocated over one extra round
# (kept apart because the EventPipe session costs the target some CPU). Prints one table; raw outputs in $WORK.
set -euo pipefail
. "$(dirname "$0")/common.sh"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK="${CPU_BENCH_WORK:-$ROOT/bench/.work/cpu}"
ROUNDS=5; DURATION=10; WARMUP=30; CONNECTIONS=32; GATEWAY_DIR=""; LABEL=gateway; BASELINE_DIR=""; SWITCHES=0
for arg in "$@"; do
  case "$arg" in
    --rounds=*) ROUNDS="${arg#*=}" ;;
    --duration=*) DURATION="${arg#*=}" ;;
    --warmup=*) WARMUP="${arg#*=}" ;;
    --connections=*) CONNECTIONS="${arg#*=}" ;;
    --gateway-dir=*) GATEWAY_DIR="${arg#*=}" ;;
    --label=*) LABEL="${arg#*=}" ;;
    --baseline-dir=*) BASELINE_DIR="${arg#*=}" ;;
    --switches) SWITCHES=1 ;;
    *) echo "unknown option $arg" >&2; exit 2 ;;
  esac
done
LOAD_CPU=0; TARGET_CPU=1
if [ "$(nproc)" -lt 2 ]; then TARGET_CPU=0; fi
# Ports apart from bench/run.sh's, so both can run on one machine.
P_FAKE=${CPU_BENCH_PORT_BASE:-28180}; P_YARP=$((P_FAKE + 1)); P_GW=$((P_FAKE + 2)); P_BASE=$((P_FAKE + 3))
KEY=gwk_bench_key
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 BENCH_KEY=$KEY PATH="$PATH:$HOME/.dotnet/tools"
# Both targets: idle thread-pool threads do not spin waiting for work. Spinning burns CPU that depends on how busy the
# machine is, not on the request, and would drown the difference this script measures.
export DOTNET_ThreadPool_UnfairSemaphoreSpinLimit=0
mkdir -p "$WORK"
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
command -v dotnet-counters >/dev/null || dotnet tool install -g dotnet-counters >/dev/null

PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

echo "== building (Release)" >&2
if [ -z "$GATEWAY_DIR" ]; then
  GATEWAY_DIR="$WORK/gateway"
  dotnet publish "$ROOT/src/Gateway" -c Release -o "$GATEWAY_DIR" --nologo -v q >&2
fi
dotnet publish "$ROOT/tests/FakeUpstream" -c Release -o "$WORK/fake" --nologo -v q >&2
dotnet publish "$ROOT/bench/BareProxy" -c Release -o "$WORK/bare" --nologo -v q >&2

write_bench_config "$WORK/gateway.json" "$KEY"

taskset -c "$TARGET_CPU" dotnet "$WORK/fake/FakeUpstream.dll" --urls "http://127.0.0.1:$P_FAKE" >"$WORK/fake.log" 2>&1 & PIDS+=($!)
# shellcheck disable=SC2086 # CPU_BENCH_ENV and CPU_BENCH_YARP_ARGS are lists of words
env ${CPU_BENCH_ENV:-} taskset -c "$TARGET_CPU" dotnet "$WORK/bare/BareProxy.dll" --urls "http://127.0.0.1:$P_YARP" --upstream "http://127.0.0.1:$P_FAKE" ${CPU_BENCH_YARP_ARGS:-} >"$WORK/bare.log" 2>&1 & PIDS+=($!)
YARP_PID=$!
# shellcheck disable=SC2086
env ${CPU_BENCH_ENV:-} GATEWAY_CONFIG="$WORK/gateway.json" OPENAI_API_KEY=bench-upstream-key Gateway__Upstream__BaseUrl="http://127.0.0.1:$P_FAKE/v1" \
    ConnectionStrings__Redis="" Urls="http://127.0.0.1:$P_GW" \
    taskset -c "$TARGET_CPU" dotnet "$GATEWAY_DIR/Gateway.dll" >"$WORK/$LABEL.log" 2>&1 & PIDS+=($!)
GW_PID=$!
for p in $P_FAKE $P_YARP $P_GW; do wait_port "$p"; done

declare -A URL=( [yarp]="http://127.0.0.1:$P_YARP" [$LABEL]="http://127.0.0.1:$P_GW" )
declare -A PID=( [yarp]=$YARP_PID [$LABEL]=$GW_PID )
TARGETS=(yarp "$LABEL")
if [ -n "$BASELINE_DIR" ]; then
  # shellcheck disable=SC2086 # CPU_BENCH_BASELINE_ENV is a list of NAME=value words
  env ${CPU_BENCH_BASELINE_ENV:-} GATEWAY_CONFIG="$WORK/gateway.json" OPENAI_API_KEY=bench-upstream-key Gateway__Upstream__BaseUrl="http://127.0.0.1:$P_FAKE/v1" \
      ConnectionStrings__Redis="" Urls="http://127.0.0.1:$P_BASE" \
      taskset -c "$TARGET_CPU" dotnet "$BASELINE_DIR/Gateway.dll" >"$WORK/baseline.log" 2>&1 & PIDS+=($!)
  URL[baseline]="http://127.0.0.1:$P_BASE"; PID[baseline]=$!
  wait_port "$P_BASE"
  TARGETS=(yarp baseline "$LABEL")
fi
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run_wrk() { taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"$2s" -s "$ROOT/bench/post-responses.lua" "$1/v1/responses"; }
requests_of() { awk '/requests in/ {print $1}' "$1"; }
non2xx_of() { awk '/Non-2xx/ {print $NF}' "$1"; }
TICK=$(getconf CLK_TCK)

echo "== warm-up ${WARMUP}s per target" >&2
for t in "${TARGETS[@]}"; do run_wrk "${URL[$t]}" "$WARMUP" >/dev/null; done

declare -A US CS
for r in $(seq 1 "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    if [ "$SWITCHES" = 1 ]; then
      perf stat -x, -e context-switches,cpu-migrations -p "${PID[$t]}" -o "$WORK/perf-$t-$r.txt" -- sleep "$DURATION" & perf_pid=$!
    fi
    before=$(cpu_ticks "${PID[$t]}")
    run_wrk "${URL[$t]}" "$DURATION" >"$WORK/wrk-$t-$r.txt"
    after=$(cpu_ticks "${PID[$t]}")
    if [ "$SWITCHES" = 1 ]; then
      wait "$perf_pid" || true
      # perf counts over its own DURATION seconds, wrk's requests over the same span (both start together).
      cs=$(awk -F, -v n="$(requests_of "$WORK/wrk-$t-$r.txt")" '/context-switches/ { c = $1 } /cpu-migrations/ { m = $1 } END { printf "%.2f/%.3f", c / n, m / n }' "$WORK/perf-$t-$r.txt")
      CS[$t]="${CS[$t]:-} $cs"
      echo "round $r $t: context switches/migrations per request $cs" >&2
    fi
    n=$(requests_of "$WORK/wrk-$t-$r.txt"); bad=$(non2xx_of "$WORK/wrk-$t-$r.txt")
    if [ -n "$bad" ]; then echo "$t round $r: $bad non-2xx responses" >&2; exit 1; fi
    us=$(awk -v a="$before" -v b="$after" -v n="$n" -v hz="$TICK" 'BEGIN { printf "%.1f", (b - a) / hz * 1e6 / n }')
    US[$t]="${US[$t]:-} $us"
    echo "round $r $t: $n requests, $us us CPU/request" >&2
  done
done

declare -A BYTES WORK_ITEMS
for t in "${TARGETS[@]}"; do
  csv="$WORK/counters-$t.csv"; rm -f "$csv"
  # Stops on its own (a background job ignores SIGINT); the seconds around wrk are idle and allocate next to nothing.
  dotnet-counters collect -p "${PID[$t]}" --counters "System.Runtime[dotnet.gc.heap.total_allocated,dotnet.thread_pool.work_item.count]" --refresh-interval 1 \
      --duration "00:00:00:$((DURATION + 4))" --format csv -o "$csv" >"$WORK/counters-$t.log" 2>&1 & cpid=$!
  sleep 2
  run_wrk "${URL[$t]}" "$DURATION" >"$WORK/wrk-$t-alloc.txt"
  wait "$cpid" || true
  n=$(requests_of "$WORK/wrk-$t-alloc.txt")
  BYTES[$t]=$(awk -F, -v n="$n" '/total_allocated/ { s += $NF } END { printf "%.0f", s / n }' "$csv")
  WORK_ITEMS[$t]=$(awk -F, -v n="$n" '/work_item.count/ { s += $NF } END { printf "%.2f", s / n }' "$csv")
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END { if (NR % 2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
echo
echo "| target | CPU µs/request, median of $ROUNDS | the rounds | bytes allocated/request |"
echo "|---|---|---|---|"
for t in "${TARGETS[@]}"; do
  echo "| $t | $(echo "${US[$t]}" | median) |${US[$t]} | ${BYTES[$t]} |"
done
if [ "$SWITCHES" = 1 ]; then
  echo
  echo "| target | context switches/request, median | the rounds (switches/migrations) | thread-pool work items/request (allocation round) |"
  echo "|---|---|---|---|"
  for t in "${TARGETS[@]}"; do
    echo "| $t | $(echo "${CS[$t]}" | tr ' ' '\n' | cut -d/ -f1 | tr '\n' ' ' | median) |${CS[$t]} | ${WORK_ITEMS[$t]} |"
  done
fi
if [ -n "$BASELINE_DIR" ]; then
  base=$(echo "${US[baseline]}" | median)
  echo "baseline minus yarp: $(awk -v g="$base" -v y="${yarp:-$(echo "${US[yarp]}" | median)}" 'BEGIN { printf "%.1f", g - y }') µs CPU/request, $(( BYTES[baseline] - BYTES[yarp] )) bytes/request"
fi
gw=$(echo "${US[$LABEL]}" | median); yarp=$(echo "${US[yarp]}" | median)
echo
echo "$LABEL minus yarp: $(awk -v g="$gw" -v y="$yarp" 'BEGIN { printf "%.1f", g - y }') µs CPU/request, $(( BYTES[$LABEL] - BYTES[yarp] )) bytes/request" \
  "(wrk -t1 -c$CONNECTIONS, ${DURATION}s rounds, load average $(cut -d' ' -f1-3 /proc/loadavg))"
