#!/usr/bin/env bash
# CPU per request with the Redis store (issue #15): the gateway's utime+stime and redis-server's, per request, under the
# same wrk load, for any number of gateway builds (and the memory store for reference), rounds alternating; plus the
# Redis commands per request (INFO commandstats deltas: calls and usec per call of each command and script), and the
# gateway's bytes allocated per request (one more round per build, dotnet-counters; REDIS_CPU_ALLOC=0 skips it).
# Usage: bash bench/redis-cpu.sh ROUNDS SECONDS name=/published/gateway/dir ...   (the first build also runs as `memory`)
# CPU per request is what load on a shared machine distorts least (other processes take the core away, which changes
# req/s a lot, not the process's own CPU per request). Load on CPU 0; gateways, fake upstream and Redis on CPU 1.
set -euo pipefail
. "$(dirname "$0")/common.sh"
ROUNDS=$1; SECONDS_PER_ROUND=$2; shift 2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
export DOTNET_ThreadPool_UnfairSemaphoreSpinLimit=0 # idle spinning would be charged to whichever process spins most
dotnet publish "$ROOT/tests/FakeUpstream" -c Release -o "$WORK/fake" --nologo -v q >/dev/null
KEY=gwk_bench_key; export BENCH_KEY=$KEY
write_bench_config "$WORK/gateway.json" "$KEY"
BASE=$((26000 + RANDOM % 3000))
declare -A URL PID; NAMES=()
start_redis_bed $BASE
port=$((BASE + 10)); first=1
for spec in "$@"; do
  name=${spec%%=*}; dir=${spec#*=}
  if [ $first = 1 ]; then start_gw memory "$dir" $port memory; port=$((port + 1)); first=0; fi
  start_gw "$name" "$dir" $port redis; port=$((port + 1))
done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
for n in "${NAMES[@]}"; do taskset -c 0 wrk -t1 -c32 -d15s -s "$ROOT/bench/post-responses.lua" "${URL[$n]}/v1/responses" >/dev/null; done # warm-up
for r in $(seq 1 "$ROUNDS"); do
  for n in "${NAMES[@]}"; do
    g0=$(ticks "${PID[$n]}"); r0=$(ticks $REDIS_PID)
    redis-cli -p $P_REDIS CONFIG RESETSTAT >/dev/null
    out=$(taskset -c 0 wrk -t1 -c32 -d"${SECONDS_PER_ROUND}"s -s "$ROOT/bench/post-responses.lua" "${URL[$n]}/v1/responses")
    g1=$(ticks "${PID[$n]}"); r1=$(ticks $REDIS_PID)
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    calls=$(redis-cli -p $P_REDIS INFO commandstats | awk -F'[:,=]' '/^cmdstat_/ && !/cmdstat_(info|config|ping)/ {c+=$3} END {print c+0}')
    echo "$n round $r rps $rps gateway_us_per_req $(( (g1 - g0) * 1000000 / HZ / reqs )) redis_us_per_req $(( (r1 - r0) * 1000000 / HZ / reqs )) redis_calls_per_req $(awk -v c="$calls" -v q="$reqs" 'BEGIN {printf "%.2f", c/q}')" | tee -a "$WORK/rounds.txt"
    [ "$n" != memory ] && redis-cli -p $P_REDIS INFO commandstats | grep -v -e cmdstat_info -e cmdstat_config -e cmdstat_ping | sed "s/^/  $n r$r /" >>"$WORK/commandstats.txt"
  done
done
# Bytes the gateway allocates per request: one extra round per build with dotnet-counters (as bench/cpu-per-request.sh),
# unless REDIS_CPU_ALLOC=0. The seconds around wrk are idle and allocate next to nothing.
PATH="$PATH:$HOME/.dotnet/tools" # where `dotnet tool install -g dotnet-counters` puts it
if [ "${REDIS_CPU_ALLOC:-1}" = 1 ] && command -v dotnet-counters >/dev/null; then
  for n in "${NAMES[@]}"; do
    csv="$WORK/counters-$n.csv"
    dotnet-counters collect -p "${PID[$n]}" --counters "System.Runtime[dotnet.gc.heap.total_allocated]" --refresh-interval 1 \
        --duration "00:00:00:$((SECONDS_PER_ROUND + 4))" --format csv -o "$csv" >/dev/null 2>&1 & cpid=$!
    sleep 2
    out=$(taskset -c 0 wrk -t1 -c32 -d"${SECONDS_PER_ROUND}"s -s "$ROOT/bench/post-responses.lua" "${URL[$n]}/v1/responses")
    wait "$cpid" || true
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    echo "$n bytes_allocated_per_req $(awk -F, -v q="$reqs" '/total_allocated/ { s += $NF } END { printf "%.0f", s / q }' "$csv")" | tee -a "$WORK/alloc.txt"
  done
fi
echo "medians (gateway us/req, redis us/req, rps):"
for n in "${NAMES[@]}"; do
  med() { grep "^$n round" "$WORK/rounds.txt" | awk -v f="$1" '{print $f}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
  echo "$n gateway_us $(med 7) redis_us $(med 9) rps $(med 5) redis_calls $(med 11)"
done
echo "last round's INFO commandstats (per build):"; tail -n 20 "$WORK/commandstats.txt"
