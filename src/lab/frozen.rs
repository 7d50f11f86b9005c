//! Processes a lab froze with `pause()`: SIGSTOPped as a whole tree, and continued once —
//! by the pause's timer, or when the lab ends if that comes first. So no timer outlives
//! its lab (one used to fire in a later lab, cutting that lab's own pause short), and none
//! continues a pid the system has since handed to another process: each process is known
//! by its pid and start time.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::stack::process_tree::{signal_tree, start_time};

/// A frozen process: its pid and start time.
type Member = (u32, u64);

/// What one `pause()` froze.
pub struct Frozen {
    /// `"redis"`, `"redis:N"` or `"postgres"`.
    target: String,
    /// Shared with the timer; `None` once continued.
    members: Arc<Mutex<Option<Vec<Member>>>>,
}

impl Frozen {
    /// SIGSTOP the process trees of `pids`, the managed `target`'s processes.
    pub fn stop(target: &str, pids: &[u32]) -> Self {
        let members: Vec<Member> = pids
            .iter()
            .filter_map(|&pid| Some((pid, start_time(pid)?)))
            .collect();
        for &(pid, _) in &members {
            signal_tree(pid, libc::SIGSTOP);
        }
        Self {
            target: target.to_string(),
            members: Arc::new(Mutex::new(Some(members))),
        }
    }

    /// Continue them after `pause_for`, unless `lab_ended` comes first (the lab's end
    /// continues them itself, with `thaw`). Call from within the runtime.
    pub fn thaw_after(&self, pause_for: Duration, lab_ended: CancellationToken) {
        let members = self.members.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(pause_for) => thaw(&members),
                _ = lab_ended.cancelled() => {}
            }
        });
    }

    /// Continue them now, unless that was done already.
    pub fn thaw(&self) {
        thaw(&self.members);
    }

    /// Does this hold a process of `target` (`"redis"` stands for every node) frozen still:
    /// not continued, and still running (a stop ends a frozen process)?
    pub fn holds(&self, target: &str) -> bool {
        let named = self.target == target || self.target.starts_with(&format!("{target}:"));
        let members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        named
            && members
                .iter()
                .flatten()
                .any(|&(pid, started)| start_time(pid) == Some(started))
    }
}

/// SIGCONT the trees of `members` still running as the same processes, once.
fn thaw(members: &Mutex<Option<Vec<Member>>>) {
    let taken = members.lock().unwrap_or_else(|p| p.into_inner()).take();
    for (pid, started) in taken.into_iter().flatten() {
        if start_time(pid) == Some(started) {
            signal_tree(pid, libc::SIGCONT);
        }
    }
}
