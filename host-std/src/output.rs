//! How the desktop client shows a line: the text `seguro_core::chat` renders (the
//! reference client's prefixes, stable for scripts), coloured by its kind on a terminal
//! unless `NO_COLOR` is set, plain otherwise. The wording itself is core's.

use std::io::IsTerminal;

use seguro_core::chat::{Kind, Line};

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
