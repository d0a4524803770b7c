#!/usr/bin/env bash
# Upstream pool cost (issue #12: "the pool (2 upstreams) costs <= 5 % throughput against one upstream").
# Two gateways, the same build and configuration but their upstreams: "single" has Gateway:Upstream only (the pool's
# `default` member); "pool" has Gateway:Upstreams a and b (weights 1:1, same model), two fake upstream processes.
# wrk drives them in alternating rounds; per round it also reads the gateway's own CPU time (utime+stime from
# /proc/PID/stat) and divides it by the requests wrk completed: CPU per request is much less distorted by other load
# on the machine than req/s is.
#   bash bench/pool.sh [--rounds=N] [--duration=S] [--connections=N] [--warmup=S] [--smoke] [--one-fake]
#   bash bench/run.sh calls it with --out=<its results folder> --work=<its work folder> (built already) and the same settings.
# Results: a table appended to <out>/summary.md (standalone: bench/results/<timestamp>-pool/summary.md), raw wrk outputs beside it.
set -euo pipefail
. "$(dirname "$0")/common.sh"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK="$ROOT/bench/.work"; OUT=""; BUILT=0
ROUNDS=5; DURATION=10; CONNECTIONS=64; WARMUP=30; ONE_FAKE=0
for arg in "$@"; do
  case "$arg" in
    --smoke) ROUNDS=1; DURATION=2; CONNECTIONS=16; WARMUP=2 ;;
    --rounds=*) ROUNDS="${arg#*=}" ;;
    --duration=*) DURATION="${arg#*=}" ;;
    --connections=*) CONNECTIONS="${arg#*=}" ;;
    --warmup=*) WARMUP="${arg#*=}" ;;
    --out=*) OUT="${arg#*=}" ;;
    --work=*) WORK="${arg#*=}"; BUILT=1 ;;
    --one-fake) ONE_FAKE=1 ;;
    *) echo "unknown option $arg" >&2; exit 2 ;;
  esac
done
[ -n "$OUT" ] || OUT="$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ)-pool"
LOAD_CPU=0; TARGET_CPU=1
if [ "$(nproc)" -lt 2 ]; then LOAD_CPU=0; TARGET_CPU=0; fi
P_FAKE_A=18110; P_FAKE_B=18111; P_SINGLE=18112; P_POOL=18113
# --one-fake (a control): pool member b uses a's fake process too, so the pool's own cost is measured without a
# second upstream process sharing the targets' core.
POOL_B_PORT=$P_FAKE_B; [ "$ONE_FAKE" -eq 1 ] && POOL_B_PORT=$P_FAKE_A
KEY=${BENCH_KEY:-gwk_bench_key}
mkdir -p "$WORK" "$OUT"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 BENCH_KEY=$KEY

PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

if [ $BUILT -eq 0 ]; then
  echo "== building (Release)"
  dotnet publish "$ROOT/src/Gateway" -c Release -o "$WORK/gateway" --nologo -v q
  dotnet publish "$ROOT/tests/FakeUpstream" -c Release -o "$WORK/fake" --nologo -v q
fi

write_bench_config "$WORK/pool-gateway.json" "$KEY"

echo "== starting two fake upstreams and two gateways"
for p in $P_FAKE_A $P_FAKE_B; do
  taskset -c "$TARGET_CPU" dotnet "$WORK/fake/FakeUpstream.dll" --urls "http://127.0.0.1:$p" >"$WORK/pool-fake-$p.log" 2>&1 & PIDS+=($!)
done
declare -A GW_PID
# env and taskset exec the next program, so $! is the gateway's own PID (its /proc/PID/stat is read below).
env GATEWAY_CONFIG="$WORK/pool-gateway.json" OPENAI_API_KEY=bench-upstream-key Urls="http://127.0.0.1:$P_SINGLE" \
    Gateway__Upstream__BaseUrl="http://127.0.0.1:$P_FAKE_A/v1" \
    taskset -c "$TARGET_CPU" dotnet "$WORK/gateway/Gateway.dll" >"$WORK/pool-gateway-single.log" 2>&1 &
PIDS+=($!); GW_PID[single]=$!
env GATEWAY_CONFIG="$WORK/pool-gateway.json" OPENAI_API_KEY=bench-upstream-key Urls="http://127.0.0.1:$P_POOL" \
    Gateway__Upstreams__a__BaseUrl="http://127.0.0.1:$P_FAKE_A/v1" Gateway__Upstreams__a__ApiKey=bench-key-a Gateway__Upstreams__a__Weight=1 \
    Gateway__Upstreams__b__BaseUrl="http://127.0.0.1:$POOL_B_PORT/v1" Gateway__Upstreams__b__ApiKey=bench-key-b Gateway__Upstreams__b__Weight=1 \
    taskset -c "$TARGET_CPU" dotnet "$WORK/gateway/Gateway.dll" >"$WORK/pool-gateway-pool.log" 2>&1 &
PIDS+=($!); GW_PID[pool]=$!
for p in $P_FAKE_A $P_FAKE_B $P_SINGLE $P_POOL; do wait_port $p; done

declare -A URL=( [single]="http://127.0.0.1:$P_SINGLE" [pool]="http://127.0.0.1:$P_POOL" )
TARGETS=(single pool)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

echo "== warm-up (${WARMUP}s each)"
for t in "${TARGETS[@]}"; do
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" -s "$ROOT/bench/post-responses.lua" "${URL[$t]}/v1/responses" >/dev/null
done

echo "== alternating rounds"
for r in $(seq 1 "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    before=$(cpu_ticks "${GW_PID[$t]}")
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$ROOT/bench/post-responses.lua" "${URL[$t]}/v1/responses" >"$OUT/pool-wrk-$t-$r.txt"
    after=$(cpu_ticks "${GW_PID[$t]}")
    requests=$(awk '/requests in/{print $1}' "$OUT/pool-wrk-$t-$r.txt")
    errors=$(awk '/Non-2xx/{print $5}' "$OUT/pool-wrk-$t-$r.txt"); errors=${errors:-0}
    rps=$(awk '/Requests\/sec/{print $2}' "$OUT/pool-wrk-$t-$r.txt")
    us=$(awk -v a="$before" -v b="$after" -v n="$requests" -v hz="$TICK" 'BEGIN{printf "%.1f", (b-a)*1e6/hz/n}')
    echo "$r $t $rps $us $errors" >>"$OUT/pool-rounds.txt"
    echo "round $r $t: $rps req/s, $us us CPU/request, $errors non-2xx"
  done
done

median() { sort -g | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
field() { awk -v t="$1" -v f="$2" '$2==t{print $f}' "$OUT/pool-rounds.txt" | median; }
S_RPS=$(field single 3); P_RPS=$(field pool 3); S_CPU=$(field single 4); P_CPU=$(field pool 4)
{
  echo
  echo "## Upstream pool: one upstream vs a pool of two (wrk, median of $ROUNDS alternating rounds)"
  echo
  echo "Same build and tenant; \`single\` = Gateway:Upstream only (\`default\`), \`pool\` = Gateway:Upstreams a, b (weights 1:1, two fake"
  echo "upstream processes). wrk: 1 thread, $CONNECTIONS connections, ${DURATION}s rounds; CPU/request = gateway utime+stime / requests."
  echo
  echo "| target | req/s | gateway CPU µs/request | non-2xx (all rounds) |"
  echo "|---|---|---|---|"
  echo "| single | $S_RPS | $S_CPU | $(awk '$2=="single"{s+=$5} END{print s+0}' "$OUT/pool-rounds.txt") |"
  echo "| pool | $P_RPS | $P_CPU | $(awk '$2=="pool"{s+=$5} END{print s+0}' "$OUT/pool-rounds.txt") |"
  echo
  echo "pool/single: throughput $(awk -v a="$P_RPS" -v b="$S_RPS" 'BEGIN{printf "%.3f", a/b}'), CPU per request $(awk -v a="$P_CPU" -v b="$S_CPU" 'BEGIN{printf "%.3f", a/b}') (target: throughput ≥ 0.95)."
} >>"$OUT/summary.md"
tail -12 "$OUT/summary.md"
