//! Redis' INFO as typed figures: `field:value` lines parsed once (numbers as numbers), a
//! cluster's masters added up (amounts summed, ratios averaged, what describes one node
//! kept from the first), and Redis' own size notation. Labs read it as a map; the lab API
//! converts at its edge.

use std::collections::BTreeMap;

/// One INFO value.
#[derive(Debug, Clone, PartialEq)]
pub enum InfoValue {
    Int(i64),
    Float(f64),
    Text(String),
}

impl InfoValue {
    fn parse(text: &str) -> Self {
        if let Ok(i) = text.parse::<i64>() {
            InfoValue::Int(i)
        } else if let Ok(f) = text.parse::<f64>() {
            InfoValue::Float(f)
        } else {
            InfoValue::Text(text.to_string())
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            InfoValue::Int(i) => Some(*i),
            InfoValue::Float(_) | InfoValue::Text(_) => None,
        }
    }

    fn as_number(&self) -> Option<f64> {
        match self {
            InfoValue::Int(i) => Some(*i as f64),
            InfoValue::Float(f) => Some(*f),
            InfoValue::Text(_) => None,
        }
    }
}

/// INFO's fields, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Info(pub BTreeMap<String, InfoValue>);

impl Info {
    /// INFO's `field:value` lines (section headers skipped).
    pub fn parse(text: &str) -> Self {
        Info(
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .filter_map(|line| line.split_once(':'))
                .map(|(field, value)| (field.to_string(), InfoValue::parse(value.trim())))
                .collect(),
        )
    }

    /// A whole-number field, if present.
    pub fn int(&self, field: &str) -> Option<i64> {
        self.0.get(field).and_then(InfoValue::as_int)
    }

    /// The masters' INFO as one: amounts (counts, bytes, rates) summed; ratios averaged;
    /// `k=v,...` fields (`db0`, `cmdstat_*`) merged the same way per key; anything else the
    /// first master's. A single INFO comes back as it is.
    pub fn sum(infos: Vec<Info>) -> Info {
        let mut infos = infos.into_iter();
        let Some(Info(mut total)) = infos.next() else {
            return Info::default();
        };
        let mut seen: BTreeMap<String, i64> = total.keys().map(|k| (k.clone(), 1)).collect();
        for Info(fields) in infos {
            for (field, value) in fields {
                let Some(current) = total.get_mut(&field) else {
                    seen.insert(field.clone(), 1);
                    total.insert(field, value);
                    continue;
                };
                *seen.entry(field.clone()).or_default() += 1;
                if describes_the_node(&field) {
                    continue;
                }
                if let Some(merged) = add(current, &value) {
                    *current = merged;
                }
            }
        }
        // Averages: the sum of ratios over the number of masters that reported them.
        for (field, count) in seen {
            if count > 1 && is_average(&field) {
                if let Some(v) = total.get_mut(&field) {
                    if let Some(x) = v.as_number() {
                        *v = InfoValue::Float(x / count as f64);
                    }
                }
            }
        }
        Info(total)
    }
}

/// INFO fields that describe a node rather than count something: summing them over the
/// masters would be nonsense, so the first master's value stands (ports, ids, clocks,
/// versions, settings that are the same on every node).
fn describes_the_node(field: &str) -> bool {
    const FIELDS: &[&str] = &[
        "process_id",
        "server_time_usec",
        "uptime_in_seconds",
        "uptime_in_days",
        "hz",
        "configured_hz",
        "lru_clock",
        "arch_bits",
        "cluster_enabled",
        "redis_git_dirty",
        "io_threads_active",
        "mem_clients_slaves",
        "connected_slaves",
        "master_repl_offset",
        "second_repl_offset",
        "repl_backlog_active",
        "repl_backlog_size",
        "repl_backlog_first_byte_offset",
        "repl_backlog_histlen",
        "lazyfree_pending_objects",
    ];
    FIELDS.contains(&field)
        || field.ends_with("_port")
        || field.ends_with("_pid")
        || field.ends_with("_enabled")
        || field.ends_with("_in_progress")
        || field.ends_with("_status")
        || field.starts_with("rdb_")
        || field.starts_with("aof_")
}

fn is_average(field: &str) -> bool {
    field.contains("ratio") || field.starts_with("avg_") || field.contains("_avg_")
}

/// `a + b` for two INFO values of one field, or `None` to keep `a`. Inside `k=v,...`
/// values an average (`avg_ttl`) keeps the first master's figure.
fn add(a: &InfoValue, b: &InfoValue) -> Option<InfoValue> {
    if let (InfoValue::Int(x), InfoValue::Int(y)) = (a, b) {
        return Some(InfoValue::Int(x + y));
    }
    if let (Some(x), Some(y)) = (a.as_number(), b.as_number()) {
        return Some(InfoValue::Float(x + y));
    }
    let (InfoValue::Text(x), InfoValue::Text(y)) = (a, b) else {
        return None;
    };
    let (xs, ys) = (key_values(x)?, key_values(y)?);
    let merged: Vec<String> = xs
        .iter()
        .map(|(k, v)| {
            let other = ys.iter().find(|(yk, _)| yk == k).map_or(0.0, |(_, yv)| *yv);
            let sum = if is_average(k) { *v } else { v + other };
            if sum.fract() == 0.0 {
                format!("{k}={}", sum as i64)
            } else {
                format!("{k}={sum}")
            }
        })
        .collect();
    Some(InfoValue::Text(merged.join(",")))
}

/// `keys=3,expires=3,avg_ttl=0` as pairs, when every value is a number.
fn key_values(text: &str) -> Option<Vec<(String, f64)>> {
    text.split(',')
        .map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// What a Redis size is written like, for the message that refuses one.
pub const SIZE_EXAMPLES: &str = "100000, 512kb, 2mb, 1gb";

/// A Redis size as `redis.conf` and `redis-cli` write it: `100`, `2mb`, `1gb`, `512k`
/// (k/m/g are powers of 1000, kb/mb/gb of 1024); `None` for anything else.
pub fn parse_size(text: &str) -> Option<u64> {
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
        _ => return None,
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
}

/// Each master's maxmemory when a cluster's total is `total` and the masters use `used`
/// bytes now: the room above what they use is shared evenly (a master's own footprint
/// differs by its clients' buffers, and evenly shared caps would give the lighter ones
/// more room for keys). The caps add up to `total`, so `redis_info().maxmemory` reads
/// back what the lab set; none is below 1 byte (0 would mean no limit).
pub fn caps_sharing(total: u64, used: &[u64]) -> Vec<u64> {
    let count = used.len().max(1) as i128;
    let room = total as i128 - used.iter().map(|&u| u as i128).sum::<i128>();
    used.iter()
        .enumerate()
        .map(|(i, &u)| {
            let i = i as i128;
            let share = (room * (i + 1)).div_euclid(count) - (room * i).div_euclid(count);
            (u as i128 + share).max(1) as u64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn redis_sizes_parse_as_redis_reads_them() {
        assert_eq!(super::parse_size("2mb").unwrap(), 2 * 1024 * 1024);
        assert_eq!(super::parse_size("1GB").unwrap(), 1024 * 1024 * 1024);
        assert_eq!(super::parse_size("512k").unwrap(), 512_000);
        assert_eq!(super::parse_size("1000").unwrap(), 1000);
        assert!(super::parse_size("2 tb").is_none());
        assert!(super::parse_size("mb").is_none());
    }

    #[test]
    fn a_cluster_total_gives_every_master_the_same_room_and_adds_up() {
        let caps = super::caps_sharing(3_000_100, &[1_000_000, 900_000, 1_000_000]);
        assert_eq!(caps.iter().sum::<u64>(), 3_000_100);
        let room: Vec<u64> = caps
            .iter()
            .zip([1_000_000, 900_000, 1_000_000])
            .map(|(c, u)| c - u)
            .collect();
        assert!(
            room.iter().max().unwrap() - room.iter().min().unwrap() <= 1,
            "{room:?}"
        );
        // A total below what they use already: every master is capped below its footprint
        // (it evicts), never at 0, which would lift the limit.
        assert_eq!(
            super::caps_sharing(30, &[1_000, 1_000, 1_000]),
            [10, 10, 10]
        );
        assert_eq!(super::caps_sharing(1, &[1_000, 1_000, 1_000]), [1, 1, 1]);
    }

    #[test]
    fn cluster_info_sums_amounts_averages_ratios_and_keeps_what_describes_a_node() {
        let a = super::Info::parse("used_memory:100\r\nmem_fragmentation_ratio:1.0\r\ntcp_port:7000\r\ndb0:keys=3,expires=3,avg_ttl=10\r\nmaxmemory_policy:allkeys-lru\r\n");
        let b = super::Info::parse("used_memory:50\r\nmem_fragmentation_ratio:2.0\r\ntcp_port:7001\r\ndb0:keys=1,expires=0,avg_ttl=20\r\nmaxmemory_policy:allkeys-lru\r\n");
        let super::Info(sum) = super::Info::sum(vec![a, b]);
        use super::InfoValue::{Float, Int, Text};
        assert_eq!(sum["used_memory"], Int(150));
        assert_eq!(sum["mem_fragmentation_ratio"], Float(1.5));
        assert_eq!(sum["tcp_port"], Int(7000));
        assert_eq!(sum["db0"], Text("keys=4,expires=3,avg_ttl=10".into()));
        assert_eq!(sum["maxmemory_policy"], Text("allkeys-lru".into()));
    }

    #[test]
    fn info_numbers_are_numbers() {
        let super::Info(map) = super::Info::parse("# Memory\r\nused_memory:1048576\r\nmem_fragmentation_ratio:1.5\r\nmaxmemory_policy:noeviction\r\n");
        use super::InfoValue::{Float, Int, Text};
        assert_eq!(map["used_memory"], Int(1_048_576));
        assert_eq!(map["mem_fragmentation_ratio"], Float(1.5));
        assert_eq!(map["maxmemory_policy"], Text("noeviction".into()));
    }
}
