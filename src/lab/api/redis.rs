//! Looking inside Redis and changing its eviction settings. Destructive calls (FLUSHALL,
//! CONFIG SET, ...) against an external Redis need `--allow-flush`; without it they are an
//! error, never a wipe.
//!
//! On a Redis Cluster a lab sees one Redis: commands with a key go to the master owning
//! it, `redis_info()` adds the masters' figures up, `flush()` and `set_policy()` apply to
//! every master, and `redis_nodes()` shows how the work is shared among them.

use rhai::{Array, Dynamic, Map};

use super::{def, Registry};
use crate::cache::info::{caps_sharing, parse_size, Info, InfoValue, SIZE_EXAMPLES};
use crate::cache::RedisConn;
use crate::lab::context::{self, LabContext};
use crate::lab::convert::{arg_array, arg_count, arg_str, lab_error, to_json, LabResult};

/// Eviction policies `set_policy` accepts.
const POLICIES: &[&str] = &[
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
];

pub fn register(r: &mut Registry) {
    def!(
        r,
        "redis",
        "redis_info() -> map",
        "INFO (the default sections) as a map; numeric fields are numbers, e.g. redis_info().used_memory. On a cluster, amounts are summed over the masters.",
        || -> LabResult<Map> { info(None) }
    );
    def!(
        r,
        "redis",
        "redis_info(section: string) -> map",
        "One INFO section (\"memory\", \"stats\", \"keyspace\", ...) as a map.",
        |section: Dynamic| -> LabResult<Map> {
            info(Some(arg_str("redis_info", "section", &section)?))
        }
    );
    def!(r, "redis", "redis(args: array) -> any",
        "A Redis command on the lab's own connection, e.g. redis([\"SET\", \"k\", \"v\", \"EX\", 5]); commands that would break or expose the stack are refused (see README, Safety).",
        |args: Dynamic| -> LabResult<Dynamic> {
            let args = arg_array("redis", "args", &args)?;
            let words: Vec<String> = args
                .iter()
                .map(|a| match to_json(a) {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect();
            let Some(command) = words.first() else {
                return Err(lab_error("redis: argument `args` must name a command, e.g. [\"PING\"]"));
            };
            let upper = command.to_uppercase();
            context::with(|ctx| {
                ctx.guard_redis(&words)?;
                let mut cmd = redis::cmd(&upper);
                for word in &words[1..] {
                    cmd.arg(word);
                }
                let value: redis::Value = query(ctx, cmd)?;
                Ok(from_redis(value))
            })
        });
    def!(
        r,
        "redis",
        "redis_get(key: string) -> string",
        "GET a key: its value as a string, or () when absent.",
        |key: Dynamic| -> LabResult<Dynamic> {
            let key = arg_str("redis_get", "key", &key)?;
            context::with(|ctx| {
                let value: Option<Vec<u8>> = query(ctx, redis::cmd("GET").arg(&key).clone())?;
                Ok(value.map_or(Dynamic::UNIT, |v| {
                    String::from_utf8_lossy(&v).into_owned().into()
                }))
            })
        }
    );
    def!(
        r,
        "redis",
        "redis_ttl(key: string) -> int",
        "TTL of a key in seconds (-1 no expiry, -2 no such key).",
        |key: Dynamic| -> LabResult<i64> {
            let key = arg_str("redis_ttl", "key", &key)?;
            context::with(|ctx| query(ctx, redis::cmd("TTL").arg(&key).clone()))
        }
    );
    def!(
        r,
        "redis",
        "redis_keys(pattern: string) -> array",
        "Keys matching a glob pattern (via SCAN, sorted), e.g. redis_keys(\"user:*\").",
        |pattern: Dynamic| -> LabResult<Array> {
            let pattern = arg_str("redis_keys", "pattern", &pattern)?;
            context::with(|ctx| {
                let scan = |pattern: String| -> LabResult<redis::RedisResult<Vec<String>>> {
                    let mut conn = ctx.redis()?;
                    ctx.block_on(async move { conn.scan_keys(&pattern).await })
                };
                // A connection that died with a Redis the lab restarted is opened again once.
                let keys = match scan(pattern.clone())? {
                    Ok(keys) => keys,
                    Err(_) => {
                        ctx.forget_redis();
                        scan(pattern)?.map_err(|e| lab_error(format!("redis: {e}")))?
                    }
                };
                Ok(keys.into_iter().map(Dynamic::from).collect())
            })
        }
    );
    def!(
        r,
        "redis",
        "redis_nodes() -> array",
        "Each Redis node: #{index, address, port, id, role, up, slots ([[first, last], ...]), keys, ops (commands since the lab began), hits, misses, used_memory}; a single Redis is one node without slots.",
        || -> LabResult<Array> { context::with(nodes) }
    );
    def!(r, "redis", "set_policy(policy: string)",
        "CONFIG SET maxmemory-policy (noeviction, allkeys-lru, allkeys-lfu, allkeys-random, volatile-*); on every master of a cluster.",
        |policy: Dynamic| -> LabResult<()> {
            let policy = arg_str("set_policy", "policy", &policy)?;
            context::with(|ctx| set_policy(ctx, &policy, None))
        });
    def!(
        r,
        "redis",
        "set_policy(policy: string, maxmemory: int|string)",
        "CONFIG SET maxmemory-policy and maxmemory together; maxmemory in bytes or a Redis size such as \"2mb\" or \"1gb\". On a cluster maxmemory is the total: the room above what the masters use now is shared evenly among them.",
        |policy: Dynamic, maxmemory: Dynamic| -> LabResult<()> {
            let policy = arg_str("set_policy", "policy", &policy)?;
            let bytes = if maxmemory.is_string() {
                let text = arg_str("set_policy", "maxmemory", &maxmemory)?;
                parse_size(&text).ok_or_else(|| {
                    lab_error(format!(
                        "set_policy: {text:?} is not a Redis size (e.g. {SIZE_EXAMPLES})"
                    ))
                })?
            } else {
                arg_count("set_policy", "maxmemory", &maxmemory)?
            };
            context::with(|ctx| set_policy(ctx, &policy, Some(bytes)))
        }
    );
    def!(
        r,
        "redis",
        "flush()",
        "FLUSHALL (on every master of a cluster) and zero every server's counters.",
        || -> LabResult<()> {
            context::with(|ctx| {
                ensure_may_flush(ctx, "flush()")?;
                on_every_master::<()>(ctx, |_, _| Some(redis::cmd("FLUSHALL")))?;
                for instance in ctx.services.all_instances() {
                    instance.backend.counters.reset();
                }
                Ok(())
            })
        }
    );
}

fn ensure_may_flush(ctx: &LabContext, what: &str) -> LabResult<()> {
    if ctx.services.stack.may_flush_redis {
        Ok(())
    } else {
        Err(lab_error(format!(
            "{what} would change an external Redis; rerun with --allow-flush if that Redis may be wiped"
        )))
    }
}

/// Run `cmd` on the lab's connection. A connection that died with its Redis (a restart
/// the lab asked for) is opened again once.
fn query<T: redis::FromRedisValue>(ctx: &LabContext, cmd: redis::Cmd) -> LabResult<T> {
    let mut conn = ctx.redis()?;
    let once = cmd.clone();
    match ctx.block_on(async move { once.query_async::<T>(&mut conn).await })? {
        Err(e)
            if e.is_connection_dropped()
                || e.is_io_error()
                || e.is_cluster_error()
                || e.kind() == redis::ErrorKind::ClusterConnectionNotFound =>
        {
            ctx.forget_redis();
            let mut conn = ctx.redis()?;
            ctx.block_on(async move { cmd.query_async::<T>(&mut conn).await })?
                .map_err(|e| lab_error(format!("redis: {e}")))
        }
        other => other.map_err(|e| lab_error(format!("redis: {e}"))),
    }
}

/// Run the command `make(i, count)` gives on each of the `count` masters (the single node
/// is one master), one after the other; their answers in master order.
fn on_every_master<T: redis::FromRedisValue + Send + 'static>(
    ctx: &LabContext,
    make: impl Fn(usize, usize) -> Option<redis::Cmd>,
) -> LabResult<Vec<T>> {
    let mut conn = ctx.redis()?;
    let masters = ctx
        .block_on({
            let mut conn = conn.clone();
            async move { conn.masters().await }
        })?
        .map_err(|e| lab_error(format!("redis: {e}")))?;
    let count = masters.len();
    let mut answers = Vec::with_capacity(count);
    for (i, master) in masters.into_iter().enumerate() {
        let Some(cmd) = make(i, count) else { continue };
        let answer = ctx
            .block_on(async { conn.on_node::<T>(master.as_deref(), &cmd).await })?
            .map_err(|e| match &master {
                Some(addr) => lab_error(format!("redis: node {addr}: {e}")),
                None => lab_error(format!("redis: {e}")),
            })?;
        answers.push(answer);
    }
    Ok(answers)
}

fn set_policy(ctx: &LabContext, policy: &str, maxmemory: Option<u64>) -> LabResult<()> {
    if !POLICIES.contains(&policy) {
        return Err(lab_error(format!(
            "set_policy: argument `policy` must be one of {}, got {policy:?}",
            POLICIES.join(", ")
        )));
    }
    ensure_may_flush(ctx, "set_policy()")?;
    on_every_master::<()>(ctx, |_, _| {
        Some(
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("maxmemory-policy")
                .arg(policy)
                .clone(),
        )
    })?;
    if let Some(total) = maxmemory {
        let caps = if total == 0 {
            vec![0]
        } else {
            let texts: Vec<String> =
                on_every_master(ctx, |_, _| Some(redis::cmd("INFO").arg("memory").clone()))?;
            let used: Vec<u64> = texts
                .iter()
                .map(|t| Info::parse(t).int("used_memory").unwrap_or(0) as u64)
                .collect();
            caps_sharing(total, &used)
        };
        on_every_master::<()>(ctx, |i, _| {
            let cap = caps.get(i).or(caps.last()).copied().unwrap_or(0);
            Some(
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("maxmemory")
                    .arg(cap)
                    .clone(),
            )
        })?;
    }
    Ok(())
}

fn info(section: Option<String>) -> LabResult<Map> {
    context::with(|ctx| {
        let texts: Vec<String> = on_every_master(ctx, |_, _| {
            let mut cmd = redis::cmd("INFO");
            if let Some(s) = &section {
                cmd.arg(s);
            }
            Some(cmd)
        })?;
        let infos: Vec<Info> = texts.iter().map(|t| Info::parse(t)).collect();
        Ok(info_map(Info::sum(infos)))
    })
}

/// Each node as `redis_nodes()` shows it.
fn nodes(ctx: &LabContext) -> LabResult<Array> {
    let mut conn = ctx.redis()?;
    let listed = ctx
        .block_on({
            let mut conn = conn.clone();
            async move { conn.cluster_nodes().await }
        })?
        .map_err(|e| lab_error(format!("redis_nodes: {e}")))?;
    let listed: Vec<(Option<crate::cache::ClusterNode>, String)> = match listed {
        Some(nodes) => nodes
            .into_iter()
            .map(|n| {
                let addr = n.addr.clone();
                (Some(n), addr)
            })
            .collect(),
        None => {
            let addr = crate::stack::endpoint::authority(&ctx.services.stack.redis_url, 6379)
                .unwrap_or_default();
            vec![(None, addr)]
        }
    };
    let mut out = Array::new();
    for (index, (node, addr)) in listed.into_iter().enumerate() {
        let at = node.as_ref().map(|_| addr.clone());
        let figures = ctx.block_on(node_figures(&mut conn, at))?;
        let mut map = Map::new();
        map.insert("index".into(), (index as i64).into());
        map.insert("address".into(), addr.clone().into());
        let port = addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<i64>().ok());
        map.insert("port".into(), port.unwrap_or(0).into());
        let (id, role, failing, slots) = match &node {
            Some(n) => (n.id.clone(), n.role, n.failing, n.slots.clone()),
            None => (String::new(), "master", false, Vec::new()),
        };
        map.insert("id".into(), id.into());
        map.insert("role".into(), role.into());
        map.insert("up".into(), (!failing && figures.is_some()).into());
        let slots: Array = slots
            .iter()
            .map(|r| {
                let pair: Array = vec![(*r.start() as i64).into(), (*r.end() as i64).into()];
                Dynamic::from(pair)
            })
            .collect();
        map.insert("slots".into(), slots.into());
        let figures = figures.unwrap_or_default();
        for (name, value) in [
            ("keys", figures.keys),
            ("ops", figures.ops),
            ("hits", figures.hits),
            ("misses", figures.misses),
            ("used_memory", figures.used_memory),
        ] {
            map.insert(name.into(), value.into());
        }
        ctx.remember_shape("redis_nodes", &map);
        out.push(map.into());
    }
    Ok(out)
}

/// What `redis_nodes()` counts on one node.
#[derive(Default)]
struct NodeFigures {
    keys: i64,
    ops: i64,
    hits: i64,
    misses: i64,
    used_memory: i64,
}

/// One node's figures, or `None` when it does not answer (down, or paused).
async fn node_figures(conn: &mut RedisConn, addr: Option<String>) -> Option<NodeFigures> {
    let ask = async {
        let keys: i64 = conn.on_node(addr.as_deref(), &redis::cmd("DBSIZE")).await?;
        let text: String = conn.on_node(addr.as_deref(), &redis::cmd("INFO")).await?;
        redis::RedisResult::Ok((keys, text))
    };
    let (keys, text) = tokio::time::timeout(std::time::Duration::from_secs(2), ask)
        .await
        .ok()?
        .ok()?;
    let info = Info::parse(&text);
    let number = |field: &str| info.int(field).unwrap_or(0);
    Some(NodeFigures {
        keys,
        ops: number("total_commands_processed"),
        hits: number("keyspace_hits"),
        misses: number("keyspace_misses"),
        used_memory: number("used_memory"),
    })
}

/// INFO as the lab reads it: a map, numbers as numbers.
fn info_map(Info(fields): Info) -> Map {
    fields
        .into_iter()
        .map(|(field, value)| {
            let value = match value {
                InfoValue::Int(i) => Dynamic::from(i),
                InfoValue::Float(f) => Dynamic::from(f),
                InfoValue::Text(t) => Dynamic::from(t),
            };
            (field.into(), value)
        })
        .collect()
}

fn from_redis(value: redis::Value) -> Dynamic {
    use redis::Value;
    match value {
        Value::Nil => Dynamic::UNIT,
        Value::Int(i) => i.into(),
        Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned().into(),
        Value::SimpleString(s) => s.into(),
        Value::Okay => "OK".into(),
        Value::Double(f) => f.into(),
        Value::Boolean(b) => b.into(),
        Value::Array(items) | Value::Set(items) => {
            items.into_iter().map(from_redis).collect::<Array>().into()
        }
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(k, v)| (from_redis(k).to_string().into(), from_redis(v)))
            .collect::<Map>()
            .into(),
        Value::VerbatimString { text, .. } => text.into(),
        other => format!("{other:?}").into(),
    }
}
