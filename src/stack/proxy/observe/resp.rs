//! A small incremental RESP decoder (RESP2 and RESP3) for the observing Redis proxy. It
//! finds frame boundaries in both directions and pairs each reply with the command it
//! answers, which is all the counting needs; values are never copied out of the stream.
//!
//! Our own rather than `redis-protocol`: that crate decodes into owned frames (copying
//! every value) and its codec wants to own the stream, where the proxy only watches bytes
//! it forwards as they are. Replies pair with commands in order; pushes (`>`) and
//! attributes (`|`) answer nothing. After SUBSCRIBE, MONITOR or CLIENT REPLY, replies no
//! longer pair with commands, so that connection's reads are no longer judged (its
//! commands still count); inside MULTI, reads are counted as commands only.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use super::counts::{Observed, Seen};

/// How much of each command argument is looked at (keys longer than this are not matched
/// whole).
const MAX_ARG: usize = 512;

/// Nesting deeper than this is treated as a stream we cannot follow.
const MAX_DEPTH: usize = 64;

/// A decoded frame, pointing into the buffer it was read from.
#[derive(Debug, PartialEq)]
enum Frame {
    /// A nil (RESP2 `$-1`/`*-1`, RESP3 `_`).
    Nil,
    /// A bulk or verbatim string.
    Bulk(Range<usize>),
    /// A simple string, error, number, double, boolean or big number, as its line.
    Line(u8, Range<usize>),
    /// An array or a set.
    Array(Vec<Frame>),
    /// A map, keys and values alternating.
    Map(Vec<Frame>),
    /// Out-of-band data: not the answer to a command.
    Push,
    /// Metadata about the reply that follows it.
    Attribute,
}

/// Why a frame could not be read.
#[derive(Debug, PartialEq)]
enum Stop {
    /// More bytes are needed: at least this many in all.
    Incomplete(usize),
    /// Not RESP.
    Invalid,
}

/// Read one frame starting at `at`; its end on success.
fn frame(buf: &[u8], at: usize, depth: usize) -> Result<(Frame, usize), Stop> {
    if depth > MAX_DEPTH {
        return Err(Stop::Invalid);
    }
    let Some(&kind) = buf.get(at) else {
        return Err(Stop::Incomplete(at + 1));
    };
    let (line, next) = line(buf, at + 1)?;
    let number = || -> Result<i64, Stop> {
        std::str::from_utf8(&buf[line.clone()])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(Stop::Invalid)
    };
    match kind {
        b'+' | b'-' | b':' | b',' | b'#' | b'(' => Ok((Frame::Line(kind, line), next)),
        b'_' => Ok((Frame::Nil, next)),
        b'$' | b'=' | b'!' => {
            let len = number()?;
            if len < 0 {
                return Ok((Frame::Nil, next));
            }
            let end = next + len as usize;
            if buf.len() < end + 2 {
                return Err(Stop::Incomplete(end + 2));
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(Stop::Invalid);
            }
            let frame = if kind == b'!' {
                Frame::Line(b'-', next..end)
            } else {
                Frame::Bulk(next..end)
            };
            Ok((frame, end + 2))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let count = number()?;
            if count < 0 {
                return Ok((Frame::Nil, next));
            }
            let items = if matches!(kind, b'%' | b'|') {
                count as usize * 2
            } else {
                count as usize
            };
            let mut frames = Vec::with_capacity(items.min(1024));
            let mut pos = next;
            for _ in 0..items {
                let (f, end) = frame(buf, pos, depth + 1)?;
                frames.push(f);
                pos = end;
            }
            let frame = match kind {
                b'>' => Frame::Push,
                b'|' => Frame::Attribute,
                b'%' => Frame::Map(frames),
                _ => Frame::Array(frames),
            };
            Ok((frame, pos))
        }
        _ => Err(Stop::Invalid),
    }
}

/// The line starting at `at` (without its CRLF) and where the next one starts.
fn line(buf: &[u8], at: usize) -> Result<(Range<usize>, usize), Stop> {
    match buf
        .get(at..)
        .and_then(|b| b.iter().position(|&c| c == b'\n'))
    {
        Some(n) if n > 0 && buf[at + n - 1] == b'\r' => Ok((at..at + n - 1, at + n + 1)),
        Some(_) => Err(Stop::Invalid),
        None => Err(Stop::Incomplete(buf.len() + 1)),
    }
}

/// One direction's bytes not yet decoded.
#[derive(Default)]
struct Stream {
    /// The start of a frame that has not fully arrived.
    buf: Vec<u8>,
    /// Do not try again before the buffer holds this many bytes.
    need: usize,
    /// Not RESP (or not followable): ignored from now on.
    lost: bool,
}

impl Stream {
    /// Hand every complete frame in what came before plus `bytes` to `each`. Whole frames
    /// are decoded where they arrived; only an incomplete one is copied, to wait for the
    /// rest.
    fn feed(&mut self, bytes: &[u8], mut each: impl FnMut(&[u8], Frame)) {
        if self.lost {
            return;
        }
        if self.buf.is_empty() {
            let used = self.frames(bytes, &mut each);
            if !self.lost {
                self.buf.extend_from_slice(&bytes[used..]);
            }
            return;
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() < self.need {
            return;
        }
        let buf = std::mem::take(&mut self.buf);
        let used = self.frames(&buf, &mut each);
        if !self.lost {
            self.buf = buf;
            self.buf.drain(..used);
        }
    }

    /// Decode the frames of `buf` from its start; how many bytes they took. Sets `need`
    /// for an incomplete frame at the end, `lost` for one that is not RESP.
    fn frames(&mut self, buf: &[u8], each: &mut impl FnMut(&[u8], Frame)) -> usize {
        let mut pos = 0;
        self.need = 0;
        while pos < buf.len() {
            let parsed = if buf[pos].is_ascii_alphabetic() {
                inline(buf, pos)
            } else {
                frame(buf, pos, 0)
            };
            match parsed {
                Ok((f, end)) => {
                    each(buf, f);
                    pos = end;
                }
                Err(Stop::Incomplete(n)) => {
                    self.need = n - pos;
                    break;
                }
                Err(Stop::Invalid) => {
                    self.lost = true;
                    self.buf = Vec::new();
                    return buf.len();
                }
            }
        }
        pos
    }
}

/// An inline command (`PING\r\n`), as an array of its words.
fn inline(buf: &[u8], at: usize) -> Result<(Frame, usize), Stop> {
    let (line, next) = match buf[at..].iter().position(|&c| c == b'\n') {
        Some(n) => (at..at + n, at + n + 1),
        None => return Err(Stop::Incomplete(buf.len() + 1)),
    };
    let mut words = Vec::new();
    let mut start = None;
    for i in line.clone() {
        let space = buf[i].is_ascii_whitespace();
        match (space, start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                words.push(Frame::Bulk(s..i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push(Frame::Bulk(s..line.end));
    }
    Ok((Frame::Array(words), next))
}

/// A command's words, read in place from the buffer it arrived in.
struct Args<'a> {
    buf: &'a [u8],
    items: &'a [Frame],
}

impl<'a> Args<'a> {
    fn len(&self) -> usize {
        self.items.len()
    }

    /// Word `i` as text (at most `MAX_ARG` bytes of it: names and keys are short, a value
    /// is never needed whole).
    fn text(&self, i: usize) -> Option<Cow<'a, str>> {
        match self.items.get(i)? {
            Frame::Bulk(r) | Frame::Line(_, r) => {
                let end = r.end.min(r.start + MAX_ARG);
                Some(String::from_utf8_lossy(&self.buf[r.start..end]))
            }
            _ => Some(Cow::Borrowed("")),
        }
    }

    /// The command's name in capitals, or "" for one longer than any we look at.
    fn name(&self) -> Option<NameBuf> {
        let Some(Frame::Bulk(r) | Frame::Line(_, r)) = self.items.first() else {
            return self.items.first().map(|_| NameBuf::default());
        };
        let mut name = NameBuf::default();
        if r.len() <= name.bytes.len() {
            name.bytes[..r.len()].copy_from_slice(&self.buf[r.clone()]);
            name.bytes[..r.len()].make_ascii_uppercase();
            name.len = r.len();
        }
        Some(name)
    }
}

/// A command name in capitals, kept on the stack.
#[derive(Default)]
struct NameBuf {
    bytes: [u8; 16],
    len: usize,
}

impl NameBuf {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

/// What a command's reply must be checked for. Keys are kept only for the log (`None`
/// while it is not kept).
enum Awaiting {
    /// Nothing to judge.
    Nothing,
    /// A single value (GET, GETEX, GETDEL, HGET): a value is a hit, nil a miss.
    Value(Option<String>),
    /// MGET: for each position, whether its key is a cache key (and the key, for the log).
    Values(Vec<Option<Option<String>>>),
    /// HGETALL, HMGET: hit if anything came back.
    Any(Option<String>),
}

/// One connection's RESP conversation.
pub(super) struct Conversation {
    client: Stream,
    upstream: Stream,
    pairing: Pairing,
}

/// What pairs replies with commands: the commands still waiting, and the modes in which
/// replies do not pair.
struct Pairing {
    is_cache_key: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    awaiting: VecDeque<Awaiting>,
    in_multi: bool,
    /// Replies no longer pair with commands (pub/sub, MONITOR, CLIENT REPLY).
    unpaired: bool,
}

impl Conversation {
    pub(super) fn new(is_cache_key: Arc<dyn Fn(&str) -> bool + Send + Sync>) -> Self {
        Self {
            client: Stream::default(),
            upstream: Stream::default(),
            pairing: Pairing {
                is_cache_key,
                awaiting: VecDeque::new(),
                in_multi: false,
                unpaired: false,
            },
        }
    }

    pub(super) fn client_sent(&mut self, bytes: &[u8], observed: &Observed) {
        let pairing = &mut self.pairing;
        self.client.feed(bytes, |buf, frame| {
            if let Frame::Array(items) = frame {
                pairing.command(&Args { buf, items: &items }, observed);
            }
        });
    }

    pub(super) fn upstream_sent(&mut self, bytes: &[u8], observed: &Observed) {
        let pairing = &mut self.pairing;
        self.upstream.feed(bytes, |buf, frame| {
            if pairing.unpaired || matches!(frame, Frame::Push | Frame::Attribute) {
                return;
            }
            if let Some(awaiting) = pairing.awaiting.pop_front() {
                judge(awaiting, Reply::of(buf, &frame), observed);
            }
        });
    }
}

impl Pairing {
    /// Count a command the app sent, and note what its reply must be checked for.
    fn command(&mut self, args: &Args, observed: &Observed) {
        let Some(name) = args.name() else {
            return;
        };
        let name = name.as_str();
        observed.cache_command();
        let logging = observed.logging();
        let is_cache_key = &self.is_cache_key;
        let cache = |i: usize| args.text(i).filter(|k| is_cache_key(k));
        // The key as the log wants it (only while it is kept).
        let kept = |key: Cow<str>| logging.then(|| key.into_owned());
        let mut awaiting = Awaiting::Nothing;
        match name {
            "GET" | "GETEX" | "HGET" => {
                if let Some(key) = cache(1) {
                    awaiting = Awaiting::Value(kept(key));
                }
            }
            "GETDEL" => {
                if let Some(key) = cache(1) {
                    observed.cache_del(1);
                    awaiting = Awaiting::Value(kept(key));
                }
            }
            "MGET" => {
                let keys: Vec<Option<Option<String>>> =
                    (1..args.len()).map(|i| cache(i).map(kept)).collect();
                if keys.iter().any(Option::is_some) {
                    awaiting = Awaiting::Values(keys);
                }
            }
            "HGETALL" | "HMGET" => {
                if let Some(key) = cache(1) {
                    awaiting = Awaiting::Any(kept(key));
                }
            }
            "SET" | "SETEX" | "PSETEX" | "SETNX" | "GETSET" | "HSET" | "HMSET" | "HSETNX" => {
                if let Some(key) = cache(1) {
                    observed.cache_set();
                    observed.note(|| {
                        let options: Vec<Cow<str>> = match name {
                            "SET" => (3..args.len()).filter_map(|i| args.text(i)).collect(),
                            "SETEX" | "PSETEX" => vec![args.text(2).unwrap_or_default()],
                            _ => Vec::new(),
                        };
                        Seen::Redis(
                            format!("{name} {key} {}", options.join(" "))
                                .trim_end()
                                .to_string(),
                        )
                    });
                }
            }
            "MSET" | "MSETNX" => {
                for key in (1..args.len()).step_by(2).filter_map(cache) {
                    observed.cache_set();
                    observed.note(|| Seen::Redis(format!("{name} {key}")));
                }
            }
            "DEL" | "UNLINK" => {
                let keys: Vec<Cow<str>> = (1..args.len()).filter_map(cache).collect();
                if !keys.is_empty() {
                    observed.cache_del(keys.len() as u64);
                    observed.note(|| Seen::Redis(format!("{name} {}", keys.join(" "))));
                }
            }
            "MULTI" => self.in_multi = true,
            "EXEC" | "DISCARD" => self.in_multi = false,
            "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" | "MONITOR" => self.unpaired = true,
            "CLIENT"
                if args
                    .text(1)
                    .is_some_and(|a| a.eq_ignore_ascii_case("REPLY")) =>
            {
                self.unpaired = true
            }
            _ => {}
        }
        if self.in_multi && name != "MULTI" {
            // Answered QUEUED now, the values only in EXEC's array.
            awaiting = Awaiting::Nothing;
        }
        if self.unpaired {
            self.awaiting.clear();
        } else {
            self.awaiting.push_back(awaiting);
        }
    }
}

/// Count a reply's hits and misses against what its command awaited.
fn judge(awaiting: Awaiting, reply: Reply, observed: &Observed) {
    let outcome = |key: &Option<String>, hit: bool, name: &str| {
        if hit {
            observed.hit();
        } else {
            observed.miss();
        }
        let verdict = if hit { "hit" } else { "miss" };
        let key = key.as_deref().unwrap_or("");
        observed.note(|| Seen::Redis(format!("{name} {key} -> {verdict}")));
    };
    match (awaiting, reply) {
        (Awaiting::Nothing, _) | (_, Reply::Error) => {}
        (Awaiting::Value(key), reply) => outcome(&key, reply.has_value(), "GET"),
        (Awaiting::Values(keys), Reply::Many(values)) => {
            for (key, value) in keys.iter().zip(values) {
                if let Some(key) = key {
                    outcome(key, value, "MGET");
                }
            }
        }
        (Awaiting::Values(_), _) => {}
        (Awaiting::Any(key), reply) => outcome(&key, reply.has_value(), "HGETALL"),
    }
}

/// What a reply amounts to, for judging.
enum Reply {
    Nil,
    Error,
    /// A value (or a non-empty aggregate).
    Value,
    /// An empty aggregate.
    Empty,
    /// An array's elements: which were values.
    Many(Vec<bool>),
}

impl Reply {
    fn of(_buf: &[u8], frame: &Frame) -> Self {
        match frame {
            Frame::Nil => Reply::Nil,
            Frame::Line(b'-', _) => Reply::Error,
            Frame::Array(items) if items.is_empty() => Reply::Empty,
            Frame::Array(items) => Reply::Many(
                items
                    .iter()
                    .map(|f| !matches!(f, Frame::Nil | Frame::Line(b'-', _)))
                    .collect(),
            ),
            Frame::Map(items) if items.is_empty() => Reply::Empty,
            _ => Reply::Value,
        }
    }

    fn has_value(&self) -> bool {
        match self {
            Reply::Value => true,
            Reply::Many(values) => values.iter().any(|v| *v),
            Reply::Nil | Reply::Error | Reply::Empty => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversation() -> Conversation {
        Conversation::new(Arc::new(|k: &str| k.starts_with("user:")))
    }

    fn observed() -> Observed {
        let o = Observed::default();
        o.keep_log(true);
        o
    }

    fn count(observed: &Observed, name: &str) -> u64 {
        observed.get(name)
    }

    #[test]
    fn pipelined_gets_split_anywhere_pair_with_their_replies() {
        let (mut c, o) = (conversation(), observed());
        let commands = b"*2\r\n$3\r\nGET\r\n$6\r\nuser:1\r\n*2\r\n$3\r\nGET\r\n$6\r\nuser:2\r\n*2\r\n$3\r\nGET\r\n$5\r\nother\r\n";
        for chunk in commands.chunks(5) {
            c.client_sent(chunk, &o);
        }
        let replies = b"$-1\r\n$5\r\nhello\r\n$3\r\nabc\r\n";
        for chunk in replies.chunks(3) {
            c.upstream_sent(chunk, &o);
        }
        assert_eq!((count(&o, "hits"), count(&o, "misses")), (1, 1));
        assert_eq!(count(&o, "cache_commands"), 3);
        assert!(o
            .take_log()
            .contains(&Seen::Redis("GET user:1 -> miss".into())));
    }

    #[test]
    fn resp3_nulls_maps_pushes_and_attributes() {
        let (mut c, o) = (conversation(), observed());
        c.client_sent(b"*2\r\n$7\r\nHGETALL\r\n$6\r\nuser:1\r\n*2\r\n$3\r\nGET\r\n$6\r\nuser:2\r\n*2\r\n$3\r\nGET\r\n$6\r\nuser:3\r\n", &o);
        c.upstream_sent(b"%0\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$6\r\nuser:9\r\n|1\r\n+a\r\n:1\r\n$1\r\nx\r\n_\r\n", &o);
        assert_eq!((count(&o, "hits"), count(&o, "misses")), (1, 2));
    }

    #[test]
    fn sets_dels_mget_and_multi() {
        let (mut c, o) = (conversation(), observed());
        c.client_sent(b"SET user:1 x EX 60\r\n*3\r\n$3\r\nDEL\r\n$6\r\nuser:1\r\n$6\r\nuser:2\r\n*3\r\n$4\r\nMGET\r\n$6\r\nuser:1\r\n$6\r\nuser:2\r\n", &o);
        c.upstream_sent(b"+OK\r\n:2\r\n*2\r\n$1\r\na\r\n$-1\r\n", &o);
        assert_eq!(count(&o, "cache_sets"), 1);
        assert_eq!(count(&o, "cache_dels"), 2);
        assert_eq!((count(&o, "hits"), count(&o, "misses")), (1, 1));
        c.client_sent(b"MULTI\r\nGET user:1\r\nEXEC\r\n", &o);
        c.upstream_sent(b"+OK\r\n+QUEUED\r\n*1\r\n$1\r\na\r\n", &o);
        assert_eq!((count(&o, "hits"), count(&o, "misses")), (1, 1));
        c.client_sent(b"GET user:5\r\n", &o);
        c.upstream_sent(b"$1\r\nz\r\n", &o);
        assert_eq!(count(&o, "hits"), 2);
    }

    #[test]
    fn garbage_stops_observing_without_panicking() {
        let (mut c, o) = (conversation(), observed());
        c.upstream_sent(b"\x00\x01\x02\r\n", &o);
        c.upstream_sent(b"$1\r\nz\r\n", &o);
        assert_eq!(count(&o, "hits"), 0);
    }
}
