//! Helpers shared by the integration tests: one managed stack per test binary, servers
//! started per test, a small HTTP client, and process/temp-dir inspection.
#![allow(dead_code)]

use bytes::Bytes;
use cachelab::services::{ServerOptions, Services, Which};
use cachelab::stack::{Stack, StackInfo, StackOptions};
use http_body_util::{BodyExt, Full};
use hyper::Method;
use std::path::Path;
use std::sync::OnceLock;

/// The managed stack this test binary shares; the reaper ends it when the binary exits.
pub fn shared_stack() -> StackInfo {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK
        .get_or_init(|| Stack::start(StackOptions::default()).expect("starting the managed stack"))
        .info()
}

/// Tests that share the stack reload its table when they start, so they take turns.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Both strategy servers on free ports over `stack`, data freshly loaded.
pub async fn start_services(stack: StackInfo) -> Services {
    let options = ServerOptions {
        bind: [127, 0, 0, 1].into(),
        port: 0,
        which: Which::Both,
        ttl: 60,
    };
    let services = Services::start(stack, &options)
        .await
        .expect("starting the servers");
    services.reset().await.expect("fresh state");
    services
}

/// An HTTP answer as a test looks at it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn cache(&self) -> &str {
        self.headers
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The `error` message of a JSON error answer.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {:?}", self.body))
            .to_string()
    }
}

/// Send one request (no keep-alive pool: each call is its own connection).
pub async fn send(method: Method, url: &str, body: &str) -> Answer {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let request = hyper::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid request");
    let response = client.request(request).await.expect("the server answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a whole body")
        .to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

pub async fn get(url: &str) -> Answer {
    send(Method::GET, url, "").await
}

/// A raw Redis command on the stack's Redis.
pub async fn redis_cmd<T: redis::FromRedisValue>(stack: &StackInfo, args: &[&str]) -> T {
    let client = redis::Client::open(stack.redis_url.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut conn).await.expect("redis command")
}

/// The cachelab binary under test.
pub fn cachelab() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_cachelab"));
    command
        .env_remove("REDIS_URL")
        .env_remove("DATABASE_URL")
        .env("NO_COLOR", "1");
    command
}

/// Pids of processes whose command line or working directory is under `path` (managed
/// servers started under a test's own TMPDIR run in their data dirs there; redis-server
/// rewrites its command line, postgres does not).
pub fn processes_mentioning(path: &Path) -> Vec<u32> {
    let needle = path.to_string_lossy().into_owned();
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let in_cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(&needle)
                })
                .unwrap_or(false);
            let in_cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
                .map(|cwd| cwd.starts_with(path))
                .unwrap_or(false);
            in_cmdline || in_cwd
        })
        .collect()
}

/// The entries left in a directory.
pub fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A fresh directory to use as TMPDIR for a child cachelab, readable by the postgres user.
pub fn private_tmpdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("cachelab-test-")
        .tempdir()
        .expect("temp dir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    dir
}

/// A port P with P and P+1 free right now (serve puts write-through on P+1).
pub fn free_port_pair() -> u16 {
    loop {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < 65000 && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}
