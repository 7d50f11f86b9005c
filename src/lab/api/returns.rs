//! The fields of every map a lab function returns, with their units: what `cachelab api`
//! prints under "maps" and `cachelab api --json` lists under `returns`. A field a map
//! gains is one line here; a test compares `load()`'s real map against its entry.

use serde::Serialize;

/// One field of a returned map.
#[derive(Debug, Serialize)]
pub struct Field {
    pub name: &'static str,
    /// `ms`, `s`, `bytes`, `count`, `ratio`, `string`, `bool`, `map`, `array`, ...
    pub unit: &'static str,
    pub doc: &'static str,
}

/// A map some functions return, by how a lab reaches it (`load().timeline[]`).
#[derive(Debug, Serialize)]
pub struct Returned {
    pub map: &'static str,
    pub fields: &'static [Field],
}

const fn f(name: &'static str, unit: &'static str, doc: &'static str) -> Field {
    Field { name, unit, doc }
}

/// Every returned map. `stats()` has one field per counter (listed under "counters").
pub const RETURNS: &[Returned] = &[
    Returned {
        map: "load() / stampede() / load_wait()",
        fields: &[
            f("label", "string", "what the reports call the run"),
            f("requests", "count", "responses and transport failures"),
            f("ok", "count", "responses with a 2xx or 3xx status"),
            f("errors", "count", "requests with no response"),
            f("error_kinds", "map", "errors by kind (\"timeout\", \"connection refused\", ...) → count"),
            f("seed", "int", "the seed the ids were drawn from: give it back to repeat them"),
            f("cancelled", "bool", "stopped before the plan's end"),
            f("duration_ms", "ms", "how long the run took"),
            f("duration_s", "s", "the same in seconds"),
            f("rps", "requests/s", "requests per second over the run"),
            f("average", "ms", "mean latency (also average_ms)"),
            f("fastest", "ms", "fastest response (also fastest_ms)"),
            f("p50", "ms", "median latency (also p50_ms; p10_ms, p25_ms, p75_ms, p95_ms too)"),
            f("p90", "ms", "90th percentile (also p90_ms)"),
            f("p99", "ms", "99th percentile (also p99_ms)"),
            f("p999", "ms", "99.9th percentile (also p999_ms)"),
            f("max", "ms", "slowest response (also max_ms)"),
            f("status", "map", "status code as a string (\"200\") → count: r.status[\"200\"]"),
            f("cache", "map", "X-Cache value (\"HIT\", \"MISS\", \"NEAR\", ...) → count"),
            f("hit_ratio", "ratio", "hits ÷ (hits + misses) of the servers' counters, 0..1"),
            f("bytes", "bytes", "response body bytes"),
            f("mix", "map", "with `mix`: gets, puts (counts)"),
            f("interval_ms", "ms", "the timeline's interval"),
            f("timeline", "array", "one map per interval: see load().timeline[]"),
            f("histogram", "array", "hey's histogram: see load().histogram[]"),
            f("counters", "map", "every server counter's change over the run; each is also a field of its own (hits, misses, db_reads, ...)"),
            f("events", "array", "what the lab did while the run went on: see load().events[]"),
            f("consistency", "map", "with `history: true`: see load().consistency"),
            f("ids", "array", "with `trace: true`: every id requested, in sending order"),
        ],
    },
    Returned {
        map: "load().timeline[]",
        fields: &[
            f("start_ms", "ms", "when the interval began, since the run's start"),
            f("end_ms", "ms", "when it ended (the run's end for a partial last one)"),
            f("partial", "bool", "the run ended inside this interval"),
            f("requests", "count", "requests completed in the interval"),
            f("ok", "count", "of them with a 2xx or 3xx status"),
            f("errors", "count", "of them with no response"),
            f("hits", "count", "X-Cache HIT answers"),
            f("misses", "count", "X-Cache MISS answers"),
            f("stale", "count", "X-Cache STALE answers"),
            f("coalesced", "count", "X-Cache COALESCED answers"),
            f("near_hits", "count", "X-Cache NEAR answers"),
            f("db_reads", "count", "the servers' Postgres reads in the interval"),
            f("p50", "ms", "median latency of the interval's responses (also p50_ms)"),
            f("p99", "ms", "99th percentile of them (also p99_ms)"),
        ],
    },
    Returned {
        map: "load().consistency",
        fields: &[
            f("reads", "count", "successful reads judged"),
            f("stale_reads", "count", "reads of a value already overwritten when they began"),
            f("max_stale_ms", "ms", "how long the stalest read's value had been overwritten"),
            f("unexplained", "count", "reads of values written before the run, not by its own writes"),
            f("examples", "array", "the stalest reads (key, value_read, read_invoke_ms, read_complete_ms, superseded_by, superseded_at_ms, stale_ms)"),
        ],
    },
    Returned {
        map: "load().events[]",
        fields: &[
            f("at_ms", "ms", "since the run's start"),
            f("kind", "string", "fault, heal, pause, restart, stop, start, set_policy, flush or knob"),
            f("what", "string", "what exactly (\"redis down\", \"set_ttl(30)\")"),
        ],
    },
    Returned {
        map: "load().histogram[]",
        fields: &[
            f("upto_ms", "ms", "the bucket's upper bound, as hey labels it"),
            f("responses", "count", "responses slower than the previous bound and at most this"),
        ],
    },
    Returned {
        map: "http_get() / http_put() / http_post() / http_delete() / http_wait()",
        fields: &[
            f("status", "int", "the HTTP status"),
            f("body", "map|string", "the answer, a map when it is JSON"),
            f("cache", "string", "the X-Cache value"),
            f("ms", "ms", "latency"),
        ],
    },
    Returned {
        map: "redis_nodes()[]",
        fields: &[
            f("index", "int", "the node's place (\"redis:<index>\" in faults)"),
            f("address", "string", "host:port"),
            f("port", "int", "its port"),
            f("id", "string", "the cluster node id (\"\" on a single Redis)"),
            f("role", "string", "master or replica"),
            f("up", "bool", "answering and not marked failing"),
            f("slots", "array", "[first, last] slot ranges it serves"),
            f("keys", "count", "keys it holds"),
            f("ops", "count", "commands it processed"),
            f("hits", "count", "its keyspace hits"),
            f("misses", "count", "its keyspace misses"),
            f("used_memory", "bytes", "memory in use"),
        ],
    },
];
