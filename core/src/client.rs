//! The sans-IO client: turns received lines into [`Event`]s and commands into lines to send.
//!
//! The host owns the connection, the clock and the randomness. Its loop is:
//!
//! 1. when a connection ends, and before a new one, call [`Client::reset`];
//! 2. for every line received (from a [`crate::frame::LineAccumulator`]), call
//!    [`Client::handle_line`], then drain [`Client::poll_event`] until it returns
//!    `None`;
//! 3. to send, call [`Client::send_to`], [`Client::send_server`] or
//!    [`Client::request_list`]: they only queue;
//! 4. after each of the above, write every line [`Client::poll_transmit`] produces
//!    until it returns `None`: every byte leaves through it (the `hello` first after
//!    connecting, then what was queued, then the `list` requests the client decides to
//!    make itself).
//!
//! Events borrow from the client, so one is handled before the next is polled;
//! `handle_line` discards events a host left undrained. Nothing here blocks, allocates,
//! reads a clock or panics on input. Errors are per operation: [`LineError`] (the server
//! sent something wrong), [`SendError`] (the user asked for something impossible, or
//! the caller sent while something was queued) and [`TransmitError`] (the caller's
//! buffer is too small).
//!
//! Most hosts use [`crate::chat::Chat`], which owns a client and adds the commands,
//! the wording and the memory of keys.
//!
//! A `relay` from a sender whose key the client does not know is kept in a bounded
//! pending slot and a `list` is requested; it is decrypted as soon as a directory that
//! lists the sender arrives, and reported as undeliverable if the next directory does
//! not list it.

use core::fmt;

use base64ct::{Base64, Encoding};
use heapless::{String, Vec};

use crate::directory::{Change, Directory, Dropped};
use crate::e2ee::{E2eeError, KeyPair, PeerKey};
use crate::limits::{
    CLIENT_MAX_TEXT, CLIENT_MAX_USERS, CLIENT_PENDING, KEY_LEN, MAX_NAME_BYTES, NONCE_LEN, TAG_LEN,
};
use crate::msg::{self, ALG_V1, BufferTooSmall, Message, NameError, ParseError, Relay, UserList};

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
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// The server accepted our `hello`; `users` are connected, us included.
    Registered {
        /// Number of users in the directory.
        users: usize,
    },
    /// The directory changed: a user joined, left, or now has another key (the server
    /// may be substituting keys: warn loudly).
    Change(Change<'a>),
    /// The directory had more users (or longer names) than this client can hold.
    DirectoryTruncated(Dropped),
    /// The answer to the user's [`Client::request_list`]: show [`Client::directory`].
    Listed,
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

/// Why [`Client::handle_line`] refused a line: the server (the peer) sent something
/// wrong. The client's state is unchanged and the connection can go on.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// The line is not a valid message ([`ParseError::ScratchTooSmall`] alone is the
    /// caller's fault: the scratch buffer must be as long as the line).
    Parse(ParseError),
    /// The server sent a message only clients send (its `type`).
    Unexpected(&'static str),
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Parse(e) => write!(f, "bad line from the server: {e}"),
            Self::Unexpected(t) => write!(
                f,
                "the server sent a '{t}' message, which only clients send"
            ),
        }
    }
}

impl core::error::Error for LineError {}

impl From<ParseError> for LineError {
    fn from(e: ParseError) -> Self {
        Self::Parse(e)
    }
}

/// Why [`Client::send_to`], [`Client::send_server`] or [`Client::request_list`]
/// queued nothing. Nothing was sent; the text the user typed is still the caller's.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError<'a> {
    /// Not connected, or the server has not welcomed us yet: keep the text and send it
    /// after [`Event::Registered`].
    NotRegistered,
    /// The user asked for a recipient who is not in the directory (a refresh of the
    /// directory has been queued).
    UnknownUser {
        /// The name as given.
        user: &'a str,
    },
    /// The user's text is longer than this client can send.
    TextTooLong {
        /// The longest text, in bytes.
        max: usize,
    },
    /// The recipient's key, as the server listed it, is a low-order point: no key can
    /// be agreed with it.
    WeakKey {
        /// The recipient.
        user: &'a str,
    },
    /// Caller misuse: a transmission is still queued; drain [`Client::poll_transmit`]
    /// after every send.
    Busy,
}

impl fmt::Display for SendError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRegistered => f.write_str("not connected to the server"),
            Self::UnknownUser { user } => write!(f, "unknown user: {user}"),
            Self::TextTooLong { max } => write!(f, "message too long (at most {max} bytes)"),
            Self::WeakKey { user } => write!(
                f,
                "the key the server lists for {user} is invalid (low-order point); not sent"
            ),
            Self::Busy => f.write_str("the previous line has not been transmitted yet"),
        }
    }
}

impl core::error::Error for SendError<'_> {}

/// Why [`Client::poll_transmit`] wrote nothing: caller misuse. The transmission stays
/// queued; call again with a larger buffer.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransmitError {
    /// The output buffer is too small.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
    },
}

impl fmt::Display for TransmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: {needed} bytes needed")
            }
        }
    }
}

impl core::error::Error for TransmitError {}

impl From<BufferTooSmall> for TransmitError {
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
    /// Text length, nonce.
    Message(usize, [u8; NONCE_LEN]),
    Undecryptable(Undecryptable),
    Undeliverable(Undeliverable),
    ServerText(usize),
    ServerError(usize),
}

/// The event [`Client::event`] shows, set by [`Client::advance`].
#[derive(Debug, Clone, Copy)]
enum Current {
    None,
    Registered,
    /// The change found at this cursor of `dir.changes_since(&prev)`.
    Change(usize),
    Truncated(Dropped),
    Listed,
    Primary(Primary),
}

/// The transmission [`Client::send_to`] or [`Client::send_server`] queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queued {
    None,
    /// `chat` with the text in `Client::out`.
    Chat,
    /// `relay` to `Client::out_to` with the cipher text in `Client::out`.
    Relay([u8; NONCE_LEN]),
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
/// client holds a receive and a send buffer of `MSG` bytes plus `PENDING` pending
/// messages of up to `MSG` bytes).
pub struct Client<
    const USERS: usize = CLIENT_MAX_USERS,
    const MSG: usize = DEFAULT_MSG,
    const PENDING: usize = CLIENT_PENDING,
> {
    user: String<MAX_NAME_BYTES>,
    keys: KeyPair,
    /// The join token sent in `hello` (a private server's invite), if any.
    token: Option<String<{ *crate::invite::TOKEN_LEN.end() }>>,
    phase: Phase,
    dir: Directory<USERS>,
    prev: Directory<USERS>,
    generation: u32,
    peer_keys: Vec<([u8; KEY_LEN], PeerKey), USERS>,
    pending: Vec<Pending<MSG>, PENDING>,
    buf: [u8; MSG],
    from: String<MAX_NAME_BYTES>,
    // Events waiting to be polled.
    current: Current,
    ev_registered: bool,
    ev_diff: Option<usize>,
    ev_truncated: Dropped,
    ev_listed: bool,
    ev_pending: bool,
    ev_primary: Option<Primary>,
    // Transmissions.
    queued: Queued,
    out: Vec<u8, MSG>,
    out_to: String<MAX_NAME_BYTES>,
    list_due: bool,
    list_in_flight: bool,
    user_list_due: bool,
    user_lists: u8,
}

impl<const USERS: usize, const MSG: usize, const PENDING: usize> Client<USERS, MSG, PENDING> {
    /// A client for `user` with key pair `keys`. The name must follow the protocol's
    /// rules ([`msg::validate_name`]).
    pub fn new(user: &str, keys: KeyPair) -> Result<Self, NameError> {
        msg::validate_name(user)?;
        let mut name = String::new();
        name.push_str(user).map_err(|_| NameError::TooLong)?;
        Ok(Self {
            user: name,
            keys,
            token: None,
            phase: Phase::Hello,
            dir: Directory::new(),
            prev: Directory::new(),
            generation: 0,
            peer_keys: Vec::new(),
            pending: Vec::new(),
            buf: [0; MSG],
            from: String::new(),
            current: Current::None,
            ev_registered: false,
            ev_diff: None,
            ev_truncated: Dropped::default(),
            ev_listed: false,
            ev_pending: false,
            ev_primary: None,
            queued: Queued::None,
            out: Vec::new(),
            out_to: String::new(),
            list_due: false,
            list_in_flight: false,
            user_list_due: false,
            user_lists: 0,
        })
    }

    /// Sends `token` (an invite's join token, for a private server) in every `hello`
    /// from now on; `None` stops sending one.
    pub fn set_token(&mut self, token: Option<crate::invite::Token<'_>>) {
        self.token = token.and_then(|t| {
            let mut s = String::new();
            // A Token is at most TOKEN_LEN.end() bytes: this never fails.
            s.push_str(t.as_str()).ok().map(|()| s)
        });
    }

    /// The join token sent in `hello`, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
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

    /// The longest text [`Client::send_to`] can encrypt.
    pub const fn max_text(&self) -> usize {
        MSG.saturating_sub(TAG_LEN)
    }

    /// The directory as last received (kept while disconnected).
    pub fn directory(&self) -> &Directory<USERS> {
        &self.dir
    }

    /// The key of `user`, if in the directory.
    pub fn key_of(&self, user: &str) -> Option<&[u8; KEY_LEN]> {
        self.dir.get(user)
    }

    /// Call when a connection ends, and before a new one: the next transmission is the
    /// `hello` again, and sending is refused with [`SendError::NotRegistered`] until
    /// the server welcomes us. The key pair, the directory (so key changes across
    /// reconnects are noticed) and pending received messages are kept; a queued
    /// transmission is dropped (it was sealed to a key that may change meanwhile).
    pub fn reset(&mut self) {
        self.phase = Phase::Hello;
        self.discard_events();
        self.clear_queued();
        self.list_due = false;
        self.list_in_flight = false;
        self.user_list_due = false;
        self.user_lists = 0;
    }

    fn clear_queued(&mut self) {
        self.queued = Queued::None;
        self.out.fill(0);
        self.out.clear();
    }

    fn discard_events(&mut self) {
        self.current = Current::None;
        self.ev_registered = false;
        if self.ev_diff.take().is_some() {
            self.prev.clone_from(&self.dir);
        }
        self.ev_truncated = Dropped::default();
        self.ev_listed = false;
        self.ev_primary = None;
    }

    /// The next line to write, if any, `\n` included: the `hello` after
    /// (re)connecting, then what [`Client::send_to`], [`Client::send_server`] and
    /// [`Client::request_list`] queued, and the `list` requests the client decides to
    /// make. Call it until it returns `None` after every other call.
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Result<Option<usize>, TransmitError> {
        match self.phase {
            Phase::Hello => {
                let n = Message::Hello {
                    user: &self.user,
                    key: self.keys.public(),
                    token: self.token.as_deref(),
                }
                .emit_line(out)?;
                self.phase = Phase::AwaitWelcome;
                Ok(Some(n))
            }
            Phase::AwaitWelcome => Ok(None),
            Phase::Ready => {
                let n = match self.queued {
                    Queued::Chat => {
                        let text = core::str::from_utf8(&self.out).unwrap_or("");
                        Message::Chat { text }.emit_line(out)?
                    }
                    Queued::Relay(nonce) => {
                        msg::emit_relay_line(&self.out_to, &self.user, &nonce, &self.out, out)?
                    }
                    Queued::None => return self.poll_list(out),
                };
                self.clear_queued();
                Ok(Some(n))
            }
        }
    }

    fn poll_list(&mut self, out: &mut [u8]) -> Result<Option<usize>, TransmitError> {
        let automatic = self.list_due && !self.list_in_flight;
        if !automatic && !self.user_list_due {
            return Ok(None);
        }
        let n = Message::List.emit_line(out)?;
        if core::mem::take(&mut self.user_list_due) {
            self.user_lists = self.user_lists.saturating_add(1);
        }
        self.list_due = false;
        self.list_in_flight = true;
        Ok(Some(n))
    }

    /// Handles one received line (without its `\n`). `scratch` receives decoded
    /// strings; as long as the line is always enough. Then drain
    /// [`Client::poll_event`] and [`Client::poll_transmit`]. Events of the previous
    /// line that were not drained are discarded.
    pub fn handle_line(&mut self, line: &[u8], scratch: &mut [u8]) -> Result<(), LineError> {
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
                    self.ev_listed = true;
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
                return Err(LineError::Unexpected(other.type_name()));
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
        let n = floor_char_boundary(text, MSG);
        if let (Some(dst), Some(src)) = (self.buf.get_mut(..n), text.as_bytes().get(..n)) {
            dst.copy_from_slice(src);
        }
        n
    }

    fn receive_relay(&mut self, r: &Relay<'_>) {
        let from = r.from.unwrap_or("");
        copy_name(&mut self.from, from);
        if from.is_empty() {
            self.ev_primary = Some(Primary::Undeliverable(Undeliverable::NoSender));
            return;
        }
        if r.alg.is_some_and(|a| a != ALG_V1) {
            self.ev_primary = Some(Primary::Undecryptable(Undecryptable::UnsupportedAlgorithm));
            return;
        }
        // Decoded in place: a longer nonce does not fit, a shorter one fails the guard.
        let mut nonce = [0u8; NONCE_LEN];
        match Base64::decode(r.nonce, &mut nonce) {
            Ok(n) if n.len() == NONCE_LEN => {}
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
                Some(Ok(_)) => Primary::Message(n, *nonce),
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
        if self.advance() { self.event() } else { None }
    }

    /// Moves to the next event (shown by [`Client::event`]); false when all are drained.
    pub(crate) fn advance(&mut self) -> bool {
        self.current = self.next_current();
        !matches!(self.current, Current::None)
    }

    fn next_current(&mut self) -> Current {
        if core::mem::take(&mut self.ev_registered) {
            return Current::Registered;
        }
        if let Some(cursor) = self.ev_diff {
            let mut probe = self.dir.changes_since(&self.prev).resume(cursor);
            if probe.next().is_some() {
                self.ev_diff = Some(probe.cursor());
                return Current::Change(cursor);
            }
            self.ev_diff = None;
            self.prev.clone_from(&self.dir);
        }
        if !self.ev_truncated.is_empty() {
            return Current::Truncated(core::mem::take(&mut self.ev_truncated));
        }
        if core::mem::take(&mut self.ev_listed) {
            return Current::Listed;
        }
        if self.ev_pending {
            if let Some(p) = self.next_pending() {
                return Current::Primary(p);
            }
            self.ev_pending = false;
        }
        match self.ev_primary.take() {
            Some(p) => Current::Primary(p),
            None => Current::None,
        }
    }

    /// The nonce of the current [`Event::Message`] (only meaningful for one).
    pub(crate) fn message_nonce(&self) -> Option<[u8; NONCE_LEN]> {
        match self.current {
            Current::Primary(Primary::Message(_, nonce)) => Some(nonce),
            _ => None,
        }
    }

    /// The nonce of the queued `relay`, if one is queued.
    pub(crate) fn queued_nonce(&self) -> Option<[u8; NONCE_LEN]> {
        match self.queued {
            Queued::Relay(n) => Some(n),
            _ => None,
        }
    }

    /// The event [`Client::advance`] moved to.
    pub(crate) fn event(&self) -> Option<Event<'_>> {
        Some(match self.current {
            Current::None => return None,
            Current::Registered => Event::Registered {
                users: self.dir.len(),
            },
            Current::Change(cursor) => {
                Event::Change(self.dir.changes_since(&self.prev).resume(cursor).next()?)
            }
            Current::Truncated(d) => Event::DirectoryTruncated(d),
            Current::Listed => Event::Listed,
            Current::Primary(p) => self.primary_event(p),
        })
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
            Primary::Message(n, _) => Event::Message {
                from,
                text: text(n),
            },
            Primary::Undecryptable(reason) => Event::Undecryptable { from, reason },
            Primary::Undeliverable(reason) => Event::Undeliverable { from, reason },
            Primary::ServerText(n) => Event::ServerText { text: text(n) },
            Primary::ServerError(n) => Event::ServerError { text: text(n) },
        }
    }

    fn check_can_queue(&self) -> Result<(), SendError<'static>> {
        if self.phase != Phase::Ready {
            return Err(SendError::NotRegistered);
        }
        if self.queued != Queued::None {
            return Err(SendError::Busy);
        }
        Ok(())
    }

    /// Queues a `list` request; its answer is reported as [`Event::Listed`].
    pub fn request_list(&mut self) -> Result<(), SendError<'static>> {
        if self.phase != Phase::Ready {
            return Err(SendError::NotRegistered);
        }
        self.user_list_due = true;
        Ok(())
    }

    /// Queues `text` for the server itself (a `chat` message).
    pub fn send_server(&mut self, text: &str) -> Result<(), SendError<'static>> {
        self.check_can_queue()?;
        self.out.clear();
        self.out
            .extend_from_slice(text.as_bytes())
            .map_err(|_| SendError::TextTooLong { max: MSG })?;
        self.queued = Queued::Chat;
        Ok(())
    }

    /// Encrypts `text` to `user`'s key as the directory lists it now and queues the
    /// `relay`. A fresh nonce is drawn from `rng`.
    pub fn send_to<'u>(
        &mut self,
        user: &'u str,
        text: &str,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> Result<(), SendError<'u>> {
        self.check_can_queue()?;
        let Some(key) = self.dir.get(user).copied() else {
            self.list_due = true;
            return Err(SendError::UnknownUser { user });
        };
        let max = self.max_text();
        if text.len() > max {
            return Err(SendError::TextTooLong { max });
        }
        let i = self
            .peer_index(&key)
            .map_err(|_| SendError::WeakKey { user })?;
        let Some((_, peer)) = self.peer_keys.get(i) else {
            return Err(SendError::WeakKey { user });
        };
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        self.out.clear();
        let _ = self.out.resize_default(MSG);
        let sealed = match self.out.get_mut(..text.len()) {
            Some(dst) => {
                dst.copy_from_slice(text.as_bytes());
                peer.seal_in_place_with_nonce(&nonce, &mut self.out, text.len())
                    .ok()
            }
            None => None,
        };
        let Some(n) = sealed else {
            self.clear_queued();
            return Err(SendError::TextTooLong { max });
        };
        self.out.truncate(n);
        copy_name(&mut self.out_to, user);
        self.queued = Queued::Relay(nonce);
        Ok(())
    }
}

/// The largest `n <= max` that is a character boundary of `s`.
fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut n = s.len().min(max);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    n
}

/// Copies `name` into `dst`, cut at a character boundary if too long.
fn copy_name(dst: &mut String<MAX_NAME_BYTES>, name: &str) {
    dst.clear();
    let _ = dst.push_str(
        name.get(..floor_char_boundary(name, MAX_NAME_BYTES))
            .unwrap_or(""),
    );
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
