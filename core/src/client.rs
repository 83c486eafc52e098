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
use crate::identity::Identity;
use crate::limits::{
    CLIENT_MAX_TEXT, CLIENT_MAX_USERS, CLIENT_PENDING, KEY_LEN, MAX_NAME_BYTES, NONCE_LEN, TAG_LEN,
};
use crate::link::{Link, LinkAction};
use crate::msg::{self, ALG_V1, BufferTooSmall, Message, NameError, ParseError, Relay, UserList};
use crate::v2::SIG_LEN;
use crate::v2::identity::{HelloProof, IdentityError};
use crate::v2::json::{self as v2json, DirDelta, HelloV2, V2Message};

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
    /// Protocol v2 is on ([`Client::enable_v2`]) and the server welcomed us without a
    /// `challenge`: it speaks protocol v1 only (the reference, or an old Seguro), so
    /// every conversation is protected by v1. Reported when this becomes known, not
    /// again on every reconnect to the same kind of server.
    ServerV1Only,
    /// The server listed `user` as a v2 user with an identity binding that does not
    /// verify (it may be substituting keys): `user` is treated as a v1 user.
    BadBinding {
        /// The first such user of the directory.
        user: &'a str,
        /// How many more users of the same directory had a bad binding.
        more: usize,
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
    /// The server's v2 `challenge` cannot be answered (its ephemeral key is a
    /// low-order point): no proof is sent, so the server refuses the connection.
    BadChallenge(IdentityError),
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Parse(e) => write!(f, "bad line from the server: {e}"),
            Self::Unexpected(t) => write!(
                f,
                "the server sent a '{t}' message, which only clients send"
            ),
            Self::BadChallenge(e) => write!(f, "the server's v2 challenge is unusable: {e}"),
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
    /// `hello` sent, waiting for `welcome` (or, with v2, a `challenge`).
    AwaitWelcome,
    /// The answer to the server's `challenge` is due (protocol v2 §4.2).
    Proof(HelloProof),
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
    ServerV1Only,
    /// How many more bad bindings than the one named.
    BadBinding(usize),
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
    // Protocol v2 (§2, §4): the identity, if enabled, and what this connection showed.
    v2: Option<V2Setup>,
    /// This connection's server sent a `challenge` (and we answered it).
    challenged: bool,
    /// What the last welcome showed: `Some(true)` a v2 server, `Some(false)` v1 only.
    server_v2: Option<bool>,
    /// Peers whose v2 entry verified, from the last directory with a v2 section.
    v2_peers: Vec<V2Peer, USERS>,
    ev_v1_server: bool,
    ev_bad_binding: Option<usize>,
    bad_binding_name: String<MAX_NAME_BYTES>,
    /// Heartbeats with a v2 server (protocol v2 §11), the host's last time, a ping due.
    link: Link,
    clock: u64,
    ping_due: Option<u32>,
    /// The last `dir` delta applied (protocol v2 §10), and whether a `list` is awaited
    /// after a gap.
    dir_seq: u32,
    dir_resync: bool,
}

/// What a v2 client keeps to answer challenges.
struct V2Setup {
    identity: Identity,
    bind: [u8; SIG_LEN],
    spki: [u8; 32],
}

/// A peer the directory's v2 section lists with a valid binding and the `v2` capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct V2Peer {
    /// SHA-256 of the name, first 16 bytes (the name is in the directory).
    name: [u8; 16],
    x: [u8; KEY_LEN],
    ed: [u8; KEY_LEN],
    /// It announced `receipts` (§8): it wants receipts and understands them.
    receipts: bool,
}

fn name_tag(name: &str) -> [u8; 16] {
    use sha2::Digest;
    let d = sha2::Sha256::digest(name.as_bytes());
    let mut t = [0u8; 16];
    t.copy_from_slice(d.get(..16).unwrap_or(&[0; 16]));
    t
}

/// The capabilities this client announces in its v2 `hello` (`receipts`: it
/// understands receipts; the chat layer of a host that sends them too).
pub const V2_CAPS: &str = "v2 receipts";

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
            v2: None,
            challenged: false,
            server_v2: None,
            v2_peers: Vec::new(),
            ev_v1_server: false,
            ev_bad_binding: None,
            bad_binding_name: String::new(),
            link: Link::default(),
            clock: 0,
            ping_due: None,
            dir_seq: 0,
            dir_resync: false,
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

    /// Turns protocol v2's `hello` on (`docs/protocol-v2.md` §2.1, §4): from the next
    /// `hello`, the client sends the `v2` field (capabilities, Ed25519 key, binding)
    /// and answers a `challenge` with the proof of possession of both keys, tied to
    /// the server by `spki` (SHA-256 of the pinned certificate's SubjectPublicKeyInfo).
    /// The identity's X25519 pair becomes the client's key pair. Messages still go as
    /// v1 `relay`s.
    pub fn enable_v2(&mut self, identity: Identity, spki: [u8; 32]) -> Result<(), IdentityError> {
        let bind = identity.bind(&self.user)?;
        self.keys = identity.v1_key_pair();
        self.peer_keys.clear();
        self.v2 = Some(V2Setup {
            identity,
            bind,
            spki,
        });
        Ok(())
    }

    /// The SHA-256 of the SubjectPublicKeyInfo of the certificate the server presented
    /// on this connection (it passed the pin check), for the v2 proof: a host pinning
    /// several keys (an invite's backup pin) sets it after each TLS handshake.
    pub fn set_server_spki(&mut self, spki: [u8; 32]) {
        if let Some(v2) = &mut self.v2 {
            v2.spki = spki;
        }
    }

    /// True once [`Client::enable_v2`] was called.
    pub fn v2_enabled(&self) -> bool {
        self.v2.is_some()
    }

    /// What the last `welcome` showed of the server: `Some(true)` it challenged us and
    /// accepted our proof (protocol v2), `Some(false)` it speaks v1 only, `None` not
    /// known yet (or v2 not enabled).
    pub fn server_v2(&self) -> Option<bool> {
        self.server_v2
    }

    /// True if `user` can be reached with protocol v2 (§2.3): the server is a v2 server
    /// and its directory lists `user`, with its current key, as a v2 user whose
    /// binding verified.
    pub fn peer_v2(&self, user: &str) -> bool {
        if self.server_v2 != Some(true) {
            return false;
        }
        let Some(x) = self.dir.get(user) else {
            return false;
        };
        let tag = name_tag(user);
        self.v2_peers.iter().any(|p| p.name == tag && p.x == *x)
    }

    /// True if `user` is a v2 peer ([`Client::peer_v2`]) that announced `receipts`
    /// (§8): only such peers are sent receipts.
    pub fn peer_takes_receipts(&self, user: &str) -> bool {
        if !self.peer_v2(user) {
            return false;
        }
        let tag = name_tag(user);
        self.v2_peers.iter().any(|p| p.name == tag && p.receipts)
    }

    /// The Ed25519 key the directory's v2 section gave `user` (see [`Client::peer_v2`]).
    pub fn peer_ed25519(&self, user: &str) -> Option<[u8; KEY_LEN]> {
        let x = self.dir.get(user)?;
        let tag = name_tag(user);
        self.v2_peers
            .iter()
            .find(|p| p.name == tag && p.x == *x)
            .map(|p| p.ed)
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
        self.challenged = false;
        self.discard_events();
        self.clear_queued();
        self.list_due = false;
        self.list_in_flight = false;
        self.user_list_due = false;
        self.user_lists = 0;
        self.link.stop();
        self.ping_due = None;
        self.dir_seq = 0;
        self.dir_resync = false;
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
        self.ev_v1_server = false;
        self.ev_bad_binding = None;
    }

    /// The next line to write, if any, `\n` included: the `hello` after
    /// (re)connecting, then what [`Client::send_to`], [`Client::send_server`] and
    /// [`Client::request_list`] queued, and the `list` requests the client decides to
    /// make. Call it until it returns `None` after every other call.
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Result<Option<usize>, TransmitError> {
        let n = self.poll_transmit_inner(out)?;
        if n.is_some() {
            self.link.on_sent(self.clock);
        }
        Ok(n)
    }

    fn poll_transmit_inner(&mut self, out: &mut [u8]) -> Result<Option<usize>, TransmitError> {
        match self.phase {
            Phase::Hello => {
                let n = match &self.v2 {
                    Some(v2) => v2json::emit_hello_line_with_token(
                        &self.user,
                        &self.keys.public(),
                        self.token.as_deref(),
                        &HelloV2 {
                            caps: V2_CAPS,
                            ed: v2.identity.ed25519_public(),
                            bind: v2.bind,
                        },
                        out,
                    )?,
                    None => Message::Hello {
                        user: &self.user,
                        key: self.keys.public(),
                        token: self.token.as_deref(),
                    }
                    .emit_line(out)?,
                };
                self.phase = Phase::AwaitWelcome;
                Ok(Some(n))
            }
            Phase::Proof(p) => {
                let n = V2Message::Proof {
                    sig: p.sig,
                    mac: p.mac,
                }
                .emit_line(out)?;
                self.phase = Phase::AwaitWelcome;
                Ok(Some(n))
            }
            Phase::AwaitWelcome => Ok(None),
            Phase::Ready => {
                if let Some(m) = self.link_message() {
                    return Ok(Some(m.emit_line(out)?));
                }
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
        if self.link_line(line, scratch) || self.dir_delta(line, scratch) {
            return Ok(());
        }
        if let Some(v2) = &self.v2
            && self.phase == Phase::AwaitWelcome
            && !self.challenged
            && let Ok(V2Message::Challenge { nonce, eph, .. }) = v2json::parse(line, scratch)
        {
            let proof = v2
                .identity
                .hello_proof(&self.user, &v2.spki, &nonce, &eph)
                .map_err(LineError::BadChallenge)?;
            self.phase = Phase::Proof(proof);
            self.challenged = true;
            return Ok(());
        }
        let had_v2 = self.challenged && self.read_v2_directory(line, scratch);
        let m = msg::parse(line, scratch)?;
        match m {
            Message::Welcome { users } => {
                if self.phase != Phase::Ready {
                    self.phase = Phase::Ready;
                    self.ev_registered = true;
                    if self.v2.is_some() {
                        let v2 = self.challenged;
                        if !v2 && self.server_v2 != Some(false) {
                            self.ev_v1_server = true;
                        }
                        if !had_v2 {
                            self.v2_peers.clear();
                        }
                        self.server_v2 = Some(v2);
                        if v2 {
                            self.link.start(self.clock);
                        }
                    }
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

    /// Reads the v2 section of a `welcome` or `users` line (§2.2) into the v2 peers,
    /// checking every binding; false if the line has none (or is not a directory).
    /// `scratch` is split between the v2 section and v1's `users`.
    fn read_v2_directory(&mut self, line: &[u8], scratch: &mut [u8]) -> bool {
        let used: usize = match v2json::parse_directory_v2(line, scratch) {
            Ok(Some(d)) => d
                .users
                .iter()
                .map(|(n, v)| v2json::packed_v2_entry_len(n, v.caps))
                .sum(),
            _ => return false,
        };
        let Some((a, b)) = scratch.split_at_mut_checked(used) else {
            return false;
        };
        let Ok(Some(d)) = v2json::parse_directory_v2(line, a) else {
            return false;
        };
        // Deltas continue from here (§10).
        self.dir_seq = d.seq;
        self.dir_resync = false;
        let users = match msg::parse(line, b) {
            Ok(Message::Welcome { users } | Message::Users { users }) => users,
            _ => return false,
        };
        self.v2_peers.clear();
        let mut bad = 0usize;
        for (name, v) in d.users.iter() {
            let Some(p) = d.peer(&users, name) else {
                continue;
            };
            if p.verify().is_err() {
                if bad == 0 {
                    copy_name(&mut self.bad_binding_name, name);
                }
                bad += 1;
                continue;
            }
            if v.has_cap("v2") {
                let _ = self.v2_peers.push(V2Peer {
                    name: name_tag(name),
                    x: p.keys.x,
                    ed: p.keys.ed,
                    receipts: v.has_cap("receipts"),
                });
            }
        }
        if bad > 0 {
            self.ev_bad_binding = Some(bad - 1);
        }
        true
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
        if core::mem::take(&mut self.ev_v1_server) {
            return Current::ServerV1Only;
        }
        if let Some(more) = self.ev_bad_binding.take() {
            return Current::BadBinding(more);
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
            Current::ServerV1Only => Event::ServerV1Only,
            Current::BadBinding(more) => Event::BadBinding {
                user: &self.bad_binding_name,
                more,
            },
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

/// Heartbeats with a v2 server (protocol v2 §11; the machine is [`Link`]). Time is the
/// host's monotonic clock in milliseconds, any origin.
impl<const USERS: usize, const MSG: usize, const PENDING: usize> Client<USERS, MSG, PENDING> {
    /// Tells the client the time: call when [`Client::poll_timeout`] passes, and
    /// before handing it received lines. A ping that is due is queued for
    /// [`Client::poll_transmit`]; a stall shows in [`Client::is_stalled`].
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.clock = self.clock.max(now_ms);
        if let Some(LinkAction::Ping(id)) = self.link.poll(self.clock) {
            self.ping_due = Some(id);
        }
    }

    /// When to call [`Client::handle_timeout`] next; `None` while no heartbeats run (a
    /// v1 server, not registered, or stalled).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.link.next_deadline()
    }

    /// True when the v2 server answered nothing within the allowance after a ping: the
    /// host reports it and reconnects ([`Client::reset`] clears it).
    pub fn is_stalled(&self) -> bool {
        self.link.is_stalled()
    }

    /// Time without sending before a ping, and the allowance after it, in milliseconds
    /// (defaults: [`crate::link::DEFAULT_INTERVAL_MS`], [`crate::link::ALLOWANCE_MS`]).
    pub fn set_ping_timings(&mut self, interval_ms: u32, allowance_ms: u32) {
        self.link.set_timings(interval_ms, allowance_ms);
    }

    /// Notes a received line; true if it was a `ping` (a `pong` is then due) or a
    /// `pong`, which nothing else reads.
    fn link_line(&mut self, line: &[u8], scratch: &mut [u8]) -> bool {
        if !self.link.is_started() {
            return false;
        }
        self.link.on_received(self.clock);
        match v2json::parse(line, scratch) {
            Ok(V2Message::Ping { id }) => {
                self.link.on_ping(id);
                true
            }
            Ok(V2Message::Pong { .. }) => true,
            _ => false,
        }
    }

    /// Applies a `dir` delta from a v2 server (§10); true if the line was one. A gap
    /// asks for the whole directory (`list`), and deltas wait until it arrives.
    fn dir_delta(&mut self, line: &[u8], scratch: &mut [u8]) -> bool {
        if !self.challenged || self.phase != Phase::Ready {
            return false;
        }
        let Ok(V2Message::Dir { seq, delta }) = v2json::parse(line, scratch) else {
            return false;
        };
        if self.dir_resync || seq <= self.dir_seq {
            return true;
        }
        if seq != self.dir_seq.saturating_add(1) {
            self.dir_resync = true;
            self.list_due = true;
            return true;
        }
        self.dir_seq = seq;
        let name = delta.user();
        let tag = name_tag(name);
        self.v2_peers.retain(|p| p.name != tag);
        self.prev.clone_from(&self.dir);
        match delta {
            DirDelta::Leave { user } => {
                self.dir.remove(user);
            }
            DirDelta::Join(e) | DirDelta::Key(e) => {
                if let Some(p) = e.peer() {
                    if p.verify().is_err() {
                        copy_name(&mut self.bad_binding_name, name);
                        self.ev_bad_binding = Some(0);
                    } else if let Some(v) = e.v2.filter(|v| v.has_cap("v2")) {
                        let _ = self.v2_peers.push(V2Peer {
                            name: tag,
                            x: p.keys.x,
                            ed: p.keys.ed,
                            receipts: v.has_cap("receipts"),
                        });
                    }
                }
                self.ev_truncated = self.dir.upsert(name, &e.x);
            }
        }
        self.ev_diff = Some(0);
        self.generation = self.generation.wrapping_add(1);
        self.ev_pending = !self.pending.is_empty();
        let dir = &self.dir;
        self.peer_keys
            .retain(|(k, _)| dir.iter().any(|e| e.key() == k));
        true
    }

    /// A pong or a ping to send now, pongs first.
    fn link_message(&mut self) -> Option<V2Message<'static>> {
        if let Some(id) = self.link.take_pong() {
            return Some(V2Message::Pong { id });
        }
        self.ping_due.take().map(|id| V2Message::Ping { id })
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
