//! The one place user-facing text is written, with colour only on a terminal.

use std::io::{IsTerminal, Write};

/// Writes lines to stdout or stderr, colouring only when that stream is a TTY.
pub struct Printer {
    to_stderr: bool,
    colour: bool,
}

impl Printer {
    pub fn stdout() -> Self {
        Self {
            to_stderr: false,
            colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    pub fn stderr() -> Self {
        Self {
            to_stderr: true,
            colour: std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    pub fn line(&self, text: &str) {
        let _ = if self.to_stderr {
            writeln!(std::io::stderr().lock(), "{text}")
        } else {
            writeln!(std::io::stdout().lock(), "{text}")
        };
    }

    /// `text` in green (a pass) when colouring.
    pub fn green(&self, text: &str) -> String {
        self.paint("32", text)
    }

    /// `text` in red (a failure) when colouring.
    pub fn red(&self, text: &str) -> String {
        self.paint("31", text)
    }

    /// `text` in bold when colouring.
    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    /// `text` dimmed when colouring.
    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}
