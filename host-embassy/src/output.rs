//! What the client shows the user: one line per [`Output`], with the reference
//! client's prefixes (`[SYS]`, `[SERVER]`, `[ERROR]`, `[WARN]`, `[<from>]`) and the
//! same wording as the desktop client `seguro chat`, so one script reads both.

use core::fmt::{self, Write as _};

use heapless::String;
use seguro_core::client::Event;
use seguro_core::fingerprint;
use seguro_core::limits::{CLIENT_MAX_TEXT, MAX_NAME_BYTES};

/// The longest output line, in bytes: a message of the default maximum text length
/// from a sender with the longest name, with room for its prefix. Longer lines are cut
/// at a character boundary.
pub const OUTPUT_MAX: usize = CLIENT_MAX_TEXT + MAX_NAME_BYTES + 64;

/// What a line is: lets a board pick a colour, a display area or an LED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `[SYS]`: the client's own information.
    Sys,
    /// `[SERVER]`: text from the server.
    Server,
    /// `[ERROR]`.
    Error,
    /// `[WARN]`.
    Warn,
    /// `[<from>] <text>`: a decrypted message.
    Message,
}

/// One line for the user, prefix included, without a newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// What the line is.
    pub kind: Kind,
    /// The full line.
    pub text: String<OUTPUT_MAX>,
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Writes into a `heapless::String`, cutting at a character boundary when full.
struct Cut<'a, const N: usize>(&'a mut String<N>);

impl<const N: usize> fmt::Write for Cut<'_, N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.0.push(c).is_err() {
                break;
            }
        }
        Ok(())
    }
}

/// Text from the network with control characters (newlines, escape sequences)
/// replaced, so a peer can neither forge extra lines nor drive a terminal.
struct Clean<'a>(&'a str);

impl fmt::Display for Clean<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            f.write_char(if c.is_control() { '\u{FFFD}' } else { c })?;
        }
        Ok(())
    }
}

impl Output {
    /// A line of `kind` made of `args`.
    pub fn new(kind: Kind, args: fmt::Arguments<'_>) -> Self {
        let mut text = String::new();
        let _ = Cut(&mut text).write_fmt(args);
        Self { kind, text }
    }

    /// `[SYS] <args>`.
    pub fn sys(args: fmt::Arguments<'_>) -> Self {
        Self::new(Kind::Sys, format_args!("[SYS] {args}"))
    }

    /// `[ERROR] <args>`.
    pub fn error(args: fmt::Arguments<'_>) -> Self {
        Self::new(Kind::Error, format_args!("[ERROR] {args}"))
    }

    /// `[WARN] <args>`.
    pub fn warn(args: fmt::Arguments<'_>) -> Self {
        Self::new(Kind::Warn, format_args!("[WARN] {args}"))
    }
}

/// `[SYS]   <name>  fp <short>` (one line of a `/list` answer).
pub fn directory_entry(name: &str, key: &[u8; 32], me: bool) -> Output {
    let you = if me { " (you)" } else { "" };
    Output::sys(format_args!(
        "  {}  fp {}{you}",
        Clean(name),
        fingerprint::short(key)
    ))
}

/// `[SYS] users online (<n>):`.
pub fn directory_header(n: usize) -> Output {
    Output::sys(format_args!("users online ({n}):"))
}

/// `[SYS] connected to <server> as <user>`, shown when the server welcomes us.
pub fn connected(server: &dyn fmt::Display, user: &str) -> Output {
    Output::sys(format_args!("connected to {server} as {}", Clean(user)))
}

/// The line for one client event, or `None` for [`Event::Registered`] and
/// [`Event::Directory`], which the caller expands into [`connected`],
/// [`directory_header`] and one [`directory_entry`] per user.
pub fn event_line(event: &Event<'_>) -> Option<Output> {
    Some(match *event {
        Event::Registered { .. } | Event::Directory => return None,
        Event::Joined { name, key } => Output::sys(format_args!(
            "{} joined, fp {}",
            Clean(name),
            fingerprint::short(key)
        )),
        Event::Left { name } => Output::sys(format_args!("{} left", Clean(name))),
        Event::KeyChanged { name, old, new } => {
            let name = Clean(name);
            Output::warn(format_args!(
                "KEY CHANGED for {name}: fp was {}, now {}. Either {name} restarted \
                 their client or someone (the server?) is substituting keys: verify the new \
                 fingerprint with {name} over another channel before trusting messages.",
                fingerprint::short(old),
                fingerprint::short(new)
            ))
        }
        Event::DirectoryTruncated(dropped) => Output::warn(format_args!(
            "the directory is larger than this client holds: {} user(s) not shown",
            dropped.over_capacity.saturating_add(dropped.name_too_long)
        )),
        Event::Message { from, text } => Output::new(
            Kind::Message,
            format_args!("[{}] {}", Clean(from), Clean(text)),
        ),
        Event::Undecryptable { from, reason } => Output::error(format_args!(
            "could not decrypt message from {} ({reason})",
            Clean(from)
        )),
        Event::Undeliverable { from, reason } => Output::error(format_args!(
            "message from {} dropped: {reason}",
            Clean(if from.is_empty() { "?" } else { from })
        )),
        Event::ServerText { text } => {
            Output::new(Kind::Server, format_args!("[SERVER] {}", Clean(text)))
        }
        Event::ServerError { text } => Output::error(format_args!("{}", Clean(text))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_cleaning() {
        let m = event_line(&Event::Message {
            from: "bob",
            text: "hi\nthere",
        })
        .unwrap();
        assert_eq!(m.text.as_str(), "[bob] hi\u{FFFD}there");
        assert_eq!(m.kind, Kind::Message);
        let s = event_line(&Event::ServerText { text: "echo: hi" }).unwrap();
        assert_eq!(s.text.as_str(), "[SERVER] echo: hi");
        assert!(event_line(&Event::Directory).is_none());
        assert!(event_line(&Event::Registered { users: 1 }).is_none());
    }

    #[test]
    fn long_lines_are_cut_not_lost() {
        let long = "é".repeat(OUTPUT_MAX);
        let m = event_line(&Event::ServerText { text: &long }).unwrap();
        assert!(m.text.starts_with("[SERVER] é"));
        assert!(m.text.len() <= OUTPUT_MAX);
    }
}
