#!/usr/bin/env bash
# Redis commands per request, by kind (issue #15): starts redis-server, the fake upstream and the gateway (Redis
# store, one tenant with every limit) on loopback, sends N requests of each kind with curl, and prints the
# `INFO commandstats` delta per request. Usage: bash bench/redis-roundtrips.sh [N] [gateway build dir]
set -euo pipefail
N=${1:-50}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
GW_DIR=${2:-$ROOT/src/Gateway/bin/Debug/net10.0}
FAKE_DIR=$ROOT/tests/FakeUpstream/bin/Debug/net10.0
RP=$((20000 + RANDOM % 10000)); UP=$((RP + 1)); GP=$((RP + 2))
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
redis-server --port $RP --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" >/dev/null &
pids+=($!)
dotnet "$FAKE_DIR/FakeUpstream.dll" --urls http://127.0.0.1:$UP >/dev/null 2>&1 &
pids+=($!)
KEY=gwk_demo_local_only
HASH=0b45f2140231773e1842bf7f93a7dc94a3f610c65948b0dfe8b3023ccbbba7cd
Urls=http://127.0.0.1:$GP ConnectionStrings__Redis=127.0.0.1:$RP Gateway__Upstream__BaseUrl=http://127.0.0.1:$UP/v1 OPENAI_API_KEY=fake \
  Gateway__Tenants__demo__KeyHashes__0=$HASH Gateway__Tenants__demo__Limits__TokensPerMinute=100000000 \
  Gateway__Tenants__demo__Limits__RequestsPerMinute=1000000 Gateway__Tenants__demo__Limits__MaxConcurrentRequests=1000 \
  Gateway__Tenants__demo__Limits__TokensPerDay=1000000000 \
  bash -c "cd $WORK && exec dotnet $GW_DIR/Gateway.dll" > "$WORK/gateway.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:$GP/readyz 2>/dev/null | grep -q '"up"' && break; sleep 0.2; done
post() { curl -s -o "$WORK/out" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' "http://127.0.0.1:$GP/v1/$1" -d "$2"; }
# Commands the gateway sent (MONITOR, without those run inside Lua scripts): each is one request on the wire.
measure() {
  local name=$1; shift
  redis-cli -p $RP MONITOR > "$WORK/monitor" &
  local mon=$!
  sleep 0.3
  for _ in $(seq 1 "$N"); do "$@"; done
  sleep 0.5
  kill $mon; wait $mon 2>/dev/null || true
  printf '%-34s' "$name"
  grep -v 'lua\]' "$WORK/monitor" | grep -v '"OK"' | awk '{print toupper($4)}' | tr -d '"' | grep -v -e '^PING$' -e '^INFO$' -e '^$' \
    | sort | uniq -c | awk -v n="$N" '{printf " %s=%.2f", $2, $1/n; t+=$1} END {printf "  | total %.2f per request\n", t/n}'
}
post responses '{"model":"gpt-4o-mini","input":"warm up"}'
RESP=$(sed -n 's/.*"id": *"\(resp_[^"]*\)".*/\1/p' "$WORK/out" | head -1)
measure "create (JSON)" post responses '{"model":"gpt-4o-mini","input":"Hello"}'
measure "create (stream)" post responses '{"model":"gpt-4o-mini","input":"Hello","stream":true}'
measure "create, previous_response_id" post responses "{\"model\":\"gpt-4o-mini\",\"input\":\"Hello\",\"previous_response_id\":\"$RESP\"}"
measure "GET /v1/responses/{id}" curl -s -o /dev/null -H "Authorization: Bearer $KEY" "http://127.0.0.1:$GP/v1/responses/$RESP"
