//! Looking inside Redis and changing its eviction settings. Destructive calls (FLUSHALL,
//! CONFIG SET, ...) against an external Redis need `--allow-flush`; without it they are an
//! error, never a wipe.

use rhai::{Array, Dynamic, Map};

use super::{def, Registry};
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
        "INFO (all sections) as a map; numeric fields are numbers, e.g. redis_info().used_memory.",
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
                ctx.forget_redis_if_closed();
                let mut conn = ctx.redis()?;
                let keys = ctx
                    .block_on(async move { crate::cache::scan_keys(&mut conn, &pattern).await })?
                    .map_err(|e| lab_error(format!("redis: {e}")))?;
                Ok(keys.into_iter().map(Dynamic::from).collect())
            })
        }
    );
    def!(r, "redis", "set_policy(policy: string)",
        "CONFIG SET maxmemory-policy (noeviction, allkeys-lru, allkeys-lfu, allkeys-random, volatile-*).",
        |policy: Dynamic| -> LabResult<()> {
            let policy = arg_str("set_policy", "policy", &policy)?;
            context::with(|ctx| set_policy(ctx, &policy, None))
        });
    def!(
        r,
        "redis",
        "set_policy(policy: string, maxmemory: int|string)",
        "CONFIG SET maxmemory-policy and maxmemory together; maxmemory in bytes or a Redis size such as \"2mb\" or \"1gb\".",
        |policy: Dynamic, maxmemory: Dynamic| -> LabResult<()> {
            let policy = arg_str("set_policy", "policy", &policy)?;
            let bytes = if maxmemory.is_string() {
                let text = arg_str("set_policy", "maxmemory", &maxmemory)?;
                parse_size(&text).map_err(|e| lab_error(format!("set_policy: {e}")))?
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
        "FLUSHALL and zero every server's counters.",
        || -> LabResult<()> {
            context::with(|ctx| {
                ensure_may_flush(ctx, "flush()")?;
                let _: () = query(ctx, redis::cmd("FLUSHALL"))?;
                for server in &ctx.services.servers {
                    server.backend.counters.reset();
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

/// A Redis size as `redis.conf` and `redis-cli` write it: `100`, `2mb`, `1gb`, `512k`
/// (k/m/g are powers of 1000, kb/mb/gb of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let scale: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => {
            return Err(format!(
                "{text:?} is not a Redis size (e.g. 100000, 512kb, 2mb, 1gb)"
            ))
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{text:?} is not a Redis size (e.g. 100000, 512kb, 2mb, 1gb)"))
}

/// Run `cmd` on the lab's connection. A connection that died with its Redis (a restart
/// the lab asked for) is opened again once.
fn query<T: redis::FromRedisValue>(ctx: &LabContext, cmd: redis::Cmd) -> LabResult<T> {
    let mut conn = ctx.redis()?;
    let once = cmd.clone();
    match ctx.block_on(async move { once.query_async::<T>(&mut conn).await })? {
        Err(e) if e.is_connection_dropped() || e.is_io_error() => {
            ctx.forget_redis();
            let mut conn = ctx.redis()?;
            ctx.block_on(async move { cmd.query_async::<T>(&mut conn).await })?
                .map_err(|e| lab_error(format!("redis: {e}")))
        }
        other => other.map_err(|e| lab_error(format!("redis: {e}"))),
    }
}

fn set_policy(ctx: &LabContext, policy: &str, maxmemory: Option<u64>) -> LabResult<()> {
    if !POLICIES.contains(&policy) {
        return Err(lab_error(format!(
            "set_policy: argument `policy` must be one of {}, got {policy:?}",
            POLICIES.join(", ")
        )));
    }
    ensure_may_flush(ctx, "set_policy()")?;
    let _: () = query(
        ctx,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg(policy)
            .clone(),
    )?;
    if let Some(bytes) = maxmemory {
        let _: () = query(
            ctx,
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("maxmemory")
                .arg(bytes)
                .clone(),
        )?;
    }
    Ok(())
}

fn info(section: Option<String>) -> LabResult<Map> {
    context::with(|ctx| {
        let mut cmd = redis::cmd("INFO");
        if let Some(s) = &section {
            cmd.arg(s);
        }
        let text: String = query(ctx, cmd)?;
        Ok(parse_info(&text))
    })
}

/// INFO's `field:value` lines as a map, numbers as numbers.
pub fn parse_info(text: &str) -> Map {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(field, value)| {
            let value = value.trim();
            let dynamic = if let Ok(i) = value.parse::<i64>() {
                Dynamic::from(i)
            } else if let Ok(f) = value.parse::<f64>() {
                Dynamic::from(f)
            } else {
                Dynamic::from(value.to_string())
            };
            (field.into(), dynamic)
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

#[cfg(test)]
mod tests {
    #[test]
    fn redis_sizes_parse_as_redis_reads_them() {
        assert_eq!(super::parse_size("2mb").unwrap(), 2 * 1024 * 1024);
        assert_eq!(super::parse_size("1GB").unwrap(), 1024 * 1024 * 1024);
        assert_eq!(super::parse_size("512k").unwrap(), 512_000);
        assert_eq!(super::parse_size("1000").unwrap(), 1000);
        assert!(super::parse_size("2 tb").is_err());
        assert!(super::parse_size("mb").is_err());
    }

    #[test]
    fn info_numbers_are_numbers() {
        let map = super::parse_info("# Memory\r\nused_memory:1048576\r\nmem_fragmentation_ratio:1.5\r\nmaxmemory_policy:noeviction\r\n");
        assert_eq!(map["used_memory"].as_int().unwrap(), 1_048_576);
        assert_eq!(map["mem_fragmentation_ratio"].as_float().unwrap(), 1.5);
        assert_eq!(
            map["maxmemory_policy"].clone().into_string().unwrap(),
            "noeviction"
        );
    }
}
