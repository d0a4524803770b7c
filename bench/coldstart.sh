#!/usr/bin/env bash
# Cold start under load: starts a published gateway cold, puts it under wrk load the moment its port opens and
# records the requests served in every second for --seconds (default 90). Reports the first 10 s against the steady
# state (the last 30 s) for each variant given, variants alternating run by run:
#   bash bench/coldstart.sh [--runs=N] [--seconds=S] [--out=DIR] [--fake=URL] <label>=<publish-folder>[,VAR=value...] ...
# e.g. bash bench/coldstart.sh --runs=3 today=bench/.work/gateway pgo-off=bench/.work/gateway,DOTNET_TieredPGO=0
# Each second is one 1-s wrk slice (1 thread, 64 connections, bench/post-responses.lua): wrk cannot report per
# second, and the few milliseconds between slices cost every second alike. With --fake the fake upstream given is
# used (bench/run.sh passes its own); otherwise one is published and started here. Needs wrk and curl.
# As in bench/run.sh the load runs on CPU 0 and the gateway (and the fake upstream) on CPU 1.
# Prints one line per run and writes <out>/coldstart-<label>-<run>.txt (one "second requests cpu-ticks" line per second).
# cpu-ratio: steady CPU per request over the first 10 s' CPU per request, the same ratio as seen by the CPU the gateway gets.
set -euo pipefail
. "$(dirname "$0")/common.sh"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RUNS=1; SECONDS_UNDER_LOAD=90; OUTDIR=""; FAKE_URL=""; CONNECTIONS=64
VARIANTS=()
for arg in "$@"; do
  case "$arg" in
    --runs=*) RUNS="${arg#*=}" ;;
    --seconds=*) SECONDS_UNDER_LOAD="${arg#*=}" ;;
    --out=*) OUTDIR="${arg#*=}" ;;
    --fake=*) FAKE_URL="${arg#*=}" ;;
    --*) echo "unknown option $arg" >&2; exit 2 ;;
    *) VARIANTS+=("$arg") ;;
  esac
done
[ ${#VARIANTS[@]} -gt 0 ] || { echo "usage: bench/coldstart.sh [--runs=N] [--seconds=S] [--out=DIR] [--fake=URL] label=folder[,VAR=value...] ..." >&2; exit 2; }
WORK=$(mktemp -d)
OUTDIR=${OUTDIR:-$WORK}
mkdir -p "$OUTDIR"
KEY=gwk_bench_key
P_FAKE=19190; P_GW=19180
LOAD_CPU=0; TARGET_CPU=1
if [ "$(nproc)" -lt 2 ]; then TARGET_CPU=0; fi
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

if [ -z "$FAKE_URL" ]; then
  dotnet publish "$ROOT/tests/FakeUpstream" -c Release -o "$WORK/fake" --nologo -v q >/dev/null
  taskset -c "$TARGET_CPU" dotnet "$WORK/fake/FakeUpstream.dll" --urls "http://127.0.0.1:$P_FAKE" >"$WORK/fake.log" 2>&1 & PIDS+=($!)
  FAKE_URL="http://127.0.0.1:$P_FAKE"
  until curl -sf "$FAKE_URL/healthz" >/dev/null; do sleep 0.05; done
fi
# The same tenant as bench/run.sh: every limit set, so admission does all its work.
write_bench_config "$WORK/gateway.json" "$KEY"

# The mean requests per second over the seconds [from, to) of a per-second file.
mean_of() { awk -v a="$2" -v b="$3" '$1 >= a && $1 < b { s += $2; n++ } END { printf "%.0f", n ? s / n : 0 }' "$1"; }
# The gateway's CPU time (user + system) per request over those seconds, in µs: on a shared machine throughput
# follows the CPU the gateway gets, the CPU it spends per request much less so.
cpu_us_of() { awk -v a="$2" -v b="$3" -v hz="$(getconf CLK_TCK)" '$1 >= a && $1 < b { r += $2; t += $3 } END { printf "%.0f", r ? t * 1e6 / hz / r : 0 }' "$1"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

for run in $(seq 1 "$RUNS"); do
  for variant in "${VARIANTS[@]}"; do
    label=${variant%%=*}; rest=${variant#*=}
    folder=${rest%%,*}; settings=()
    [ "$rest" != "$folder" ] && IFS=',' read -r -a settings <<<"${rest#*,}"
    file="$OUTDIR/coldstart-$label-$run.txt"
    start=$(date +%s%N)
    env GATEWAY_CONFIG="$WORK/gateway.json" OPENAI_API_KEY=bench-upstream-key Gateway__Upstream__BaseUrl="$FAKE_URL/v1" \
        Urls="http://127.0.0.1:$P_GW" "${settings[@]}" taskset -c "$TARGET_CPU" dotnet "$folder/Gateway.dll" >"$WORK/gw.log" 2>&1 &
    gw=$!; PIDS+=($gw)
    until (exec 3<>/dev/tcp/127.0.0.1/$P_GW) 2>/dev/null; do
      kill -0 "$gw" 2>/dev/null || { echo "the gateway ($label) exited, see its log:" >&2; tail -20 "$WORK/gw.log" >&2; exit 1; }
      sleep 0.01
    done
    listening_ms=$(( ($(date +%s%N) - start) / 1000000 ))
    # CPU time until listening (user + system): steadier than wall time on a shared machine.
    cpu_ms=$(awk -v hz="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$gw/stat")
    : >"$file"
    for second in $(seq 0 $((SECONDS_UNDER_LOAD - 1))); do
      before=$(cpu_ticks "$gw")
      n=$(BENCH_KEY=$KEY taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d1s -s "$ROOT/bench/post-responses.lua" "http://127.0.0.1:$P_GW/v1/responses" \
        | awk '/requests in/ {print $1}')
      echo "$second ${n:-0} $(( $(cpu_ticks "$gw") - before ))" >>"$file"
    done
    kill "$gw"; wait "$gw" 2>/dev/null || true
    first=$(mean_of "$file" 0 10)
    steady_from=$(( SECONDS_UNDER_LOAD > 40 ? SECONDS_UNDER_LOAD - 30 : SECONDS_UNDER_LOAD / 2 ))
    steady=$(mean_of "$file" "$steady_from" "$SECONDS_UNDER_LOAD")
    ratio=$(awk -v a="$first" -v b="$steady" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    first_cpu=$(cpu_us_of "$file" 0 10); steady_cpu=$(cpu_us_of "$file" "$steady_from" "$SECONDS_UNDER_LOAD")
    cpu_ratio=$(awk -v a="$first_cpu" -v b="$steady_cpu" 'BEGIN { printf "%.2f", (a > 0 ? b / a : 0) }')
    echo "coldstart $label run $run: listening after $listening_ms ms ($cpu_ms ms CPU); first 10 s $first req/s; steady (s $steady_from-$SECONDS_UNDER_LOAD) $steady req/s; ratio $ratio; CPU per request $first_cpu µs first 10 s, $steady_cpu µs steady, cpu-ratio $cpu_ratio; per second: $(awk '{printf "%s ", $2}' "$file")"
  done
done
