//! The guard on a lab's raw `redis([...])` calls, against a real throw-away redis-server:
//! what breaks or exposes the stack is refused everywhere, and an external Redis without
//! `--allow-flush` only lets through reads and writes to `user:*` keys.

use cachelab::lab::redis_guard::{check, Access, CommandTable};
use cachelab::stack::ManagedRedis;
use redis::aio::MultiplexedConnection;
use redis::Value;

const BOTH: [Access; 2] = [Access::Full, Access::ReadOnlyPlusUserKeys];

const STACK_REFUSAL: &str = "is refused: it would expose or break the stack";
const EXTERNAL_REFUSAL: &str = "is refused on an external Redis without --allow-flush: \
     only read-only commands and writes to user:* keys are allowed";

/// A throw-away Redis, a lab-like connection to it and its command table.
struct Lab {
    conn: MultiplexedConnection,
    table: CommandTable,
    _redis: ManagedRedis,
    _dir: tempfile::TempDir,
}

impl Lab {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let redis = ManagedRedis::start(dir.path()).unwrap();
        let client = redis::Client::open(redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let table = CommandTable::load(&mut conn).await.unwrap();
        Self {
            conn,
            table,
            _redis: redis,
            _dir: dir,
        }
    }

    /// The guard's verdict on `words`.
    async fn verdict(&mut self, access: Access, words: &[&str]) -> Result<(), String> {
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        check(&self.table, access, &words, &mut self.conn)
            .await
            .map_err(|refused| refused.0)
    }

    /// What a lab's `redis(words)` would do: the guard, then Redis.
    async fn redis(&mut self, access: Access, words: &[&str]) -> Result<Value, String> {
        self.verdict(access, words).await?;
        self.send(words).await
    }

    /// Send `words` without the guard, to set up or look at the server.
    async fn send(&mut self, words: &[&str]) -> Result<Value, String> {
        let mut cmd = redis::cmd(words[0]);
        for word in &words[1..] {
            cmd.arg(*word);
        }
        cmd.query_async(&mut self.conn)
            .await
            .map_err(|e| e.to_string())
    }

    async fn config_get(&mut self, parameter: &str) -> String {
        let reply = self.send(&["CONFIG", "GET", parameter]).await.unwrap();
        match reply {
            Value::Array(items) => redis::from_redis_value(items[1].clone()).unwrap(),
            other => panic!("CONFIG GET {parameter}: {other:?}"),
        }
    }
}

fn refusal(verdict: Result<(), String>, words: &[&str]) -> String {
    let message = verdict.expect_err(&format!("{words:?} must be refused"));
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(message.starts_with("redis([\""), "{message}");
    message
}

#[tokio::test]
async fn commands_that_break_or_expose_the_stack_are_refused_on_every_stack_naming_the_command() {
    let mut lab = Lab::start().await;
    let attacks: &[(&[&str], &str)] = &[
        (&["SHUTDOWN"], "SHUTDOWN"),
        (&["shutdown", "nosave"], "SHUTDOWN"),
        (&["REPLICAOF", "127.0.0.1", "1"], "REPLICAOF"),
        (&["SLAVEOF", "127.0.0.1", "1"], "SLAVEOF"),
        (&["MONITOR"], "MONITOR"),
        (&["DEBUG", "SLEEP", "0"], "DEBUG"),
        (&["MODULE", "LOAD", "/tmp/evil.so"], "MODULE LOAD"),
        (
            &["ACL", "SETUSER", "evil", "on", ">pw", "+@all"],
            "ACL SETUSER",
        ),
        (&["acl", "list"], "ACL LIST"),
        (&["SYNC"], "SYNC"),
        (&["PSYNC", "?", "-1"], "PSYNC"),
        (&["FAILOVER"], "FAILOVER"),
        (
            &["MIGRATE", "10.0.0.1", "6379", "user:1", "0", "100"],
            "MIGRATE",
        ),
        (&["CLUSTER", "MEET", "10.0.0.1", "6379"], "CLUSTER MEET"),
        (&["cluster", "forget", "abc"], "CLUSTER FORGET"),
        (&["CLUSTER", "RESET"], "CLUSTER RESET"),
        (&["CLUSTER", "FAILOVER"], "CLUSTER FAILOVER"),
        (
            &["CLUSTER", "SETSLOT", "1", "NODE", "abc"],
            "CLUSTER SETSLOT",
        ),
        (&["CLUSTER", "ADDSLOTS", "1"], "CLUSTER ADDSLOTS"),
        (&["CLIENT", "PAUSE", "10000"], "CLIENT PAUSE"),
        (&["CONFIG", "REWRITE"], "CONFIG REWRITE"),
        (&["CONFIG", "SET", "bind", "0.0.0.0 ::"], "CONFIG SET bind"),
        (&["config", "set", "BIND", "0.0.0.0"], "CONFIG SET bind"),
        (&["CONFIG", "SET", "port", "6390"], "CONFIG SET port"),
        (&["CONFIG", "SET", "dir", "/tmp"], "CONFIG SET dir"),
        (
            &["CONFIG", "SET", "dbfilename", "x.rdb"],
            "CONFIG SET dbfilename",
        ),
        (
            &["CONFIG", "SET", "logfile", "/tmp/x"],
            "CONFIG SET logfile",
        ),
        (
            &["CONFIG", "SET", "requirepass", "x"],
            "CONFIG SET requirepass",
        ),
        (
            &["CONFIG", "SET", "masterauth", "x"],
            "CONFIG SET masterauth",
        ),
        (
            &["CONFIG", "SET", "protected-mode", "no"],
            "CONFIG SET protected-mode",
        ),
        (
            &["CONFIG", "SET", "maxclients", "1"],
            "CONFIG SET maxclients",
        ),
        (&["CONFIG", "SET", "timeout", "1"], "CONFIG SET timeout"),
    ];
    for access in BOTH {
        for (words, name) in attacks {
            let message = refusal(lab.verdict(access, words).await, words);
            assert!(
                message.contains(&format!("{name} {STACK_REFUSAL}")),
                "{access:?} {words:?}: {message}"
            );
        }
    }
    assert_eq!(lab.config_get("bind").await, "127.0.0.1");
}

#[tokio::test]
async fn a_refused_config_set_names_the_parameter_and_what_labs_may_set() {
    let mut lab = Lab::start().await;
    let words = ["CONFIG", "SET", "bind", "0.0.0.0 ::"];
    let message = refusal(lab.verdict(Access::Full, &words).await, &words);
    assert!(
        message.starts_with(
            "redis([\"CONFIG\",\"SET\",\"bind\",...]): CONFIG SET bind is refused: it would \
             expose or break the stack; labs may set: maxmemory, maxmemory-policy, "
        ),
        "{message}"
    );
}

#[tokio::test]
async fn config_set_with_an_allowed_and_a_refused_parameter_is_refused_and_changes_nothing() {
    let mut lab = Lab::start().await;
    let before = lab.config_get("maxmemory").await;
    for words in [
        &["CONFIG", "SET", "maxmemory", "12345678", "dir", "/tmp"][..],
        &["config", "set", "PORT", "6390", "maxmemory", "12345678"][..],
    ] {
        for access in BOTH {
            let message = refusal(lab.redis(access, words).await.map(drop), words);
            let refused = if words[2] == "PORT" { "port" } else { "dir" };
            assert!(
                message.contains(&format!("CONFIG SET {refused} {STACK_REFUSAL}")),
                "{message}"
            );
        }
    }
    assert_eq!(lab.config_get("maxmemory").await, before);
    assert_ne!(lab.config_get("dir").await, "/tmp");
}

#[tokio::test]
async fn labs_may_tune_eviction_and_encodings_of_a_redis_they_may_wipe() {
    let mut lab = Lab::start().await;
    let set = [
        "CONFIG",
        "SET",
        "maxmemory",
        "10mb",
        "MAXMEMORY-POLICY",
        "allkeys-lru",
        "hash-max-listpack-entries",
        "64",
        "lazyfree-lazy-eviction",
        "yes",
    ];
    lab.redis(Access::Full, &set).await.unwrap();
    assert_eq!(lab.config_get("maxmemory").await, "10485760");
    assert_eq!(lab.config_get("maxmemory-policy").await, "allkeys-lru");
    assert_eq!(lab.config_get("hash-max-listpack-entries").await, "64");
    assert_eq!(lab.config_get("lazyfree-lazy-eviction").await, "yes");

    // Not on someone else's Redis, even for a parameter labs may otherwise set.
    let words = ["CONFIG", "SET", "maxmemory", "1mb"];
    let message = refusal(
        lab.verdict(Access::ReadOnlyPlusUserKeys, &words).await,
        &words,
    );
    assert!(
        message.contains(&format!("CONFIG SET {EXTERNAL_REFUSAL}")),
        "{message}"
    );
    assert_eq!(lab.config_get("maxmemory").await, "10485760");
}

#[tokio::test]
async fn reads_and_writes_to_user_keys_pass_on_every_stack() {
    let mut lab = Lab::start().await;
    for access in BOTH {
        let text = |v: Value| -> String { redis::from_redis_value(v).unwrap() };
        let number = |v: Value| -> i64 { redis::from_redis_value(v).unwrap() };
        let list = |v: Value| -> Vec<String> { redis::from_redis_value(v).unwrap() };
        let mut ok = async |words: &[&str]| {
            lab.redis(access, words)
                .await
                .unwrap_or_else(|e| panic!("{access:?} {words:?}: {e}"))
        };
        assert_eq!(text(ok(&["SET", "user:1", "x", "EX", "5"]).await), "OK");
        assert_eq!(text(ok(&["GET", "user:1"]).await), "x");
        assert_eq!(text(ok(&["get", "user:1"]).await), "x");
        assert!((1..=5).contains(&number(ok(&["TTL", "user:1"]).await)));
        assert_eq!(
            list(ok(&["CONFIG", "GET", "maxmemory"]).await)[0],
            "maxmemory"
        );
        assert!(text(ok(&["INFO"]).await).contains("redis_version"));
        assert!(text(ok(&["info", "memory"]).await).contains("used_memory"));
        assert_eq!(list(ok(&["KEYS", "*"]).await), ["user:1"]);
        let (_, scanned): (String, Vec<String>) =
            redis::from_redis_value(ok(&["SCAN", "0"]).await).unwrap();
        assert_eq!(scanned, ["user:1"]);
        assert_eq!(number(ok(&["DEL", "user:1"]).await), 1);
        ok(&["SET", "user:2", "y"]).await;
        assert_eq!(number(ok(&["UNLINK", "user:2"]).await), 1);
        assert_eq!(text(ok(&["PING"]).await), "PONG");
        assert_eq!(number(ok(&["DBSIZE"]).await), 0);
        for words in [
            &["CLUSTER", "INFO"][..],
            &["CLUSTER", "KEYSLOT", "user:1"],
            &["ACL", "HELP"],
        ] {
            assert_eq!(lab.verdict(access, words).await, Ok(()), "{words:?}");
        }
    }
}

#[tokio::test]
async fn on_an_external_redis_without_allow_flush_scripts_select_and_other_writes_are_refused() {
    let mut lab = Lab::start().await;
    lab.send(&["SET", "other", "kept"]).await.unwrap();
    lab.send(&["SET", "user:1", "x"]).await.unwrap();
    let refused: &[(&[&str], &str)] = &[
        (&["EVAL", "return redis.call('FLUSHALL')", "0"], "EVAL"),
        (&["eval_ro", "return 1", "0"], "EVAL_RO"),
        (&["SELECT", "1"], "SELECT"),
        (&["UNLINK", "other"], "UNLINK"),
        (&["unlink", "other"], "UNLINK"),
        (&["DEL", "user:1", "other"], "DEL"),
        (&["SET", "other", "x"], "SET"),
        (&["FUNCTION", "FLUSH"], "FUNCTION FLUSH"),
        (&["SCRIPT", "FLUSH"], "SCRIPT FLUSH"),
        (&["BGSAVE"], "BGSAVE"),
        (&["FLUSHALL"], "FLUSHALL"),
        (&["flushdb", "async"], "FLUSHDB"),
        (&["SWAPDB", "0", "1"], "SWAPDB"),
        (&["MOVE", "user:1", "1"], "MOVE"),
        (&["COPY", "user:1", "user:2", "DB", "1"], "COPY"),
        (&["SORT", "user:list", "STORE", "other"], "SORT"),
        (&["PUBLISH", "news", "x"], "PUBLISH"),
        (&["CLIENT", "KILL", "ID", "1"], "CLIENT KILL"),
        (&["CONFIG", "RESETSTAT"], "CONFIG RESETSTAT"),
    ];
    for (words, name) in refused {
        let verdict = lab.redis(Access::ReadOnlyPlusUserKeys, words).await;
        let message = refusal(verdict.map(drop), words);
        let rule = if *name == "EVAL" || *name == "EVAL_RO" {
            STACK_REFUSAL // a script is refused everywhere on this Redis (see below)
        } else {
            EXTERNAL_REFUSAL
        };
        assert!(
            message.contains(&format!("{name} {rule}")),
            "{words:?}: {message}"
        );
    }
    let words = ["UNLINK", "other"];
    assert_eq!(
        lab.verdict(Access::ReadOnlyPlusUserKeys, &words).await,
        Err(format!(
            "redis([\"UNLINK\",\"other\"]): UNLINK {EXTERNAL_REFUSAL} (it writes \"other\")"
        ))
    );
    assert_eq!(lab.send(&["DBSIZE"]).await, Ok(Value::Int(2)));
    assert_eq!(
        lab.send(&["GET", "other"]).await,
        Ok(Value::BulkString(b"kept".to_vec()))
    );

    // The same commands are a lab's own business on a Redis it may wipe.
    for words in [
        &["SELECT", "0"][..],
        &["UNLINK", "other"],
        &["FUNCTION", "FLUSH"],
        &["SCRIPT", "FLUSH"],
        &["BGSAVE"],
        &["FLUSHALL"],
        &["SET", "other", "x"],
        &["CONFIG", "RESETSTAT"],
    ] {
        assert_eq!(lab.verdict(Access::Full, words).await, Ok(()), "{words:?}");
    }
}

#[tokio::test]
async fn scripts_are_refused_on_every_stack_while_redis_lets_them_call_migrate() {
    let mut lab = Lab::start().await;
    let exfiltrate = [
        "EVAL",
        "return redis.call('MIGRATE', '10.0.0.1', '6379', 'user:1', '0', '100')",
        "0",
    ];
    for access in BOTH {
        let message = refusal(lab.verdict(access, &exfiltrate).await, &exfiltrate);
        assert!(
            message.contains(&format!("EVAL {STACK_REFUSAL}")),
            "{message}"
        );
        assert!(message.contains("MIGRATE"), "{message}");
        for words in [
            &["evalsha", "0123456789abcdef0123456789abcdef01234567", "0"][..],
            &["FCALL", "f", "0"],
        ] {
            let message = refusal(lab.verdict(access, words).await, words);
            assert!(message.contains(STACK_REFUSAL), "{message}");
        }
        // A read-only script cannot MIGRATE, but it can still CLUSTER MEET.
        let words = ["EVAL_RO", "return 1", "0"];
        let message = refusal(lab.verdict(access, &words).await, &words);
        assert!(message.contains("CLUSTER"), "{message}");
        assert!(!message.contains("MIGRATE"), "{message}");
    }
}

#[tokio::test]
async fn commands_redis_does_not_know_pass_the_guard_and_redis_answers_unknown_command() {
    let mut lab = Lab::start().await;
    for access in BOTH {
        let error = lab
            .redis(access, &["NOSUCHCOMMAND", "a"])
            .await
            .expect_err("Redis refuses it");
        assert!(error.contains("unknown command"), "{error}");
        let error = lab
            .redis(access, &["config", "nosuchsub"])
            .await
            .expect_err("Redis refuses it");
        assert!(error.contains("nknown subcommand"), "{error}");
        let error = lab
            .redis(access, &["config|set", "bind", "0.0.0.0"])
            .await
            .expect_err("Redis refuses it");
        assert!(error.contains("unknown command"), "{error}");
    }
}
