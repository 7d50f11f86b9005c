#!/usr/bin/env bash
# Soak of `cachelab serve` (issue 20): 16 workers of mixed GET/PUT/DELETE/POST on all four
# strategies for --minutes (default 10), the managed Redis SIGKILLed and Postgres restarted
# in the middle; then write-behind's queue must drain, and Postgres (and every acknowledged
# answer) is judged against every write. Prints its figures; exits 0 when everything
# agrees, 1 on a violation, a wedged or dead-lettered queue or a fault that did not happen,
# 2 on a set-up error. The program is benches/soak/main.rs, a cargo bench (harness = false):
# this builds the release binary it starts, and the soak, first.
# Usage: benches/soak.sh [--minutes M] [--workers N] [--seed S] [--no-faults] [--show N]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench soak -- "$@"
