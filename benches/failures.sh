#!/usr/bin/env bash
# The failures issue #9 was filed with, replayed against `cachelab serve` (BIN; another
# build can be compared with CACHELAB=...):
#   1. kill -9 of the managed Redis under load: throughput and p50 before and after
#   2. Postgres frozen by SIGSTOP: how long an uncached GET and /health take, and what they say
#   3. kill -9 of the postmaster, then load: how the requests fare, and how many log lines
#   4. 1500 clients that send half a request head: still connected after the idle timeout?
#   5. 20,000 idle connections: does a fresh request still get an answer, and how fast?
# Usage: benches/failures.sh   (build first: cargo build --release; needs python3)
set -uo pipefail
BIN=${CACHELAB:-$(dirname "$0")/../target/release/cachelab}
# The load always comes from this tree's build, so every BIN is measured alike.
LOADER=$(dirname "$0")/../target/release/cachelab
LOG=$(mktemp); OUT=$(mktemp)
cleanup() { [ -n "${SERVE:-}" ] && kill -INT "$SERVE" 2>/dev/null; wait 2>/dev/null; rm -f "$LOG" "$OUT"; }
trap cleanup EXIT

start_serve() {
  : > "$LOG"; : > "$OUT"
  "$BIN" serve --port 0 "$@" > "$OUT" 2> "$LOG" &
  SERVE=$!
  until grep -q '^try:' "$OUT" 2>/dev/null; do sleep 0.05; done
  URL=$(awk '/^cache-aside/ {print $2}' "$OUT")
  RPORT=$(grep -o 'redis-cli -p [0-9]*' "$OUT" | awk '{print $3}')
}
stop_serve() { kill -INT "$SERVE" 2>/dev/null; wait "$SERVE" 2>/dev/null; SERVE=; }
child_pid() {  # the child of SERVE whose command is $1
  for p in $(pgrep -P "$SERVE"); do [ "$(cat /proc/$p/comm)" = "$1" ] && echo "$p"; done | head -1
}
load_json() { "$LOADER" load "$URL/users/{id}" --ids 1..100 -c 20 "$@" --json; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }

echo "== 1. kill -9 of Redis under load"
start_serve
load_json -n 2000 > /dev/null
echo "   before: $(load_json -z 2s | field "['rps']") rps"
kill -9 "$(child_pid redis-server)"
sleep 0.1
during=$(load_json -z 2s)
echo "   right after the kill (2 s): $(echo "$during" | field "['rps']") rps, p50 $(echo "$during" | field "['p50_ms']") ms, p99 $(echo "$during" | field "['p99_ms']") ms, errors $(echo "$during" | field "['errors']")"
sleep 1
after=$(load_json -z 2s)
echo "   a second later: $(echo "$after" | field "['rps']") rps, p50 $(echo "$after" | field "['p50_ms']") ms, X-Cache $(echo "$after" | field "['cache']")"
stop_serve
echo "   log lines: $(wc -l < "$LOG")"

echo "== 2. Postgres frozen by SIGSTOP"
start_serve
PG=$(child_pid postgres)
kill -STOP "$PG"; for p in $(pgrep -P "$PG"); do kill -STOP "$p"; done
t0=$(date +%s%N); code=$(curl -s -o /dev/null -w '%{http_code}' -m 60 "$URL/users/777"); t1=$(date +%s%N)
echo "   uncached GET: $code in $(( (t1 - t0) / 1000000 )) ms"
t0=$(date +%s%N); health=$(curl -s -m 60 -w ' %{http_code}' "$URL/health"); t1=$(date +%s%N)
echo "   /health: $health in $(( (t1 - t0) / 1000000 )) ms"
kill -CONT "$PG"; for p in $(pgrep -P "$PG"); do kill -CONT "$p"; done
stop_serve

echo "== 3. kill -9 of the postmaster, then 3 s of load on uncached users"
start_serve
kill -9 "$(child_pid postgres)"
res=$("$LOADER" load "$URL/users/{id}" --ids 1..1000 -c 20 -z 3s --json)
echo "   $(echo "$res" | field "['requests']") requests: status $(echo "$res" | field "['status']")"
stop_serve
echo "   log: $(wc -l < "$LOG") lines, $(wc -c < "$LOG") bytes; first lines:"
head -3 "$LOG" | sed 's/^/     /'

echo "== 4. 1500 clients sending half a request head (idle timeout 10 s)"
start_serve
python3 - "$URL" <<'PY'
import socket, sys, time
host, port = sys.argv[1].split("//")[1].split(":")
socks = []
for _ in range(1500):
    s = socket.create_connection((host, int(port)))
    s.sendall(b"GET /users/1 HTTP/1.1\r\nHost: x\r\n")  # and never the end of the head
    socks.append(s)
time.sleep(12)
alive = 0
for s in socks:
    s.setblocking(False)
    try:
        alive += 0 if s.recv(1) == b"" else 1
    except BlockingIOError:
        alive += 1
    except OSError:
        pass
print(f"   still connected after 12 s: {alive} of 1500")
PY
stop_serve

echo "== 5. 20,000 idle connections, then one fresh request"
start_serve
python3 - "$URL" <<'PY'
import socket, sys, time, resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
count = min(20000, hard - 100)
print(f"   opening {count} idle connections")
host, port = sys.argv[1].split("//")[1].split(":")
socks = []
for _ in range(count):
    s = socket.socket(); s.setblocking(False)
    try: s.connect((host, int(port)))
    except BlockingIOError: pass
    socks.append(s)
time.sleep(1)
t0 = time.time()
try:
    c = socket.create_connection((host, int(port)), timeout=60)
    c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head = c.recv(100).split(b"\r\n")[0].decode()
    print(f"   fresh request answered '{head}' after {time.time() - t0:.1f} s")
except OSError as e:
    print(f"   fresh request failed after {time.time() - t0:.1f} s: {e}")
PY
stop_serve
