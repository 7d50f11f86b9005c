//! A decoder of PostgreSQL's frontend/backend protocol (3.0) for the observing proxy:
//! the startup, simple queries (`Q`), the extended protocol (`P`arse names a statement,
//! `B`ind a portal of it, `E`xecute the portal: one query run) and the backend's
//! `E`rrorResponse. Every message is `type, length, body` after the startup, so following
//! the stream needs nothing but lengths. Written here: the crates that speak the protocol
//! (tokio-postgres, pgwire) are a client and a server, not a passive reader of both sides.

use std::collections::HashMap;

use super::counts::{Observed, Seen};

/// The request codes of an 8-byte SSLRequest and GSSENCRequest.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
/// Longest statement text kept for the log.
const NOTE_LEN: usize = 160;
/// A message longer than this is not followed (the stream is probably not Postgres).
const MAX_MESSAGE: usize = 1 << 30;

/// Is `first` (a connection's first 8 bytes) an SSLRequest or GSSENCRequest?
pub(super) fn is_encryption_request(first: &[u8]) -> bool {
    if first.len() < 8 || first[..4] != 8u32.to_be_bytes() {
        return false;
    }
    let code = u32::from_be_bytes([first[4], first[5], first[6], first[7]]);
    code == SSL_REQUEST || code == GSSENC_REQUEST
}

/// One direction's undecoded bytes.
#[derive(Default)]
struct Stream {
    buf: Vec<u8>,
    lost: bool,
}

impl Stream {
    /// Append `bytes` and hand every complete message (type, body) to `each`; the client's
    /// untyped startup messages come first while `untyped` says so.
    fn feed(&mut self, bytes: &[u8], untyped: &mut bool, mut each: impl FnMut(u8, &[u8])) {
        if self.lost {
            return;
        }
        self.buf.extend_from_slice(bytes);
        let mut pos = 0;
        loop {
            let header = if *untyped { 4 } else { 5 };
            let Some(len) = self.buf.get(pos + header - 4..pos + header) else {
                break;
            };
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            if !(4..=MAX_MESSAGE).contains(&len) {
                self.lost = true;
                self.buf = Vec::new();
                return;
            }
            let end = pos + header - 4 + len;
            if self.buf.len() < end {
                break;
            }
            if *untyped {
                let code =
                    u32::from_be_bytes(self.buf[pos + 4..pos + 8].try_into().unwrap_or([0; 4]));
                // The startup message (protocol 3.0) ends the untyped part; an encryption
                // or cancel request is another untyped message.
                if code >> 16 == 3 {
                    *untyped = false;
                }
            } else {
                each(self.buf[pos], &self.buf[pos + 5..end]);
            }
            pos = end;
        }
        self.buf.drain(..pos);
    }
}

/// One connection's Postgres conversation.
pub(super) struct Conversation {
    client: Stream,
    upstream: Stream,
    starting: bool,
    /// Prepared statements by name (`""`: the unnamed one), and what each portal runs.
    statements: HashMap<String, String>,
    portals: HashMap<String, String>,
}

impl Default for Conversation {
    fn default() -> Self {
        Self {
            client: Stream::default(),
            upstream: Stream::default(),
            starting: true,
            statements: HashMap::new(),
            portals: HashMap::new(),
        }
    }
}

impl Conversation {
    pub(super) fn client_sent(&mut self, bytes: &[u8], observed: &Observed) {
        let mut messages = Vec::new();
        self.client.feed(bytes, &mut self.starting, |kind, body| {
            if matches!(kind, b'Q' | b'P' | b'B' | b'E') {
                messages.push((kind, body.to_vec()));
            }
        });
        for (kind, body) in messages {
            let mut fields = body.split(|&b| b == 0).map(|f| String::from_utf8_lossy(f));
            match kind {
                b'Q' => run(&fields.next().unwrap_or_default(), observed),
                b'P' => {
                    let name = fields.next().unwrap_or_default().into_owned();
                    let sql = fields.next().unwrap_or_default().into_owned();
                    self.statements.insert(name, sql);
                }
                b'B' => {
                    let portal = fields.next().unwrap_or_default().into_owned();
                    let statement = fields.next().unwrap_or_default();
                    let sql = self.statements.get(statement.as_ref()).cloned();
                    self.portals.insert(portal, sql.unwrap_or_default());
                }
                _ => {
                    let portal = fields.next().unwrap_or_default();
                    let sql = self.portals.get(portal.as_ref()).cloned();
                    run(&sql.unwrap_or_default(), observed);
                }
            }
        }
    }

    pub(super) fn upstream_sent(&mut self, bytes: &[u8], observed: &Observed) {
        // The backend's messages are all typed (the `N` to an SSLRequest is the proxy's).
        let mut untyped = false;
        self.upstream.feed(bytes, &mut untyped, |kind, body| {
            if kind == b'E' {
                observed.db_error();
                observed.note(|| Seen::SqlError(error_message(body)));
            }
        });
    }
}

/// Count one statement run, as a read, a write or neither.
fn run(sql: &str, observed: &Observed) {
    let first = sql
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    let read = matches!(first.as_str(), "SELECT" | "WITH" | "TABLE" | "VALUES");
    let write = matches!(first.as_str(), "INSERT" | "UPDATE" | "DELETE" | "MERGE");
    observed.db_query(read, write);
    observed.note(|| {
        let mut note: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        if note.len() > NOTE_LEN {
            let cut = (0..=NOTE_LEN)
                .rev()
                .find(|&i| note.is_char_boundary(i))
                .unwrap_or(0);
            note.truncate(cut);
            note.push('…');
        }
        Seen::Sql(note)
    });
}

/// The `M`essage field of an ErrorResponse body.
fn error_message(body: &[u8]) -> String {
    body.split(|&b| b == 0)
        .find(|f| f.first() == Some(&b'M'))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .unwrap_or_else(|| "an error".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn startup_simple_and_extended_queries_are_counted() {
        let (mut c, o) = (Conversation::default(), Observed::default());
        o.keep_log(true);
        let mut stream = Vec::new();
        let startup = b"\x00\x03\x00\x00user\x00app\x00\x00";
        stream.extend_from_slice(&(startup.len() as u32 + 4).to_be_bytes());
        stream.extend_from_slice(startup);
        stream.extend(message(b'Q', b"SELECT name FROM users WHERE id = 1\0"));
        stream.extend(message(
            b'P',
            b"s1\0UPDATE users SET name = $1 WHERE id = $2\0\0\0",
        ));
        stream.extend(message(b'B', b"\0s1\0\0\0\0\0\0"));
        stream.extend(message(b'E', b"\0\0\0\0\0"));
        stream.extend(message(b'S', b""));
        for chunk in stream.chunks(7) {
            c.client_sent(chunk, &o);
        }
        assert_eq!(o.get("db_queries"), 2);
        assert_eq!(o.get("db_reads"), 1);
        assert_eq!(o.get("db_writes"), 1);
        c.upstream_sent(
            &message(b'E', b"SERROR\0Mrelation \"x\" does not exist\0\0"),
            &o,
        );
        assert_eq!(o.get("db_errors"), 1);
        assert!(o
            .take_log()
            .contains(&Seen::SqlError("relation \"x\" does not exist".into())));
    }

    #[test]
    fn an_ssl_request_is_recognised() {
        let mut ssl = 8u32.to_be_bytes().to_vec();
        ssl.extend_from_slice(&SSL_REQUEST.to_be_bytes());
        assert!(is_encryption_request(&ssl));
        assert!(!is_encryption_request(b"\x00\x00\x00\x08\x00\x03\x00\x00"));
    }
}
