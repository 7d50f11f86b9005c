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

/// Lab-supplied text made safe for a terminal: control characters other than newline and
/// tab are shown escaped (`\x1b`), so a lab cannot hide lines, rewrite the title bar or
/// the clipboard, or forge the report with carriage returns.
pub fn clean(text: &str) -> String {
    if !text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return text.to_string();
    }
    text.chars()
        .map(|c| match c {
            '\n' | '\t' => c.to_string(),
            c if c.is_control() => format!("\\x{:02x}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

/// A float as a lab report shows it: at most three decimals at or above 1 (latencies in
/// ms to the microsecond), four significant digits below 1, and never float noise like
/// `1.0163399999999998`.
pub fn format_float(f: f64) -> String {
    if !f.is_finite() {
        return f.to_string();
    }
    if f == f.trunc() && f.abs() < 1e15 {
        return format!("{f:.1}");
    }
    let decimals = if f.abs() >= 1.0 {
        3
    } else {
        (3 - f.abs().log10().floor() as i32).clamp(1, 12) as usize
    };
    let text = format!("{f:.decimals$}");
    let trimmed = text.trim_end_matches('0');
    if trimmed.ends_with('.') {
        format!("{trimmed}0")
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped_but_lines_and_tabs_kept() {
        assert_eq!(
            super::clean("a\x1b[8mb\r\nc\td\x07"),
            "a\\x1b[8mb\\x0d\nc\td\\x07"
        );
        assert_eq!(super::clean("plain ✓"), "plain ✓");
    }
}
