//! The sans-IO client: turns received lines into [`Event`]s and commands into lines to send.
//!
//! The host owns the connection, the clock and the randomness. Its loop is:
//!
//! 1. after connecting (and after every reconnect, with [`Client::reset`]), write every
//!    line [`Client::poll_transmit`] produces (the first is the `hello`);
//! 2. for every line received (from a [`crate::frame::LineAccumulator`]), call
//!    [`Client::handle_line`], then drain [`Client::poll_event`] until it returns
//!    `None`, then write what [`Client::poll_transmit`] produces (for example a `list`
//!    request the client decided to make);
//! 3. for every command the user types, write the line [`Client::send`] returns.
//!
//! Events borrow from the client, so one is handled before the next is polled;
//! `handle_line` discards events a host left undrained. Nothing here blocks, allocates,
//! reads a clock or panics on input.
//!
//! A `relay` from a sender whose key the client does not know is kept in a bounded
//! pending slot and a `list` is requested; it is decrypted as soon as a directory that
//! lists the sender arrives, and reported as undeliverable if the next directory does
//! not list it.

use core::fmt;

use base64ct::{Base64, Encoding};
use heapless::{String, Vec};

use crate::command::Command;
use crate::directory::{Change, Directory, Dropped};
use crate::e2ee::{E2eeError, KeyPair, PeerKey};
use crate::limits::{
    CLIENT_MAX_TEXT, CLIENT_MAX_USERS, CLIENT_PENDING, KEY_LEN, MAX_NAME_BYTES, NONCE_LEN, TAG_LEN,
};
use crate::msg::{self, ALG_V1, BufferTooSmall, Message, ParseError, Relay, UserList};

/// Default capacity of a client's message buffer: the longest text plus the tag.
pub const DEFAULT_MSG: usize = CLIENT_MAX_TEXT + TAG_LEN;

/// Why a received message could not be decrypted or shown.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undecryptable {
    /// The authentication tag did not verify (wrong key, or the message was altered).
    BadTag,
    /// The nonce is not base64 of 12 bytes.
    BadNonce,
    /// The cipher text is not base64, or shorter than a tag.
    BadCipher,
    /// `alg` is not `X25519+AESGCM`.
    UnsupportedAlgorithm,
    /// The sender's key is a low-order point.
    WeakKey,
    /// The plain text is not UTF-8.
    NotUtf8,
}

impl fmt::Display for Undecryptable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadTag => "authentication failed",
            Self::BadNonce => "bad nonce",
            Self::BadCipher => "bad cipher text",
            Self::UnsupportedAlgorithm => "unsupported algorithm",
            Self::WeakKey => "the sender's key is weak",
            Self::NotUtf8 => "the text is not UTF-8",
        })
    }
}

/// Why a received message was dropped before decryption.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undeliverable {
    /// The sender is not in the directory, even after refreshing it.
    UnknownSender,
    /// The message is longer than this client's buffer.
    TooLong,
    /// Too many messages from unknown senders were waiting; this, the oldest, was dropped.
    PendingFull,
    /// The relay has no `from`.
    NoSender,
}

impl fmt::Display for Undeliverable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnknownSender => "the sender is not in the directory",
            Self::TooLong => "the message is too long for this client",
            Self::PendingFull => "too many messages from unknown senders",
            Self::NoSender => "the message names no sender",
        })
    }
}

/// Something the host should show the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// The server accepted our `hello`; `users` are connected, us included.
    Registered {
        /// Number of users in the directory.
        users: usize,
    },
    /// A user joined.
    Joined {
        /// Who.
        name: &'a str,
        /// Their key.
        key: &'a [u8; KEY_LEN],
    },
    /// A user left.
    Left {
        /// Who.
        name: &'a str,
    },
    /// A known user's key changed: the server may be substituting keys. Warn loudly.
    KeyChanged {
        /// Who.
        name: &'a str,
        /// The key before.
        old: &'a [u8; KEY_LEN],
        /// The key now.
        new: &'a [u8; KEY_LEN],
    },
    /// The directory had more users (or longer names) than this client can hold.
    DirectoryTruncated(Dropped),
    /// The answer to the user's `/list`: show [`Client::directory`].
    Directory,
    /// A decrypted message.
    Message {
        /// Sender (as the server names it).
        from: &'a str,
        /// The text.
        text: &'a str,
    },
    /// A message that arrived but could not be decrypted.
    Undecryptable {
        /// Sender.
        from: &'a str,
        /// Why.
        reason: Undecryptable,
    },
    /// A message that was dropped before decryption.
    Undeliverable {
        /// Sender (empty if the relay named none).
        from: &'a str,
        /// Why.
        reason: Undeliverable,
    },
    /// The server's own text (`server` message).
    ServerText {
        /// The text, cut at the buffer's capacity.
        text: &'a str,
    },
    /// The server reported an error (`error` message).
    ServerError {
        /// The text, cut at the buffer's capacity.
        text: &'a str,
    },
}

/// Errors of [`Client::new`], [`Client::handle_line`] and [`Client::send`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientError {
    /// The server sent a line that is not a valid message.
    Parse(ParseError),
    /// The server sent a message only clients send.
    Unexpected(&'static str),
    /// The user name is invalid.
    BadName(msg::NameError),
    /// `/to` names a user who is not in the directory (a refresh has been requested).
    UnknownUser,
    /// The text is longer than this client can encrypt.
    TextTooLong {
        /// The longest text, in bytes.
        max: usize,
    },
    /// The recipient's key is a low-order point; nothing was sent.
    WeakKey,
    /// Not registered yet: wait for [`Event::Registered`].
    NotRegistered,
    /// The command is handled by the host (`/fp`, `/help`, `/quit`), not sent.
    LocalCommand,
    /// The output buffer is too small.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Parse(e) => write!(f, "bad line from the server: {e}"),
            Self::Unexpected(t) => write!(
                f,
                "the server sent a '{t}' message, which only clients send"
            ),
            Self::BadName(e) => write!(f, "{e}"),
            Self::UnknownUser => {
                f.write_str("unknown user (the directory is being refreshed; try again, or /list)")
            }
            Self::TextTooLong { max } => write!(f, "message too long (at most {max} bytes)"),
            Self::WeakKey => {
                f.write_str("the recipient's key is invalid (low-order point); not sent")
            }
            Self::NotRegistered => f.write_str("not connected to the server yet"),
            Self::LocalCommand => f.write_str("this command is handled locally"),
            Self::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: {needed} bytes needed")
            }
        }
    }
}

impl core::error::Error for ClientError {}

impl From<ParseError> for ClientError {
    fn from(e: ParseError) -> Self {
        Self::Parse(e)
    }
}

impl From<BufferTooSmall> for ClientError {
    fn from(e: BufferTooSmall) -> Self {
        Self::BufferTooSmall { needed: e.needed }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The `hello` is due.
    Hello,
    /// `hello` sent, waiting for `welcome`.
    AwaitWelcome,
    /// Registered.
    Ready,
}

/// The single event a line produced, with its text in `Client::buf` / `Client::from`.
#[derive(Debug, Clone, Copy)]
enum Primary {
    Message(usize),
    Undecryptable(Undecryptable),
    Undeliverable(Undeliverable),
    ServerText(usize),
    ServerError(usize),
}

struct Pending<const MSG: usize> {
    from: String<MAX_NAME_BYTES>,
    nonce: [u8; NONCE_LEN],
    cipher: Vec<u8, MSG>,
    generation: u32,
}

/// The client protocol state machine.
///
/// Capacities: `USERS` directory entries (two directories are kept, about 168 bytes
/// per entry each), `MSG` bytes of cipher text (the longest text is `MSG - 16`; the
/// client holds one such buffer plus `PENDING` pending messages of up to `MSG` bytes).
pub struct Client<
    const USERS: usize = CLIENT_MAX_USERS,
    const MSG: usize = DEFAULT_MSG,
    const PENDING: usize = CLIENT_PENDING,
> {
    user: String<MAX_NAME_BYTES>,
    keys: KeyPair,
    phase: Phase,
    dir: Directory<USERS>,
    prev: Directory<USERS>,
    generation: u32,
    peer_keys: Vec<([u8; KEY_LEN], PeerKey), USERS>,
    pending: Vec<Pending<MSG>, PENDING>,
    buf: [u8; MSG],
    from: String<MAX_NAME_BYTES>,
    // Events waiting to be polled.
    ev_registered: bool,
    ev_diff: Option<usize>,
    ev_truncated: Dropped,
    ev_directory: bool,
    ev_pending: bool,
    ev_primary: Option<Primary>,
    // Transmissions.
    list_due: bool,
    list_in_flight: bool,
    user_lists: u8,
}

impl<const USERS: usize, const MSG: usize, const PENDING: usize> Client<USERS, MSG, PENDING> {
    /// A client for `user` with key pair `keys`. The name must follow the protocol's
    /// rules ([`msg::validate_name`]).
    pub fn new(user: &str, keys: KeyPair) -> Result<Self, ClientError> {
        msg::validate_name(user).map_err(ClientError::BadName)?;
        let mut name = String::new();
        name.push_str(user)
            .map_err(|_| ClientError::BadName(msg::NameError::TooLong))?;
        Ok(Self {
            user: name,
            keys,
            phase: Phase::Hello,
            dir: Directory::new(),
            prev: Directory::new(),
            generation: 0,
            peer_keys: Vec::new(),
            pending: Vec::new(),
            buf: [0; MSG],
            from: String::new(),
            ev_registered: false,
            ev_diff: None,
            ev_truncated: Dropped::default(),
            ev_directory: false,
            ev_pending: false,
            ev_primary: None,
            list_due: false,
            list_in_flight: false,
            user_lists: 0,
        })
    }

    /// Our user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Our public key.
    pub fn public_key(&self) -> [u8; KEY_LEN] {
        self.keys.public()
    }

    /// True once the server has welcomed us (until the next [`Client::reset`]).
    pub fn is_registered(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// The longest text [`Client::send`] can encrypt.
    pub const fn max_text(&self) -> usize {
        MSG.saturating_sub(TAG_LEN)
    }

    /// The directory as last received.
    pub fn directory(&self) -> &Directory<USERS> {
        &self.dir
    }

    /// The key of `user`, if in the directory.
    pub fn key_of(&self, user: &str) -> Option<&[u8; KEY_LEN]> {
        self.dir.get(user)
    }

    /// Prepares for a new connection: the next transmission is the `hello` again.
    /// The key pair, the directory (so key changes across reconnects are noticed) and
    /// pending messages are kept.
    pub fn reset(&mut self) {
        self.phase = Phase::Hello;
        self.discard_events();
        self.list_due = false;
        self.list_in_flight = false;
        self.user_lists = 0;
    }

    fn discard_events(&mut self) {
        self.ev_registered = false;
        if self.ev_diff.take().is_some() {
            self.prev.clone_from(&self.dir);
        }
        self.ev_truncated = Dropped::default();
        self.ev_directory = false;
        self.ev_primary = None;
    }

    /// The next line to write, if any, `\n` included: the `hello` after
    /// (re)connecting, or a `list` request the client decided to make.
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Result<Option<usize>, ClientError> {
        match self.phase {
            Phase::Hello => {
                let n = Message::Hello {
                    user: &self.user,
                    key: self.keys.public(),
                }
                .emit_line(out)?;
                self.phase = Phase::AwaitWelcome;
                Ok(Some(n))
            }
            Phase::AwaitWelcome => Ok(None),
            Phase::Ready => {
                if self.list_due && !self.list_in_flight {
                    let n = Message::List.emit_line(out)?;
                    self.list_due = false;
                    self.list_in_flight = true;
                    return Ok(Some(n));
                }
                Ok(None)
            }
        }
    }

    /// Handles one received line (without its `\n`). `scratch` receives decoded
    /// strings; as long as the line is always enough. Then drain [`Client::poll_event`].
    pub fn handle_line(&mut self, line: &[u8], scratch: &mut [u8]) -> Result<(), ClientError> {
        self.discard_events();
        let m = msg::parse(line, scratch)?;
        match m {
            Message::Welcome { users } => {
                if self.phase != Phase::Ready {
                    self.phase = Phase::Ready;
                    self.ev_registered = true;
                }
                self.apply_directory(&users);
            }
            Message::Users { users } => {
                self.apply_directory(&users);
                if self.user_lists > 0 {
                    self.user_lists -= 1;
                    self.ev_directory = true;
                }
            }
            Message::Server { text } => {
                let n = self.copy_text(text);
                self.ev_primary = Some(Primary::ServerText(n));
            }
            Message::Error { text } => {
                let n = self.copy_text(text);
                self.ev_primary = Some(Primary::ServerError(n));
            }
            Message::Relay(r) => self.receive_relay(&r),
            other @ (Message::Hello { .. } | Message::List | Message::Chat { .. }) => {
                return Err(ClientError::Unexpected(other.type_name()));
            }
        }
        Ok(())
    }

    fn apply_directory(&mut self, users: &UserList<'_>) {
        if self.ev_diff.is_none() {
            core::mem::swap(&mut self.dir, &mut self.prev);
        }
        self.ev_truncated = self.dir.replace(users);
        self.ev_diff = Some(0);
        self.generation = self.generation.wrapping_add(1);
        self.list_in_flight = false;
        self.ev_pending = !self.pending.is_empty();
        // Forget cached keys of users who are gone or changed keys.
        let dir = &self.dir;
        self.peer_keys
            .retain(|(k, _)| dir.iter().any(|e| e.key() == k));
    }

    /// Copies `text` into the buffer, cut at a character boundary if too long.
    fn copy_text(&mut self, text: &str) -> usize {
        let mut n = text.len().min(MSG);
        while !text.is_char_boundary(n) {
            n -= 1;
        }
        if let (Some(dst), Some(src)) = (self.buf.get_mut(..n), text.as_bytes().get(..n)) {
            dst.copy_from_slice(src);
        }
        n
    }

    fn set_from(&mut self, from: &str) {
        self.from.clear();
        for c in from.chars() {
            if self.from.push(c).is_err() {
                break;
            }
        }
    }

    fn receive_relay(&mut self, r: &Relay<'_>) {
        let from = r.from.unwrap_or("");
        self.set_from(from);
        if from.is_empty() {
            self.ev_primary = Some(Primary::Undeliverable(Undeliverable::NoSender));
            return;
        }
        if r.alg.is_some_and(|a| a != ALG_V1) {
            self.ev_primary = Some(Primary::Undecryptable(Undecryptable::UnsupportedAlgorithm));
            return;
        }
        let mut nonce = [0u8; NONCE_LEN];
        let mut nonce_buf = [0u8; NONCE_LEN + 3];
        match Base64::decode(r.nonce, &mut nonce_buf) {
            Ok(n) if n.len() == NONCE_LEN => nonce.copy_from_slice(n),
            _ => {
                self.ev_primary = Some(Primary::Undecryptable(Undecryptable::BadNonce));
                return;
            }
        }
        if r.cipher.len() / 4 * 3 > MSG + 2 {
            self.ev_primary = Some(Primary::Undeliverable(Undeliverable::TooLong));
            return;
        }
        let len = match Base64::decode(r.cipher, &mut self.buf) {
            Ok(c) => c.len(),
            Err(_) => {
                self.ev_primary = Some(Primary::Undecryptable(Undecryptable::BadCipher));
                return;
            }
        };
        if self.dir.get(from).is_some() {
            self.ev_primary = Some(self.open_buf(from, &nonce, len));
            return;
        }
        // Unknown sender: hold it and refresh the directory.
        let mut cipher = Vec::new();
        let _ = cipher.extend_from_slice(self.buf.get(..len).unwrap_or(&[]));
        let slot = Pending {
            from: self.from.clone(),
            nonce,
            cipher,
            generation: self.generation,
        };
        if self.pending.is_full() && !self.pending.is_empty() {
            let old = self.pending.remove(0);
            self.from = old.from;
            self.ev_primary = Some(Primary::Undeliverable(Undeliverable::PendingFull));
        }
        let _ = self.pending.push(slot);
        self.list_due = true;
    }

    /// Decrypts `self.buf[..len]` in place from `from` (who must be in the directory).
    fn open_buf(&mut self, from: &str, nonce: &[u8; NONCE_LEN], len: usize) -> Primary {
        let Some(key) = self.dir.get(from).copied() else {
            return Primary::Undeliverable(Undeliverable::UnknownSender);
        };
        let Some((_, peer)) = self
            .peer_index(&key)
            .ok()
            .and_then(|i| self.peer_keys.get(i))
        else {
            return Primary::Undecryptable(Undecryptable::WeakKey);
        };
        let Some(buf) = self.buf.get_mut(..len) else {
            return Primary::Undeliverable(Undeliverable::TooLong);
        };
        match peer.open_in_place(nonce, buf) {
            Ok(n) => match buf.get(..n).map(core::str::from_utf8) {
                Some(Ok(_)) => Primary::Message(n),
                _ => {
                    buf.fill(0);
                    Primary::Undecryptable(Undecryptable::NotUtf8)
                }
            },
            Err(E2eeError::CipherTooShort) => Primary::Undecryptable(Undecryptable::BadCipher),
            Err(_) => Primary::Undecryptable(Undecryptable::BadTag),
        }
    }

    /// Index in the cache of the per-peer key for `key`, derived on first use.
    fn peer_index(&mut self, key: &[u8; KEY_LEN]) -> Result<usize, E2eeError> {
        if let Some(p) = self.peer_keys.iter().position(|(k, _)| k == key) {
            return Ok(p);
        }
        let derived = self.keys.peer_key(key)?;
        if self.peer_keys.is_full() && !self.peer_keys.is_empty() {
            self.peer_keys.remove(0);
        }
        let _ = self.peer_keys.push((*key, derived));
        Ok(self.peer_keys.len().saturating_sub(1))
    }

    /// The next event, or `None` when all are drained.
    pub fn poll_event(&mut self) -> Option<Event<'_>> {
        if core::mem::take(&mut self.ev_registered) {
            return Some(Event::Registered {
                users: self.dir.len(),
            });
        }
        if let Some(cursor) = self.ev_diff {
            // Find the next change first, then borrow it for the returned event.
            let mut probe = self.dir.changes_since(&self.prev).resume(cursor);
            let found = probe.next().map(|_| probe.cursor());
            match found {
                Some(after) => {
                    self.ev_diff = Some(after);
                    let change = self.dir.changes_since(&self.prev).resume(cursor).next()?;
                    return Some(match change {
                        Change::Joined { name, key } => Event::Joined { name, key },
                        Change::Left { name } => Event::Left { name },
                        Change::KeyChanged { name, old, new } => {
                            Event::KeyChanged { name, old, new }
                        }
                    });
                }
                None => {
                    self.ev_diff = None;
                    self.prev.clone_from(&self.dir);
                }
            }
        }
        if !self.ev_truncated.is_empty() {
            return Some(Event::DirectoryTruncated(core::mem::take(
                &mut self.ev_truncated,
            )));
        }
        if core::mem::take(&mut self.ev_directory) {
            return Some(Event::Directory);
        }
        if self.ev_pending {
            if let Some(p) = self.next_pending() {
                return Some(self.primary_event(p));
            }
            self.ev_pending = false;
        }
        let p = self.ev_primary.take()?;
        Some(self.primary_event(p))
    }

    /// Resolves the first pending message that a newer directory makes decidable.
    fn next_pending(&mut self) -> Option<Primary> {
        let generation = self.generation;
        let i = self
            .pending
            .iter()
            .position(|p| p.generation != generation)?;
        let p = self.pending.remove(i);
        self.from = p.from;
        let from = self.from.clone();
        if self.dir.get(&from).is_none() {
            return Some(Primary::Undeliverable(Undeliverable::UnknownSender));
        }
        let len = p.cipher.len();
        match self.buf.get_mut(..len) {
            Some(dst) => dst.copy_from_slice(&p.cipher),
            None => return Some(Primary::Undeliverable(Undeliverable::TooLong)),
        }
        Some(self.open_buf(&from, &p.nonce, len))
    }

    fn primary_event(&self, p: Primary) -> Event<'_> {
        let text = |n: usize| {
            self.buf
                .get(..n)
                .and_then(|b| core::str::from_utf8(b).ok())
                .unwrap_or("")
        };
        let from = self.from.as_str();
        match p {
            Primary::Message(n) => Event::Message {
                from,
                text: text(n),
            },
            Primary::Undecryptable(reason) => Event::Undecryptable { from, reason },
            Primary::Undeliverable(reason) => Event::Undeliverable { from, reason },
            Primary::ServerText(n) => Event::ServerText { text: text(n) },
            Primary::ServerError(n) => Event::ServerError { text: text(n) },
        }
    }

    /// The line to write for a command, `\n` included. `/list`, `/to` and `/server`
    /// produce lines; `/fp`, `/help` and `/quit` are the host's
    /// ([`ClientError::LocalCommand`]).
    pub fn send(
        &mut self,
        cmd: &Command<'_>,
        rng: &mut impl rand_core::CryptoRngCore,
        out: &mut [u8],
    ) -> Result<usize, ClientError> {
        if self.phase != Phase::Ready {
            return Err(ClientError::NotRegistered);
        }
        match *cmd {
            Command::List => {
                let n = Message::List.emit_line(out)?;
                self.user_lists = self.user_lists.saturating_add(1);
                Ok(n)
            }
            Command::Server { text } => Ok(Message::Chat { text }.emit_line(out)?),
            Command::To { user, text } => self.seal_to(user, text, rng, out),
            Command::Fingerprint { .. } | Command::Help | Command::Quit => {
                Err(ClientError::LocalCommand)
            }
        }
    }

    fn seal_to(
        &mut self,
        user: &str,
        text: &str,
        rng: &mut impl rand_core::CryptoRngCore,
        out: &mut [u8],
    ) -> Result<usize, ClientError> {
        let Some(key) = self.dir.get(user).copied() else {
            self.list_due = true;
            return Err(ClientError::UnknownUser);
        };
        let max = self.max_text();
        if text.len() > max {
            return Err(ClientError::TextTooLong { max });
        }
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let i = self.peer_index(&key).map_err(|_| ClientError::WeakKey)?;
        let Some((_, peer)) = self.peer_keys.get(i) else {
            return Err(ClientError::WeakKey);
        };
        let Some(dst) = self.buf.get_mut(..text.len()) else {
            return Err(ClientError::TextTooLong { max });
        };
        dst.copy_from_slice(text.as_bytes());
        let n = peer
            .seal_in_place_with_nonce(&nonce, &mut self.buf, text.len())
            .map_err(|_| ClientError::TextTooLong { max })?;
        let cipher = self.buf.get(..n).unwrap_or(&[]);
        let result = msg::emit_relay_line(user, &self.user, &nonce, cipher, out);
        self.buf.fill(0);
        Ok(result?)
    }
}

impl<const USERS: usize, const MSG: usize, const PENDING: usize> fmt::Debug
    for Client<USERS, MSG, PENDING>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("user", &self.user.as_str())
            .field("phase", &self.phase)
            .field("users", &self.dir.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}
