//! Every line the chat client prints, in one place.
//!
//! Scripts (and tests) match these lines, so their wording is stable. The prefixes are
//! the reference client's: `[SYS]`, `[SERVER]`, `[ERROR]`, `[WARN]` and `[<from>]` for a
//! decrypted message. On a terminal, lines are coloured by prefix unless `NO_COLOR` is
//! set; otherwise they are plain.

use std::fmt::Write as _;
use std::io::IsTerminal;

/// What a line is, which decides its prefix and colour.
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

/// One output line: its kind and its full plain text (prefix included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutLine {
    /// The kind.
    pub kind: Kind,
    /// The text, prefix included, no newline.
    pub text: String,
}

/// Replaces control characters (including newlines and escape sequences) in text that
/// came from the network, so a peer can neither forge extra lines nor drive the terminal.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

fn line(kind: Kind, text: String) -> OutLine {
    OutLine { kind, text }
}

/// `[SYS] <text>`.
pub fn sys(text: &str) -> OutLine {
    line(Kind::Sys, format!("[SYS] {text}"))
}

/// `[ERROR] <text>` (the text is the client's own).
pub fn error(text: &str) -> OutLine {
    line(Kind::Error, format!("[ERROR] {text}"))
}

/// `[WARN] <text>` (the text is the client's own).
pub fn warn(text: &str) -> OutLine {
    line(Kind::Warn, format!("[WARN] {text}"))
}

/// A decrypted message: exactly `[<from>] <text>`.
pub fn message(from: &str, text: &str) -> OutLine {
    line(Kind::Message, format!("[{}] {}", clean(from), clean(text)))
}

/// Text from the server: `[SERVER] <text>` (a `/server hi` reply is `[SERVER] echo: hi`).
pub fn server_text(text: &str) -> OutLine {
    line(Kind::Server, format!("[SERVER] {}", clean(text)))
}

/// An `error` from the server: `[ERROR] <text>`.
pub fn server_error(text: &str) -> OutLine {
    line(Kind::Error, format!("[ERROR] {}", clean(text)))
}

/// `[SYS] connected to <host>:<port> as <user>`.
pub fn connected(host: &str, port: u16, user: &str) -> OutLine {
    sys(&format!("connected to {host}:{port} as {user}"))
}

/// `[SYS] users online (<n>):`, followed by one [`directory_entry`] per user.
pub fn directory_header(n: usize) -> OutLine {
    sys(&format!("users online ({n}):"))
}

/// `[SYS]   <name>  fp <short>`.
pub fn directory_entry(name: &str, short_fp: &str, me: bool) -> OutLine {
    let you = if me { " (you)" } else { "" };
    sys(&format!("  {}  fp {short_fp}{you}", clean(name)))
}

/// `[SYS] <name> joined, fp <short>`.
pub fn joined(name: &str, short_fp: &str) -> OutLine {
    sys(&format!("{} joined, fp {short_fp}", clean(name)))
}

/// `[SYS] <name> left`.
pub fn left(name: &str) -> OutLine {
    sys(&format!("{} left", clean(name)))
}

/// The loud warning for a key that changed during the session.
pub fn key_changed(name: &str, old_fp: &str, new_fp: &str) -> OutLine {
    let name = clean(name);
    warn(&format!(
        "KEY CHANGED for {name}: fp was {old_fp}, now {new_fp}. Either {name} restarted \
         their client or someone (the server?) is substituting keys: verify the new \
         fingerprint with {name} over another channel before trusting messages."
    ))
}

/// `[ERROR] could not decrypt message from <from>`.
pub fn undecryptable(from: &str) -> OutLine {
    error(&format!("could not decrypt message from {}", clean(from)))
}

/// `/fp <user>`: the v1 short fingerprint and the long safety code.
pub fn fingerprint(user: &str, short_fp: &str, safety: &str) -> [OutLine; 2] {
    let user = clean(user);
    [
        sys(&format!("fp {user}: {short_fp}")),
        sys(&format!("safety code {user}: {safety}")),
    ]
}

/// `[ERROR] unknown user: <user> (try /list)`.
pub fn unknown_user(user: &str) -> OutLine {
    error(&format!("unknown user: {} (try /list)", clean(user)))
}

/// The `/help` text.
pub fn help() -> Vec<OutLine> {
    [
        "commands:",
        "  /list               who is online, with fingerprints",
        "  /fp <user>          fingerprint and safety code of <user>",
        "  /to <user> <text>   end-to-end encrypted message to <user>",
        "  /server <text>      talk to the server (it answers echo: <text>)",
        "  /help               this help",
        "  /quit               leave",
    ]
    .iter()
    .map(|s| sys(s))
    .collect()
}

/// `[WARN] connection lost (<why>); reconnecting in <secs> s`.
pub fn reconnecting(why: &str, secs: f64) -> OutLine {
    warn(&format!(
        "connection lost ({why}); reconnecting in {secs:.1} s"
    ))
}

/// `[WARN] connection lost (<why>)` when not reconnecting.
pub fn connection_lost(why: &str) -> OutLine {
    warn(&format!("connection lost ({why})"))
}

/// Whether to colour terminal output: only on a terminal, and never with `NO_COLOR` set
/// to a non-empty value.
pub fn color_allowed(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Whether logs on stderr may be coloured.
pub fn stderr_color() -> bool {
    color_allowed(std::io::stderr().is_terminal())
}

impl OutLine {
    /// The line as printed: with ANSI colours if `color`.
    pub fn render(&self, color: bool) -> String {
        if !color {
            return self.text.clone();
        }
        let code = match self.kind {
            Kind::Sys => "2",      // dim
            Kind::Server => "36",  // cyan
            Kind::Error => "1;31", // bold red
            Kind::Warn => "1;33",  // bold yellow
            Kind::Message => "",
        };
        let mut s = String::with_capacity(self.text.len() + 12);
        if self.kind == Kind::Message {
            // Colour only the sender.
            if let Some(end) = self.text.find("] ") {
                let (head, tail) = self.text.split_at(end + 1);
                let _ = write!(s, "\x1b[1;32m{head}\x1b[0m{tail}");
                return s;
            }
            return self.text.clone();
        }
        let _ = write!(s, "\x1b[{code}m{}\x1b[0m", self.text);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_prefixes() {
        assert_eq!(message("bob", "hola").text, "[bob] hola");
        assert_eq!(server_text("echo: hi").text, "[SERVER] echo: hi");
        assert!(server_error("x").text.starts_with("[ERROR] "));
        assert!(key_changed("bob", "a", "b").text.starts_with("[WARN] "));
        assert!(sys("x").text.starts_with("[SYS] "));
    }

    #[test]
    fn network_text_cannot_forge_lines() {
        assert_eq!(
            message("bob", "hi\n[SERVER] pwned\x1b[2J").text,
            "[bob] hi\u{FFFD}[SERVER] pwned\u{FFFD}[2J"
        );
    }

    #[test]
    fn plain_render_is_the_text() {
        let l = message("bob", "hola");
        assert_eq!(l.render(false), "[bob] hola");
        assert!(l.render(true).contains("hola"));
    }
}
