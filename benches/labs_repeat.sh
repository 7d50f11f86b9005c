#!/usr/bin/env bash
# Reliability and wall time of the shipped labs: each lab N times in a row, then the whole
# folder FOLDER_RUNS times (default 3; with BUSY=1 while another process keeps one core
# busy). Wall times include starting and tearing down the managed stack.
# With KEEP=DIR, every run's --json report is kept as DIR/<lab>-<i>.json (and a folder
# run's as DIR/folder-<i>.json), to read the spread of what the labs measured (the
# thresholds they check are picked from it).
# Usage: [KEEP=DIR] [FOLDER_RUNS=n] [BUSY=1] benches/labs_repeat.sh [times] [labs...]
#   e.g. FOLDER_RUNS=20 BUSY=1 benches/labs_repeat.sh 0   (only the whole-folder runs)
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${CACHELAB:-target/release/cachelab}
TIMES=${1:-10}
shift || true
LABS=("$@")
[ ${#LABS[@]} -eq 0 ] && LABS=(labs/*.rhai)
[ -n "${KEEP:-}" ] && mkdir -p "$KEEP"
FOLDER_RUNS=${FOLDER_RUNS:-3}
[ "$TIMES" -gt 0 ] || LABS=()
for lab in "${LABS[@]}"; do
  pass=0; times=()
  for i in $(seq 1 "$TIMES"); do
    json=()
    [ -n "${KEEP:-}" ] && json=(--json "$KEEP/$(basename "$lab" .rhai)-$i.json")
    t0=$(date +%s%N)
    if "$BIN" run "$lab" "${json[@]}" > /dev/null 2>&1; then pass=$((pass + 1)); fi
    times+=("$(( ($(date +%s%N) - t0) / 1000000 ))")
  done
  sorted=($(printf '%s\n' "${times[@]}" | sort -n))
  median=${sorted[$(( ${#sorted[@]} / 2 ))]}
  echo "$lab: $pass/$TIMES passed; wall ms: median $median, min ${sorted[0]}, max ${sorted[-1]}; ${times[*]}"
done
busy=
if [ -n "${BUSY:-}" ] && [ "$FOLDER_RUNS" -gt 0 ]; then
  yes > /dev/null &
  busy=$!
  trap 'kill $busy 2>/dev/null' EXIT
fi
folder_pass=0; folder_times=()
for i in $(seq 1 "$FOLDER_RUNS"); do
  json=()
  [ -n "${KEEP:-}" ] && json=(--json "$KEEP/folder-$i.json")
  t0=$(date +%s%N)
  "$BIN" run labs/ "${json[@]}" > /dev/null 2>&1; code=$?
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  [ "$code" -eq 0 ] && folder_pass=$((folder_pass + 1))
  folder_times+=("$ms")
  echo "run labs/${busy:+ (one core kept busy)}: exit $code, wall $ms ms"
done
if [ "$FOLDER_RUNS" -gt 0 ]; then
  sorted=($(printf '%s\n' "${folder_times[@]}" | sort -n))
  echo "run labs/: $folder_pass/$FOLDER_RUNS passed; wall ms: median ${sorted[$(( ${#sorted[@]} / 2 ))]}, min ${sorted[0]}, max ${sorted[-1]}"
fi
