//! One direction of a proxied connection: read chunks from one side, write them to the
//! other. Under latency each chunk is stamped on arrival and released at arrival + delay, in
//! order, so delays overlap like a long wire's instead of adding up; healthy chunks go
//! straight through unless delayed ones are still queued ahead of them.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::observe::Tap;
use super::{Control, Fault};

/// Which way a pump carries bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    ToUpstream,
    ToClient,
}

/// Read size: large, so a bulk transfer costs few wake-ups.
const CHUNK: usize = 64 * 1024;
/// Bytes a direction may hold back before it stops reading (and TCP pushes back on the
/// sender), so a slow link cannot grow memory without bound.
const MAX_HELD: usize = 4 * 1024 * 1024;

/// Carry bytes from `from` to `to` until `from` ends (then end `to`'s writing side too,
/// after everything held back has gone) or either side fails. The fault is read from
/// `control` only when it changes. What is forwarded is shown to `tap` (target mode), and
/// toward the client every chunk is held `control.hold_ms` on top of any latency (a slow
/// database, in the Postgres proxy).
pub(super) async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut control: watch::Receiver<Control>,
    direction: Direction,
    tap: Option<Tap>,
) -> io::Result<()> {
    let mut state = State::new(&mut control, direction);
    let mut line = DelayLine::default();
    let mut buf = BytesMut::with_capacity(CHUNK);
    let mut reading = true;
    loop {
        // A change of fault is seen here, before the next chunk is handled, without waiting
        // on the channel: waiting registers with it, and every connection shares it.
        match control.has_changed() {
            Ok(true) => state.update(&mut control, &mut line),
            Ok(false) => {}
            Err(_) => return Ok(()),
        }
        if !reading && line.is_empty() {
            if state.fault == Some(Fault::Blackhole) {
                // A blackhole swallows the end of the stream too; the connection is cut
                // when the blackhole ends.
                return std::future::pending().await;
            }
            return to.shutdown().await;
        }
        let Some(due) = line.next_due() else {
            // Nothing held back (the healthy path): just read.
            if from.read_buf(&mut buf).await? == 0 {
                reading = false;
            } else {
                if control.has_changed().unwrap_or(false) {
                    state.update(&mut control, &mut line);
                }
                state
                    .carry(&mut buf, &mut line, &mut to, tap.as_ref())
                    .await?;
            }
            continue;
        };
        tokio::select! {
            biased;
            changed = control.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                state.update(&mut control, &mut line);
            }
            _ = tokio::time::sleep_until(due) => {
                let chunk = line.pop().expect("a chunk is due");
                to.write_all(&chunk).await?;
            }
            read = from.read_buf(&mut buf), if reading && line.has_room() => {
                if read? == 0 {
                    reading = false;
                    continue;
                }
                state.carry(&mut buf, &mut line, &mut to, tap.as_ref()).await?;
            }
        }
    }
}

/// The fault a pump works under, as last read from the control channel.
struct State {
    direction: Direction,
    fault: Option<Fault>,
    /// Extra time each chunk toward the client is held (a slow database).
    hold: u64,
}

impl State {
    fn new(control: &mut watch::Receiver<Control>, direction: Direction) -> Self {
        let now = control.borrow_and_update();
        Self {
            direction,
            fault: now.fault,
            hold: hold_of(&now, direction),
        }
    }

    /// Take the control's current fault and hold; a blackhole drops what is held back.
    fn update(&mut self, control: &mut watch::Receiver<Control>, line: &mut DelayLine) {
        let now = control.borrow_and_update();
        self.fault = now.fault;
        self.hold = hold_of(&now, self.direction);
        if self.fault == Some(Fault::Blackhole) {
            line.clear();
        }
    }

    /// Show the chunk just read to `tap`, then send it on, hold it back or drop it, as the
    /// fault says.
    async fn carry(
        &self,
        buf: &mut BytesMut,
        line: &mut DelayLine,
        to: &mut (impl AsyncWrite + Unpin),
        tap: Option<&Tap>,
    ) -> io::Result<()> {
        if let (Some(tap), None | Some(Fault::Latency { .. })) = (tap, self.fault) {
            match self.direction {
                Direction::ToUpstream => tap.client_sent(buf),
                Direction::ToClient => tap.upstream_sent(buf),
            }
        }
        match self.fault {
            None if self.hold > 0 => {
                let release = Instant::now() + Duration::from_millis(self.hold);
                line.push(release, buf.split().freeze());
            }
            None if line.is_empty() => {
                to.write_all(buf).await?;
                buf.clear();
            }
            None => line.push(Instant::now(), buf.split().freeze()),
            Some(Fault::Latency { ms, jitter_ms }) => {
                let wait = delay(ms, jitter_ms) + Duration::from_millis(self.hold);
                line.push(Instant::now() + wait, buf.split().freeze());
            }
            // Down is about to cut the connection; a blackhole answers nothing.
            Some(Fault::Down | Fault::Blackhole) => buf.clear(),
        }
        if buf.capacity() < CHUNK / 4 {
            buf.reserve(CHUNK);
        }
        Ok(())
    }
}

/// The hold `direction` works under: only answers (toward the client) are held.
fn hold_of(control: &Control, direction: Direction) -> u64 {
    match direction {
        Direction::ToClient => control.hold_ms,
        Direction::ToUpstream => 0,
    }
}

/// `ms` ± a uniform jitter, never below zero.
fn delay(ms: u64, jitter_ms: u64) -> Duration {
    let offset = if jitter_ms == 0 {
        0
    } else {
        let jitter = jitter_ms as i64;
        rand::rng().random_range(-jitter..=jitter)
    };
    Duration::from_millis((ms as i64 + offset).max(0) as u64)
}

/// Chunks held back with the time each may leave. They leave in arrival order: a chunk
/// whose jitter came out shorter waits for the one ahead of it, as on a real stream.
#[derive(Default)]
struct DelayLine {
    chunks: VecDeque<(Instant, Bytes)>,
    held: usize,
}

impl DelayLine {
    fn push(&mut self, release: Instant, chunk: Bytes) {
        self.held += chunk.len();
        self.chunks.push_back((release, chunk));
    }

    fn pop(&mut self) -> Option<Bytes> {
        let (_, chunk) = self.chunks.pop_front()?;
        self.held -= chunk.len();
        Some(chunk)
    }

    fn next_due(&self) -> Option<Instant> {
        self.chunks.front().map(|(release, _)| *release)
    }

    fn clear(&mut self) {
        self.chunks.clear();
        self.held = 0;
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    fn has_room(&self) -> bool {
        self.held < MAX_HELD
    }
}

#[cfg(test)]
mod tests {
    use super::delay;
    use std::time::Duration;

    #[test]
    fn jitter_never_makes_a_delay_negative_or_leave_its_bounds() {
        for _ in 0..1000 {
            let d = delay(5, 20);
            assert!(d <= Duration::from_millis(25), "{d:?}");
        }
        for _ in 0..1000 {
            let d = delay(100, 20);
            assert!(d >= Duration::from_millis(80) && d <= Duration::from_millis(120));
        }
        assert_eq!(delay(30, 0), Duration::from_millis(30));
    }
}
