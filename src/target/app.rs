//! The app under test as a child process: started with `command` in `dir` once the proxies
//! listen, its output in a log file, polled on `ready` until it answers, and ended with
//! its whole process tree at the end — through the stack's child and reaper code, so
//! Ctrl-C, an error or a panic end it too.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use super::config::{SetupError, Target};
use super::placeholders::Values;
use crate::stack::child::ManagedChild;

/// How long the app may take to answer `ready`.
pub const READY_WITHIN: Duration = Duration::from_secs(30);

/// The running app; dropping it ends it (and its children).
pub struct RunningApp {
    child: Option<ManagedChild>,
    /// Where its output goes.
    pub log: PathBuf,
}

impl RunningApp {
    /// The app's process id, while cachelab runs it.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(ManagedChild::pid)
    }

    /// End the app and its process tree now.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.stop();
        }
    }
}

/// Start the app if the target has a command (else only wait for one already running),
/// with placeholders filled from `values`, and wait until `ready` answers.
pub async fn start(target: &Target, values: &Values, log: &Path) -> Result<RunningApp, SetupError> {
    let setup = |message: String| SetupError {
        place: target.file.display().to_string(),
        message,
    };
    let mut app = RunningApp {
        child: None,
        log: log.to_path_buf(),
    };
    if let Some(command) = &target.command {
        let mut shell = Command::new("/bin/sh");
        shell
            .arg("-c")
            .arg(format!("exec {}", values.fill(command)))
            .current_dir(&target.dir);
        for (name, value) in &target.env {
            shell.env(name, values.fill(value));
        }
        let child = ManagedChild::spawn("the app", shell, log, libc::SIGTERM, libc::SIGKILL)
            .map_err(|e| setup(format!("app.command: {e:#} (in {})", target.dir.display())))?;
        tracing::info!(
            "started the app (pid {:?}); its output goes to {}",
            child.pid(),
            log.display()
        );
        app.child = Some(child);
    }
    let ready = format!("{}{}", target.url, target.ready);
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if let Some(child) = app.child.as_mut() {
            if child.has_exited() {
                return Err(setup(format!(
                    "the app exited before it was ready; the last lines of {}:\n{}",
                    log.display(),
                    tail(log, 15)
                )));
            }
        }
        let uri: hyper::Uri = ready
            .parse()
            .map_err(|e| setup(format!("app.ready: {ready}: {e}")))?;
        let attempt = tokio::time::timeout(Duration::from_secs(2), client.get(uri)).await;
        let last = match attempt {
            Ok(Ok(response)) if response.status().as_u16() < 500 => {
                let _ = response.into_body().collect().await;
                return Ok(app);
            }
            Ok(Ok(response)) => format!("HTTP {}", response.status()),
            Ok(Err(e)) => format!("{e}"),
            Err(_) => "no answer within 2 s".to_string(),
        };
        if Instant::now() >= deadline {
            return Err(setup(format!(
                "the app did not answer GET {ready} within {} s ({last}); the last lines of {}:\n{}",
                READY_WITHIN.as_secs(),
                log.display(),
                tail(log, 15)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last `lines` lines of the log (or a note that it is empty).
pub fn tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    if all.is_empty() {
        return "  (the log is empty)".into();
    }
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
