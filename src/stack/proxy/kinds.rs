//! Every fault kind a lab can name, in one table: its name, the options it takes, a line
//! of documentation, and what it makes the proxy do. A new kind is one entry here (and, if
//! it needs new behaviour on the wire, a `Fault` variant the delay line and the connection
//! handle — the compiler lists the places).

use super::{Fault, FaultProxy};

/// What a kind asks of a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Put this fault in force until the next one or a heal.
    Set(Fault),
    /// Cut every open connection once; the fault in force stays.
    CutOnce,
}

impl Action {
    /// Do it on `proxy`.
    pub fn apply(self, proxy: &FaultProxy) {
        match self {
            Action::Set(fault) => proxy.set(fault),
            Action::CutOnce => proxy.reset_connections(),
        }
    }
}

/// A kind's options, read by name; every value is a non-negative integer.
pub type Options<'a> = &'a dyn Fn(&str) -> u64;

/// One fault kind.
pub struct FaultKind {
    /// What a lab writes: `fault("redis", "latency", ...)`.
    pub name: &'static str,
    /// The option names the kind accepts (any other is an error).
    pub options: &'static [&'static str],
    /// What it does, for the lab API's documentation and error messages.
    pub doc: &'static str,
    /// The action, from the options given; `Err` says what is wrong with them.
    pub action: fn(Options) -> Result<Action, String>,
}

/// The kinds, in the order error messages list them.
pub const KINDS: &[FaultKind] = &[
    FaultKind {
        name: "latency",
        options: &["ms", "jitter_ms"],
        doc: "added to data in both directions, on open and new connections alike",
        action: |opt| {
            let (ms, jitter_ms) = (opt("ms"), opt("jitter_ms"));
            if ms == 0 && jitter_ms == 0 {
                return Err("\"latency\" needs #{ms: ..., jitter_ms: ...}".into());
            }
            Ok(Action::Set(Fault::Latency { ms, jitter_ms }))
        },
    },
    FaultKind {
        name: "down",
        options: &[],
        doc: "refuse new connections, cut open ones",
        action: |_| Ok(Action::Set(Fault::Down)),
    },
    FaultKind {
        name: "blackhole",
        options: &[],
        doc: "accept, never answer",
        action: |_| Ok(Action::Set(Fault::Blackhole)),
    },
    FaultKind {
        name: "reset",
        options: &[],
        doc: "cut open connections once",
        action: |_| Ok(Action::CutOnce),
    },
];

/// The kind called `name`.
pub fn find(name: &str) -> Option<&'static FaultKind> {
    KINDS.iter().find(|k| k.name == name)
}

/// `"latency", "down", "blackhole" or "reset"`, for error messages.
pub fn names() -> String {
    let quoted: Vec<String> = KINDS.iter().map(|k| format!("{:?}", k.name)).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once_and_named_in_messages() {
        assert_eq!(names(), "\"latency\", \"down\", \"blackhole\" or \"reset\"");
        for kind in KINDS {
            assert_eq!(find(kind.name).map(|k| k.name), Some(kind.name));
        }
    }

    #[test]
    fn latency_without_a_delay_is_refused() {
        let none = |_: &str| 0;
        assert!((find("latency").unwrap().action)(&none).is_err());
        let some = |k: &str| if k == "ms" { 5 } else { 0 };
        assert_eq!(
            (find("latency").unwrap().action)(&some),
            Ok(Action::Set(Fault::Latency {
                ms: 5,
                jitter_ms: 0
            }))
        );
    }
}
