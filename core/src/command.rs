//! Typed commands: parses what a user types (`/list`, `/fp`, `/to`, `/server`, `/help`, `/quit`).
//!
//! Misuse gets a [`CommandError`] whose `Display` is the usage line to show, never silence.

use core::fmt;

/// A command typed by the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `/list`: ask the server for the directory and show it.
    List,
    /// `/fp <user>`: show a user's fingerprint and safety code.
    Fingerprint {
        /// Whose.
        user: &'a str,
    },
    /// `/to <user> <text>`: send an end-to-end encrypted message.
    To {
        /// Recipient.
        user: &'a str,
        /// The message (everything after the user name, inner spacing kept).
        text: &'a str,
    },
    /// `/server <text>`: send text to the server itself.
    Server {
        /// The text.
        text: &'a str,
    },
    /// `/help`: show the commands.
    Help,
    /// `/quit`: leave.
    Quit,
}

/// Help text listing every command, one per line.
pub const HELP: &str = "\
/list                 show who is connected, with fingerprints
/fp <user>            show a user's key fingerprint and safety code
/to <user> <text>     send an end-to-end encrypted message
/server <text>        send text to the server (it answers)
/help                 show this help
/quit                 leave";

/// A typed line that is not a valid command. `Display` gives the usage to show.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandError {
    /// The line is empty or white space.
    Empty,
    /// Text without a leading `/`.
    NotACommand,
    /// A `/word` that is not a command.
    Unknown,
    /// `/fp` without a user.
    FpUsage,
    /// `/to` without a user or a text.
    ToUsage,
    /// `/server` without a text.
    ServerUsage,
    /// A command that takes no arguments was given some.
    NoArguments(&'static str),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("type a command; /help lists them"),
            Self::NotACommand => f.write_str(
                "commands start with '/': use /to <user> <text> to send a message, /help for more",
            ),
            Self::Unknown => f.write_str("unknown command; /help lists the commands"),
            Self::FpUsage => f.write_str("usage: /fp <user>"),
            Self::ToUsage => f.write_str("usage: /to <user> <text>"),
            Self::ServerUsage => f.write_str("usage: /server <text>"),
            Self::NoArguments(c) => write!(f, "usage: {c} (it takes no arguments)"),
        }
    }
}

impl core::error::Error for CommandError {}

/// Splits off the first word (up to a space or tab); the rest keeps its inner spacing.
fn word(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches([' ', '\t']);
    match s.find([' ', '\t']) {
        Some(i) => {
            let (w, rest) = s.split_at(i);
            (w, rest.get(1..).unwrap_or(""))
        }
        None => (s, ""),
    }
}

/// Parses one typed line (without its line end).
pub fn parse_command(line: &str) -> Result<Command<'_>, CommandError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Err(CommandError::Empty);
    }
    if !trimmed.starts_with('/') {
        return Err(CommandError::NotACommand);
    }
    let (cmd, rest) = word(trimmed);
    let no_args = |c: Command<'static>, name: &'static str| {
        if rest.trim().is_empty() {
            Ok(c)
        } else {
            Err(CommandError::NoArguments(name))
        }
    };
    match cmd {
        "/list" => no_args(Command::List, "/list"),
        "/help" | "/?" => no_args(Command::Help, "/help"),
        "/quit" | "/exit" => no_args(Command::Quit, "/quit"),
        "/fp" => {
            let (user, extra) = word(rest);
            if user.is_empty() || !extra.trim().is_empty() {
                return Err(CommandError::FpUsage);
            }
            Ok(Command::Fingerprint { user })
        }
        "/to" => {
            let (user, text) = word(rest);
            if user.is_empty() || text.trim().is_empty() {
                return Err(CommandError::ToUsage);
            }
            Ok(Command::To { user, text })
        }
        "/server" => {
            if rest.trim().is_empty() {
                return Err(CommandError::ServerUsage);
            }
            Ok(Command::Server { text: rest })
        }
        _ => Err(CommandError::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse_command("/list"), Ok(Command::List));
        assert_eq!(parse_command("  /list  "), Ok(Command::List));
        assert_eq!(
            parse_command("/fp bob"),
            Ok(Command::Fingerprint { user: "bob" })
        );
        assert_eq!(
            parse_command("/to bob hola  juan "),
            Ok(Command::To {
                user: "bob",
                text: "hola  juan"
            })
        );
        assert_eq!(
            parse_command("/server hi there"),
            Ok(Command::Server { text: "hi there" })
        );
        assert_eq!(parse_command("/help"), Ok(Command::Help));
        assert_eq!(parse_command("/quit\r\n"), Ok(Command::Quit));
    }

    #[test]
    fn misuse() {
        assert_eq!(parse_command(""), Err(CommandError::Empty));
        assert_eq!(parse_command("hello"), Err(CommandError::NotACommand));
        assert_eq!(parse_command("/nope"), Err(CommandError::Unknown));
        assert_eq!(parse_command("/fp"), Err(CommandError::FpUsage));
        assert_eq!(parse_command("/fp a b"), Err(CommandError::FpUsage));
        assert_eq!(parse_command("/to bob"), Err(CommandError::ToUsage));
        assert_eq!(parse_command("/to bob   "), Err(CommandError::ToUsage));
        assert_eq!(parse_command("/to"), Err(CommandError::ToUsage));
        assert_eq!(parse_command("/server"), Err(CommandError::ServerUsage));
        assert_eq!(
            parse_command("/list x"),
            Err(CommandError::NoArguments("/list"))
        );
    }
}
