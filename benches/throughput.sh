#!/usr/bin/env bash
# Cache-hit GET throughput against `cachelab serve`: hey vs `cachelab load` (alternating, same
# server), and redis-benchmark on the same managed Redis; then wrk for reference and the
# server's peak RSS. Prints every round and the medians.
# Usage: benches/throughput.sh [rounds] [requests]   (needs hey, wrk, redis-benchmark)
set -euo pipefail
BIN=${CACHELAB:-$(dirname "$0")/../target/release/cachelab}
ROUNDS=${1:-5}
N=${2:-20000}
out=$(mktemp)
"$BIN" serve --port 18700 > "$out" 2>&1 &
SERVE=$!
trap 'kill -INT $SERVE 2>/dev/null; wait $SERVE 2>/dev/null; rm -f "$out"' EXIT
until grep -q '^try:' "$out" 2>/dev/null; do sleep 0.05; done
RPORT=$(grep -o 'redis-cli -p [0-9]*' "$out" | awk '{print $3}')
URL=http://127.0.0.1:18700/users/1
curl -s "$URL" > /dev/null                       # cache it
hey -n 2000 -c 50 "$URL" > /dev/null             # warm up
hs=(); cs=(); rs=()
for i in $(seq 1 "$ROUNDS"); do
  h=$(hey -n "$N" -c 50 "$URL" | awk '/Requests\/sec/ {printf "%.0f", $2}')
  c=$("$BIN" load "$URL" -n "$N" -c 50 --json | python3 -c '
import json, sys
f = json.load(sys.stdin)
assert f["ok"] == f["requests"] == '"$N"', f
print("%.0f" % f["rps"])')
  r=$(redis-benchmark -p "$RPORT" -t get -c 50 -n 100000 -q | tr '\r' '\n' | awk '/requests per second/ {printf "%.0f", $2}')
  echo "round $i: hey $h rps | cachelab load $c rps | redis-benchmark GET $r rps"
  hs+=("$h"); cs+=("$c"); rs+=("$r")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mh=$(median "${hs[@]}"); mc=$(median "${cs[@]}"); mr=$(median "${rs[@]}")
echo "medians: hey $mh | cachelab load $mc | redis-benchmark $mr"
awk -v h="$mh" -v c="$mc" -v r="$mr" 'BEGIN {printf "hey / redis-benchmark = %.2f   cachelab load / hey = %.2f\n", h / r, c / h}'
echo "wrk -t2 -c50 -d5s: $(wrk -t2 -c50 -d5s "$URL" | awk '/Requests\/sec/ {print $2}') rps"
echo "serve peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$SERVE/status)"
