#!/usr/bin/env bash
# A runtime setting A/B: the gateway as published (A) against the same build with the setting (B) and nginx,
# alternating rounds of wrk; req/s and the gateway's CPU µs per request (utime + stime from /proc/PID/stat):
#   bash bench/settings-ab.sh label=VAR=value[,VAR=value...] ...     (ROUNDS=3 DUR=10 WARM=60 by default)
# e.g. bash bench/settings-ab.sh inline=DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1
# Uses bench/.work/gateway and bench/.work/fake as bench/run.sh publishes them (run it, or its --smoke, first).
# As in bench/run.sh: the load on CPU 0, the targets on CPU 1, 127.0.0.1 only. Writes /tmp/ab-<label>.txt.
set -uo pipefail
. "$(dirname "$0")/common.sh"
cd "$(dirname "$0")/.."
W=bench/.work; KEY=gwk_bench_key
[ -f $W/gateway/Gateway.dll ] && [ -f $W/fake/FakeUpstream.dll ] || { echo "publish first: bash bench/run.sh --smoke" >&2; exit 1; }
ROUNDS=${ROUNDS:-3}; DUR=${DUR:-10}; WARM=${WARM:-60}
P_FAKE=18280; P_NGINX=18281; P_A=18282; P_B=18283; P_FAKE2=18290
PIDS=(); cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null; done; }; trap cleanup EXIT
write_bench_config /tmp/ab-gw.json "$KEY"
taskset -c 1 dotnet $W/fake/FakeUpstream.dll --urls "http://127.0.0.1:$P_FAKE" >/tmp/ab-fake.log 2>&1 & PIDS+=($!)
taskset -c 1 dotnet $W/fake/FakeUpstream.dll --urls "http://127.0.0.1:$P_FAKE2" --Kestrel:EndpointDefaults:Protocols=Http2 >/tmp/ab-fake2.log 2>&1 & PIDS+=($!)
mkdir -p /tmp/ab-nginx/nginx
sed -e "s#__WORK__#/tmp/ab-nginx#g" -e "s#__PORT__#$P_NGINX#g" -e "s#__UPSTREAM_PORT__#$P_FAKE#g" bench/nginx.conf.template >/tmp/ab-nginx/nginx.conf
taskset -c 1 nginx -p /tmp/ab-nginx -c /tmp/ab-nginx/nginx.conf >/tmp/ab-nginx/out.log 2>&1 & PIDS+=($!)
start_gw() { local port=$1; shift; env GATEWAY_CONFIG=/tmp/ab-gw.json OPENAI_API_KEY=k Gateway__Upstream__BaseUrl="http://127.0.0.1:$P_FAKE/v1" Urls="http://127.0.0.1:$port" "$@" taskset -c 1 dotnet $W/gateway/Gateway.dll >/tmp/ab-gw-$port.log 2>&1 & GWPID=$!; PIDS+=($GWPID); wait_port $port; }
ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
load() { BENCH_KEY=$KEY taskset -c 0 wrk -t1 -c64 -d${2}s -s bench/post-responses.lua "http://127.0.0.1:$1/v1/responses"; }
wait_port $P_FAKE; wait_port $P_FAKE2; wait_port $P_NGINX
start_gw $P_A; A=$GWPID; load $P_A $WARM >/dev/null
median() { sort -g | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
for spec in "$@"; do
  label=${spec%%=*}; IFS=',' read -r -a settings <<<"${spec#*=}"
  start_gw $P_B "${settings[@]}"; B=$GWPID; load $P_B $WARM >/dev/null
  : >/tmp/ab-$label.txt
  for r in $(seq 1 $ROUNDS); do
    for t in A B nginx; do
      port=$P_NGINX; pid=""; [ $t = A ] && { port=$P_A; pid=$A; }; [ $t = B ] && { port=$P_B; pid=$B; }
      [ -n "$pid" ] && before=$(ticks $pid)
      out=$(load $port $DUR); n=$(awk '/requests in/{print $1}' <<<"$out"); rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
      us=""; [ -n "$pid" ] && us=$(awk -v t=$(( $(ticks $pid) - before )) -v n=$n -v hz=$(getconf CLK_TCK) 'BEGIN{printf "%.0f", t*1e6/hz/n}')
      echo "$t $rps $us" >>/tmp/ab-$label.txt
    done
  done
  ra=$(awk '$1=="A"{print $2}' /tmp/ab-$label.txt | median); rb=$(awk '$1=="B"{print $2}' /tmp/ab-$label.txt | median); rn=$(awk '$1=="nginx"{print $2}' /tmp/ab-$label.txt | median)
  ua=$(awk '$1=="A"{print $3}' /tmp/ab-$label.txt | median); ub=$(awk '$1=="B"{print $3}' /tmp/ab-$label.txt | median)
  echo "$label (${settings[*]}): A $ra req/s ${ua} µs/req (x$(awk -v a=$ra -v b=$rn 'BEGIN{printf "%.2f",a/b}') nginx) | B $rb req/s ${ub} µs/req (x$(awk -v a=$rb -v b=$rn 'BEGIN{printf "%.2f",a/b}') nginx) | nginx $rn | rounds: $(tr '\n' ';' </tmp/ab-$label.txt)"
  kill $B; wait $B 2>/dev/null
done
