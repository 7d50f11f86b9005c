//! Helpers shared by the integration tests: one managed stack per test binary, servers
//! started per test, a small HTTP client, and process/temp-dir inspection.
#![allow(dead_code)]

use bytes::Bytes;
use cachelab::services::{ServerOptions, Services, SharedStack};
use cachelab::stack::{Stack, StackInfo, StackOptions};
use http_body_util::{BodyExt, Full};
use hyper::Method;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The managed stack this test binary shares; the reaper ends it when the binary exits.
pub fn shared_stack() -> SharedStack {
    static STACK: OnceLock<SharedStack> = OnceLock::new();
    STACK
        .get_or_init(|| {
            let stack = Stack::start(StackOptions::default()).expect("starting the managed stack");
            std::sync::Arc::new(std::sync::Mutex::new(stack))
        })
        .clone()
}

/// What the servers and labs know of a shared stack.
pub fn info(stack: &SharedStack) -> StackInfo {
    stack.lock().unwrap().info()
}

/// Tests that share the stack reload its table when they start, so they take turns.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Every strategy server on free ports over `stack`, data freshly loaded.
pub async fn start_services(stack: SharedStack) -> Services {
    let options = ServerOptions::loopback(60);
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
/// Poll `check` every 20 ms until it holds or `bound` passes; whether it held.
pub async fn eventually<F, Fut>(bound: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + bound;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

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
pub async fn redis_cmd<T: redis::FromRedisValue>(stack: &SharedStack, args: &[&str]) -> T {
    let url = info(stack).redis_url;
    redis_at(&url, args).await
}

/// A raw Redis command on the Redis at `url`.
pub async fn redis_at<T: redis::FromRedisValue>(url: &str, args: &[&str]) -> T {
    let client = redis::Client::open(url).expect("redis url");
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

/// A count from SQL, run on the database's admin URL.
pub async fn sql_count(services: &Services, sql: &str) -> i64 {
    let (client, conn) =
        tokio_postgres::connect(&services.stack.database_admin_url, tokio_postgres::NoTls)
            .await
            .expect("postgres");
    tokio::spawn(conn);
    client.query_one(sql, &[]).await.expect("query").get(0)
}

/// A folder of lab files written by a test.
pub struct Labs {
    pub dir: tempfile::TempDir,
}

impl Labs {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn add(&self, name: &str, source: &str) -> std::path::PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, source).unwrap();
        path
    }
}

/// What `cachelab run` printed and how it exited.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The outcome of a finished `cachelab run` command.
    pub fn of(command: &mut std::process::Command) -> Self {
        let out = command.output().unwrap();
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// `cachelab run ARGS FILES`.
pub fn run(args: &[&str], files: &[&Path]) -> Run {
    Run::of(cachelab().arg("run").args(args).args(files))
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

/// A port P with P and the ports after it free right now, one per strategy (serve puts
/// each strategy on P + its registry offset). It is picked below the kernel's ephemeral
/// range, so no outgoing connection or `bind(0)` elsewhere takes it in the meantime.
pub fn free_port_block() -> u16 {
    let mut seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
    loop {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let port = 20_000 + (seed >> 33) as u16 % 10_000;
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        let count = cachelab::strategy::StrategyKind::ALL.len() as u16;
        if (port..port + count).all(free) {
            return port;
        }
    }
}

/// A running `cachelab serve`, stopped with Ctrl-C (or killed if the test fails first).
pub struct Serve {
    pub child: Child,
    /// What it printed on stdout up to the ready line.
    pub lines: Vec<String>,
}

impl Serve {
    /// Start `cachelab serve ARGS` with TMPDIR=`tmp` and wait for its ready line.
    pub fn start(tmp: &std::path::Path, args: &[&str]) -> Self {
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
    pub fn url(&self, strategy: &str) -> Option<String> {
        self.lines
            .iter()
            .find(|l| l.starts_with(strategy))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_string)
    }

    /// Send `signal`, wait (at most 20 s), and return the exit status and everything logged.
    pub fn signal(mut self, signal: i32) -> (std::process::ExitStatus, String) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "cachelab did not exit within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        let _ = self
            .child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr);
        (status, stderr)
    }

    /// Ctrl-C; a clean shutdown exits 0. Returns everything it logged.
    pub fn stop(self) -> String {
        let (status, stderr) = self.signal(libc::SIGINT);
        assert_eq!(status.code(), Some(0), "{stderr}");
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

/// No process runs under `tmp` and nothing is left in it.
pub fn assert_nothing_left(tmp: &std::path::Path) {
    let left = processes_mentioning(tmp);
    assert!(left.is_empty(), "processes left running: {left:?}");
    assert!(
        entries(tmp).is_empty(),
        "temp files left behind: {:?}",
        entries(tmp)
    );
}

/// A keep-alive HTTP/1.1 server on a free loopback port that answers every request
/// 200 with `X-Cache: HIT`, each connection on its own thread, for as long as the test runs.
pub fn answering_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    // Read the head up to its blank line; the load sends no body.
                    let mut line = String::new();
                    let mut head_lines = 0;
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => head_lines += 1,
                        }
                    }
                    if head_lines == 0 {
                        return;
                    }
                    let reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Cache: HIT\r\n\r\nok";
                    if std::io::Write::write_all(&mut stream, reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{address}")
}
