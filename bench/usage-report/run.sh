#!/usr/bin/env bash
# Times `usage-report` on a generated ~1 GB log, plain and gzip, pinned to one core (taskset -c 0). Prints wall-clock
# and CPU-time throughput: on a shared, loaded machine the CPU figure (log bytes / (user+sys seconds)) is the honest one.
# Usage: bash bench/usage-report/run.sh [SIZE_MB]   (needs python3; writes to bench/.work/)
set -euo pipefail
cd "$(dirname "$0")/../.."
size=${1:-1024}
work=bench/.work/usage-report
mkdir -p "$work"
if [ ! -f "$work/gateway.log" ] || [ "$(stat -c %s "$work/gateway.log")" -lt $((size * 1024 * 1024)) ]; then
  python3 bench/usage-report/gen-log.py "$work/gateway.log" "$size"
  rm -f "$work/gateway.log.gz"
fi
[ -f "$work/gateway.log.gz" ] || gzip -1 -c "$work/gateway.log" > "$work/gateway.log.gz"
dotnet publish src/Gateway -c Release -o "$work/gateway" >/dev/null
bytes=$(stat -c %s "$work/gateway.log")
for input in gateway.log gateway.log.gz; do
  for by in tenant,model tenant,model,day,upstream,endpoint; do
    /usr/bin/time -f "%e %U %S %M" -o "$work/time.txt" taskset -c 0 dotnet "$work/gateway/Gateway.dll" usage-report "$work/$input" --by "$by" \
      > "$work/report.txt" 2> "$work/stderr.txt" || { cat "$work/stderr.txt"; exit 1; }
    read -r wall user sys rss < "$work/time.txt"
    echo "$input --by $by: $bytes bytes of log text; wall ${wall} s = $(echo "$bytes / $wall / 1000000" | bc) MB/s;" \
      "CPU $(echo "$user + $sys" | bc) s = $(echo "$bytes / ($user + $sys) / 1000000" | bc) MB/s; max RSS $((rss / 1024)) MiB;" \
      "$(grep -o '[0-9]* requests counted, [0-9]* duplicates' "$work/stderr.txt")"
  done
done
