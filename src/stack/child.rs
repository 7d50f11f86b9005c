//! A server process the stack started, ended when its owner drops it.
//!
//! Children are put in their own process group so a terminal's Ctrl-C reaches only
//! cachelab, which then stops them in order. When spawned from the main thread they also
//! get a parent-death signal, so even a SIGKILLed cachelab does not leave them running.
//! Every child is registered with the reaper until it has been waited for.

use anyhow::Context;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::reaper;

/// A running server process and how to end it.
pub struct ManagedChild {
    name: &'static str,
    child: Option<Child>,
    /// The signal that asks this server for a quick clean shutdown.
    stop_signal: i32,
}

impl ManagedChild {
    /// Spawn `command` with output going to `log` and register it with the reaper.
    /// `exit_signal` is what the reaper (and the parent-death signal) sends.
    pub fn spawn(
        name: &'static str,
        mut command: Command,
        log: &std::path::Path,
        stop_signal: i32,
        exit_signal: i32,
    ) -> anyhow::Result<Self> {
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("creating log file {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        // SAFETY: only async-signal-safe calls between fork and exec.
        let from_main_thread = unsafe { libc::gettid() == libc::getpid() };
        unsafe {
            command.pre_exec(move || {
                libc::setpgid(0, 0);
                if from_main_thread {
                    libc::prctl(libc::PR_SET_PDEATHSIG, exit_signal);
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        reaper::track_child(child.id(), exit_signal);
        Ok(Self {
            name,
            child: Some(child),
            stop_signal,
        })
    }

    /// Has the process exited already (crashed, or killed by someone else)?
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Ask the process to stop, wait up to five seconds, then SIGKILL it.
    pub fn stop(&mut self) {
        self.end_with(self.stop_signal);
    }

    /// Kill the process at once (tests use this to simulate a crash).
    pub fn kill(&mut self) {
        self.end_with(libc::SIGKILL);
    }

    fn end_with(&mut self, signal: i32) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(pid as i32, signal);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    tracing::warn!("{} did not stop in 5 s; killing it", self.name);
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        reaper::untrack_child(pid);
    }
}

impl Drop for ManagedChild {
    fn drop(&mut self) {
        self.stop();
    }
}
