//! Every line a Seguro client shows, and its wording: one place for every host.
//!
//! A [`Line`] is structured (what happened, who it concerns) and renders through
//! `Display` (any `core::fmt::Write`) as the reference client's text: `[SYS] …`,
//! `[SERVER] …`, `[ERROR] …`, `[WARN] …` and `[<from>] <text>` for a message. Hosts
//! pick a colour from [`Line::kind`], a conversation from [`Line::peer`], and never
//! word anything themselves beyond their own errors, which they pass as
//! [`Line::HostInfo`], [`Line::HostWarn`] and [`Line::HostError`] so that even those
//! get the prefix from here. Everything a peer, the server or a host error supplies is
//! escaped ([`super::escape`]).

use core::fmt;

use crate::client::{Event, LineError, SendError};
use crate::command::{CommandError, Spec};
use crate::directory::Change;
use crate::fingerprint;
use crate::limits::KEY_LEN;
use crate::trust::TrustError;

use super::memory::Status;

use super::escape::{Host, Name, Text};

/// What a line is, which decides its prefix and colour.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `[SYS]`: the client's own information.
    Sys,
    /// `[SERVER]`: text from the server.
    Server,
    /// `[ERROR]`.
    Error,
    /// `[WARN]`.
    Warn,
    /// `[WARN]`, louder: a verified contact's key changed, or the server lists us with
    /// a key that is not ours.
    Alert,
    /// `[<from>] <text>`: a decrypted message.
    Message,
}

impl Kind {
    /// The line prefix, `None` for [`Kind::Message`] (its prefix is the sender).
    pub fn prefix(self) -> Option<&'static str> {
        match self {
            Self::Sys => Some("[SYS]"),
            Self::Server => Some("[SERVER]"),
            Self::Error => Some("[ERROR]"),
            Self::Warn | Self::Alert => Some("[WARN]"),
            Self::Message => None,
        }
    }
}

/// One line for the user. `Display` writes it whole, without a line end; [`Line::prefix`]
/// and [`Line::body`] write its two parts (separated by one space) for hosts that
/// colour them apart.
#[non_exhaustive]
#[derive(Clone, Copy)]
pub enum Line<'a> {
    /// The server welcomed us.
    Connected {
        /// The server as the host named it (`host:port`).
        server: &'a str,
        /// Our name.
        user: &'a str,
    },
    /// The head of a directory listing; one [`Line::User`] per user follows.
    Users {
        /// How many.
        count: usize,
        /// False when listing the directory kept from the last connection.
        connected: bool,
    },
    /// One user of a listing.
    User {
        /// Who.
        name: &'a str,
        /// Their key.
        key: &'a [u8; KEY_LEN],
        /// True for ourselves.
        me: bool,
    },
    /// A client event shown as it is: a message, a join or a leave, what could not be
    /// decrypted or delivered, the server's text or error, a truncated directory.
    Received(Event<'a>),
    /// A user's key is not the one remembered: the server may be substituting keys.
    KeyChanged {
        /// Who.
        name: &'a str,
        /// The key remembered (or listed) before.
        old: &'a [u8; KEY_LEN],
        /// The key now.
        new: &'a [u8; KEY_LEN],
        /// The old key was verified by the user ([`Kind::Alert`]).
        verified: bool,
    },
    /// The server lists us with a key that is not ours.
    NotYourKey {
        /// Our name.
        user: &'a str,
        /// The key the server lists.
        listed: &'a [u8; KEY_LEN],
        /// Our key.
        yours: &'a [u8; KEY_LEN],
    },
    /// A line from the server that is not a valid message.
    BadLine(LineError),
    /// A line from the server longer than the client accepts.
    Overlong {
        /// The longest line accepted, in bytes.
        max: usize,
    },
    /// The head of `/help`; one [`Line::Help`] per command follows.
    HelpHeader,
    /// One command of `/help`.
    Help(&'static Spec),
    /// `/fp`: a user's short fingerprint.
    Fingerprint {
        /// Whose.
        user: &'a str,
        /// Their key.
        key: &'a [u8; KEY_LEN],
    },
    /// `/fp`: a user's safety code, after [`Line::Fingerprint`].
    SafetyCode {
        /// Whose.
        user: &'a str,
        /// Their key.
        key: &'a [u8; KEY_LEN],
    },
    /// The user named someone nobody knows.
    UnknownUser {
        /// The name as typed.
        user: &'a str,
    },
    /// The typed line is not a valid command.
    Command(CommandError),
    /// A message could not be sent.
    Send(SendError<'a>),
    /// A message was typed while not connected and is not kept.
    NotSent,
    /// The connection dropped; the host retries after a delay.
    Reconnecting {
        /// Why (the host's words).
        why: &'a dyn fmt::Display,
        /// The delay, in milliseconds.
        after_ms: u64,
    },
    /// The server was refused (for example its certificate is not the pinned one);
    /// the host retries after a delay.
    Retrying {
        /// Why.
        why: &'a dyn fmt::Display,
        /// The delay, in milliseconds.
        after_ms: u64,
    },
    /// The connection dropped and the host does not retry.
    ConnectionLost {
        /// Why.
        why: &'a dyn fmt::Display,
    },
    /// A name seen for the first time (quiet): its fingerprint, and how to verify it.
    FirstContact {
        /// Who.
        name: &'a str,
        /// Their key.
        key: &'a [u8; KEY_LEN],
    },
    /// `/verify`: the safety code of the pair (ours and the peer's key), the same on
    /// both sides; [`Line::VerifyHow`] follows.
    PairCode {
        /// The peer.
        user: &'a str,
        /// Our key.
        mine: &'a [u8; KEY_LEN],
        /// The peer's key.
        theirs: &'a [u8; KEY_LEN],
    },
    /// `/verify`: what to do with the code.
    VerifyHow {
        /// The peer.
        user: &'a str,
    },
    /// `/verify <user> yes`: the contact is verified.
    Verified {
        /// Who.
        user: &'a str,
        /// The key verified.
        key: &'a [u8; KEY_LEN],
    },
    /// `/verify <user> yes` without a code shown for the key the user has now.
    VerifyStale {
        /// Who.
        user: &'a str,
    },
    /// `/accept`: the new key is taken, the contact is no longer verified.
    Accepted {
        /// Who.
        user: &'a str,
        /// The key now stored.
        key: &'a [u8; KEY_LEN],
    },
    /// `/trust`: the head of the contact list; one [`Line::Contact`] per contact follows.
    Contacts {
        /// How many.
        count: usize,
    },
    /// `/trust`: one contact.
    Contact {
        /// Who.
        name: &'a str,
        /// What is known.
        status: Status,
    },
    /// A trust command was refused.
    Trust {
        /// The contact named.
        user: &'a str,
        /// Why.
        err: TrustError,
    },
    /// Strict mode: not sent, the verified contact's key changed.
    StrictRefused {
        /// The recipient.
        user: &'a str,
    },
    /// A message was delivered again (same nonce from the same peer): not shown.
    Replayed {
        /// The sender as named.
        from: &'a str,
        /// Further copies since the last such warning, not warned about.
        more: u32,
    },
    /// One of our own messages to `from` came back as if `from` had sent it.
    Reflected {
        /// The peer named as the sender.
        from: &'a str,
    },
    /// The host's own information: `[SYS] <text>`.
    HostInfo(&'a dyn fmt::Display),
    /// The host's own warning: `[WARN] <text>`.
    HostWarn(&'a dyn fmt::Display),
    /// The host's own error (connection, files): `[ERROR] <text>`.
    HostError(&'a dyn fmt::Display),
}

impl Line<'_> {
    /// What the line is.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Received(e) => event_kind(e),
            Self::Connected { .. }
            | Self::Users { .. }
            | Self::User { .. }
            | Self::HelpHeader
            | Self::Help(_)
            | Self::Fingerprint { .. }
            | Self::SafetyCode { .. }
            | Self::FirstContact { .. }
            | Self::PairCode { .. }
            | Self::VerifyHow { .. }
            | Self::Verified { .. }
            | Self::Contacts { .. }
            | Self::Contact { .. }
            | Self::HostInfo(_) => Kind::Sys,
            Self::Accepted { .. } | Self::Replayed { .. } => Kind::Warn,
            Self::Reflected { .. } => Kind::Alert,
            Self::VerifyStale { .. } | Self::Trust { .. } | Self::StrictRefused { .. } => {
                Kind::Error
            }
            Self::KeyChanged {
                verified: false, ..
            }
            | Self::Reconnecting { .. }
            | Self::ConnectionLost { .. }
            | Self::HostWarn(_) => Kind::Warn,
            Self::KeyChanged { verified: true, .. } | Self::NotYourKey { .. } => Kind::Alert,
            Self::BadLine(_)
            | Self::Overlong { .. }
            | Self::UnknownUser { .. }
            | Self::Command(_)
            | Self::Send(_)
            | Self::NotSent
            | Self::Retrying { .. }
            | Self::HostError(_) => Kind::Error,
        }
    }

    /// The peer the line is about, if it concerns one (a message, a join, a key
    /// change, a fingerprint…): the conversation a full-screen host shows it in.
    /// `None` for lines about the session, the server or the host.
    pub fn peer(&self) -> Option<&str> {
        match *self {
            Self::Received(
                Event::Change(
                    Change::Joined { name, .. }
                    | Change::Left { name }
                    | Change::KeyChanged { name, .. },
                )
                | Event::Message { from: name, .. }
                | Event::Undecryptable { from: name, .. },
            )
            | Self::User {
                name, me: false, ..
            }
            | Self::KeyChanged { name, .. } => Some(name),
            Self::Received(Event::Undeliverable { from, .. }) if !from.is_empty() => Some(from),
            Self::Fingerprint { user, .. }
            | Self::SafetyCode { user, .. }
            | Self::UnknownUser { user }
            | Self::PairCode { user, .. }
            | Self::VerifyHow { user }
            | Self::Verified { user, .. }
            | Self::VerifyStale { user }
            | Self::Accepted { user, .. }
            | Self::Trust { user, .. }
            | Self::StrictRefused { user } => Some(user),
            Self::FirstContact { name, .. } | Self::Contact { name, .. } => Some(name),
            Self::Replayed { from, .. } | Self::Reflected { from } => Some(from),
            Self::Send(SendError::UnknownUser { user } | SendError::WeakKey { user }) => Some(user),
            _ => None,
        }
    }

    /// The prefix: `[SYS]`, `[SERVER]`, `[ERROR]`, `[WARN]`, or `[<from>]`.
    pub fn prefix(&self) -> Prefix<'_> {
        Prefix(self)
    }

    /// Everything after the prefix and its space.
    pub fn body(&self) -> Body<'_> {
        Body(self)
    }
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.prefix(), self.body())
    }
}

impl fmt::Debug for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Line")
            .field("kind", &self.kind())
            .field("text", &format_args!("{self}"))
            .finish()
    }
}

/// The prefix of a [`Line`].
pub struct Prefix<'l>(&'l Line<'l>);

impl fmt::Display for Prefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.0.kind().prefix()) {
            (Line::Received(Event::Message { from, .. }), _) => write!(f, "[{}]", Name(from)),
            (_, Some(p)) => f.write_str(p),
            (_, None) => Ok(()),
        }
    }
}

/// A delay in milliseconds as seconds with one decimal (cut, not rounded).
struct Secs(u64);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 / 1000, self.0 % 1000 / 100)
    }
}

/// The body of a [`Line`].
pub struct Body<'l>(&'l Line<'l>);

impl fmt::Display for Body<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = fingerprint::short;
        match *self.0 {
            Line::Connected { server, user } => {
                write!(f, "connected to {} as {}", Text(server), Name(user))
            }
            Line::Users {
                count,
                connected: true,
            } => write!(f, "users online ({count}):"),
            Line::Users {
                count,
                connected: false,
            } => write!(
                f,
                "not connected; users online when last connected ({count}):"
            ),
            Line::User { name, key, me } => {
                let you = if me { " (you)" } else { "" };
                write!(f, "  {}  fp {}{you}", Name(name), short(key))
            }
            Line::Received(event) => write_event(f, &event),
            Line::KeyChanged {
                name,
                old,
                new,
                verified: false,
            } => key_changed(f, name, old, new),
            Line::KeyChanged {
                name,
                old,
                new,
                verified: true,
            } => {
                let name = Name(name);
                write!(
                    f,
                    "KEY CHANGED for {name}, WHOSE KEY YOU VERIFIED: fp was {}, now {}. \
                     Do not trust messages from {name} until you have verified the new \
                     fingerprint with {name} over another channel: someone (the server?) \
                     may be substituting keys. /verify {name} to compare the new safety \
                     code, /accept {name} to take the new key unverified.",
                    short(old),
                    short(new)
                )
            }
            Line::NotYourKey {
                user,
                listed,
                yours,
            } => write!(
                f,
                "the server lists you ({}) with a key that is not yours: fp {}, yours is {}. \
                 Someone else may be using your name, or the server is substituting keys: \
                 others may not be talking to you.",
                Name(user),
                short(listed),
                short(yours)
            ),
            Line::BadLine(e) => write!(f, "{e}"),
            Line::Overlong { max } => {
                write!(f, "the server sent a line longer than {max} bytes; skipped")
            }
            Line::HelpHeader => f.write_str("commands:"),
            Line::Help(spec) => write!(f, "  {:<22}{}", spec.usage, spec.about),
            Line::Fingerprint { user, key } => write!(f, "fp {}: {}", Name(user), short(key)),
            Line::SafetyCode { user, key } => write!(
                f,
                "safety code {}: {}",
                Name(user),
                fingerprint::safety_code(key)
            ),
            Line::UnknownUser { user } | Line::Send(SendError::UnknownUser { user }) => {
                write!(f, "unknown user: {} (try /list)", Name(user))
            }
            Line::Send(SendError::WeakKey { user }) => write!(
                f,
                "the key the server lists for {} is invalid (low-order point); not sent",
                Name(user)
            ),
            Line::Command(e) => write!(f, "{e}"),
            Line::Send(e) => write!(f, "{e}"),
            Line::NotSent => f.write_str("not connected: line dropped"),
            Line::Reconnecting { why, after_ms } => write!(
                f,
                "connection lost ({}); reconnecting in {} s",
                Host(why),
                Secs(after_ms)
            ),
            Line::Retrying { why, after_ms } => {
                write!(f, "{}; retrying in {} s", Host(why), Secs(after_ms))
            }
            Line::ConnectionLost { why } => write!(f, "connection lost ({})", Host(why)),
            Line::FirstContact { name, key } => {
                let name = Name(name);
                write!(
                    f,
                    "new contact {name}, fp {}; to check it is really {name}: /verify {name}",
                    short(key)
                )
            }
            Line::PairCode { user, mine, theirs } => write!(
                f,
                "safety code of you and {}: {}",
                Name(user),
                fingerprint::pair_code(mine, theirs)
            ),
            Line::VerifyHow { user } => {
                let user = Name(user);
                write!(
                    f,
                    "{user} sees the same 60 digits with /verify on their side. Compare them \
                     over another channel (in person, on a call); if they match, type \
                     /verify {user} yes"
                )
            }
            Line::Verified { user, key } => write!(
                f,
                "{} is verified (fp {}); a change of this key will be reported loudly",
                Name(user),
                short(key)
            ),
            Line::VerifyStale { user } => {
                let user = Name(user);
                write!(
                    f,
                    "no safety code shown for {user}'s current key: type /verify {user}, \
                     compare, then /verify {user} yes"
                )
            }
            Line::Accepted { user, key } => {
                let user = Name(user);
                write!(
                    f,
                    "accepted the new key of {user} (fp {}) without verifying it; {user} is \
                     no longer verified (/verify {user} to verify again)",
                    short(key)
                )
            }
            Line::Contacts { count } => write!(f, "contacts ({count}):"),
            Line::Contact { name, status } => {
                let state = if status.verified {
                    "verified"
                } else {
                    "not verified"
                };
                write!(f, "  {}  fp {}  {state}", Name(name), short(&status.key))?;
                match status.pending {
                    Some(new) => write!(
                        f,
                        "; KEY CHANGED, now fp {}: /verify {} or /accept {}",
                        short(&new),
                        Name(name),
                        Name(name)
                    ),
                    None => Ok(()),
                }
            }
            Line::Trust { user, err } => write!(f, "{}: {err}", Name(user)),
            Line::StrictRefused { user } => {
                let user = Name(user);
                write!(
                    f,
                    "not sent: the key of {user} changed since you verified it (strict \
                     mode). Compare the new safety code with /verify {user}, or take the \
                     new key with /accept {user}"
                )
            }
            Line::Replayed { from, more } => {
                write!(
                    f,
                    "a message from {} was delivered again; the copy is not shown. The \
                     server may be replaying messages",
                    Name(from)
                )?;
                if more > 0 {
                    write!(f, " ({more} more copies since the last warning)")?;
                }
                Ok(())
            }
            Line::Reflected { from } => {
                let from = Name(from);
                write!(
                    f,
                    "the server handed back one of your own messages to {from} as if \
                     {from} had sent it; refused. The server is tampering with messages"
                )
            }
            Line::HostInfo(t) | Line::HostWarn(t) | Line::HostError(t) => {
                write!(f, "{}", Host(t))
            }
        }
    }
}

/// What a client event is, as a line.
fn event_kind(event: &Event<'_>) -> Kind {
    match event {
        Event::Message { .. } => Kind::Message,
        Event::ServerText { .. } => Kind::Server,
        Event::Change(Change::KeyChanged { .. })
        | Event::DirectoryTruncated(_)
        | Event::BadBinding { .. } => Kind::Warn,
        Event::Undecryptable { .. } | Event::Undeliverable { .. } | Event::ServerError { .. } => {
            Kind::Error
        }
        _ => Kind::Sys,
    }
}

fn key_changed(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    old: &[u8; KEY_LEN],
    new: &[u8; KEY_LEN],
) -> fmt::Result {
    let name = Name(name);
    write!(
        f,
        "KEY CHANGED for {name}: fp was {}, now {}. Either {name} restarted \
         their client or someone (the server?) is substituting keys: verify the \
         new fingerprint with {name} over another channel before trusting messages \
         (/verify {name}).",
        fingerprint::short(old),
        fingerprint::short(new)
    )
}

/// The body of a client event shown as it is.
fn write_event(f: &mut fmt::Formatter<'_>, event: &Event<'_>) -> fmt::Result {
    let short = fingerprint::short;
    match *event {
        Event::Change(Change::Joined { name, key }) => {
            write!(f, "{} joined, fp {}", Name(name), short(key))
        }
        Event::Change(Change::Left { name }) => write!(f, "{} left", Name(name)),
        Event::Change(Change::KeyChanged { name, old, new }) => key_changed(f, name, old, new),
        Event::DirectoryTruncated(d) => write!(
            f,
            "the directory is larger than this client holds: {} user(s) not shown",
            d.over_capacity.saturating_add(d.name_too_long)
        ),
        Event::Message { text, .. } => write!(f, "{}", Text(text)),
        Event::Undecryptable { from, reason } => write!(
            f,
            "could not decrypt message from {} ({reason})",
            Name(from)
        ),
        Event::Undeliverable { from, reason } => {
            let from = if from.is_empty() { "?" } else { from };
            write!(f, "message from {} dropped: {reason}", Name(from))
        }
        Event::ServerText { text } | Event::ServerError { text } => write!(f, "{}", Text(text)),
        Event::Registered { users } => write!(f, "registered; users online ({users})"),
        Event::Listed => f.write_str("the directory arrived"),
        Event::ServerV1Only => f.write_str(
            "this server speaks protocol v1 only: messages are protected by v1 (no forward \
             secrecy; the server could replay or reflect them)",
        ),
        Event::BadBinding { user, more } => {
            write!(
                f,
                "the server listed {} as a protocol v2 user with an identity binding that \
                 does not verify: treated as a v1 user (the server may be substituting keys)",
                Name(user)
            )?;
            if more > 0 {
                write!(f, "; {more} more user(s) of this directory too")?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn reference_prefixes() {
        let m = Line::Received(Event::Message {
            from: "bob",
            text: "hola",
        });
        assert_eq!(m.to_string(), "[bob] hola");
        assert_eq!(m.kind(), Kind::Message);
        assert_eq!(m.peer(), Some("bob"));
        assert_eq!(m.prefix().to_string(), "[bob]");
        assert_eq!(m.body().to_string(), "hola");
        let s = Line::Received(Event::ServerText { text: "echo: hi" });
        assert_eq!(s.to_string(), "[SERVER] echo: hi");
        assert_eq!(s.peer(), None);
        let e = Line::Received(Event::ServerError { text: "x" });
        assert_eq!(
            (e.to_string().as_str(), e.kind()),
            ("[ERROR] x", Kind::Error)
        );
        assert_eq!(Line::HostInfo(&"up").to_string(), "[SYS] up");
        assert_eq!(Line::HostWarn(&"hm").to_string(), "[WARN] hm");
        assert_eq!(Line::HostError(&"no").to_string(), "[ERROR] no");
        assert_eq!(
            Line::NotSent.to_string(),
            "[ERROR] not connected: line dropped"
        );
    }

    /// Which user a line is about (the full-screen client files it under that
    /// conversation), its kind, and the warnings' counts.
    #[test]
    fn peers_kinds_and_counts() {
        let key = [7u8; KEY_LEN];
        let about_user = [
            Line::Fingerprint {
                user: "bob",
                key: &key,
            },
            Line::UnknownUser { user: "bob" },
            Line::StrictRefused { user: "bob" },
            Line::Replayed {
                from: "bob",
                more: 0,
            },
            Line::Reflected { from: "bob" },
            Line::Send(SendError::UnknownUser { user: "bob" }),
            Line::Send(SendError::WeakKey { user: "bob" }),
        ];
        for l in &about_user {
            assert_eq!(l.peer(), Some("bob"), "{l}");
        }
        let first = Line::FirstContact {
            name: "bob",
            key: &key,
        };
        assert_eq!(first.peer(), Some("bob"), "{first}");
        let once = Line::Replayed {
            from: "bob",
            more: 0,
        }
        .to_string();
        assert!(!once.contains("more copies"), "{once}");
        let more = Line::Replayed {
            from: "bob",
            more: 1,
        }
        .to_string();
        assert!(
            more.ends_with(" (1 more copies since the last warning)"),
            "{more}"
        );
        for e in [
            Event::Change(Change::KeyChanged {
                name: "bob",
                old: &key,
                new: &key,
            }),
            Event::DirectoryTruncated(crate::directory::Dropped {
                over_capacity: 1,
                name_too_long: 0,
            }),
            Event::BadBinding {
                user: "bob",
                more: 0,
            },
        ] {
            assert_eq!(
                Line::Received(e).kind(),
                Kind::Warn,
                "{}",
                Line::Received(e)
            );
        }
        let bad = |more| Line::Received(Event::BadBinding { user: "bob", more }).to_string();
        assert!(!bad(0).contains("more user"), "{}", bad(0));
        assert!(
            bad(2).ends_with("; 2 more user(s) of this directory too"),
            "{}",
            bad(2)
        );
        let m = Line::Received(Event::Message {
            from: "bob",
            text: "hola",
        });
        assert_eq!(
            std::format!("{m:?}"),
            "Line { kind: Message, text: [bob] hola }"
        );
    }

    #[test]
    fn messages_cannot_forge_lines() {
        let m = Line::Received(Event::Message {
            from: "bob",
            text: "hi\n[SERVER] pwned\x1b[2J\u{202e}",
        });
        assert_eq!(
            m.to_string(),
            "[bob] hi\\u{a}[SERVER] pwned\\u{1b}[2J\\u{202e}"
        );
        let forged = Line::Received(Event::Message {
            from: "SYS",
            text: "all fine",
        });
        assert_eq!(forged.to_string(), "[\\u{53}YS] all fine");
        let sneaky = Line::Received(Event::Change(Change::Joined {
            name: "eve\u{202e}bob",
            key: &[1; 32],
        }));
        assert!(
            sneaky
                .to_string()
                .starts_with("[SYS] eve\\u{202e}bob joined, fp ")
        );
    }

    #[test]
    fn delays_in_tenths() {
        let l = Line::Reconnecting {
            why: &"closed",
            after_ms: 1_250,
        };
        assert_eq!(
            l.to_string(),
            "[WARN] connection lost (closed); reconnecting in 1.2 s"
        );
        let r = Line::Retrying {
            why: &"refused",
            after_ms: 500,
        };
        assert_eq!(r.to_string(), "[ERROR] refused; retrying in 0.5 s");
        assert_eq!(r.kind(), Kind::Error);
    }

    #[test]
    fn verified_changes_are_alerts() {
        let l = Line::KeyChanged {
            name: "bob",
            old: &[1; 32],
            new: &[2; 32],
            verified: true,
        };
        assert_eq!(l.kind(), Kind::Alert);
        assert!(
            l.to_string()
                .starts_with("[WARN] KEY CHANGED for bob, WHOSE KEY YOU VERIFIED")
        );
        assert_eq!(Kind::Alert.prefix(), Some("[WARN]"));
        assert_eq!(Kind::Message.prefix(), None);
    }
}
