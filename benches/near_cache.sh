#!/usr/bin/env bash
# The near cache's cost and gain, measured against `cachelab serve` (release build):
#  1. CPU per request and throughput of an L1-hit GET vs a Redis-hit GET. Two serve
#     processes side by side, cache-aside only: one with --near-cache off (every GET of
#     users 1..1000 a Redis hit once warm), one with --near-cache tracking (every GET an
#     L1 hit once warm). wrk runs against each in turn, ROUNDS times; the serve process's
#     CPU is read from /proc/PID/stat (utime + stime) before and after each run and divided
#     by the requests wrk made.
#  2. RSS of one instance holding 100k rows in L1: --near-cache ttl, --near-capacity
#     100000, the table grown to 100k users by POSTs, every user read once.
# Prints every round, the medians and the ratios (targets: CPU ≤ 0.6×, throughput ≥ 1.5×,
# RSS ≤ 64 MB).
# Usage: benches/near_cache.sh [rounds] [seconds per wrk run]   (needs wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CACHELAB:-target/release/cachelab}
ROUNDS=${1:-3}
SECS=${2:-5}
TCK=$(getconf CLK_TCK)
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# serve NAME PORT ARGS...: start it and wait for its ready line; sets PID_<NAME>.
serve() {
  local name=$1 port=$2; shift 2
  "$BIN" serve --port "$port" --strategy cache-aside "$@" > "$tmp/$name.out" 2>&1 &
  pids+=($!)
  printf -v "PID_$name" '%s' "$!"
  until grep -q '^try:' "$tmp/$name.out" 2>/dev/null; do sleep 0.05; done
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

cat > "$tmp/ids.lua" <<'LUA'
-- GETs of users 1..1000, uniformly at random.
request = function()
  return wrk.format("GET", "/users/" .. math.random(1, 1000))
end
LUA

serve redis 18810 --near-cache off
serve near 18830 --near-cache tracking
for port in 18810 18830; do
  # Two passes: in tracking mode the first read's own SET is announced back, so a row
  # goes into L1 on its second read.
  for _ in 1 2; do
    "$BIN" load "http://127.0.0.1:$port/users/{id}" --keys sequential --ids 1..1000 -n 1000 -c 8 > /dev/null
  done
done

# run PID PORT: "rps cpu_us_per_request" of one wrk run.
run() {
  local pid=$1 port=$2 before after out requests
  before=$(cpu_ticks "$pid")
  out=$(wrk -t2 -c32 -d"${SECS}s" -s "$tmp/ids.lua" "http://127.0.0.1:$port")
  after=$(cpu_ticks "$pid")
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$out" | awk -v r="$requests" -v t="$((after - before))" -v hz="$TCK" \
    '/Requests\/sec/ {printf "%.0f %.2f\n", $2, t / hz * 1e6 / r}'
}
r_rps=(); r_cpu=(); n_rps=(); n_cpu=()
for i in $(seq 1 "$ROUNDS"); do
  read -r rps cpu < <(run "$PID_redis" 18810); r_rps+=("$rps"); r_cpu+=("$cpu")
  read -r nrps ncpu < <(run "$PID_near" 18830); n_rps+=("$nrps"); n_cpu+=("$ncpu")
  echo "round $i: Redis hit $rps rps, $cpu µs CPU/request | L1 hit $nrps rps, $ncpu µs CPU/request"
done
hits=$(curl -s "http://127.0.0.1:18830/metrics" | awk '/near_hits/ && !/^#/ {print $2}' | head -1)
echo "L1 server near_hits counter: ${hits:-?}"
mr=$(median "${r_rps[@]}"); mrc=$(median "${r_cpu[@]}"); mn=$(median "${n_rps[@]}"); mnc=$(median "${n_cpu[@]}")
echo "medians: Redis hit $mr rps, $mrc µs CPU/request | L1 hit $mn rps, $mnc µs CPU/request"
awk -v a="$mnc" -v b="$mrc" -v c="$mn" -v d="$mr" \
  'BEGIN {printf "L1 hit / Redis hit: CPU per request %.2fx (target <= 0.6x), throughput %.2fx (target >= 1.5x)\n", a / b, c / d}'
kill -INT "$PID_redis" "$PID_near"; wait "$PID_redis" "$PID_near" 2>/dev/null || true
pids=()

# --- RSS with 100k rows in L1 ------------------------------------------------------------
serve big 18850 --near-cache ttl --near-ttl-ms 3600000 --near-capacity 100000
users=$(grep -c '"id"' users.json)
"$BIN" load "http://127.0.0.1:18850/users?name=Bench%20User&email=bench%40example.com" \
  -m POST -n $((100000 - users)) -c 16 > /dev/null
empty=$(rss_kb "$PID_big")
"$BIN" load "http://127.0.0.1:18850/users/{id}" --keys sequential --ids 1..100000 -n 100000 -c 16 > /dev/null
full=$(rss_kb "$PID_big")
check=$(curl -s -D - -o /dev/null http://127.0.0.1:18850/users/100000 | awk 'tolower($1) == "x-cache:" {print $2}' | tr -d '\r')
echo "RSS of one instance: $((empty / 1024)) MB with L1 empty, $((full / 1024)) MB with 100k rows in L1 (user 100000 answered ${check}; target <= 64 MB)"
