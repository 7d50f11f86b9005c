//! Whether a lab's raw `redis([...])` command may run. Labs are shared code, so none may
//! stop, re-point, open up or reconfigure the stack's Redis, and on an external Redis
//! without `--allow-flush` one may only read and write the `user:*` keys the per-lab reset
//! deletes. The verdict follows Redis' own command table (flags, ACL categories,
//! subcommands, `COMMAND GETKEYS`); hand-written lists only hold policy Redis cannot know.

use std::collections::{HashMap, HashSet};

use redis::aio::ConnectionLike;
use redis::{ErrorKind, RedisResult, Value};

/// How much a lab may change on the Redis it talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The managed Redis, or an external one the user said labs may wipe
    /// (`--allow-flush`): anything that leaves the stack working and private.
    Full,
    /// An external Redis without `--allow-flush`: it may hold someone else's data, so only
    /// reads and writes to the `user:*` keys the per-lab reset cleans up.
    ReadOnlyPlusUserKeys,
}

impl Access {
    /// The access that goes with the stack's `may_flush_redis` (managed, or `--allow-flush`).
    pub fn for_stack(may_flush_redis: bool) -> Self {
        if may_flush_redis {
            Self::Full
        } else {
            Self::ReadOnlyPlusUserKeys
        }
    }
}

/// What the connected Redis says about its commands, read once from `COMMAND` so the
/// guard judges the server it talks to (its version, its renamed or missing commands).
#[derive(Debug)]
pub struct CommandTable {
    /// Keyed by lower-case name: `get`, or `config|set` for a subcommand.
    commands: HashMap<String, CommandInfo>,
    /// Commands refused on every stack that Redis lets a script call (no `noscript`
    /// flag), e.g. `MIGRATE`: while there are any, EVAL and FCALL would be a way round.
    reachable_from_scripts: Vec<String>,
    /// The same for read-only scripts (EVAL_RO, FCALL_RO), which cannot call writes.
    reachable_from_read_only_scripts: Vec<String>,
}

/// One command or subcommand, as COMMAND describes it.
#[derive(Debug, Default)]
struct CommandInfo {
    /// Lower-case flags: `readonly`, `write`, `admin`, `noscript`, ...
    flags: HashSet<String>,
    /// Lower-case ACL categories: `@read`, `@scripting`, `@dangerous`, ...
    categories: HashSet<String>,
    /// A container such as CONFIG, whose real commands are its subcommands.
    has_subcommands: bool,
}

impl CommandTable {
    /// Read the command table of the Redis behind `conn`.
    pub async fn load(conn: &mut impl ConnectionLike) -> RedisResult<Self> {
        let reply: Value = redis::cmd("COMMAND").query_async(conn).await?;
        Self::from_reply(&reply)
    }

    fn from_reply(reply: &Value) -> RedisResult<Self> {
        let mut commands = HashMap::new();
        for entry in items(reply) {
            add_entry(entry, &mut commands);
        }
        // An unreadable table would make every command "unknown", and unknown ones pass.
        if !commands.contains_key("get") {
            return Err((
                ErrorKind::UnexpectedReturnType,
                "COMMAND returned a table without GET; cannot judge lab commands",
            )
                .into());
        }
        Ok(Self {
            reachable_from_scripts: refused_reachable_from_scripts(&commands, false),
            reachable_from_read_only_scripts: refused_reachable_from_scripts(&commands, true),
            commands,
        })
    }

    /// The command (or subcommand) `words` names, if Redis knows it. `None` means Redis
    /// will answer "unknown command" (or "unknown subcommand") itself.
    fn lookup(&self, words: &[String]) -> Option<Found<'_>> {
        let name = words.first()?.to_lowercase();
        // `config|set` names a subcommand in COMMAND's table only; Redis runs no such command.
        if name.contains('|') {
            return None;
        }
        let top = self.commands.get(&name)?;
        if !top.has_subcommands {
            return Some(Found {
                key: name,
                info: top,
            });
        }
        let key = format!("{name}|{}", words.get(1)?.to_lowercase());
        let info = self.commands.get(&key)?;
        Some(Found { key, info })
    }
}

/// A command the table knows.
struct Found<'t> {
    /// `get` or `config|set`.
    key: String,
    info: &'t CommandInfo,
}

impl Found<'_> {
    /// How messages name it: `GET`, `CONFIG SET`.
    fn display(&self) -> String {
        self.key.replace('|', " ").to_uppercase()
    }
}

/// May a lab send `words` (a command and its arguments) to the Redis `table` describes?
/// `Err` is the one-line message the lab sees, `redis(["CMD",...]): CMD is refused: ...`.
/// `conn` is only used on a restricted Redis, to ask `COMMAND GETKEYS` which keys a
/// write touches; the lab's own connection will do, since a restricted lab cannot MULTI.
pub async fn check(
    table: &CommandTable,
    access: Access,
    words: &[String],
    conn: &mut impl ConnectionLike,
) -> Result<(), Refused> {
    let Some(found) = table.lookup(words) else {
        return Ok(());
    };
    if let Some(refusal) = stack_refusal(table, &found, words) {
        return Err(Refused(format!("{}: {refusal}", shown(words))));
    }
    if access == Access::Full {
        return Ok(());
    }
    match restricted_refusal(&found, words, conn).await {
        Ok(()) => Ok(()),
        Err(why) => Err(Refused(format!(
            "{}: {} is refused on an external Redis without --allow-flush: only read-only \
             commands and writes to user:* keys are allowed{}",
            shown(words),
            found.display(),
            why.map(|w| format!(" ({w})")).unwrap_or_default()
        ))),
    }
}

/// A command the guard refused, with the one line the lab sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

// ---- Refused on every stack -------------------------------------------------------------

/// Commands no lab may send, and what each would do to the stack.
const REFUSED: &[(&str, &str)] = &[
    ("shutdown", "it stops the server"),
    (
        "replicaof",
        "it makes the server a copy of another one, wiping its data",
    ),
    (
        "slaveof",
        "it makes the server a copy of another one, wiping its data",
    ),
    ("monitor", "it streams every command of every client"),
    ("debug", "it can crash, freeze or corrupt the server"),
    ("module", "it loads native code into the server"),
    ("acl", "it reads and changes users and passwords"),
    ("sync", "it streams the whole dataset out"),
    ("psync", "it streams the whole dataset out"),
    ("failover", "it hands the server's role to a replica"),
    (
        "migrate",
        "it opens a connection to any host and moves keys there",
    ),
];

/// CLUSTER subcommands that only report; every other one changes the cluster's topology
/// or connects it to other nodes.
const CLUSTER_REPORTS: &[&str] = &[
    "info",
    "nodes",
    "slots",
    "shards",
    "keyslot",
    "myid",
    "myshardid",
    "countkeysinslot",
    "getkeysinslot",
    "links",
    "replicas",
    "slaves",
    "count-failure-reports",
    "help",
];

/// CONFIG SET parameters labs need (eviction, expiry, encodings, monitoring); a trailing
/// `*` matches any rest. Everything else (bind, port, dir, requirepass, ...) is refused.
const CONFIG_SETTABLE: &[&str] = &[
    "maxmemory",
    "maxmemory-policy",
    "maxmemory-samples",
    "maxmemory-eviction-tenacity",
    "lfu-log-factor",
    "lfu-decay-time",
    "hz",
    "dynamic-hz",
    "active-expire-effort",
    "lazyfree-*",
    "notify-keyspace-events",
    "slowlog-*",
    "latency-*",
    "activedefrag",
    "active-defrag-*",
    "activerehashing",
    "hash-max-*",
    "list-max-*",
    "list-compress-depth",
    "set-max-*",
    "zset-max-*",
    "stream-node-max-*",
    "hll-sparse-max-bytes",
];

/// Commands that run a script, each with whether the script is read-only.
const SCRIPT_RUNNERS: &[(&str, bool)] = &[
    ("eval", false),
    ("evalsha", false),
    ("fcall", false),
    ("eval_ro", true),
    ("evalsha_ro", true),
    ("fcall_ro", true),
];

/// Why `command` (lower case, with its lower-case subcommand) is refused whatever its
/// arguments, if it is.
fn always_refused(command: &str, sub: Option<&str>) -> Option<&'static str> {
    if sub == Some("help") {
        return None;
    }
    if let Some((_, why)) = REFUSED.iter().find(|(name, _)| *name == command) {
        return Some(why);
    }
    match (command, sub) {
        ("cluster", Some(sub)) if !CLUSTER_REPORTS.contains(&sub) => {
            Some("it changes the cluster's topology or connects it to other nodes")
        }
        ("client", Some("pause")) => Some("it stops the server answering every client"),
        ("config", Some("rewrite")) => Some("it rewrites the server's config file"),
        _ => None,
    }
}

fn config_settable(parameter: &str) -> bool {
    CONFIG_SETTABLE
        .iter()
        .any(|allowed| match allowed.strip_suffix('*') {
            Some(prefix) => parameter.starts_with(prefix),
            None => parameter == *allowed,
        })
}

/// The refusal (after `redis([...]): `) of a command no stack allows.
fn stack_refusal(table: &CommandTable, found: &Found<'_>, words: &[String]) -> Option<String> {
    let command = words[0].to_lowercase();
    let sub = words.get(1).map(|w| w.to_lowercase());
    if let Some(why) = always_refused(&command, sub.as_deref()) {
        return Some(format!(
            "{} is refused: it would expose or break the stack ({why})",
            found.display()
        ));
    }
    if command == "config" && sub.as_deref() == Some("set") {
        // CONFIG SET takes parameter/value pairs; every parameter must be settable.
        let refused = words
            .iter()
            .skip(2)
            .step_by(2)
            .map(|p| p.to_lowercase())
            .find(|p| !config_settable(p));
        if let Some(parameter) = refused {
            return Some(format!(
                "CONFIG SET {parameter} is refused: it would expose or break the stack; \
                 labs may set: {}",
                CONFIG_SETTABLE.join(", ")
            ));
        }
    }
    if let Some((_, read_only)) = SCRIPT_RUNNERS.iter().find(|(name, _)| *name == command) {
        let reachable = if *read_only {
            &table.reachable_from_read_only_scripts
        } else {
            &table.reachable_from_scripts
        };
        if !reachable.is_empty() {
            return Some(format!(
                "{} is refused: it would expose or break the stack (this Redis lets a \
                 script call {}, and a script's commands cannot be checked)",
                found.display(),
                either(reachable)
            ));
        }
    }
    None
}

/// The commands refused on every stack that a script could call, by top-level name.
/// Only those Redis itself marks `admin` or `@dangerous` count (not ACL WHOAMI).
fn refused_reachable_from_scripts(
    commands: &HashMap<String, CommandInfo>,
    read_only: bool,
) -> Vec<String> {
    let mut names: Vec<String> = commands
        .iter()
        .filter(|(_, info)| !info.has_subcommands && !info.flags.contains("noscript"))
        .filter(|(_, info)| !(read_only && info.flags.contains("write")))
        .filter(|(_, info)| info.flags.contains("admin") || info.categories.contains("@dangerous"))
        .filter_map(|(key, _)| {
            let (command, sub) = match key.split_once('|') {
                Some((command, sub)) => (command, Some(sub)),
                None => (key.as_str(), None),
            };
            let refused =
                always_refused(command, sub).is_some() || (command, sub) == ("config", Some("set"));
            refused.then(|| command.to_uppercase())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

// ---- External Redis without --allow-flush ------------------------------------------------

/// Commands Redis flags neither read-only nor write that only report on the server or
/// the connection (and any `... HELP`), so they are safe on someone else's Redis.
const REPORTS: &[&str] = &[
    "ping",
    "echo",
    "time",
    "info",
    "lastsave",
    "role",
    "config|get",
    "client|id",
    "client|getname",
    "client|info",
    "client|list",
    "client|trackinginfo",
    "client|getredir",
    "slowlog|get",
    "slowlog|len",
    "latency|latest",
    "latency|history",
    "latency|doctor",
    "latency|graph",
    "latency|histogram",
    "memory|stats",
    "memory|doctor",
    "memory|malloc-stats",
    "pubsub|channels",
    "pubsub|numsub",
    "pubsub|numpat",
    "pubsub|shardchannels",
    "pubsub|shardnumsub",
];

fn only_reports(key: &str) -> bool {
    REPORTS.contains(&key)
        || key.ends_with("|help")
        || key.starts_with("command|")
        || key
            .strip_prefix("cluster|")
            .is_some_and(|sub| CLUSTER_REPORTS.contains(&sub))
}

/// The prefix every key a restricted lab writes must have.
const USER_KEYS: &str = "user:";

/// `Ok` when a restricted lab may send the command; `Err` when not, with the reason if
/// there is more to say than the general rule.
async fn restricted_refusal(
    found: &Found<'_>,
    words: &[String],
    conn: &mut impl ConnectionLike,
) -> Result<(), Option<String>> {
    let info = found.info;
    if info.categories.contains("@scripting") {
        return Err(Some(
            "Redis cannot tell which keys a script writes, and loaded scripts are shared".into(),
        ));
    }
    if reaches_another_database(&found.key, words) {
        return Err(Some("it reaches another database".into()));
    }
    if info.flags.contains("write") {
        return user_keys_only(words, conn).await.map_err(Some);
    }
    if info.flags.contains("readonly") || only_reports(&found.key) {
        return Ok(());
    }
    Err(None)
}

/// Writes whose keys look like `user:*` but land in another database of the server.
fn reaches_another_database(key: &str, words: &[String]) -> bool {
    match key {
        "move" => true,
        "copy" => words.iter().skip(3).any(|w| w.eq_ignore_ascii_case("db")),
        _ => false,
    }
}

/// `Ok` when Redis says the write names at least one key and every key is `user:*`.
async fn user_keys_only(words: &[String], conn: &mut impl ConnectionLike) -> Result<(), String> {
    // COMMAND GETKEYS needs at least one argument after the command name.
    if words.len() < 2 {
        return Err("it names no key".into());
    }
    let keys: Vec<Vec<u8>> = match redis::cmd("COMMAND")
        .arg("GETKEYS")
        .arg(words)
        .query_async(conn)
        .await
    {
        Ok(keys) => keys,
        Err(e) if e.to_string().contains("no key arguments") => Vec::new(),
        Err(e) => {
            let reason = e.detail().map_or_else(|| e.to_string(), str::to_string);
            return Err(format!(
                "Redis could not tell which keys it writes: {reason}"
            ));
        }
    };
    if keys.is_empty() {
        return Err("it names no key".into());
    }
    match keys.iter().find(|k| !k.starts_with(USER_KEYS.as_bytes())) {
        Some(other) => Err(format!(
            "it writes {}",
            quoted(&String::from_utf8_lossy(other))
        )),
        None => Ok(()),
    }
}

// ---- Messages and parsing -----------------------------------------------------------------

/// The call as a message names it: `redis(["CONFIG","SET","bind",...])`.
fn shown(words: &[String]) -> String {
    let mut parts: Vec<String> = words.iter().take(3).map(|w| quoted(w)).collect();
    if words.len() > 3 {
        parts.push("...".into());
    }
    format!("redis([{}])", parts.join(","))
}

/// `A`, `A or B`, `A, B or C`.
fn either(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [only] => only.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// A word in double quotes, cut short if long, so a message stays one readable line.
fn quoted(word: &str) -> String {
    const LONGEST: usize = 40;
    let mut text: String = word.chars().take(LONGEST).collect();
    if word.chars().count() > LONGEST {
        text.push('…');
    }
    serde_json::Value::String(text).to_string()
}

/// Add one COMMAND entry (`[name, arity, flags, first, last, step, categories, tips,
/// key specs, subcommands]`; older servers stop earlier) and its subcommands.
fn add_entry(entry: &Value, commands: &mut HashMap<String, CommandInfo>) {
    let fields = items(entry);
    let Some(name) = fields.first().and_then(text) else {
        return;
    };
    let words = |index: usize| -> HashSet<String> {
        fields
            .get(index)
            .map(items)
            .unwrap_or_default()
            .iter()
            .filter_map(text)
            .map(|w| w.to_lowercase())
            .collect()
    };
    let subcommands = fields.get(9).map(items).unwrap_or_default();
    for sub in subcommands {
        add_entry(sub, commands);
    }
    commands.insert(
        name.to_lowercase(),
        CommandInfo {
            flags: words(2),
            categories: words(6),
            has_subcommands: !subcommands.is_empty(),
        },
    );
}

/// The elements of an array (or a RESP3 set); nothing for any other reply.
fn items(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        _ => &[],
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}
