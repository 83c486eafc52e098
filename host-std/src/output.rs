//! How the desktop client shows a line: the text `seguro_core::chat` renders (the
//! reference client's prefixes, stable for scripts), coloured by its kind on a terminal
//! unless `NO_COLOR` is set, plain otherwise. The wording itself is core's.
//!
//! For scripts, `--timestamps` puts the local time (RFC 3339, seconds) and one space
//! before each line, and `--json` prints one JSON object per line instead
//! ([`json`]).

use std::io::IsTerminal;

use seguro_core::chat::{Kind, Line};
use seguro_core::client::Event;
use seguro_core::directory::Change;

/// The local clock: the offset from UTC is read once, at start, while the process has
/// one thread (reading it later is refused on Unix, where it is not thread-safe).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    offset: time::UtcOffset,
}

impl Clock {
    /// Reads the local offset now (UTC if it cannot be read). Call it before starting
    /// threads.
    pub fn local() -> Self {
        Self {
            offset: time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC),
        }
    }

    /// A clock in UTC.
    pub fn utc() -> Self {
        Self {
            offset: time::UtcOffset::UTC,
        }
    }

    /// The time now, in this clock's offset.
    pub fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc().to_offset(self.offset)
    }
}

/// `2026-12-01T15:04:05+01:00` (`Z` for UTC).
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    let o = t.offset();
    let zone = if o.is_utc() {
        "Z".to_owned()
    } else {
        let (h, m, _) = o.as_hms();
        let sign = if o.is_negative() { '-' } else { '+' };
        format!("{sign}{:02}:{:02}", h.unsigned_abs(), m.unsigned_abs())
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{zone}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `15:04` (the full-screen interface's stamp).
pub fn hhmm(t: time::OffsetDateTime) -> String {
    format!("{:02}:{:02}", t.hour(), t.minute())
}

/// The name of a line's kind in `--json` output.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Sys => "sys",
        Kind::Server => "server",
        Kind::Error => "error",
        Kind::Warn => "warn",
        Kind::Alert => "alert",
        Kind::Message => "message",
        _ => "other",
    }
}

/// What happened, as a stable word for `--json` (`"line"` for lines without one).
pub fn event_name(line: &Line<'_>) -> &'static str {
    match line {
        Line::Connected { .. } => "connected",
        Line::Users { .. } => "users",
        Line::User { .. } => "user",
        Line::Received(Event::Message { .. }) => "message",
        Line::Received(Event::Change(Change::Joined { .. })) => "joined",
        Line::Received(Event::Change(Change::Left { .. })) => "left",
        Line::Received(Event::Undecryptable { .. }) => "undecryptable",
        Line::Received(Event::Undeliverable { .. }) => "undeliverable",
        Line::Received(Event::ServerText { .. }) => "server_text",
        Line::Received(Event::ServerError { .. }) => "server_error",
        Line::KeyChanged { .. } | Line::Received(Event::Change(Change::KeyChanged { .. })) => {
            "key_changed"
        }
        Line::NotYourKey { .. } => "not_your_key",
        Line::Fingerprint { .. } => "fingerprint",
        Line::SafetyCode { .. } => "safety_code",
        Line::Reconnecting { .. } | Line::Retrying { .. } => "reconnecting",
        Line::ConnectionLost { .. } => "connection_lost",
        Line::HelpHeader | Line::Help(_) => "help",
        _ => "line",
    }
}

/// One `--json` line: `time`, `kind`, `event`, `peer` (the conversation, or null),
/// `from` and `text` for a message (as shown: control characters escaped), `line` (the
/// whole line exactly as the plain output prints it).
pub fn json(line: &Line<'_>, time: time::OffsetDateTime) -> String {
    let mut o = serde_json::Map::new();
    o.insert("time".into(), rfc3339(time).into());
    o.insert("kind".into(), kind_name(line.kind()).into());
    o.insert("event".into(), event_name(line).into());
    o.insert(
        "peer".into(),
        line.peer()
            .map_or(serde_json::Value::Null, |p| p.to_owned().into()),
    );
    if let Line::Received(Event::Message { from, .. }) = line {
        o.insert(
            "from".into(),
            seguro_core::chat::escape::Name(from).to_string().into(),
        );
        o.insert("text".into(), line.body().to_string().into());
    }
    o.insert("line".into(), line.to_string().into());
    serde_json::Value::Object(o).to_string()
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

/// The line as printed, without a line end: with ANSI colours if `color`.
pub fn render(line: &Line<'_>, color: bool) -> String {
    if !color {
        return line.to_string();
    }
    let code = match line.kind() {
        // Only the sender of a message is coloured.
        Kind::Message => {
            return format!("\x1b[1;32m{}\x1b[0m {}", line.prefix(), line.body());
        }
        Kind::Sys => "2",         // dim
        Kind::Server => "36",     // cyan
        Kind::Error => "1;31",    // bold red
        Kind::Warn => "1;33",     // bold yellow
        Kind::Alert => "1;37;41", // bold white on red
        _ => return line.to_string(),
    };
    format!("\x1b[{code}m{line}\x1b[0m")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_with_and_without_offset() {
        let t = time::OffsetDateTime::from_unix_timestamp(1_796_137_445).unwrap();
        assert_eq!(rfc3339(t), "2026-12-01T15:04:05Z");
        let plus = t.to_offset(time::UtcOffset::from_hms(5, 30, 0).unwrap());
        assert_eq!(rfc3339(plus), "2026-12-01T20:34:05+05:30");
        let minus = t.to_offset(time::UtcOffset::from_hms(-3, 0, 0).unwrap());
        assert_eq!(rfc3339(minus), "2026-12-01T12:04:05-03:00");
        assert_eq!(hhmm(minus), "12:04");
    }

    #[test]
    fn json_lines_carry_the_plain_line_and_escape_what_peers_sent() {
        let t = time::OffsetDateTime::from_unix_timestamp(1_796_137_445).unwrap();
        let m = Line::Received(Event::Message {
            from: "bob",
            text: "hi \"there\"\u{1b}[2J",
        });
        let v: serde_json::Value = serde_json::from_str(&json(&m, t)).unwrap();
        assert_eq!(v["time"], "2026-12-01T15:04:05Z");
        assert_eq!(v["kind"], "message");
        assert_eq!(v["event"], "message");
        assert_eq!(v["peer"], "bob");
        assert_eq!(v["from"], "bob");
        let line = m.to_string();
        assert_eq!(v["line"], line.as_str());
        assert!(!line.contains('\u{1b}'), "{line:?}");
        assert_eq!(v["text"].as_str().unwrap(), m.body().to_string());
        let e = Line::HostError(&"no");
        let v: serde_json::Value = serde_json::from_str(&json(&e, t)).unwrap();
        assert_eq!(v["kind"], "error");
        assert_eq!(v["event"], "line");
        assert_eq!(v["peer"], serde_json::Value::Null);
        assert_eq!(v["line"], "[ERROR] no");
        assert!(v.get("from").is_none());
    }

    #[test]
    fn plain_is_core_text_and_colour_wraps_it() {
        let m = Line::Received(seguro_core::client::Event::Message {
            from: "bob",
            text: "hola",
        });
        assert_eq!(render(&m, false), "[bob] hola");
        assert_eq!(render(&m, true), "\x1b[1;32m[bob]\x1b[0m hola");
        let e = Line::HostError(&"no");
        assert_eq!(render(&e, true), "\x1b[1;31m[ERROR] no\x1b[0m");
    }
}
