#!/usr/bin/env bash
# A/B of the Redis store on the request path (issue #15): streamed TTFB at concurrency 1 (LoadClient) and non-streamed
# throughput (wrk), for `direct`, `gateway` (memory store) and any number of gateway+redis builds, targets alternating
# round by round. Usage: bash bench/redis-ab.sh ROUNDS name=/published/gateway/dir ...
# Everything on 127.0.0.1; load on CPU 0, targets, the fake upstream and Redis on CPU 1 (as bench/run.sh).
set -euo pipefail
. "$(dirname "$0")/common.sh"
ROUNDS=$1; shift
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d); OUT=${OUT:-$WORK}
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
dotnet publish "$ROOT/tests/FakeUpstream" -c Release -o "$WORK/fake" --nologo -v q >/dev/null
dotnet publish "$ROOT/bench/LoadClient" -c Release -o "$WORK/client" --nologo -v q >/dev/null
KEY=gwk_bench_key; export BENCH_KEY=$KEY
write_bench_config "$WORK/gateway.json" "$KEY"
BASE=$((21000 + RANDOM % 5000))
declare -A URL PID; NAMES=(direct)
start_redis_bed $BASE
URL[direct]="http://127.0.0.1:$P_FAKE"
port=$((BASE + 10)); first=1
for spec in "$@"; do
  name=${spec%%=*}; dir=${spec#*=}
  if [ $first = 1 ]; then start_gw gateway "$dir" $port memory; port=$((port + 1)); first=0; fi
  start_gw "$name" "$dir" $port redis; port=$((port + 1))
done
sleep 2
for n in "${NAMES[@]}"; do taskset -c 0 wrk -t1 -c32 -d20s -s "$ROOT/bench/post-responses.lua" "${URL[$n]}/v1/responses" >/dev/null; done  # warm-up
for r in $(seq 1 "$ROUNDS"); do
  for n in "${NAMES[@]}"; do
    taskset -c 0 wrk -t1 -c64 -d10s -s "$ROOT/bench/post-responses.lua" "${URL[$n]}/v1/responses" | awk -v n="$n" '/Requests\/sec/ {print n, "rps", $2}' >>"$OUT/rps.txt"
    taskset -c 0 dotnet "$WORK/client/LoadClient.dll" stream --url "${URL[$n]}/v1" --key "$KEY" --concurrency 1 --requests 1000 --events 20 \
      | python3 -c "import json,sys; d=json.load(sys.stdin); print('$n', 'ttfb_p50', d['ttfb_p50_ms'])" >>"$OUT/ttfb.txt"
  done
done
echo "round values (rps):"; sort -k1,1 -s "$OUT/rps.txt" | awk '{a[$1]=a[$1]" "$3} END {for (k in a) print k":"a[k]}'
echo "round values (TTFB p50 ms, concurrency 1):"; sort -k1,1 -s "$OUT/ttfb.txt" | awk '{a[$1]=a[$1]" "$3} END {for (k in a) print k":"a[k]}'
