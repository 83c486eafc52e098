//! What the client shows the user: one [`Output`] per line of core's chat session,
//! rendered into a bounded string with the reference client's prefixes (`[SYS]`,
//! `[SERVER]`, `[ERROR]`, `[WARN]`, `[<from>]`) and the wording every Seguro client
//! shares ([`seguro_core::chat::Line`]), so one script reads the desktop client and a
//! board alike.

use core::fmt;

use heapless::String;
use seguro_core::chat::{self, Line};
use seguro_core::limits::{CLIENT_MAX_TEXT, MAX_NAME_BYTES};

pub use seguro_core::chat::Kind;

/// The longest output line, in bytes: a message of the default maximum text length
/// from a sender with the longest name, with room for its prefix. Longer lines are cut
/// at a character boundary.
pub const OUTPUT_MAX: usize = CLIENT_MAX_TEXT + MAX_NAME_BYTES + 64;

/// One line for the user, prefix included, without a newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// What the line is: lets a board pick a colour, a display area or an LED.
    pub kind: Kind,
    /// The full line.
    pub text: String<OUTPUT_MAX>,
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Output {
    /// The rendering of one of core's lines.
    pub fn from_line(line: &Line<'_>) -> Self {
        let mut text = String::new();
        chat::render_into(line, &mut text);
        Self {
            kind: line.kind(),
            text,
        }
    }

    /// The board's own information: `[SYS] <args>`.
    pub fn sys(args: fmt::Arguments<'_>) -> Self {
        Self::from_line(&Line::HostInfo(&args))
    }

    /// The board's own error: `[ERROR] <args>`.
    pub fn error(args: fmt::Arguments<'_>) -> Self {
        Self::from_line(&Line::HostError(&args))
    }

    /// The board's own warning: `[WARN] <args>`.
    pub fn warn(args: fmt::Arguments<'_>) -> Self {
        Self::from_line(&Line::HostWarn(&args))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seguro_core::client::Event;

    #[test]
    fn prefixes_and_escaping() {
        let m = Output::from_line(&Line::Received(Event::Message {
            from: "bob",
            text: "hi\nthere",
        }));
        assert_eq!(m.text.as_str(), "[bob] hi\\u{a}there");
        assert_eq!(m.kind, Kind::Message);
        let s = Output::from_line(&Line::Received(Event::ServerText { text: "echo: hi" }));
        assert_eq!(s.text.as_str(), "[SERVER] echo: hi");
        assert_eq!(s.kind, Kind::Server);
        let w = Output::warn(format_args!("Wi-Fi {}", "lost"));
        assert_eq!((w.kind, w.text.as_str()), (Kind::Warn, "[WARN] Wi-Fi lost"));
    }

    #[test]
    fn long_lines_are_cut_not_lost() {
        let long = "é".repeat(OUTPUT_MAX);
        let m = Output::from_line(&Line::Received(Event::ServerText { text: &long }));
        assert!(m.text.starts_with("[SERVER] é"));
        assert!(m.text.len() <= OUTPUT_MAX);
        assert!(m.text.len() > OUTPUT_MAX - 2);
    }
}
