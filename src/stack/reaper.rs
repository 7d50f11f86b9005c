//! Last-resort cleanup of everything the managed stack started.
//!
//! The normal path ends children and removes temp dirs through `Drop`, in order. This
//! registry is the safety net for the paths where destructors never run: `process::exit`,
//! a panic that unwinds out of `main`, or a test binary that keeps its stack in a static.
//! An `atexit` hook kills every child still registered and removes every directory.

use std::path::PathBuf;
use std::sync::{Mutex, Once};

/// A child process still running, with the signal that ends it fastest.
struct TrackedChild {
    pid: i32,
    signal: i32,
}

#[derive(Default)]
struct Registry {
    children: Vec<TrackedChild>,
    dirs: Vec<PathBuf>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    children: Vec::new(),
    dirs: Vec::new(),
});
static INSTALL: Once = Once::new();

extern "C" fn reap_at_exit() {
    reap_all();
}

fn install() {
    INSTALL.call_once(|| {
        // SAFETY: registering a plain `extern "C"` function with no captured state.
        unsafe {
            libc::atexit(reap_at_exit);
        }
    });
}

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Remember a child so that it is killed with `signal` if the process exits without
/// ending it first.
pub fn track_child(pid: u32, signal: i32) {
    install();
    registry().children.push(TrackedChild {
        pid: pid as i32,
        signal,
    });
}

/// Forget a child that has been ended and waited for.
pub fn untrack_child(pid: u32) {
    registry().children.retain(|c| c.pid != pid as i32);
}

/// Remember a directory to remove at exit if nothing removed it before.
pub fn track_dir(path: PathBuf) {
    install();
    registry().dirs.push(path);
}

/// Forget a directory that has been removed.
pub fn untrack_dir(path: &std::path::Path) {
    registry().dirs.retain(|d| d != path);
}

/// Kill every registered child, wait for it, and remove every registered directory.
pub fn reap_all() {
    let (children, dirs) = {
        let mut reg = registry();
        (
            std::mem::take(&mut reg.children),
            std::mem::take(&mut reg.dirs),
        )
    };
    for child in &children {
        // A paused server would not act on its signal and its frozen children would
        // outlive it: continue them all first.
        super::process_tree::signal_tree(child.pid as u32, libc::SIGCONT);
        // SAFETY: signalling and reaping our own child by pid.
        unsafe {
            libc::kill(child.pid, child.signal);
        }
    }
    for child in &children {
        wait_or_kill(child.pid);
    }
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Wait up to five seconds for `pid` to exit, then SIGKILL it and reap it.
fn wait_or_kill(pid: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let mut status = 0;
        // SAFETY: non-blocking wait on our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r != 0 {
            return; // exited and reaped, or not our child any more
        }
        if std::time::Instant::now() > deadline {
            // SAFETY: as above.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
