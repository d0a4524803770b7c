#!/usr/bin/env bash
# Where the gateway's CPU goes under load: perf samples of the published gateway (memory store, every feature on)
# while wrk drives non-streamed POST /v1/responses, the same load as bench/run.sh. Needs `perf` (Debian: linux-perf)
# and a previous `bash bench/run.sh` (it reuses bench/.work: the published gateway, the fake upstream, gateway.json).
#   bash bench/profile.sh [seconds-of-warm-up] [seconds-sampled] [memory|redis]
# Writes bench/results/<stamp>-profile/{by-dso.txt,by-symbol.txt,gateway-symbols.txt}. With `redis` (#15) the gateway
# uses a redis-server on CPU 1 (as run.sh's gateway+redis), sampled at the same time into redis-{by-dso,by-symbol}.txt.
set -euo pipefail
. "$(dirname "$0")/common.sh"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK="$ROOT/bench/.work"
WARM=${1:-45}; SAMPLE=${2:-10}; STORE=${3:-memory}
OUT="$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ)-profile"
P_FAKE=18180; P_GW=18182; P_REDIS=18183
[ -f "$WORK/gateway/Gateway.dll" ] || { echo "run bash bench/run.sh first (it publishes into bench/.work)" >&2; exit 1; }
command -v perf >/dev/null || { echo "install perf (apt-get install linux-perf)" >&2; exit 1; }
mkdir -p "$OUT"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

taskset -c 1 dotnet "$WORK/fake/FakeUpstream.dll" --urls "http://127.0.0.1:$P_FAKE" >"$OUT/fake.log" 2>&1 & PIDS+=($!)
STORE_ENV=()
if [ "$STORE" = redis ]; then
  taskset -c 1 redis-server --port $P_REDIS --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis.log" 2>&1 & REDIS=$!; PIDS+=($REDIS)
  wait_port $P_REDIS; STORE_ENV=(ConnectionStrings__Redis="127.0.0.1:$P_REDIS")
fi
# Perf maps let perf name JIT-compiled frames; W^X off so those frames stay where the map says.
env GATEWAY_CONFIG="$WORK/gateway.json" OPENAI_API_KEY=bench-upstream-key Gateway__Upstream__BaseUrl="http://127.0.0.1:$P_FAKE/v1" \
    Urls="http://127.0.0.1:$P_GW" "${STORE_ENV[@]}" DOTNET_PerfMapEnabled=1 DOTNET_EnableWriteXorExecute=0 "${IMAGE_ENV[@]}" \
    taskset -c 1 dotnet "$WORK/gateway/Gateway.dll" >"$OUT/gateway.log" 2>&1 & GW=$!; PIDS+=($GW)
wait_port $P_FAKE; wait_port $P_GW
export BENCH_KEY=gwk_bench_key
taskset -c 0 wrk -t1 -c64 -d"${WARM}s" -s "$ROOT/bench/post-responses.lua" "http://127.0.0.1:$P_GW/v1/responses" >/dev/null
taskset -c 0 wrk -t1 -c64 -d"$((SAMPLE + 2))s" -s "$ROOT/bench/post-responses.lua" "http://127.0.0.1:$P_GW/v1/responses" >"$OUT/wrk.txt" &
WRK=$!
sleep 1
[ "$STORE" = redis ] && { perf record -F 999 -g -p "$REDIS" -o "$OUT/perf-redis.data" -- sleep "$SAMPLE" 2>"$OUT/perf-record-redis.log" & PERF_REDIS=$!; }
perf record -F 999 -g -p "$GW" -o "$OUT/perf.data" -- sleep "$SAMPLE" 2>"$OUT/perf-record.log"
wait $WRK
if [ "$STORE" = redis ]; then
  wait $PERF_REDIS
  perf report -i "$OUT/perf-redis.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | awk 'NR <= 20' >"$OUT/redis-by-dso.txt"
  perf report -i "$OUT/perf-redis.data" --no-children --sort sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | awk 'NR <= 60' >"$OUT/redis-by-symbol.txt"
fi
perf report -i "$OUT/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | awk 'NR <= 30' >"$OUT/by-dso.txt"
perf report -i "$OUT/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | awk 'NR <= 80' >"$OUT/by-symbol.txt"
# Inclusive time of the gateway's own methods (and the frameworks' entry points) over the whole call graph.
perf report -i "$OUT/perf.data" --children --sort sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -E 'Gateway\.|Serilog|Yarp|Kestrel|Tokenizer|OpenTelemetry|Metrics' | awk 'NR <= 60' >"$OUT/gateway-symbols.txt"
echo "profile in $OUT"
