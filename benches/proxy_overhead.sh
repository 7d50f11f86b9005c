#!/usr/bin/env bash
# The observing proxies' overhead (target mode): redis-benchmark -t get,set -P 1 -c 50 and
# pgbench -S -c 8, each direct and through the proxy, in one run; prints each ratio. The
# targets (medians of 5 runs): proxied >= 0.7 x direct for pgbench and, to the managed
# Redis' Unix socket, for redis-benchmark; to Redis over TCP, the proxy's CPU per request
# no more than haproxy's (TCP mode) on the same path, as neither relay keeps 0.7 x direct
# there on a machine whose cores redis-benchmark and Redis already fill (README,
# "Overhead"). Uses a throw-away redis-server on a free port and a scratch database on the
# machine's Postgres (127.0.0.1:5432, user postgres), dropped at the end. Every
# redis-benchmark run also gives the CPU per request (from /proc) of redis-server,
# redis-benchmark and the relay: on such a machine a relay's CPU is what the proxied run
# loses. The Redis proxy runs twice: to Redis over TCP (an external [redis]) and over its
# Unix socket (the managed Redis). Peers in the same run, when installed: socat and
# haproxy.
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
# PLAIN=1: the fault proxy the labs in labs/ use instead (no decoding, on the worker pool).
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

pb() { # host port -> transactions per second
  pgbench -h "$1" -p "$2" -U postgres -S -c 8 -j 2 -T "$SECONDS_PG" "$db" 2>/dev/null |
    awk '/^tps/{print int($3)}'
}
# CPU (user + system ticks, from /proc) of a running process.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
per_request() { # ticks, requests -> microseconds, or "-"
  [ "$1" != - ] || { echo -; return; }
  awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.1f", t * 1e6 / hz / n}'
}
# rb NAME HOST PORT [RELAY_PID]: redis-benchmark through HOST:PORT. Sets NAME_get and
# NAME_set (requests per second, "-" when the run gave none) and NAME_cpu: the CPU per
# request of redis-server, redis-benchmark and the relay (if any), and their sum.
rb() {
  local name=$1 host=$2 port=$3 relay=${4:-} r0 x0 x=- out figures get set bench
  r0=$(ticks "$redis_pid"); [ -n "$relay" ] && x0=$(ticks "$relay")
  # A subshell's children's ticks (/proc: cutime + cstime) are redis-benchmark's.
  out=$(
    me=$BASHPID
    figures=$(redis-benchmark -h "$host" -p "$port" -t get,set -P 1 -c 50 -n "$REQUESTS" -q \
      2>/dev/null | tr '\r' '\n' | awk '$2 ~ /^[0-9.]+$/ && $3 == "requests" {
        if ($1 == "SET:") set = int($2); if ($1 == "GET:") get = int($2) }
        END { print (get == "" ? "-" : get), (set == "" ? "-" : set) }') || true
    echo "$figures $(awk '{print $16 + $17}' "/proc/$me/stat")"
  )
  read -r get set bench <<<"$out"
  [ -n "$relay" ] && x=$(($(ticks "$relay") - x0))
  local n=$((2 * REQUESTS)) redis=$(($(ticks "$redis_pid") - r0))
  printf -v "${name}_get" %s "$get"
  printf -v "${name}_set" %s "$set"
  printf -v "${name}_cpu" '%s %s %s %s' "$(per_request "$redis" $n)" \
    "$(per_request "$bench" $n)" "$(per_request "$x" $n)" \
    "$(per_request $((redis + bench + ${x/-/0})) $n)"
}
rb d 127.0.0.1 "$port"
[ "$d_get" != - ] && [ "$d_set" != - ] || fail "redis-benchmark direct gave no figures"
rb p "${redis_proxy%:*}" "${redis_proxy##*:}" "$proxy_pid"
[ "$p_get" != - ] && [ "$p_set" != - ] || fail "redis-benchmark through the proxy gave no figures"
rb u "${unix_proxy%:*}" "${unix_proxy##*:}" "$unix_proxy_pid"
[ "$u_get" != - ] && [ "$u_set" != - ] ||
  fail "redis-benchmark through the proxy to the socket gave no figures"
# A peer: the same hop through socat (a plain TCP relay, no decoding), when installed, to
# tell the cost of any extra hop on this machine from the cost of ours.
s_get=-; s_set=-
if command -v socat >/dev/null 2>&1; then
  sport=$(free_port)
  socat "TCP-LISTEN:$sport,bind=127.0.0.1,fork,reuseaddr" "TCP:127.0.0.1:$port" &
  socat_pid=$!; pids+=($!)
  until_up "socat on $sport" redis-cli -p "$sport" ping
  rb s 127.0.0.1 "$sport"
  kill "$socat_pid" 2>/dev/null || true
fi
# The strongest peer: haproxy in TCP mode (a C relay built for this), when installed, to
# Redis over TCP and over its Unix socket, as our two proxies. Two threads: its default on
# a 2-core machine.
h_get=-; h_set=-; hu_get=-; hu_set=-; h_cpu="- - - -"; hu_cpu="- - - -"
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
  rb h 127.0.0.1 "$hport" "$haproxy_pid"
  rb hu 127.0.0.1 "$huport" "$haproxy_pid"
  kill "$haproxy_pid" 2>/dev/null || true
fi
d_pg=$(pb 127.0.0.1 5432)
p_pg=$(pb "${pg_proxy%:*}" "${pg_proxy##*:}")
ratio() { # base figure -> figure / base, or "-" when either is missing
  case "$1,$2" in ,* | *, | -,* | *,-) echo -; return ;; esac
  awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b/a}'
}
row() { printf '%-34s %10s %10s %7s %11s\n' "$@"; }
# "vs haproxy": the proxy's throughput over haproxy's on the same path ("-" without
# haproxy), to compare the relays; the target over TCP is about CPU (the last line).
row "requests per second" "direct" "proxied" "ratio" "vs haproxy"
row "redis-benchmark GET -P 1 -c 50" "$d_get" "$p_get" "$(ratio "$d_get" "$p_get")" "$(ratio "$h_get" "$p_get")"
row "redis-benchmark SET -P 1 -c 50" "$d_set" "$p_set" "$(ratio "$d_set" "$p_set")" "$(ratio "$h_set" "$p_set")"
row "GET, proxy to Redis' Unix socket" "$d_get" "$u_get" "$(ratio "$d_get" "$u_get")" "$(ratio "$hu_get" "$u_get")"
row "SET, proxy to Redis' Unix socket" "$d_set" "$u_set" "$(ratio "$d_set" "$u_set")" "$(ratio "$hu_set" "$u_set")"
row "pgbench -S -c 8 (tps)" "$d_pg" "$p_pg" "$(ratio "$d_pg" "$p_pg")" ""
for peer in s:socat h:haproxy hu:"haproxy to the socket"; do
  v=${peer%%:*}; label=${peer#*:}; get=${v}_get; set=${v}_set
  [ "${!get}" != - ] || continue
  row "peer: $label, GET" "$d_get" "${!get}" "$(ratio "$d_get" "${!get}")" ""
  row "peer: $label, SET" "$d_set" "${!set}" "$(ratio "$d_set" "${!set}")" ""
done
# Where the CPU went, per request (GET and SET together): on a machine whose cores the
# benchmark fills, the relay's share is what the proxied run loses.
cpu() { printf '%-34s %10s %10s %7s %11s\n' "$@"; }
echo
cpu "CPU per request (us)" "redis" "benchmark" "relay" "all three"
cpu "direct" $d_cpu
cpu "proxy, to Redis over TCP" $p_cpu
cpu "proxy, to Redis' Unix socket" $u_cpu
if [ "$h_get" != - ]; then
  cpu "haproxy, to Redis over TCP" $h_cpu
  cpu "haproxy, to Redis' Unix socket" $hu_cpu
fi
relay() { set -- $1; echo "$3"; }
echo "proxy's CPU per request over haproxy's: to TCP $(ratio "$(relay "$h_cpu")" "$(relay "$p_cpu")"), to the socket $(ratio "$(relay "$hu_cpu")" "$(relay "$u_cpu")") (lower is cheaper)"
