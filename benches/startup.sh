#!/usr/bin/env bash
# Managed-stack start-up: time from spawning `cachelab serve` to its ready line, once cold
# (no cached template cluster) and N times warm; prints each and the warm median.
# Usage: benches/startup.sh [warm-runs]   (builds nothing: run `cargo build --release` first)
set -euo pipefail
BIN=${CACHELAB:-$(dirname "$0")/../target/release/cachelab}
RUNS=${1:-7}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

start_once() {
  local port=$1 t0 t1
  t0=$(date +%s%N)
  "$BIN" serve --port "$port" > "$out" 2>&1 &
  local pid=$!
  until grep -q '^try:' "$out" 2>/dev/null; do sleep 0.002; done
  t1=$(date +%s%N)
  kill -INT "$pid"; wait "$pid"
  echo $(( (t1 - t0) / 1000000 ))
}

rm -rf "${XDG_CACHE_HOME:-$HOME/.cache}/cachelab"
echo "cold start: $(start_once 18600) ms"
warm=()
for i in $(seq 1 "$RUNS"); do warm+=("$(start_once $((18600 + 2 * i)))"); done
echo "warm starts (ms): ${warm[*]}"
printf '%s\n' "${warm[@]}" | sort -n | awk '{a[NR]=$1} END {print "warm median: " a[int((NR+1)/2)] " ms"}'
