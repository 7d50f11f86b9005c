//! `cachelab serve` as a user runs it next to curl and redis-cli: the lines it prints, the
//! per-request debug log, one strategy at a time, and Redis errors logged once per burst.

mod common;

use common::{cachelab, private_tmpdir, processes_mentioning};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A running `cachelab serve`, stopped with Ctrl-C (or killed if the test fails first).
struct Serve {
    child: Child,
    lines: Vec<String>,
}

impl Serve {
    fn start(tmp: &std::path::Path, args: &[&str]) -> Self {
        let mut child = cachelab()
            .arg("serve")
            .args(args)
            .env("TMPDIR", tmp)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut serve = Self {
            child,
            lines: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = serve.child.try_wait() {
                let mut stderr = String::new();
                let _ = serve
                    .child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr);
                panic!("serve exited with {status} before it was ready: {stderr}");
            }
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                let ready = line.starts_with("try:");
                serve.lines.push(line);
                if ready {
                    return serve;
                }
            }
        }
        panic!("serve did not become ready: {:?}", serve.lines);
    }

    /// The URL printed for a strategy.
    fn url(&self, strategy: &str) -> Option<String> {
        self.lines
            .iter()
            .find(|l| l.starts_with(strategy))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_string)
    }

    /// Ctrl-C, wait, and return everything it logged.
    fn stop(mut self) -> String {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let status = self.child.wait().unwrap();
        assert_eq!(status.code(), Some(0));
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        stderr
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn http(method: &str, url: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = rt.block_on(common::send(method.parse().unwrap(), url, ""));
    let cache = answer.cache().to_string();
    (answer.status, cache)
}

#[test]
fn verbose_serve_logs_cache_hit_miss_db_updated_and_cache_updated_per_request() {
    let tmp = private_tmpdir();
    let serve = Serve::start(tmp.path(), &["--port", "0", "-v"]);
    let ca = serve.url("cache-aside").expect("a cache-aside line");
    let wt = serve.url("write-through").expect("a write-through line");
    assert!(
        serve
            .lines
            .iter()
            .any(|l| l.starts_with("redis") && l.contains("redis-cli -p ")),
        "{:?}",
        serve.lines
    );
    assert!(
        serve
            .lines
            .iter()
            .any(|l| l.starts_with("postgres") && l.contains("psql postgres://")),
        "{:?}",
        serve.lines
    );
    assert_eq!(http("GET", &format!("{ca}/users/1")), (200, "MISS".into()));
    assert_eq!(http("GET", &format!("{ca}/users/1")), (200, "HIT".into()));
    assert_eq!(http("PUT", &format!("{wt}/users/2?name=Logged")).0, 200);
    let log = serve.stop();
    for line in [
        "CACHE MISS user:1",
        "CACHE HIT user:1",
        "DB UPDATED user:2",
        "CACHE UPDATED user:2",
    ] {
        assert!(log.contains(line), "{line} missing from the log:\n{log}");
    }
}

#[test]
fn one_strategy_at_a_time_on_its_own_port() {
    let tmp = private_tmpdir();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let serve = Serve::start(
        tmp.path(),
        &["--port", &port.to_string(), "--strategy", "write-through"],
    );
    assert_eq!(serve.url("cache-aside"), None);
    let wt = serve.url("write-through").unwrap();
    assert_eq!(
        wt,
        format!("http://127.0.0.1:{}", port + 1),
        "write-through keeps --port + 1"
    );
    assert_eq!(http("GET", &format!("{wt}/users/3")).0, 200);
    let log = serve.stop();
    assert!(
        !log.contains("CACHE"),
        "no per-request log without -v:\n{log}"
    );
}

#[test]
fn a_dead_redis_is_logged_once_per_burst_not_once_per_request() {
    let tmp = private_tmpdir();
    let serve = Serve::start(tmp.path(), &["--port", "0"]);
    let ca = serve.url("cache-aside").unwrap();
    let redis_pid = processes_mentioning(tmp.path())
        .into_iter()
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "redis-server")
        })
        .expect("the managed redis-server");
    // SAFETY: killing the redis-server our child started.
    unsafe {
        libc::kill(redis_pid as i32, libc::SIGKILL);
    }
    for id in 1..=20 {
        assert_eq!(
            http("GET", &format!("{ca}/users/{id}")).0,
            200,
            "reads answer from Postgres"
        );
    }
    let log = serve.stop();
    assert!(
        !log.contains('\x1b'),
        "no colour codes when stderr is not a terminal:\n{log}"
    );
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("Redis"))
        .count();
    assert_eq!(warnings, 1, "one warning for the whole burst:\n{log}");
}
