//! Typed commands: parses what a user types (`/list`, `/fp`, `/to`, `/verify`, `/trust`,
//! `/accept`, `/server`, `/help`, `/quit`).
//!
//! Every command is one row of [`COMMANDS`] (its name, aliases, usage and help text)
//! plus one arm in [`parse_command`]; `/help` and the "did you mean" hint for a
//! mistyped command are made from the table, so a new command is one row and one arm.
//! Misuse gets a [`CommandError`] whose `Display` is the usage line to show, never
//! silence.

use core::fmt;

/// A command typed by the user.
#[non_exhaustive]
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
    /// `/verify <user>`: show the pair's safety code; `/verify <user> yes`: the codes
    /// matched, mark the contact verified.
    Verify {
        /// Whose key.
        user: &'a str,
        /// The user confirms that the codes matched.
        confirm: bool,
    },
    /// `/trust`: list the known contacts with their status.
    Trust,
    /// `/accept <user>`: take the changed key of a verified contact without verifying.
    Accept {
        /// Whose key.
        user: &'a str,
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

/// One command as `/help` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// The name, with its slash: `/list`.
    pub name: &'static str,
    /// Other names that do the same.
    pub aliases: &'static [&'static str],
    /// The usage: `/to <user> <text>`.
    pub usage: &'static str,
    /// What it does, in a few words.
    pub about: &'static str,
}

/// Every command, in the order `/help` lists them.
pub const COMMANDS: &[Spec] = &[
    Spec {
        name: "/list",
        aliases: &[],
        usage: "/list",
        about: "show who is connected, with fingerprints",
    },
    Spec {
        name: "/fp",
        aliases: &[],
        usage: "/fp <user>",
        about: "show a user's key fingerprint and safety code",
    },
    Spec {
        name: "/to",
        aliases: &[],
        usage: "/to <user> <text>",
        about: "send an end-to-end encrypted message",
    },
    Spec {
        name: "/verify",
        aliases: &[],
        usage: "/verify <user> [yes]",
        about: "compare your pair's safety code with <user>; 'yes' marks it verified",
    },
    Spec {
        name: "/trust",
        aliases: &[],
        usage: "/trust",
        about: "list known contacts: verified, unverified, key changed",
    },
    Spec {
        name: "/accept",
        aliases: &[],
        usage: "/accept <user>",
        about: "take a verified contact's new key without verifying it",
    },
    Spec {
        name: "/server",
        aliases: &[],
        usage: "/server <text>",
        about: "send text to the server (it answers)",
    },
    Spec {
        name: "/help",
        aliases: &["/?"],
        usage: "/help",
        about: "show this help",
    },
    Spec {
        name: "/quit",
        aliases: &["/exit"],
        usage: "/quit",
        about: "leave",
    },
];

/// A typed line that is not a valid command. `Display` gives the usage to show.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandError {
    /// The line is empty or white space.
    Empty,
    /// Text without a leading `/`.
    NotACommand,
    /// A `/word` that is not a command.
    Unknown {
        /// The command the user probably meant (`/list` for `/lsit`).
        suggestion: Option<&'static str>,
    },
    /// The command was given the wrong arguments; this is its usage.
    Usage(&'static str),
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
            Self::Unknown {
                suggestion: Some(s),
            } => write!(
                f,
                "unknown command; did you mean {s}? /help lists the commands"
            ),
            Self::Unknown { suggestion: None } => {
                f.write_str("unknown command; /help lists the commands")
            }
            Self::Usage(usage) => write!(f, "usage: {usage}"),
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

/// The row of [`COMMANDS`] named `name` (or one of its aliases).
pub fn spec(name: &str) -> Option<&'static Spec> {
    COMMANDS
        .iter()
        .find(|s| s.name == name || s.aliases.contains(&name))
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
    let (typed, rest) = word(trimmed);
    let Some(spec) = spec(typed) else {
        return Err(CommandError::Unknown {
            suggestion: suggest(typed),
        });
    };
    let usage = Err(CommandError::Usage(spec.usage));
    let no_args = |c: Command<'static>| {
        if rest.trim().is_empty() {
            Ok(c)
        } else {
            Err(CommandError::NoArguments(spec.name))
        }
    };
    match spec.name {
        "/list" => no_args(Command::List),
        "/trust" => no_args(Command::Trust),
        "/verify" => match word(rest) {
            (user, extra) if !user.is_empty() => match extra.trim() {
                "" => Ok(Command::Verify {
                    user,
                    confirm: false,
                }),
                "yes" => Ok(Command::Verify {
                    user,
                    confirm: true,
                }),
                _ => usage,
            },
            _ => usage,
        },
        "/accept" => match word(rest) {
            (user, extra) if !user.is_empty() && extra.trim().is_empty() => {
                Ok(Command::Accept { user })
            }
            _ => usage,
        },
        "/help" => no_args(Command::Help),
        "/quit" => no_args(Command::Quit),
        "/fp" => match word(rest) {
            (user, extra) if !user.is_empty() && extra.trim().is_empty() => {
                Ok(Command::Fingerprint { user })
            }
            _ => usage,
        },
        "/to" => match word(rest) {
            (user, text) if !user.is_empty() && !text.trim().is_empty() => {
                Ok(Command::To { user, text })
            }
            _ => usage,
        },
        "/server" if !rest.trim().is_empty() => Ok(Command::Server { text: rest }),
        _ => usage,
    }
}

/// The longest typed command for which a suggestion is looked for, in bytes.
const SUGGEST_MAX: usize = 16;

/// The command closest to `typed` by edit distance (insertions, deletions,
/// substitutions and swaps of two neighbours each count 1), if it is at most 2 away.
pub fn suggest(typed: &str) -> Option<&'static str> {
    let mut best: Option<(usize, &'static str)> = None;
    for spec in COMMANDS {
        for name in core::iter::once(&spec.name).chain(spec.aliases) {
            let Some(d) = distance(typed.as_bytes(), name.as_bytes()) else {
                continue;
            };
            if d <= 2 && best.is_none_or(|(b, _)| d < b) {
                best = Some((d, spec.name));
            }
        }
    }
    best.map(|(_, name)| name)
}

/// Optimal string alignment distance between two short byte strings; `None` when
/// either is longer than [`SUGGEST_MAX`].
fn distance(a: &[u8], b: &[u8]) -> Option<usize> {
    if a.len() > SUGGEST_MAX || b.len() > SUGGEST_MAX {
        return None;
    }
    // rows[i % 3] holds the distances for a[..i]; three rows for the swap rule.
    let mut rows = [[0usize; SUGGEST_MAX + 1]; 3];
    for (j, cell) in rows.first_mut()?.iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        let ca = *a.get(i - 1)?;
        let [r0, r1, r2] = &mut rows;
        let (cur, prev, prev2) = match i % 3 {
            0 => (r0, &*r2, &*r1),
            1 => (r1, &*r0, &*r2),
            _ => (r2, &*r1, &*r0),
        };
        *cur.first_mut()? = i;
        for j in 1..=b.len() {
            let cb = *b.get(j - 1)?;
            let cost = usize::from(ca != cb);
            let mut d = (prev.get(j)? + 1)
                .min(cur.get(j - 1)? + 1)
                .min(prev.get(j - 1)? + cost);
            if i > 1 && j > 1 && Some(&ca) == b.get(j - 2) && a.get(i - 2) == Some(&cb) {
                d = d.min(prev2.get(j - 2)? + 1);
            }
            *cur.get_mut(j)? = d;
        }
    }
    rows.get(a.len() % 3)?.get(b.len()).copied()
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

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
        assert_eq!(parse_command("/?"), Ok(Command::Help));
        assert_eq!(parse_command("/quit\r\n"), Ok(Command::Quit));
        assert_eq!(parse_command("/exit"), Ok(Command::Quit));
    }

    #[test]
    fn misuse() {
        assert_eq!(parse_command(""), Err(CommandError::Empty));
        assert_eq!(parse_command(" \t "), Err(CommandError::Empty));
        assert_eq!(parse_command("hello"), Err(CommandError::NotACommand));
        assert_eq!(
            parse_command("/nope"),
            Err(CommandError::Unknown { suggestion: None })
        );
        let fp = Err(CommandError::Usage("/fp <user>"));
        assert_eq!(parse_command("/fp"), fp);
        assert_eq!(parse_command("/fp a b"), fp);
        let to = Err(CommandError::Usage("/to <user> <text>"));
        assert_eq!(parse_command("/to bob"), to);
        assert_eq!(parse_command("/to bob   "), to);
        assert_eq!(parse_command("/to"), to);
        assert_eq!(
            parse_command("/server"),
            Err(CommandError::Usage("/server <text>"))
        );
        assert_eq!(parse_command("/server   "), parse_command("/server"));
        assert_eq!(
            parse_command("/list x"),
            Err(CommandError::NoArguments("/list"))
        );
        assert_eq!(
            parse_command("/? x"),
            Err(CommandError::NoArguments("/help"))
        );
    }

    #[test]
    fn trust_commands() {
        let verify = Err(CommandError::Usage("/verify <user> [yes]"));
        assert_eq!(
            parse_command("/verify bob"),
            Ok(Command::Verify {
                user: "bob",
                confirm: false
            })
        );
        assert_eq!(
            parse_command("/verify  bob  yes "),
            Ok(Command::Verify {
                user: "bob",
                confirm: true
            })
        );
        assert_eq!(parse_command("/verify"), verify);
        assert_eq!(parse_command("/verify   "), verify);
        assert_eq!(parse_command("/verify bob no"), verify);
        let accept = Err(CommandError::Usage("/accept <user>"));
        assert_eq!(
            parse_command("/accept bob"),
            Ok(Command::Accept { user: "bob" })
        );
        assert_eq!(parse_command("/accept"), accept);
        assert_eq!(parse_command("/accept  "), accept);
        assert_eq!(parse_command("/accept bob carol"), accept);
        assert_eq!(parse_command("/trust"), Ok(Command::Trust));
        assert_eq!(
            parse_command("/trust bob"),
            Err(CommandError::NoArguments("/trust"))
        );
    }

    #[test]
    fn did_you_mean() {
        let unknown = |s| match parse_command(s) {
            Err(CommandError::Unknown { suggestion }) => suggestion,
            other => panic!("{other:?}"),
        };
        assert_eq!(unknown("/lsit"), Some("/list"));
        assert_eq!(unknown("/lis"), Some("/list"));
        assert_eq!(unknown("/liste"), Some("/list"));
        assert_eq!(unknown("/serer hi"), Some("/server"));
        assert_eq!(unknown("/exti"), Some("/quit"));
        assert_eq!(unknown("/ot bob"), Some("/to"));
        // A tie goes to the first command of the table.
        assert_eq!(unknown("/tp bob"), Some("/fp"));
        assert_eq!(unknown("/hlep"), Some("/help"));
        assert_eq!(unknown("/xyzzy"), None);
        assert_eq!(unknown(&"/".repeat(40)), None);
        assert_eq!(
            CommandError::Unknown {
                suggestion: Some("/list")
            }
            .to_string(),
            "unknown command; did you mean /list? /help lists the commands"
        );
    }

    #[test]
    fn distances() {
        assert_eq!(distance(b"", b""), Some(0));
        assert_eq!(distance(b"abc", b""), Some(3));
        assert_eq!(distance(b"", b"ab"), Some(2));
        assert_eq!(distance(b"abcd", b"acbd"), Some(1));
        // Swaps at the start and at the end of the words (the neighbours two back).
        assert_eq!(distance(b"abcdef", b"bacdef"), Some(1));
        assert_eq!(distance(b"abcdef", b"abcdfe"), Some(1));
        assert_eq!(distance(b"abcdefgh", b"abcdefhg"), Some(1));
        assert_eq!(distance(b"kitten", b"sitting"), Some(3));
        assert_eq!(distance(b"ca", b"abc"), Some(3));
        assert_eq!(distance(&[b'a'; 17], b"a"), None);
        assert_eq!(distance(&[b'a'; 16], &[b'a'; 16]), Some(0));
    }

    #[test]
    fn every_spec_parses_by_name_and_alias() {
        for s in COMMANDS {
            for name in core::iter::once(&s.name).chain(s.aliases) {
                assert_eq!(spec(name), Some(s));
                assert!(s.usage.starts_with(s.name));
            }
        }
    }
}
