#!/usr/bin/env bash
# Cost of each protection mode on the cache-hit path: `cachelab serve --protection MODE`
# for every mode, then `cachelab load` on one cached user, ROUNDS times each, alternating
# modes within each round. Prints every round and the median requests/s per mode.
# Usage: benches/protection.sh [rounds] [requests]   (build first: cargo build --release)
set -euo pipefail
BIN=${CACHELAB:-$(dirname "$0")/../target/release/cachelab}
ROUNDS=${1:-5}
N=${2:-20000}
MODES=(none singleflight lock xfetch swr)
declare -A rps
for i in $(seq 1 "$ROUNDS"); do
  line="round $i:"
  for mode in "${MODES[@]}"; do
    out=$(mktemp)
    "$BIN" serve --port 0 --strategy cache-aside --protection "$mode" > "$out" 2>&1 &
    pid=$!
    until grep -q '^try:' "$out" 2>/dev/null; do sleep 0.05; done
    url="$(awk '/^cache-aside/ {print $2}' "$out")/users/1"
    curl -s "$url" > /dev/null
    "$BIN" load "$url" -n 2000 -c 50 > /dev/null            # warm up
    r=$("$BIN" load "$url" -n "$N" -c 50 --json | python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["rps"])')
    kill -INT "$pid"; wait "$pid" || true; rm -f "$out"
    rps[$mode]="${rps[$mode]:-} $r"
    line="$line $mode $r"
  done
  echo "$line"
done
median() { printf '%s\n' $1 | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
base=$(median "${rps[none]}")
for mode in "${MODES[@]}"; do
  m=$(median "${rps[$mode]}")
  awk -v mode="$mode" -v m="$m" -v b="$base" 'BEGIN {printf "%-13s median %6d rps  (%.2f of none)\n", mode, m, m / b}'
done
