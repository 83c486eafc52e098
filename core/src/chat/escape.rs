//! Showing what others supplied (names, message text, server text) without letting it
//! act on the screen.
//!
//! Control characters (C0, DEL, C1: newlines, escape sequences), the bidirectional
//! controls U+202A–U+202E and U+2066–U+2069, zero-width and every other format (Cf)
//! character, and the line and paragraph separators are shown as `\u{202e}`: visible,
//! so no peer can start a forged `[SYS]` line, reorder a line on screen or hide
//! characters in a name. One exception keeps emoji whole: a zero-width joiner between
//! two emoji (👩‍💻) is kept in message text, never in names.
//!
//! Names are stricter still: white space and brackets are escaped too (the reference
//! server accepts any name, and `SYS] ok [bob` would otherwise forge a prefix), and a
//! name that is exactly one of the line prefixes (`SYS`, `SERVER`, `ERROR`, `WARN`) has
//! its first letter escaped, so `[SYS] hi` from a user called `SYS` reads
//! `[\u{53}YS] hi`.

use core::fmt::{self, Write as _};

/// Format (Cf) characters, Unicode 15 (and the unassigned U+2065), plus U+2028 and U+2029 (Zl, Zp): inclusive ranges.
const FORMAT: &[(u32, u32)] = &[
    (0x00ad, 0x00ad),
    (0x0600, 0x0605),
    (0x061c, 0x061c),
    (0x06dd, 0x06dd),
    (0x070f, 0x070f),
    (0x0890, 0x0891),
    (0x08e2, 0x08e2),
    (0x180e, 0x180e),
    (0x200b, 0x200f),
    (0x2028, 0x202e),
    // U+2065 is unassigned, but default-ignorable like its neighbours.
    (0x2060, 0x206f),
    (0xfeff, 0xfeff),
    (0xfff9, 0xfffb),
    (0x110bd, 0x110bd),
    (0x110cd, 0x110cd),
    (0x13430, 0x1343f),
    (0x1bca0, 0x1bca3),
    (0x1d173, 0x1d17a),
    (0xe0001, 0xe0001),
    (0xe0020, 0xe007f),
];

const ZWJ: char = '\u{200d}';

/// The line prefixes a user name must not imitate.
const RESERVED: &[&str] = &["SYS", "SERVER", "ERROR", "WARN"];

/// True for a character that is shown escaped in any text from others.
pub fn is_hidden(c: char) -> bool {
    let cp = u32::from(c);
    c.is_control() || FORMAT.iter().any(|&(lo, hi)| (lo..=hi).contains(&cp))
}

fn is_emoji(c: char) -> bool {
    matches!(u32::from(c), 0x2600..=0x27bf | 0x2b00..=0x2bff | 0xfe0f | 0x1f000..=0x1faff)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Message and server text.
    Text,
    /// A user name.
    Name,
    /// Text from the host (error messages): everything hidden is escaped.
    Host,
}

fn escape_char(w: &mut dyn fmt::Write, c: char) -> fmt::Result {
    write!(w, "\\u{{{:x}}}", u32::from(c))
}

fn write_escaped(w: &mut dyn fmt::Write, s: &str, mode: Mode) -> fmt::Result {
    let reserved = mode == Mode::Name && RESERVED.contains(&s);
    let mut safe_from = 0;
    let mut prev: Option<char> = None;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let escape = match mode {
            Mode::Name => {
                (reserved && i == 0) || is_hidden(c) || c.is_whitespace() || c == '[' || c == ']'
            }
            Mode::Text if c == ZWJ => {
                let next = chars.peek().map(|&(_, n)| n);
                !(prev.is_some_and(is_emoji) && next.is_some_and(is_emoji))
            }
            Mode::Text | Mode::Host => is_hidden(c),
        };
        prev = Some(c);
        if escape {
            w.write_str(s.get(safe_from..i).unwrap_or(""))?;
            escape_char(w, c)?;
            safe_from = i + c.len_utf8();
        }
    }
    w.write_str(s.get(safe_from..).unwrap_or(""))
}

/// Message or server text, shown safely.
#[derive(Debug, Clone, Copy)]
pub struct Text<'a>(pub &'a str);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0, Mode::Text)
    }
}

/// A user name, shown safely (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Name<'a>(pub &'a str);

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0, Mode::Name)
    }
}

/// Anything displayable (a host's error, which may quote what a server sent), with
/// every hidden character escaped.
#[derive(Clone, Copy)]
pub struct Host<'a>(pub &'a dyn fmt::Display);

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Escaping<'w, 'f>(&'w mut fmt::Formatter<'f>);
        impl fmt::Write for Escaping<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                write_escaped(self.0, s, Mode::Host)
            }
        }
        write!(Escaping(f), "{}", self.0)
    }
}

impl fmt::Debug for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Host({self})")
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::{String, ToString};

    fn text(s: &str) -> String {
        Text(s).to_string()
    }

    /// A host error in a debug print (logs, test failures) is escaped too: what a server
    /// sent cannot reach a terminal raw through `{:?}` either.
    #[test]
    fn host_debug_is_escaped() {
        let e = "bad\x1b[2Jline";
        let shown = std::format!("{:?}", Host(&e));
        assert_eq!(shown, std::format!("Host({})", Host(&e)));
        assert!(!shown.contains('\x1b'), "{shown}");
    }

    fn name(s: &str) -> String {
        Name(s).to_string()
    }

    #[test]
    fn controls_become_visible() {
        assert_eq!(text("hi\n[SYS] x"), "hi\\u{a}[SYS] x");
        assert_eq!(text("\x1b[2J\r\t\x7f"), "\\u{1b}[2J\\u{d}\\u{9}\\u{7f}");
        assert_eq!(text("c1 \u{85}\u{9b}"), "c1 \\u{85}\\u{9b}");
        assert_eq!(text(""), "");
        assert_eq!(text("plain ñandú 🚀"), "plain ñandú 🚀");
    }

    #[test]
    fn bidi_and_format_characters_become_visible() {
        for c in [
            '\u{202a}',
            '\u{202b}',
            '\u{202c}',
            '\u{202d}',
            '\u{202e}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200b}',
            '\u{200c}',
            '\u{200e}',
            '\u{200f}',
            '\u{2060}',
            '\u{feff}',
            '\u{ad}',
            '\u{61c}',
            '\u{2028}',
            '\u{2029}',
            '\u{e0041}',
            '\u{13439}',
        ] {
            let s: String = ['a', c, 'b'].iter().collect();
            let want = std::format!("a\\u{{{:x}}}b", u32::from(c));
            assert_eq!(text(&s), want);
            assert_eq!(name(&s), want);
            assert_eq!(Host(&s).to_string(), want);
        }
        // Letters next to the ranges are untouched.
        assert_eq!(
            text("\u{2029}\u{202f}\u{2065}"),
            "\\u{2029}\u{202f}\\u{2065}"
        );
        assert_eq!(text("\u{2070}\u{ac}\u{ae}"), "\u{2070}\u{ac}\u{ae}");
    }

    #[test]
    fn joiner_kept_only_inside_emoji_in_text() {
        let coder = "👩\u{200d}💻";
        assert_eq!(text(coder), coder);
        let heart = "❤\u{fe0f}\u{200d}🔥";
        assert_eq!(text(heart), heart);
        assert_eq!(text("a\u{200d}b"), "a\\u{200d}b");
        assert_eq!(text("👩\u{200d}"), "👩\\u{200d}");
        assert_eq!(text("\u{200d}💻"), "\\u{200d}💻");
        assert_eq!(name(coder), "👩\\u{200d}💻");
        assert_eq!(Host(&coder).to_string(), "👩\\u{200d}💻");
    }

    #[test]
    fn names_cannot_imitate_prefixes() {
        assert_eq!(name("bob"), "bob");
        assert_eq!(name("SYS"), "\\u{53}YS");
        assert_eq!(name("WARN"), "\\u{57}ARN");
        assert_eq!(name("ERROR"), "\\u{45}RROR");
        assert_eq!(name("SERVER"), "\\u{53}ERVER");
        assert_eq!(name("SYSTEM"), "SYSTEM");
        assert_eq!(name("sys"), "sys");
        assert_eq!(name("SYS] ok [bob"), "SYS\\u{5d}\\u{20}ok\\u{20}\\u{5b}bob");
        assert_eq!(name("a\u{a0}b\u{3000}"), "a\\u{a0}b\\u{3000}");
        // Text keeps spaces and brackets.
        assert_eq!(text("[SYS] a b"), "[SYS] a b");
    }

    #[test]
    fn host_text_is_escaped_through_any_display() {
        let e = std::format!("{}", Host(&format_args!("x{}y", "\u{202e}\n")));
        assert_eq!(e, "x\\u{202e}\\u{a}y");
    }
}
