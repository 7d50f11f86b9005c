//! A throw-away `redis-server` on a free loopback port, with no persistence. It also
//! listens on a Unix socket in its directory, which the fault proxies use: on loopback an
//! extra hop costs mostly kernel time, and a Unix socket is the cheaper path.

use anyhow::{bail, Context};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{binaries, child::ManagedChild, ports};

/// The longest Unix socket path Linux takes (`sun_path` is 108 bytes, NUL included).
const MAX_SOCKET_PATH: usize = 108;

/// A `redis-server` this process started and will end. It can be stopped and started
/// again on the same port (process faults; a crashed Redis brought back).
pub struct ManagedRedis {
    child: Option<ManagedChild>,
    binary: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl ManagedRedis {
    /// Start `redis-server` in `dir` and wait until it answers PING.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let binary = binaries::redis_server()?;
        let mut last_error = None;
        // A free port can be taken between asking and binding: try a few.
        for _ in 0..3 {
            let mut redis = Self {
                child: None,
                binary: binary.clone(),
                dir: dir.to_path_buf(),
                port: ports::free_port()?,
            };
            match redis.start_again() {
                Ok(()) => {
                    if redis.socket().is_none() {
                        tracing::debug!(
                            "redis-server: {} is too long a path for a Unix socket; the proxies reach it over TCP",
                            redis.dir.display()
                        );
                    }
                    return Ok(redis);
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    /// Start the server on its port (after a stop or a crash) and wait until it answers
    /// PING. It comes back empty: there is no persistence.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let port = self.port;
        let log = self.dir.join(format!("redis-{port}.log"));
        let mut command = Command::new(&self.binary);
        command.args(["--port", &port.to_string()]).args([
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--dir",
        ]);
        command.arg(&self.dir);
        if let Some(socket) = self.socket() {
            command.arg("--unixsocket").arg(socket);
            command.args(["--unixsocketperm", "700"]);
        }
        let mut child =
            ManagedChild::spawn("redis-server", command, &log, libc::SIGTERM, libc::SIGKILL)
                .with_context(|| format!("starting redis-server on port {port}"))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if answers_ping(port) {
                self.child = Some(child);
                return Ok(());
            }
            if child.has_exited() {
                bail!(
                    "redis-server on port {port} exited during start-up: {}",
                    log_tail(&log)
                );
            }
            if Instant::now() > deadline {
                bail!("redis-server on port {port} did not answer PING within 5 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's Unix socket, unless its path would be too long for one (then the
    /// server listens on its TCP port alone).
    pub fn socket(&self) -> Option<PathBuf> {
        let path = self.dir.join(format!("redis-{}.sock", self.port));
        (path.as_os_str().len() < MAX_SOCKET_PATH).then_some(path)
    }

    /// The server's process id while it runs (for SIGSTOP/SIGCONT).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(ManagedChild::pid)
    }

    /// Is the process running (not stopped, not crashed)?
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| !c.has_exited())
    }

    /// Stop the server (SIGTERM, then SIGKILL after 5 s).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.stop();
        }
    }

    /// Kill the server without warning, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }
}

fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// The last lines of a server log, to explain a failed start.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    let tail: Vec<&str> = lines.into_iter().rev().collect();
    if tail.is_empty() {
        format!("(no output in {})", path.display())
    } else {
        tail.join(" | ")
    }
}
