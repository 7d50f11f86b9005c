//! The `cachelab serve` the soak runs against: started as a child in a private TMPDIR (so
//! its stack's temp dir, and the postmaster.pid in it, are where the soak can find them),
//! its printed lines parsed, its managed redis-server and postmaster found in /proc, and
//! stopped with SIGINT (SIGKILL after a bound) whatever way the soak ends.

use anyhow::{bail, Context};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::STRATEGIES;

/// How long serve may take to print its ready line (a first start builds a template
/// cluster with initdb: seconds, on a busy machine more).
const READY_BOUND: Duration = Duration::from_secs(120);
/// How long serve may take to stop after SIGINT (it flushes write-behind's queue for up
/// to 5 s, then stops Redis and Postgres) before it is killed.
const STOP_BOUND: Duration = Duration::from_secs(30);

/// A running `cachelab serve` and what it printed.
pub struct Serve {
    child: Option<Child>,
    pub pid: u32,
    /// Base URL of each strategy, in `STRATEGIES` order.
    pub urls: Vec<String>,
    pub redis_port: u16,
    pub pg_url: String,
    pub pg_port: u16,
    /// serve's stderr (its log).
    pub log: PathBuf,
    /// The private TMPDIR serve's stack dir goes under; removed after serve stopped.
    tmp: Option<tempfile::TempDir>,
}

impl Serve {
    /// Start `bin serve --port port` and wait for its ready line. Call this on the main
    /// thread: the parent-death signal (SIGTERM, so serve still cleans up if the soak is
    /// SIGKILLed) is tied to the thread that forks.
    pub fn start(bin: &Path, port: u16) -> anyhow::Result<Serve> {
        if !bin.is_file() {
            bail!(
                "{} not found: build it first (cargo build --release)",
                bin.display()
            );
        }
        let base = if is_writable_dir(Path::new("/dev/shm")) {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        sweep_stale_dirs(&base);
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir_in(&base)
            .context("creating the soak's private TMPDIR")?;
        // Run as root, serve runs postgres as an unprivileged user, who must be able to
        // reach the stack dir serve creates (and chowns) in here.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711))?;
        let log = tmp.path().join("serve.log");
        let log_file = std::fs::File::create(&log).context("creating serve's log")?;
        let mut command = Command::new(bin);
        command
            .args(["serve", "--port", &port.to_string()])
            .env("TMPDIR", tmp.path())
            .env("RUST_LOG", "cachelab=warn")
            .env_remove("REDIS_URL")
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            // Its own process group: a Ctrl-C in the terminal reaches the soak, which then
            // stops serve in order.
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {} serve", bin.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let mut serve = Serve {
            child: Some(child),
            pid,
            urls: Vec::new(),
            redis_port: 0,
            pg_url: String::new(),
            pg_port: 0,
            log,
            tmp: Some(tmp),
        };
        // A thread reads serve's stdout to the end, so serve never blocks on a full pipe.
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + READY_BOUND;
        let mut urls: Vec<Option<String>> = vec![None; STRATEGIES.len()];
        loop {
            let line = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(status) = serve.exited() {
                        bail!(
                            "serve exited ({status}) before it was ready:\n{}",
                            serve.log_tail(20)
                        );
                    }
                    if Instant::now() > deadline {
                        bail!(
                            "serve was not ready within {READY_BOUND:?}:\n{}",
                            serve.log_tail(20)
                        );
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!(
                        "serve closed its output before it was ready:\n{}",
                        serve.log_tail(20)
                    );
                }
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [name, url] if STRATEGIES.contains(name) => {
                    let i = STRATEGIES.iter().position(|s| s == name).expect("listed");
                    urls[i] = Some(url.to_string());
                }
                ["redis", "redis-cli", "-p", port] => serve.redis_port = port.parse()?,
                ["postgres", "psql", url] => {
                    serve.pg_url = url.to_string();
                    serve.pg_port = port_of_url(url)
                        .with_context(|| format!("no port in serve's postgres URL {url}"))?;
                }
                ["try:", ..] => break,
                _ => {}
            }
        }
        serve.urls = urls
            .into_iter()
            .zip(STRATEGIES)
            .map(|(url, name)| url.with_context(|| format!("serve printed no URL for {name}")))
            .collect::<anyhow::Result<_>>()?;
        if serve.redis_port == 0 || serve.pg_url.is_empty() {
            bail!("serve did not print its redis and postgres lines (a managed stack is needed)");
        }
        Ok(serve)
    }

    /// The managed redis-server's pid: serve's child whose command line names its port.
    pub fn redis_pid(&self) -> Option<u32> {
        let port = format!(":{}", self.redis_port);
        children_of(self.pid).into_iter().find(|&pid| {
            comm(pid).as_deref() == Some("redis-server")
                && cmdline(pid).is_some_and(|c| {
                    c.contains(&port) || c.contains(&format!("--port {}", self.redis_port))
                })
        })
    }

    /// The postmaster's pid, from `postmaster.pid` in the stack dir under the private
    /// TMPDIR (line 1 the pid, line 4 the port), checked against /proc: a child of serve
    /// named postgres.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let tmp = self.tmp.as_ref()?.path();
        for entry in std::fs::read_dir(tmp).ok()?.flatten() {
            let file = entry.path().join("pgdata").join("postmaster.pid");
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let lines: Vec<&str> = text.lines().collect();
            let (Some(pid), Some(port)) = (lines.first(), lines.get(3)) else {
                continue;
            };
            let (Ok(pid), Ok(port)) = (pid.trim().parse::<u32>(), port.trim().parse::<u16>())
            else {
                continue;
            };
            if port == self.pg_port
                && parent_of(pid) == Some(self.pid)
                && comm(pid).as_deref() == Some("postgres")
            {
                return Some(pid);
            }
        }
        None
    }

    /// `Some(status)` once serve has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.as_mut()?.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown: {e}")),
        }
    }

    /// The last `n` lines of serve's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| format!("  | {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Lines of serve's log containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .map(String::from)
            .collect()
    }

    /// SIGINT, wait (bounded), SIGKILL if it is still there; remove the private TMPDIR.
    /// Says how serve ended. Safe to call twice.
    pub fn stop(&mut self) -> Option<String> {
        let mut child = self.child.take()?;
        let ended = match child.try_wait() {
            Ok(Some(status)) => format!("had already exited ({status})"),
            _ => {
                // SAFETY: signalling our own child.
                unsafe {
                    libc::kill(self.pid as i32, libc::SIGINT);
                }
                let started = Instant::now();
                loop {
                    match child.try_wait() {
                        Ok(Some(status)) => {
                            break format!(
                                "stopped by SIGINT in {:.1} s ({status})",
                                started.elapsed().as_secs_f64()
                            )
                        }
                        Ok(None) if started.elapsed() < STOP_BOUND => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        _ => {
                            let _ = child.kill();
                            let _ = child.wait();
                            break format!("did not stop within {STOP_BOUND:?} of SIGINT: killed");
                        }
                    }
                }
            }
        };
        if let Some(tmp) = self.tmp.take() {
            let _ = tmp.close();
        }
        Some(ended)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The private TMPDIR's name: this prefix, the soak's pid, a dash.
const DIR_PREFIX: &str = "cachelab-soak-";

/// Remove the private TMPDIRs of soaks that are gone (a SIGKILLed soak cannot remove its
/// own; serve, sent SIGTERM by its parent-death signal, removes its stack dir in it).
fn sweep_stale_dirs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn is_writable_dir(dir: &Path) -> bool {
    dir.is_dir()
        && tempfile::Builder::new()
            .prefix(".cachelab-soak-probe-")
            .tempfile_in(dir)
            .is_ok()
}

fn port_of_url(url: &str) -> Option<u16> {
    let after_host = url.split('@').next_back()?;
    let host_port = after_host.split('/').next()?;
    host_port.rsplit(':').next()?.parse().ok()
}

/// Fields of /proc/PID/stat after the ")" that closes the command name: state, ppid, ...
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(String::from).collect())
}

fn parent_of(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// A running (not zombie) process' name.
fn comm(pid: u32) -> Option<String> {
    if stat_fields(pid)?.first().map(String::as_str) == Some("Z") {
        return None;
    }
    Some(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()?
            .trim()
            .to_string(),
    )
}

fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&raw).replace('\0', " "))
}

fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| parent_of(pid) == Some(parent))
        .collect()
}
