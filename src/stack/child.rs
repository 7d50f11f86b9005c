//! A server process the stack started, ended when its owner drops it.
//!
//! Children are put in their own process group so a terminal's Ctrl-C reaches only
//! cachelab, which then stops them in order. They also get a parent-death signal, so even
//! a SIGKILLed cachelab does not leave them running. Linux ties that signal to the
//! *thread* that forked, so every child is forked by one spawner thread that lives as
//! long as the process, whichever thread asks (a lab restarting Redis runs on a worker).
//! Every child is registered with the reaper until it has been waited for.

use anyhow::Context;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use super::process_tree::{descendants, end_leftovers, signal_tree};
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
        // Appended: a restarted server keeps its earlier log.
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("creating log file {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        command.process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, exit_signal);
                Ok(())
            });
        }
        let child = spawn_on_spawner(command).with_context(|| format!("starting {name}"))?;
        reaper::track_child(child.id(), exit_signal);
        Ok(Self {
            name,
            child: Some(child),
            stop_signal,
        })
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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
        // A paused server cannot act on a stop signal, and children frozen with it would
        // outlive it (postgres' backends keep its shared memory, so no postgres starts on
        // that data again): continue the whole tree first, and remember who was in it.
        let tree = descendants(pid);
        signal_tree(pid, libc::SIGCONT);
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
        end_leftovers(self.name, &tree);
        reaper::untrack_child(pid);
    }
}

/// A request to the spawner thread: a command, and where to send the child.
type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// The spawner thread's inbox; the thread is started on first use and never ends.
static SPAWNER: LazyLock<Mutex<mpsc::Sender<SpawnRequest>>> = LazyLock::new(|| {
    let (tx, rx) = mpsc::channel::<SpawnRequest>();
    std::thread::Builder::new()
        .name("cachelab-spawner".into())
        .spawn(move || {
            for (mut command, reply) in rx {
                let _ = reply.send(command.spawn());
            }
        })
        .expect("starting the spawner thread");
    Mutex::new(tx)
});

/// Fork and exec `command` on the spawner thread.
fn spawn_on_spawner(command: Command) -> std::io::Result<Child> {
    let (tx, rx) = mpsc::channel();
    let sent = SPAWNER
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((command, tx));
    if sent.is_err() {
        return Err(std::io::Error::other("the spawner thread is gone"));
    }
    rx.recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("the spawner thread is gone")))
}

impl Drop for ManagedChild {
    fn drop(&mut self) {
        self.stop();
    }
}
