#!/usr/bin/env bash
# The observing proxies' overhead (target mode): redis-benchmark -t get,set -P 1 -c 50 and
# pgbench -S -c 8, each direct and through the proxy, in one run; prints each ratio. The
# targets (medians of 5 runs): pgbench proxied >= 0.7 x direct; the Redis proxy on a par
# with haproxy (TCP mode) on the same path, its throughput and its CPU per request each
# within 10% of haproxy's, since on a machine whose cores redis-benchmark and Redis
# already fill no relay keeps 0.7 x direct over TCP (README, "Overhead"). Uses a
# throw-away redis-server on a free port and a scratch database on the machine's Postgres
# (127.0.0.1:5432, user postgres), dropped at the end. The CPU per request (from /proc) of
# redis-server and redis-benchmark in the direct run, and of each relay, is printed too:
# on such a machine a relay's CPU is what the proxied run loses. The Redis proxy runs
# twice: to Redis over TCP (an external [redis]) and over its Unix socket (the managed
# Redis). Peers in the same run, when installed: socat and haproxy.
# Build first: cargo build --release --example proxy_overhead
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/examples/proxy_overhead
[ -x "$bin" ] || { echo "build first: cargo build --release --example proxy_overhead" >&2; exit 2; }
REQUESTS=${REQUESTS:-200000}
SECONDS_PG=${SECONDS_PG:-10}
PG="-h 127.0.0.1 -p 5432 -U postgres"
db=cachelab_proxy_bench_$$
tmp=$(mktemp -d)
# Every process this script starts is ended on the way out, whatever the way.
pids=()
cleanup() {
  exec 3>&- 4>&- || true
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null
  wait 2>/dev/null
  psql $PG -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
fail() { echo "proxy_overhead: $*" >&2; exit 1; }
# until WHAT COMMAND...: retry COMMAND for up to 5 s, then fail naming WHAT.
until_up() {
  local what=$1; shift
  for _ in $(seq 50); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "$what did not come up"
}
port=$(free_port)

redis-server --port "$port" --bind 127.0.0.1 --unixsocket "$tmp/redis.sock" --unixsocketperm 700 \
  --save '' --appendonly no --dir "$tmp" --daemonize no >"$tmp/redis.log" 2>&1 &
pids+=($!); redis_pid=$!
until_up "redis-server on $port" redis-cli -p "$port" ping
until_up "redis-server's socket" redis-cli -s "$tmp/redis.sock" ping
psql $PG -qc "CREATE DATABASE $db" >/dev/null || fail "cannot create the scratch database"
# PLAIN=1: the labs' fault proxy instead (no decoding, on the worker pool).
# Two proxies: one reaches Redis over TCP (an external [redis]), one over its Unix socket
# (what target mode does with the Redis it starts itself). Each runs until its stdin ends.
exec 3> >(exec "$bin" "127.0.0.1:$port" 127.0.0.1:5432 ${PLAIN:+--plain} >"$tmp/proxy.out")
proxy_pid=$!; pids+=($!)
exec 4> >(exec "$bin" "unix:$tmp/redis.sock" 127.0.0.1:5432 ${PLAIN:+--plain} >"$tmp/proxy-unix.out")
unix_proxy_pid=$!; pids+=($!)
for out in proxy proxy-unix; do
  until_up "the $out example" grep -q '^postgres ' "$tmp/$out.out"
done
redis_proxy=$(awk '/^redis /{print $2}' "$tmp/proxy.out")
unix_proxy=$(awk '/^redis /{print $2}' "$tmp/proxy-unix.out")
pg_proxy=$(awk '/^postgres /{print $2}' "$tmp/proxy.out")
pgbench $PG -i -s 1 -q "$db" >/dev/null 2>&1

rb() { # host port -> "get set" requests per second, then the CPU ticks redis-benchmark used
  ( # This subshell's children's ticks (/proc: cutime + cstime) are redis-benchmark's.
    me=$BASHPID
    figures=$(redis-benchmark -h "$1" -p "$2" -t get,set -P 1 -c 50 -n "$REQUESTS" -q 2>/dev/null |
      tr '\r' '\n' | awk '$2 ~ /^[0-9.]+$/ && $3 == "requests" {
        if ($1 == "SET:") set = int($2); if ($1 == "GET:") get = int($2) } END { print get, set }')
    echo "$figures $(awk '{print $16 + $17}' "/proc/$me/stat")"
  )
}
pb() { # host port -> transactions per second
  pgbench -h "$1" -p "$2" -U postgres -S -c 8 -j 2 -T "$SECONDS_PG" "$db" 2>/dev/null |
    awk '/^tps/{print int($3)}'
}
# CPU per request (user + system, from /proc): what the hop costs whatever the machine.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
per_request() { # ticks before, after, requests -> microseconds
  awk -v a="$1" -v b="$2" -v n="$3" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.1f", (b - a) * 1e6 / hz / n}'
}
r0=$(ticks "$redis_pid")
read -r d_get d_set b_ticks < <(rb 127.0.0.1 "$port")
[ -n "$d_get" ] && [ -n "$d_set" ] || fail "redis-benchmark direct gave no figures"
r1=$(ticks "$redis_pid"); x0=$(ticks "$proxy_pid")
read -r p_get p_set _ < <(rb "${redis_proxy%:*}" "${redis_proxy##*:}")
[ -n "$p_get" ] && [ -n "$p_set" ] || fail "redis-benchmark through the proxy gave no figures"
x1=$(ticks "$proxy_pid"); u0=$(ticks "$unix_proxy_pid")
read -r u_get u_set _ < <(rb "${unix_proxy%:*}" "${unix_proxy##*:}")
[ -n "$u_get" ] && [ -n "$u_set" ] || fail "redis-benchmark through the proxy to the socket gave no figures"
u1=$(ticks "$unix_proxy_pid")
# A peer: the same hop through socat (a plain TCP relay, no decoding), when installed, to
# tell the cost of any extra hop on this machine from the cost of ours.
s_get=-; s_set=-
if command -v socat >/dev/null 2>&1; then
  sport=$(free_port)
  socat "TCP-LISTEN:$sport,bind=127.0.0.1,fork,reuseaddr" "TCP:127.0.0.1:$port" &
  socat_pid=$!; pids+=($!)
  until_up "socat on $sport" redis-cli -p "$sport" ping
  read -r s_get s_set _ < <(rb 127.0.0.1 "$sport")
  kill "$socat_pid" 2>/dev/null || true
fi
# The strongest peer: haproxy in TCP mode (a C relay built for this), when installed, to
# Redis over TCP and over its Unix socket, as our two proxies.
h_get=-; h_set=-; hu_get=-; hu_set=-
if command -v haproxy >/dev/null 2>&1; then
  hport=$(free_port); huport=$(free_port)
  cat >"$tmp/haproxy.cfg" <<CFG
global
  nbthread 2
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
listen tcp
  bind 127.0.0.1:$hport
  server redis 127.0.0.1:$port
listen unix
  bind 127.0.0.1:$huport
  server redis $tmp/redis.sock
CFG
  haproxy -f "$tmp/haproxy.cfg" -db >"$tmp/haproxy.log" 2>&1 &
  haproxy_pid=$!; pids+=($!)
  until_up "haproxy on $hport" redis-cli -p "$hport" ping
  until_up "haproxy on $huport" redis-cli -p "$huport" ping
  h0=$(ticks "$haproxy_pid")
  read -r h_get h_set _ < <(rb 127.0.0.1 "$hport")
  h1=$(ticks "$haproxy_pid")
  read -r hu_get hu_set _ < <(rb 127.0.0.1 "$huport")
  h2=$(ticks "$haproxy_pid")
  kill "$haproxy_pid" 2>/dev/null || true
fi
d_pg=$(pb 127.0.0.1 5432)
p_pg=$(pb "${pg_proxy%:*}" "${pg_proxy##*:}")
ratio() { # direct proxied -> proxied / direct, or "-" when a run gave no figure
  [ -n "$2" ] || { echo -; return; }
  awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b/a}'
}
# "vs haproxy": the proxy's figure against haproxy's on the same path ("-" without haproxy).
# The Redis proxy's target: within 10% of haproxy's throughput and CPU per request.
vs() { [ "$2" != - ] && ratio "$2" "$1" || echo -; }
n=$((2 * REQUESTS))
x_cpu=$(per_request "$x0" "$x1" $n); u_cpu=$(per_request "$u0" "$u1" $n)
h_cpu=-; hu_cpu=-
if [ "$h_get" != - ]; then
  h_cpu=$(per_request "$h0" "$h1" $n); hu_cpu=$(per_request "$h1" "$h2" $n)
fi
row() { printf '%-34s %12s %12s %7s %11s\n' "$@"; }
row "benchmark" "direct" "proxied" "ratio" "vs haproxy"
row "redis-benchmark GET -P 1 -c 50" "$d_get" "$p_get" "$(ratio "$d_get" "$p_get")" "$(vs "$p_get" "$h_get")"
row "redis-benchmark SET -P 1 -c 50" "$d_set" "$p_set" "$(ratio "$d_set" "$p_set")" "$(vs "$p_set" "$h_set")"
row "GET, proxy to Redis' Unix socket" "$d_get" "$u_get" "$(ratio "$d_get" "$u_get")" "$(vs "$u_get" "$hu_get")"
row "SET, proxy to Redis' Unix socket" "$d_set" "$u_set" "$(ratio "$d_set" "$u_set")" "$(vs "$u_set" "$hu_set")"
row "pgbench -S -c 8 (tps)" "$d_pg" "$p_pg" "$(ratio "$d_pg" "$p_pg")" ""
# CPU per request (user + system), GET and SET together. The direct run's two processes
# are what any relay adds to, from the same cores.
row "CPU per request (us), direct run" "" "" "" ""
row "  redis-server, redis-benchmark" "$(per_request "$r0" "$r1" $n)" "$(per_request 0 "$b_ticks" $n)" "" ""
row "CPU per request (us), the relay" "" "proxy" "" "vs haproxy"
row "  to Redis over TCP" "" "$x_cpu" "" "$(vs "$x_cpu" "$h_cpu")"
row "  to Redis' Unix socket" "" "$u_cpu" "" "$(vs "$u_cpu" "$hu_cpu")"
if [ "$s_get" != - ]; then
  row "peer: socat relay, GET" "$d_get" "$s_get" "$(ratio "$d_get" "$s_get")"
  row "peer: socat relay, SET" "$d_set" "$s_set" "$(ratio "$d_set" "$s_set")"
fi
if [ "$h_get" != - ]; then
  row "peer: haproxy, GET" "$d_get" "$h_get" "$(ratio "$d_get" "$h_get")"
  row "peer: haproxy, SET" "$d_set" "$h_set" "$(ratio "$d_set" "$h_set")"
  row "peer: haproxy to the socket, GET" "$d_get" "$hu_get" "$(ratio "$d_get" "$hu_get")"
  row "peer: haproxy to the socket, SET" "$d_set" "$hu_set" "$(ratio "$d_set" "$hu_set")"
  row "peer: haproxy CPU per request (us)" "" "tcp $h_cpu" "" "unix $hu_cpu"
fi
