#!/usr/bin/env bash
# Cache-hit GET throughput of two cachelab builds' `serve`, side by side in one session:
# BEFORE and AFTER binaries alternate, each loaded by the same `cachelab load` (AFTER's) on
# one cached user, ROUNDS times; prints every round and the medians and their ratio.
# Usage: benches/compare.sh BEFORE_BIN [AFTER_BIN] [rounds] [requests] [serve flags...]
set -euo pipefail
BEFORE=$1
AFTER=${2:-$(dirname "$0")/../target/release/cachelab}
ROUNDS=${3:-5}
N=${4:-50000}
shift $(( $# < 4 ? $# : 4 ))
FLAGS=("$@")
one() {  # one() BIN -> rps of one load round against BIN's serve
  local bin=$1 out pid url r
  out=$(mktemp)
  "$bin" serve --port 0 --strategy cache-aside "${FLAGS[@]}" > "$out" 2>&1 &
  pid=$!
  until grep -q '^try:' "$out" 2>/dev/null; do sleep 0.05; done
  url="$(awk '/^cache-aside/ {print $2}' "$out")/users/1"
  curl -s "$url" > /dev/null
  "$AFTER" load "$url" -n 5000 -c 50 > /dev/null
  r=$("$AFTER" load "$url" -n "$N" -c 50 --json | python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["rps"])')
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true; rm -f "$out"
  echo "$r"
}
bs=(); as=()
for i in $(seq 1 "$ROUNDS"); do
  b=$(one "$BEFORE"); a=$(one "$AFTER")
  echo "round $i: before $b rps | after $a rps"
  bs+=("$b"); as+=("$a")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mb=$(median "${bs[@]}"); ma=$(median "${as[@]}")
awk -v b="$mb" -v a="$ma" 'BEGIN {printf "medians: before %d rps, after %d rps (after/before %.2f)\n", b, a, a / b}'
