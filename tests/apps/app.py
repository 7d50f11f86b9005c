"""A small cache-aside web service for cachelab's target-mode tests.

GET /users/{id} reads Redis (key user:{id}), falls back to PostgreSQL on a miss and caches
the row for APP_TTL seconds; PUT /users/{id}?name=... updates the row and deletes the key.
With APP_REDIS_FALLBACK=1 a Redis error is not the reader's problem: the row is read from
PostgreSQL instead. Without it (the naive app) a Redis error is a 500.

Configured by REDIS_URL, DATABASE_URL, APP_TTL and APP_REDIS_FALLBACK; `--port N`.
"""

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import psycopg2
import redis

TTL = int(os.environ.get("APP_TTL", "60"))
FALLBACK = os.environ.get("APP_REDIS_FALLBACK") == "1"
CACHE = redis.Redis.from_url(
    os.environ["REDIS_URL"], socket_timeout=0.5, socket_connect_timeout=0.5
)
local = threading.local()


class DatabaseDown(Exception):
    pass


def db():
    """This thread's Postgres connection (autocommit), opened again after a failure."""
    conn = getattr(local, "conn", None)
    if conn is None or conn.closed:
        try:
            conn = psycopg2.connect(os.environ["DATABASE_URL"], connect_timeout=2)
        except psycopg2.Error as e:
            raise DatabaseDown(str(e)) from e
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = 2000")
        local.conn = conn
    return conn


def query(sql, args):
    try:
        with db().cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchone()
    except psycopg2.Error as e:
        conn = getattr(local, "conn", None)
        if conn is not None:
            conn.close()
        raise DatabaseDown(str(e)) from e


def read_user(uid):
    key = f"user:{uid}"
    try:
        cached = CACHE.get(key)
    except redis.RedisError:
        if not FALLBACK:
            raise
        cached = None
    if cached is not None:
        return json.loads(cached)
    row = query("SELECT id, name, email FROM users WHERE id = %s", (uid,))
    if row is None:
        return None
    user = {"id": row[0], "name": row[1], "email": row[2]}
    try:
        CACHE.set(key, json.dumps(user), ex=TTL)
    except redis.RedisError:
        if not FALLBACK:
            raise
    return user


def write_user(uid, name):
    row = query(
        "UPDATE users SET name = %s WHERE id = %s RETURNING id, name, email", (name, uid)
    )
    if row is None:
        return None
    try:
        CACHE.delete(f"user:{uid}")
    except redis.RedisError:
        if not FALLBACK:
            raise
    return {"id": row[0], "name": row[1], "email": row[2]}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_user(self, work):
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "users" or not parts[1].isdigit():
            return self.answer(404, {"error": "not found"})
        try:
            user = work(int(parts[1]), parse_qs(url.query))
        except DatabaseDown as e:
            return self.answer(503, {"error": f"database: {e}"})
        except redis.RedisError as e:
            return self.answer(500, {"error": f"redis: {e}"})
        if user is None:
            return self.answer(404, {"error": "no such user"})
        self.answer(200, user)

    def do_GET(self):
        self.handle_user(lambda uid, _: read_user(uid))

    def do_PUT(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)

        def put(uid, params):
            return write_user(uid, params.get("name", [""])[0])

        self.handle_user(put)

    def log_message(self, format, *args):
        pass


def main():
    port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 8000
    # A backlog for a burst of connections (socketserver's default is 5).
    ThreadingHTTPServer.request_queue_size = 256
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"listening on 127.0.0.1:{port} (redis fallback: {FALLBACK})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
