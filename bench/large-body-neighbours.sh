#!/usr/bin/env bash
# What a hostile tenant's large bodies do to other tenants' small requests: per target, alternating rounds of
#   1. small requests alone (wrk, bench/post-responses.lua), then
#   2. the same small requests beside a second wrk sending large bodies whose streams the upstream cuts (the gateway
#      estimates them: bench/large-body-cut.lua),
# reporting the small requests' latency (p50, p99) in both phases. The gateway gets the image's runtime settings.
#   bash bench/large-body-neighbours.sh --target=before:/abs/publish/a --target=after:/abs/publish/b [--rounds=2]
#        [--duration=10] [--cpus=0,1] [--body-kb=60] [--hostile-connections=4] [--env=NAME=value]...
# --cpus: the gateway, the fake upstream and both load clients share these CPUs (a sanity check, not a clean bench).
set -euo pipefail
. "$(dirname "$0")/common.sh"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK="${NEIGHBOURS_WORK:-$ROOT/bench/.work/neighbours}"
ROUNDS=2; DURATION=10; CPUS=0,1; BODY_KB=60; HOSTILE=4; TARGETS=(); EXTRA_ENV=()
for arg in "$@"; do
  case "$arg" in
    --target=*) TARGETS+=("${arg#*=}") ;;
    --rounds=*) ROUNDS="${arg#*=}" ;;
    --duration=*) DURATION="${arg#*=}" ;;
    --cpus=*) CPUS="${arg#*=}" ;;
    --body-kb=*) BODY_KB="${arg#*=}" ;;
    --hostile-connections=*) HOSTILE="${arg#*=}" ;;
    --env=*) EXTRA_ENV+=("${arg#*=}") ;;
    *) echo "unknown option $arg" >&2; exit 2 ;;
  esac
done
[ ${#TARGETS[@]} -gt 0 ] || { echo "give at least one --target=LABEL:DIR" >&2; exit 2; }
P_FAKE=${NEIGHBOURS_PORT_BASE:-28480}; P_GW=$((P_FAKE + 1)); KEY=gwk_bench_key
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 BENCH_KEY=$KEY LARGE_BODY_KB=$BODY_KB
mkdir -p "$WORK"
PIDS=(); cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
[ -f "$WORK/fake/FakeUpstream.dll" ] || dotnet publish "$ROOT/tests/FakeUpstream" -c Release -o "$WORK/fake" --nologo -v q >&2
write_bench_config "$WORK/gateway.json" "$KEY"
taskset -c "$CPUS" dotnet "$WORK/fake/FakeUpstream.dll" --urls "http://127.0.0.1:$P_FAKE" >"$WORK/fake.log" 2>&1 & PIDS+=($!)
wait_port "$P_FAKE"

small() { taskset -c "$CPUS" wrk -t1 -c16 -d"${1}s" --latency -s "$ROOT/bench/post-responses.lua" "http://127.0.0.1:$P_GW/v1/responses"; }
hostile() { taskset -c "$CPUS" wrk -t1 -c"$HOSTILE" -d"${1}s" -s "$ROOT/bench/large-body-cut.lua" "http://127.0.0.1:$P_GW/v1/responses"; }
pct() { awk -v p="$1" '$1 == p { print $2 }' "$2"; }
echo "| target | round | alone: req/s, p50, p99 | beside large bodies: req/s, p50, p99 | large bodies done |"
echo "|---|---|---|---|---|"
for r in $(seq 1 "$ROUNDS"); do
  for spec in "${TARGETS[@]}"; do
    label=${spec%%:*}; dir=${spec#*:}
    env GATEWAY_CONFIG="$WORK/gateway.json" OPENAI_API_KEY=k Gateway__Upstream__BaseUrl="http://127.0.0.1:$P_FAKE/v1" \
        ConnectionStrings__Redis="" Urls="http://127.0.0.1:$P_GW" "${IMAGE_ENV[@]}" "${EXTRA_ENV[@]}" \
        taskset -c "$CPUS" dotnet "$dir/Gateway.dll" >"$WORK/$label-$r.log" 2>&1 & gw=$!; PIDS+=($gw)
    wait_port "$P_GW"
    small 10 >/dev/null; hostile 5 >/dev/null                     # warm-up of both paths
    small "$DURATION" >"$WORK/alone-$label-$r.txt"
    hostile "$((DURATION + 2))" >"$WORK/hostile-$label-$r.txt" & hp=$!
    sleep 1; small "$DURATION" >"$WORK/beside-$label-$r.txt"; wait "$hp"
    kill "$gw"; wait "$gw" 2>/dev/null || true
    a="$WORK/alone-$label-$r.txt"; b="$WORK/beside-$label-$r.txt"
    echo "| $label | $r | $(awk '/Requests\/sec/ {print $2}' "$a"), $(pct 50% "$a"), $(pct 99% "$a") |" \
      "$(awk '/Requests\/sec/ {print $2}' "$b"), $(pct 50% "$b"), $(pct 99% "$b") | $(awk '/requests in/ {print $1}' "$WORK/hostile-$label-$r.txt") |"
  done
done
echo "(gateway, fake upstream and load on CPUs $CPUS; ${BODY_KB} KiB bodies on $HOSTILE connections; load average $(cut -d' ' -f1-3 /proc/loadavg))"
