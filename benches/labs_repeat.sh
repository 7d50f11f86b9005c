#!/usr/bin/env bash
# Reliability and wall time of the shipped labs: each lab N times in a row, then the whole
# folder three times. Wall times include starting and tearing down the managed stack.
# With KEEP=DIR, every run's --json report is kept as DIR/<lab>-<i>.json, to read the
# spread of what the labs measured (the thresholds they check are picked from it).
# Usage: [KEEP=DIR] benches/labs_repeat.sh [times] [labs...]
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${CACHELAB:-target/release/cachelab}
TIMES=${1:-10}
shift || true
LABS=("$@")
[ ${#LABS[@]} -eq 0 ] && LABS=(labs/*.rhai)
[ -n "${KEEP:-}" ] && mkdir -p "$KEEP"
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
for _ in 1 2 3; do
  t0=$(date +%s%N)
  "$BIN" run labs/ > /dev/null 2>&1; code=$?
  echo "run labs/: exit $code, wall $(( ($(date +%s%N) - t0) / 1000000 )) ms"
done
