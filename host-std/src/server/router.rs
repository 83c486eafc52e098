//! The relay's routing, as a pure state machine: connection ids and parsed messages in,
//! typed deliveries out.
//!
//! The router owns the directory (who is connected under which name and key, and its
//! version), name ownership, and each connection's routing state (the directory version
//! it has been sent, its run of bad messages). It does no I/O, takes no locks, reads no
//! clock and never looks at bytes: the driver parses lines, serializes what a
//! [`Delivery`] asks for and queues it. Everything here can be driven from a test
//! without sockets.
//!
//! The rule the versions serve: a recipient is always sent a directory that lists a
//! sender before the sender's first relay to it (the coalesced directory push may still
//! be pending), so every message can be decrypted on arrival.
//!
//! Calls, in the order a driver makes them for one connection:
//! [`Router::hello`] with the first line (refused, or registered under a [`ConnId`]);
//! [`Router::handle`] for every later line; [`Router::disconnect`] when it ends.
//! [`Router::push`] (from the directory broadcaster) names the connections whose last
//! directory is older than the current one.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64ct::{Base64, Decoder, Encoding};

use seguro_core::limits::KEY_LEN;
use seguro_core::msg::{ALG_V1, Message, NameError, ParseError, Relay, validate_name};

use super::names::{self, Keys, NameRefusal};

/// A registered connection, as the router names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What the router needs to know of the server's settings.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Longest accepted line in bytes (for the wording of the overlong-line error).
    pub max_line: usize,
    /// Consecutive bad messages after which a connection is closed (at least 1).
    pub max_errors: u32,
    /// How long a registered user who disconnects stays in the directory, held for a
    /// reconnect with the same key (zero: the leave is immediate).
    pub grace: Duration,
}

/// One line from a connection, as the driver read it.
#[non_exhaustive]
#[derive(Debug, Clone, Copy)]
pub enum Input<'m> {
    /// A line that parsed.
    Message(Message<'m>),
    /// A line that did not parse.
    Malformed(ParseError),
    /// A line longer than [`Config::max_line`] (skipped to its end by the reader).
    Overlong,
    /// A line the driver dropped because the connection is over its rate; `notify`
    /// asks for an `error` to tell the sender (the driver spaces those out).
    OverRate {
        /// Answer with an `error`.
        notify: bool,
    },
}

/// Something the driver must send or do.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery<'m> {
    /// The directory as a `welcome` line (the reply to `hello`), at `version`.
    Welcome {
        /// Recipient.
        to: ConnId,
        /// Directory version ([`Router::version`]).
        version: u64,
    },
    /// The directory as a `users` line (a `list` reply or a push), at `version`.
    Directory {
        /// Recipient.
        to: ConnId,
        /// Directory version ([`Router::version`]).
        version: u64,
    },
    /// The `relay` being handled, forwarded to `to` with `from` set to the sender's
    /// registered name ([`Joined::name`]).
    Relay {
        /// Recipient.
        to: ConnId,
    },
    /// An `error` line.
    Error {
        /// Recipient.
        to: ConnId,
        /// Its text.
        error: ErrorText<'m>,
    },
    /// A `server` line.
    Server {
        /// Recipient.
        to: ConnId,
        /// Its text.
        text: ServerText<'m>,
    },
    /// Close the connection (after the deliveries before this one).
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: Close,
    },
}

impl Delivery<'_> {
    /// The connection this delivery is for.
    pub fn target(&self) -> ConnId {
        match *self {
            Self::Welcome { to, .. }
            | Self::Directory { to, .. }
            | Self::Relay { to }
            | Self::Error { to, .. }
            | Self::Server { to, .. } => to,
            Self::Close { conn, .. } => conn,
        }
    }
}

/// The text of an `error` line the router sends.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorText<'m> {
    /// A relay names a user who is not connected (a mistake, not counted as bad).
    UserNotConnected(&'m str),
    /// A relay names a user who disconnected within the reconnect grace and has not
    /// come back yet (not counted as bad).
    Reconnecting(&'m str),
    /// A line that did not parse.
    Malformed(ParseError),
    /// A line longer than the maximum.
    LineTooLong {
        /// The maximum, in bytes.
        max: usize,
    },
    /// A second `hello`.
    AlreadyRegistered,
    /// A message only servers send.
    UnexpectedType,
    /// A message dropped for rate.
    RateLimited,
    /// A `relay` whose fields cannot be what a client encrypted (counted as bad).
    BadRelay(RelayProblem),
}

/// What is wrong with a `relay` (the server checks the form, never the content).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayProblem {
    /// `nonce` is not base64 of exactly [`NONCE_LEN`] bytes.
    Nonce,
    /// `cipher` is not base64 of at least [`MIN_CIPHER_LEN`] bytes.
    Cipher,
    /// `alg` is present and not [`ALG_V1`].
    Alg,
}

/// Length of an AES-GCM nonce.
pub const NONCE_LEN: usize = 12;
/// The shortest ciphertext: an AES-GCM tag over an empty plaintext.
pub const MIN_CIPHER_LEN: usize = 16;

impl fmt::Display for RelayProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Nonce => write!(f, "\"nonce\" must be base64 of {NONCE_LEN} bytes"),
            Self::Cipher => write!(
                f,
                "\"cipher\" must be base64 of at least {MIN_CIPHER_LEN} bytes"
            ),
            Self::Alg => write!(f, "unknown \"alg\" (known: {ALG_V1})"),
        }
    }
}

/// Checks the form of a `relay`: `alg` known (or absent, as v1 allows), `nonce` base64
/// of 12 bytes, `cipher` base64 of at least 16 bytes. The cipher is not decoded: every
/// 4-character block but the last is valid exactly when its characters are in the
/// alphabet, so only those are checked and the last block (padding, canonical trailing
/// bits) is decoded; the length follows from the number of characters.
pub fn check_relay(r: &Relay<'_>) -> Result<(), RelayProblem> {
    if r.alg.is_some_and(|a| a != ALG_V1) {
        return Err(RelayProblem::Alg);
    }
    let mut nonce = [0u8; NONCE_LEN];
    if !matches!(Base64::decode(r.nonce, &mut nonce), Ok(n) if n.len() == NONCE_LEN) {
        return Err(RelayProblem::Nonce);
    }
    let cipher = r.cipher.as_bytes();
    if !cipher.len().is_multiple_of(4) || cipher.is_empty() {
        // Not padded base64: refused by the decoder.
        return check_cipher_by_decoding(cipher);
    }
    let (body, last) = cipher.split_at(cipher.len() - 4);
    if !body.iter().all(|&c| BASE64_CHAR[usize::from(c)]) {
        return Err(RelayProblem::Cipher);
    }
    let mut tail = [0u8; 3];
    let tail_len = Base64::decode(last, &mut tail)
        .map_err(|_| RelayProblem::Cipher)?
        .len();
    if body.len() / 4 * 3 + tail_len < MIN_CIPHER_LEN {
        return Err(RelayProblem::Cipher);
    }
    Ok(())
}

/// The characters of the standard base64 alphabet (without `=`).
static BASE64_CHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
        c += 1;
    }
    t
};

/// [`check_relay`]'s cipher check by decoding all of it (in pieces, no allocation).
fn check_cipher_by_decoding(cipher: &[u8]) -> Result<(), RelayProblem> {
    let mut d = Decoder::<Base64>::new(cipher).map_err(|_| RelayProblem::Cipher)?;
    if d.remaining_len() < MIN_CIPHER_LEN {
        return Err(RelayProblem::Cipher);
    }
    let mut buf = [0u8; 768];
    while !d.is_finished() {
        let n = d.remaining_len().min(buf.len());
        d.decode(&mut buf[..n]).map_err(|_| RelayProblem::Cipher)?;
    }
    Ok(())
}

/// Text from a peer, made safe to echo: control characters (C0, C1, DEL), bidi controls,
/// line and paragraph separators and other invisible format characters become U+FFFD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sanitized<'m>(pub &'m str);

/// True for a character that must not be echoed as is.
pub fn is_unsafe_char(c: char) -> bool {
    use unicode_security::GeneralSecurityProfile as _;
    use unicode_security::general_security_profile::IdentifierType;
    c.is_control()
        || matches!(u32::from(c), 0x2028 | 0x2029 | 0x202A..=0x202E | 0x2066..=0x2069 | 0x061C | 0x200B..=0x200F | 0x2060..=0x2064 | 0xFEFF | 0xFFF9..=0xFFFB)
        || (!c.is_ascii() && c.identifier_type() == Some(IdentifierType::Default_Ignorable))
}

impl fmt::Display for Sanitized<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(is_unsafe_char) {
            f.write_str(&rest[..i])?;
            f.write_char('\u{fffd}')?;
            let c = rest[i..].chars().next().map_or(1, char::len_utf8);
            rest = &rest[i + c..];
        }
        f.write_str(rest)
    }
}

impl fmt::Display for ErrorText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UserNotConnected(to) => write!(f, "user not connected: {}", Sanitized(to)),
            Self::Reconnecting(to) => {
                write!(f, "{} is reconnecting: not delivered", Sanitized(to))
            }
            Self::Malformed(ParseError::UnknownType) => f.write_str("unknown message type"),
            Self::Malformed(e) => write!(f, "bad message: {e}"),
            Self::LineTooLong { max } => write!(f, "line too long (maximum {max} bytes): skipped"),
            Self::AlreadyRegistered => f.write_str("already registered"),
            Self::UnexpectedType => f.write_str("unexpected message type from a client"),
            Self::RateLimited => f.write_str("rate limit exceeded: message dropped"),
            Self::BadRelay(p) => write!(f, "bad relay: {p}"),
        }
    }
}

/// The text of a `server` line.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerText<'m> {
    /// The answer to `chat`: `echo: <text>`, as the reference answers.
    Echo(&'m str),
}

impl fmt::Display for ServerText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Echo(text) => write!(f, "echo: {}", Sanitized(text)),
        }
    }
}

/// Why the router closes a connection.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// [`Config::max_errors`] bad messages in a row.
    TooManyErrors,
}

impl fmt::Display for Close {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyErrors => f.write_str("too many consecutive bad messages"),
        }
    }
}

/// Why a first line does not register: the text of the `error` sent before closing.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal<'m> {
    /// A valid message that is not `hello`.
    NotHello,
    /// A line that did not parse.
    Malformed(ParseError),
    /// A first line longer than the maximum.
    Overlong {
        /// The maximum, in bytes.
        max: usize,
    },
    /// A first line dropped for rate (drivers do not rate-limit `hello`).
    OverRate,
    /// The name breaks the protocol's rules.
    BadName(NameError),
    /// The key is a low-order point ([`seguro_core::e2ee::is_low_order`]).
    LowOrderKey,
    /// Someone connected holds the name.
    NameTaken(&'m str),
    /// The name breaks the server's name policy ([`names`]).
    NamePolicy(NameRefusal),
    /// The name looks like that of someone connected (`.1`).
    LooksLike(&'m str, Arc<str>),
}

impl fmt::Display for Refusal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotHello | Self::OverRate => f.write_str("first message must be hello"),
            Self::Malformed(e) => write!(f, "first message must be a valid hello: {e}"),
            Self::Overlong { max } => {
                write!(
                    f,
                    "first message must be hello (line longer than {max} bytes)"
                )
            }
            Self::BadName(e) => write!(f, "invalid user name: {e}"),
            Self::LowOrderKey => f.write_str("invalid public key: low-order point"),
            Self::NameTaken(name) => write!(f, "name \"{name}\" is already connected"),
            Self::NamePolicy(e) => write!(f, "invalid user name: {e}"),
            Self::LooksLike(name, other) => write!(
                f,
                "invalid user name: \"{name}\" looks like \"{other}\", who is connected"
            ),
        }
    }
}

/// A registration.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The connection's id from now on.
    pub id: ConnId,
    /// The registered name (relays from this connection carry it as `from`).
    pub name: Arc<str>,
    /// The welcome to send, and the directory version it lists.
    pub welcome: u64,
    /// The name was held for a reconnect and this connection took it over, with the
    /// same key: nobody saw a leave or a join.
    pub resumed: bool,
}

/// At most two deliveries: what one input produces.
#[derive(Debug, Clone, Default)]
pub struct Deliveries<'m> {
    items: [Option<Delivery<'m>>; 2],
    next: usize,
}

impl<'m> Deliveries<'m> {
    fn one(d: Delivery<'m>) -> Self {
        Self {
            items: [Some(d), None],
            next: 0,
        }
    }

    fn two(a: Delivery<'m>, b: Delivery<'m>) -> Self {
        Self {
            items: [Some(a), Some(b)],
            next: 0,
        }
    }

    fn none() -> Self {
        Self::default()
    }
}

impl<'m> Iterator for Deliveries<'m> {
    type Item = Delivery<'m>;

    fn next(&mut self) -> Option<Delivery<'m>> {
        while let Some(slot) = self.items.get_mut(self.next) {
            self.next += 1;
            if let Some(d) = slot.take() {
                return Some(d);
            }
        }
        None
    }
}

/// A registered connection's routing state, and what the driver attached to it.
#[derive(Debug)]
struct Conn<T> {
    name: Arc<str>,
    /// Directory version that first listed this connection.
    joined: u64,
    /// Directory version this connection has last been sent.
    seen: u64,
    /// Bad messages in a row.
    errors: u32,
    /// What the name policy compares names by.
    keys: Keys,
    tag: T,
}

/// A directory entry whose connection ended within the reconnect grace.
#[derive(Debug)]
struct Held {
    /// When the entry leaves the directory.
    until: Instant,
    /// The connection's [`Conn::joined`] and [`Conn::keys`], for the one taking over.
    joined: u64,
    keys: Keys,
}

/// A directory entry.
#[derive(Debug)]
struct Entry {
    id: ConnId,
    key: [u8; KEY_LEN],
    /// The user's v2 capabilities and identity binding, for a v2 client whose proof
    /// the driver checked (protocol v2 §2.2).
    v2: Option<Arc<V2User>>,
}

/// What the directory's `v2` section lists for a v2 user (protocol v2 §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2User {
    /// Capabilities, words separated by spaces.
    pub caps: String,
    /// Ed25519 identity key.
    pub ed: [u8; KEY_LEN],
    /// Binding signature of the name, the X25519 key and `ed`.
    pub bind: [u8; 64],
}

/// The router. `T` is whatever the driver attaches to a connection (its outbound
/// queue); the router only keeps it, so that the driver finds it by [`ConnId`].
#[derive(Debug)]
pub struct Router<T> {
    cfg: Config,
    conns: HashMap<ConnId, Conn<T>>,
    /// Sorted by name: the directory's wire order.
    names: BTreeMap<Arc<str>, Entry>,
    /// Connected names by their [`Keys`]: skeleton, and skeleton of the lower case.
    skeletons: HashMap<String, Arc<str>>,
    folded: HashMap<String, Arc<str>>,
    /// Names in the directory whose connection is gone, held for a reconnect.
    held: HashMap<Arc<str>, Held>,
    version: u64,
    next_id: u64,
}

impl<T> Router<T> {
    /// An empty router.
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg: Config {
                max_errors: cfg.max_errors.max(1),
                ..cfg
            },
            conns: HashMap::new(),
            names: BTreeMap::new(),
            skeletons: HashMap::new(),
            folded: HashMap::new(),
            held: HashMap::new(),
            version: 0,
            next_id: 1,
        }
    }

    /// The directory's version: it grows on every join and every leave.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Registered connections.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// True if no one is registered.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Names held for a reconnect (listed in the directory, with no connection).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// True if `name` is held for a reconnect.
    pub fn is_held(&self, name: &str) -> bool {
        self.held.contains_key(name)
    }

    /// The directory at [`version`](Self::version): every registered name and key, in
    /// name order (held names included: they have not left yet).
    pub fn directory(&self) -> impl ExactSizeIterator<Item = (&str, &[u8; KEY_LEN])> + Clone + '_ {
        self.names.iter().map(|(n, e)| (&**n, &e.key))
    }

    /// What the driver attached to connection `id`.
    pub fn tag(&self, id: ConnId) -> Option<&T> {
        self.conns.get(&id).map(|c| &c.tag)
    }

    /// Every registered connection and its tag.
    pub fn tags(&self) -> impl Iterator<Item = (ConnId, &T)> + '_ {
        self.conns.iter().map(|(id, c)| (*id, &c.tag))
    }

    /// What the driver attached to the connection registered as `name`.
    pub fn tag_of(&self, name: &str) -> Option<&T> {
        self.names.get(name).and_then(|e| self.tag(e.id))
    }

    /// The registered name of connection `id`.
    pub fn name(&self, id: ConnId) -> Option<&Arc<str>> {
        self.conns.get(&id).map(|c| &c.name)
    }

    /// Handles the first line of a connection: registers it (and asks for its
    /// `welcome`) or says why not; a refused connection is to be closed after the
    /// refusal is sent. `tag` is kept for the connection's lifetime.
    pub fn hello<'m>(&mut self, first: Input<'m>, tag: T) -> Result<Joined, Refusal<'m>> {
        let (user, key) = match first {
            Input::Message(Message::Hello { user, key, .. }) => (user, key),
            Input::Message(_) => return Err(Refusal::NotHello),
            Input::Malformed(e) => return Err(Refusal::Malformed(e)),
            Input::Overlong => {
                return Err(Refusal::Overlong {
                    max: self.cfg.max_line,
                });
            }
            Input::OverRate { .. } => return Err(Refusal::OverRate),
        };
        validate_name(user).map_err(Refusal::BadName)?;
        if seguro_core::e2ee::is_low_order(&key) {
            return Err(Refusal::LowOrderKey);
        }
        let mut joined = None;
        if let Some(entry) = self.names.get(user) {
            if !self.held.contains_key(user) {
                return Err(Refusal::NameTaken(user));
            }
            if entry.key == key {
                // Back within the grace with the same key: take the entry over. The
                // directory does not change, so nobody sees a leave or a join.
                joined = self.held.remove(user).map(|h| (h.joined, h.keys));
            } else {
                // Another key (say the owner lost theirs): the held entry leaves, and
                // this one joins as anyone would (the name passed the policy when it
                // was first registered); peers see the key change.
                self.drop_held(user);
            }
        }
        if let Some((first_listed, keys)) = joined {
            let id = ConnId(self.next_id);
            self.next_id += 1;
            let name = self
                .names
                .get_key_value(user)
                .map_or_else(|| Arc::from(user), |(n, _)| n.clone());
            if let Some(e) = self.names.get_mut(user) {
                e.id = id;
            }
            self.conns.insert(
                id,
                Conn {
                    name: name.clone(),
                    joined: first_listed,
                    seen: self.version,
                    errors: 0,
                    keys,
                    tag,
                },
            );
            return Ok(Joined {
                id,
                name,
                welcome: self.version,
                resumed: true,
            });
        }
        let keys = names::check(user).map_err(Refusal::NamePolicy)?;
        if let Some(other) = self
            .skeletons
            .get(&keys.skeleton)
            .or_else(|| self.folded.get(&keys.folded))
        {
            return Err(Refusal::LooksLike(user, other.clone()));
        }
        let id = ConnId(self.next_id);
        self.next_id += 1;
        self.version += 1;
        let name: Arc<str> = Arc::from(user);
        self.names.insert(name.clone(), Entry { id, key, v2: None });
        self.skeletons.insert(keys.skeleton.clone(), name.clone());
        self.folded.insert(keys.folded.clone(), name.clone());
        self.conns.insert(
            id,
            Conn {
                name: name.clone(),
                joined: self.version,
                seen: self.version,
                errors: 0,
                keys,
                tag,
            },
        );
        Ok(Joined {
            id,
            name,
            welcome: self.version,
            resumed: false,
        })
    }

    /// Records that registered connection `conn` proved a v2 identity (or not, with
    /// `None`): the directory's `v2` section lists it while it is listed. Returns false
    /// for an unknown `conn`.
    pub fn set_v2(&mut self, conn: ConnId, v2: Option<V2User>) -> bool {
        let Some(c) = self.conns.get(&conn) else {
            return false;
        };
        match self.names.get_mut(&c.name) {
            Some(e) => {
                e.v2 = v2.map(Arc::new);
                true
            }
            None => false,
        }
    }

    /// True if registered connection `conn` proved a v2 identity.
    pub fn is_v2(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .and_then(|c| self.names.get(&c.name))
            .is_some_and(|e| e.id == conn && e.v2.is_some())
    }

    /// The X25519 and Ed25519 keys of `name` if it is listed as a v2 user.
    pub fn v2_identity(&self, name: &str) -> Option<([u8; KEY_LEN], [u8; KEY_LEN])> {
        let e = self.names.get(name)?;
        e.v2.as_deref().map(|v| (e.key, v.ed))
    }

    /// The X25519 key and v2 entry of registered connection `conn`, if it proved a v2
    /// identity.
    pub fn v2_of(&self, conn: ConnId) -> Option<([u8; KEY_LEN], Arc<V2User>)> {
        let name = &self.conns.get(&conn)?.name;
        let e = self.names.get(name).filter(|e| e.id == conn)?;
        e.v2.clone().map(|v| (e.key, v))
    }

    /// Where a `relay2` from registered connection `conn` to `to` goes (protocol v2
    /// §7.2): the recipient's connection if `to` is a connected v2 user (not one held
    /// for a reconnect), with the directory version to send it first if it has not been
    /// sent one listing the sender (as for v1's `relay`: the recipient needs the
    /// sender's keys to open it). `None`: not deliverable (`not_connected`).
    pub fn route_relay2(&mut self, conn: ConnId, to: &str) -> Option<(ConnId, Option<u64>)> {
        let joined = self.conns.get(&conn)?.joined;
        if self.held.contains_key(to) {
            return None;
        }
        let e = self.names.get(to).filter(|e| e.v2.is_some())?;
        let id = e.id;
        let version = self.version;
        let recipient = self.conns.get_mut(&id)?;
        let first = (recipient.seen < joined).then(|| {
            recipient.seen = version;
            version
        });
        self.good(conn);
        Some((id, first))
    }

    /// The listed v2 users and their v2 entries, in the directory's order.
    pub fn v2_users(&self) -> impl Iterator<Item = (&str, &V2User)> + '_ {
        self.names
            .iter()
            .filter_map(|(n, e)| e.v2.as_deref().map(|v| (&**n, v)))
    }

    /// Handles a line from registered connection `conn`. An unknown `conn` (never
    /// registered, or already disconnected) gets nothing.
    pub fn handle<'m>(&mut self, conn: ConnId, input: Input<'m>) -> Deliveries<'m> {
        let version = self.version;
        let Some(me) = self.conns.get(&conn) else {
            return Deliveries::none();
        };
        let joined = me.joined;
        let error = match input {
            Input::Message(Message::List) => {
                self.good(conn);
                return Deliveries::one(Delivery::Directory { to: conn, version });
            }
            Input::Message(Message::Chat { text }) => {
                self.good(conn);
                return Deliveries::one(Delivery::Server {
                    to: conn,
                    text: ServerText::Echo(text),
                });
            }
            Input::Message(Message::Relay(r)) => {
                if let Err(problem) = check_relay(&r) {
                    let e = Delivery::Error {
                        to: conn,
                        error: ErrorText::BadRelay(problem),
                    };
                    return match self.bad(conn) {
                        Some(c) => Deliveries::two(e, c),
                        None => Deliveries::one(e),
                    };
                }
                self.good(conn);
                if self.held.contains_key(r.to) {
                    // Not garbage either: the recipient is expected back shortly.
                    return Deliveries::one(Delivery::Error {
                        to: conn,
                        error: ErrorText::Reconnecting(r.to),
                    });
                }
                let Some(to) = self.names.get(r.to).map(|e| e.id) else {
                    // A mistake, not garbage: does not count towards max_errors.
                    return Deliveries::one(Delivery::Error {
                        to: conn,
                        error: ErrorText::UserNotConnected(r.to),
                    });
                };
                let relay = Delivery::Relay { to };
                let Some(recipient) = self.conns.get_mut(&to) else {
                    return Deliveries::one(relay);
                };
                if recipient.seen < joined {
                    // The recipient has not been sent a directory with the sender's key
                    // yet (the coalesced push may be pending): send it first.
                    recipient.seen = version;
                    return Deliveries::two(Delivery::Directory { to, version }, relay);
                }
                return Deliveries::one(relay);
            }
            Input::Message(Message::Hello { .. }) => ErrorText::AlreadyRegistered,
            Input::Message(
                Message::Welcome { .. }
                | Message::Users { .. }
                | Message::Server { .. }
                | Message::Error { .. },
            ) => ErrorText::UnexpectedType,
            Input::Malformed(e) => ErrorText::Malformed(e),
            Input::Overlong => ErrorText::LineTooLong {
                max: self.cfg.max_line,
            },
            Input::OverRate { notify } => {
                let close = self.bad(conn);
                return match (notify, close) {
                    (true, Some(c)) => Deliveries::two(
                        Delivery::Error {
                            to: conn,
                            error: ErrorText::RateLimited,
                        },
                        c,
                    ),
                    (true, None) => Deliveries::one(Delivery::Error {
                        to: conn,
                        error: ErrorText::RateLimited,
                    }),
                    (false, Some(c)) => Deliveries::one(c),
                    (false, None) => Deliveries::none(),
                };
            }
        };
        let e = Delivery::Error { to: conn, error };
        match self.bad(conn) {
            Some(c) => Deliveries::two(e, c),
            None => Deliveries::one(e),
        }
    }

    /// Forgets connection `conn`, giving its tag back (`None` if it was not
    /// registered). `lost` is `Some(now)` for a connection lost rather than closed
    /// cleanly: with a reconnect grace its name then stays in the directory, held until
    /// `now` + grace ([`expire`](Self::expire) removes it then). Otherwise the name
    /// leaves now (the directory changes).
    pub fn disconnect(&mut self, conn: ConnId, lost: Option<Instant>) -> Option<T> {
        let c = self.conns.remove(&conn)?;
        let until = lost
            .filter(|_| !self.cfg.grace.is_zero())
            .and_then(|now| now.checked_add(self.cfg.grace));
        if let Some(until) = until {
            self.held.insert(
                c.name,
                Held {
                    until,
                    joined: c.joined,
                    keys: c.keys,
                },
            );
        } else {
            self.names.remove(&c.name);
            self.skeletons.remove(&c.keys.skeleton);
            self.folded.remove(&c.keys.folded);
            self.version += 1;
        }
        Some(c.tag)
    }

    /// Removes the held names whose grace ended by `now` (each a leave: the directory
    /// changes). Returns their names.
    pub fn expire(&mut self, now: Instant) -> Vec<Arc<str>> {
        let due: Vec<Arc<str>> = self
            .held
            .iter()
            .filter(|(_, h)| h.until <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for name in &due {
            self.drop_held(name);
        }
        due
    }

    /// Removes held name `name` from the directory (a leave).
    fn drop_held(&mut self, name: &str) {
        if let Some(h) = self.held.remove(name) {
            self.names.remove(name);
            self.skeletons.remove(&h.keys.skeleton);
            self.folded.remove(&h.keys.folded);
            self.version += 1;
        }
    }

    /// Marks every connection whose last directory is older than the current one as
    /// sent the current one, and lists them in `out` (cleared first). Returns the
    /// version they are to be sent.
    pub fn push(&mut self, out: &mut Vec<ConnId>) -> u64 {
        out.clear();
        let version = self.version;
        for (id, c) in &mut self.conns {
            if c.seen < version {
                c.seen = version;
                out.push(*id);
            }
        }
        version
    }

    fn good(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.errors = 0;
        }
    }

    /// Counts a bad message; the close delivery if that was one too many.
    fn bad(&mut self, conn: ConnId) -> Option<Delivery<'static>> {
        let c = self.conns.get_mut(&conn)?;
        c.errors = c.errors.saturating_add(1);
        (c.errors >= self.cfg.max_errors).then_some(Delivery::Close {
            conn,
            reason: Close::TooManyErrors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: [u8; 32] = [0x11; 32];
    const KEY_B: [u8; 32] = [0x22; 32];

    fn router(max_errors: u32) -> Router<&'static str> {
        Router::new(Config {
            max_line: 100,
            max_errors,
            grace: Duration::ZERO,
        })
    }

    fn hello(user: &str, key: [u8; 32]) -> Input<'_> {
        Input::Message(Message::Hello {
            user,
            key,
            token: None,
        })
    }

    fn relay(to: &str) -> Input<'_> {
        Input::Message(Message::Relay(Relay {
            to,
            from: Some("forged"),
            alg: Some(ALG_V1),
            nonce: NONCE,
            cipher: CIPHER,
        }))
    }

    /// Base64 of 12 and of 16 bytes.
    const NONCE: &str = "AAAAAAAAAAAAAAAA";
    const CIPHER: &str = "AAAAAAAAAAAAAAAAAAAAAA==";

    fn relay_with<'a>(alg: Option<&'a str>, nonce: &'a str, cipher: &'a str) -> Relay<'a> {
        Relay {
            to: "alice",
            from: None,
            alg,
            nonce,
            cipher,
        }
    }

    #[test]
    fn relays_are_checked_for_form() {
        assert_eq!(
            check_relay(&relay_with(Some(ALG_V1), NONCE, CIPHER)),
            Ok(())
        );
        assert_eq!(check_relay(&relay_with(None, NONCE, CIPHER)), Ok(()));
        let long = Base64::encode_string(&[7u8; 5000]);
        assert_eq!(check_relay(&relay_with(None, NONCE, &long)), Ok(()));
        let cases = [
            (Some("X25519+AESGCM2"), NONCE, CIPHER, RelayProblem::Alg),
            (Some(""), NONCE, CIPHER, RelayProblem::Alg),
            (None, "AAAA", CIPHER, RelayProblem::Nonce),
            // 13 bytes, 11 bytes, bad characters, missing padding.
            (None, "AAAAAAAAAAAAAAAAAA==", CIPHER, RelayProblem::Nonce),
            (None, "AAAAAAAAAAAAAA==", CIPHER, RelayProblem::Nonce),
            (None, "AAAAAAAAAAAAAAA!", CIPHER, RelayProblem::Nonce),
            (None, "", CIPHER, RelayProblem::Nonce),
            // 15 bytes, empty, bad characters late in a long cipher, bad padding.
            (None, NONCE, "AAAAAAAAAAAAAAAAAAAA", RelayProblem::Cipher),
            (None, NONCE, "", RelayProblem::Cipher),
            (None, NONCE, "AAAAAAAAAAAAAAAAAAAAAA=", RelayProblem::Cipher),
        ];
        for (alg, nonce, cipher, want) in cases {
            assert_eq!(
                check_relay(&relay_with(alg, nonce, cipher)),
                Err(want),
                "{alg:?} {nonce} {cipher}"
            );
        }
        let mut late = long.clone().into_bytes();
        late[4000] = b'*';
        let late = String::from_utf8(late).unwrap();
        assert_eq!(
            check_relay(&relay_with(None, NONCE, &late)),
            Err(RelayProblem::Cipher)
        );
        // The check without decoding agrees with decoding all of it: every length
        // around the minimum, padding and canonical trailing bits, stray `=`, odd
        // characters at every place.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        const CHARS: &[u8] = b"AQgw/+=Zz09!*- \n\"=";
        for len in 0..48 {
            for _ in 0..400 {
                let mut c: Vec<u8> = (0..len)
                    .map(|_| {
                        let r = next();
                        if r % 4 == 0 {
                            CHARS[(r >> 8) as usize % CHARS.len()]
                        } else {
                            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                                [(r >> 8) as usize % 64]
                        }
                    })
                    .collect();
                if next() % 2 == 0 && len >= 2 {
                    // Valid bodies with padding of one or two.
                    let raw: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                    c = Base64::encode_string(&raw).into_bytes();
                    let at = next() as usize % c.len();
                    if next() % 3 == 0 {
                        c[at] = CHARS[next() as usize % CHARS.len()];
                    }
                }
                let c = String::from_utf8_lossy(&c).into_owned();
                assert_eq!(
                    check_relay(&relay_with(None, NONCE, &c)),
                    check_cipher_by_decoding(c.as_bytes()),
                    "{c:?}"
                );
            }
        }
        assert_eq!(
            ErrorText::BadRelay(RelayProblem::Nonce).to_string(),
            "bad relay: \"nonce\" must be base64 of 12 bytes"
        );
        assert_eq!(
            RelayProblem::Cipher.to_string(),
            "\"cipher\" must be base64 of at least 16 bytes"
        );
        assert_eq!(
            RelayProblem::Alg.to_string(),
            "unknown \"alg\" (known: X25519+AESGCM)"
        );
    }

    #[test]
    fn bad_relays_are_errors_that_count_and_are_not_forwarded() {
        let mut r = router(2);
        let a = r.hello(hello("alice", KEY_A), "a").unwrap();
        let bad = Input::Message(Message::Relay(relay_with(None, "AAAA", CIPHER)));
        assert_eq!(
            all(r.handle(a.id, bad)),
            [Delivery::Error {
                to: a.id,
                error: ErrorText::BadRelay(RelayProblem::Nonce)
            }]
        );
        assert_eq!(
            all(r.handle(a.id, bad)),
            [
                Delivery::Error {
                    to: a.id,
                    error: ErrorText::BadRelay(RelayProblem::Nonce)
                },
                Delivery::Close {
                    conn: a.id,
                    reason: Close::TooManyErrors
                }
            ]
        );
    }

    #[test]
    fn echoed_text_is_sanitized() {
        let s = |t: &str| Sanitized(t).to_string();
        assert_eq!(s("plain José 山田"), "plain José 山田");
        assert_eq!(s("a\u{1b}[2Jb"), "a\u{fffd}[2Jb");
        assert_eq!(s("\r\n\t\u{7f}\u{85}"), "\u{fffd}".repeat(5));
        assert_eq!(s("x\u{202e}y\u{2066}z"), "x\u{fffd}y\u{fffd}z");
        assert_eq!(
            s("\u{200b}\u{200d}\u{2060}\u{feff}\u{2028}\u{ad}"),
            "\u{fffd}".repeat(6)
        );
        assert_eq!(s(""), "");
        assert_eq!(
            ServerText::Echo("hi\u{1b}]0;pwned\u{7}").to_string(),
            "echo: hi\u{fffd}]0;pwned\u{fffd}"
        );
        assert_eq!(
            ErrorText::UserNotConnected("\u{202e}bob").to_string(),
            "user not connected: \u{fffd}bob"
        );
    }

    fn all(d: Deliveries<'_>) -> Vec<Delivery<'_>> {
        d.collect()
    }

    #[test]
    fn hello_registers_and_bumps_the_version() {
        let mut r = router(5);
        let a = r.hello(hello("alice", KEY_A), "a").unwrap();
        assert_eq!((a.welcome, &*a.name), (1, "alice"));
        let b = r.hello(hello("bob", KEY_B), "b").unwrap();
        assert_eq!(b.welcome, 2);
        assert_ne!(a.id, b.id);
        assert_eq!(r.version(), 2);
        assert_eq!(r.len(), 2);
        assert_eq!(r.tag(b.id), Some(&"b"));
        assert_eq!(r.name(a.id).map(|n| &**n), Some("alice"));
        let dir: Vec<_> = r.directory().map(|(n, k)| (n.to_owned(), *k)).collect();
        assert_eq!(dir, [("alice".into(), KEY_A), ("bob".into(), KEY_B)]);
    }

    #[test]
    fn the_directory_is_in_name_order() {
        let mut r = router(5);
        for n in ["mallory", "bob", "alice", "Zed"] {
            r.hello(hello(n, KEY_A), "x").unwrap();
        }
        let names: Vec<_> = r.directory().map(|(n, _)| n).collect();
        assert_eq!(names, ["Zed", "alice", "bob", "mallory"]);
    }

    #[test]
    fn first_lines_that_are_refused() {
        let mut r = router(5);
        r.hello(hello("alice", KEY_A), "a").unwrap();
        let mut one = [0u8; 32];
        one[0] = 1;
        let cases: Vec<(Input<'_>, Refusal<'_>, &str)> = vec![
            (
                Input::Message(Message::List),
                Refusal::NotHello,
                "first message must be hello",
            ),
            (
                Input::Malformed(ParseError::MissingType),
                Refusal::Malformed(ParseError::MissingType),
                "first message must be a valid hello: missing \"type\"",
            ),
            (
                Input::Overlong,
                Refusal::Overlong { max: 100 },
                "first message must be hello (line longer than 100 bytes)",
            ),
            (
                Input::OverRate { notify: true },
                Refusal::OverRate,
                "first message must be hello",
            ),
            (
                hello("a b", KEY_B),
                Refusal::BadName(NameError::BadCharacter),
                "invalid user name: user name contains white space or a control character",
            ),
            (
                hello("", KEY_B),
                Refusal::BadName(NameError::Empty),
                "invalid user name: user name is empty",
            ),
            (
                hello("zero", [0; 32]),
                Refusal::LowOrderKey,
                "invalid public key: low-order point",
            ),
            (
                hello("one", one),
                Refusal::LowOrderKey,
                "invalid public key: low-order point",
            ),
            (
                hello("alice", KEY_B),
                Refusal::NameTaken("alice"),
                "name \"alice\" is already connected",
            ),
        ];
        for (input, refusal, text) in cases {
            assert_eq!(r.hello(input, "x").unwrap_err(), refusal.clone());
            assert_eq!(refusal.to_string(), text);
        }
        // Nothing of that registered or changed the directory.
        assert_eq!((r.len(), r.version()), (1, 1));
    }

    #[test]
    fn a_relay2_goes_only_to_a_connected_v2_user_after_a_directory_listing_the_sender() {
        let v2 = |ed: u8| V2User {
            caps: "v2".into(),
            ed: [ed; 32],
            bind: [0; 64],
        };
        let mut r = router(5);
        let a = r.hello(hello("alice", KEY_A), "a").unwrap();
        assert!(r.set_v2(a.id, Some(v2(1))));
        let b = r.hello(hello("bob", KEY_B), "b").unwrap();
        assert!(r.set_v2(b.id, Some(v2(2))));
        let c = r.hello(hello("carol", [0x33; 32]), "c").unwrap();
        assert_eq!(r.v2_identity("alice"), Some((KEY_A, [1; 32])));
        assert_eq!(r.v2_identity("carol"), None);
        assert_eq!(
            r.v2_of(b.id).map(|(x, u)| (x, u.ed)),
            Some((KEY_B, [2; 32]))
        );
        assert!(r.v2_of(c.id).is_none());
        // alice's welcome did not list bob: the first relay2 brings the directory.
        assert_eq!(r.route_relay2(b.id, "alice"), Some((a.id, Some(3))));
        assert_eq!(r.route_relay2(b.id, "alice"), Some((a.id, None)));
        assert_eq!(r.route_relay2(a.id, "bob"), Some((b.id, None)));
        // A v1 user, nobody, an unregistered sender: nowhere.
        assert_eq!(r.route_relay2(a.id, "carol"), None);
        assert_eq!(r.route_relay2(a.id, "zed"), None);
        assert_eq!(r.route_relay2(ConnId(99), "bob"), None);
        // A held name is not connected.
        let mut r = held_router(60);
        let a = r.hello(hello("alice", KEY_A), "a").unwrap();
        r.set_v2(a.id, Some(v2(1)));
        let b = r.hello(hello("bob", KEY_B), "b").unwrap();
        r.set_v2(b.id, Some(v2(2)));
        r.disconnect(a.id, Some(Instant::now()));
        assert_eq!(r.route_relay2(b.id, "alice"), None);
    }

    #[test]
    fn a_relay_goes_to_its_recipient_after_a_directory_listing_the_sender() {
        let mut r = router(5);
        let a = r.hello(hello("alice", KEY_A), "a").unwrap();
        let b = r.hello(hello("bob", KEY_B), "b").unwrap();
        // alice's welcome (version 1) does not list bob: bob's first relay to alice
        // brings the current directory first.
        assert_eq!(
            all(r.handle(b.id, relay("alice"))),
            [
                Delivery::Directory {
                    to: a.id,
                    version: 2
                },
                Delivery::Relay { to: a.id }
            ]
        );
        // Only once.
        assert_eq!(
            all(r.handle(b.id, relay("alice"))),
            [Delivery::Relay { to: a.id }]
        );
        // bob's welcome listed alice already.
        assert_eq!(
            all(r.handle(a.id, relay("bob"))),
            [Delivery::Relay { to: b.id }]
        );
        // To oneself.
        assert_eq!(
            all(r.handle(a.id, relay("alice"))),
            [Delivery::Relay { to: a.id }]
        );
    }

    #[test]
    fn a_pushed_directory_counts_as_sent() {
        let mut r = router(5);
        let a = r.hello(hello("alice", KEY_A), "a").unwrap();
        let b = r.hello(hello("bob", KEY_B), "b").unwrap();
        let mut out = Vec::new();
        assert_eq!(r.push(&mut out), 2);
        assert_eq!(out, [a.id]);
        assert_eq!(r.push(&mut out), 2);
        assert!(out.is_empty());
        assert_eq!(
            all(r.handle(b.id, relay("alice"))),
            [Delivery::Relay { to: a.id }]
        );
        // A leave makes everyone else behind.
        let c = r.hello(hello("carol", KEY_B), "c").unwrap();
        assert_eq!(r.disconnect(c.id, None), Some("c"));
        r.push(&mut out);
        out.sort();
        assert_eq!(out, [a.id, b.id]);
    }

    #[test]
    fn a_relay_to_someone_not_connected_is_an_error_that_does_not_count() {
        let mut r = router(2);
        let a = r.hello(hello("alice", KEY_A), "a").unwrap();
        let bad = Input::Malformed(ParseError::NotUtf8);
        assert_eq!(all(r.handle(a.id, bad)).len(), 1);
        assert_eq!(
            all(r.handle(a.id, relay("nobody"))),
            [Delivery::Error {
                to: a.id,
                error: ErrorText::UserNotConnected("nobody")
            }]
        );
        assert_eq!(
            ErrorText::UserNotConnected("nobody").to_string(),
            "user not connected: nobody"
        );
        // The run of bad messages started again: one more is not yet too many.
        assert_eq!(all(r.handle(a.id, bad)).len(), 1);
        assert_eq!(
            all(r.handle(a.id, bad)),
            [
                Delivery::Error {
                    to: a.id,
                    error: ErrorText::Malformed(ParseError::NotUtf8)
                },
                Delivery::Close {
                    conn: a.id,
                    reason: Close::TooManyErrors
                }
            ]
        );
    }

    #[test]
    fn list_chat_and_the_errors_of_a_registered_connection() {
        let mut r = router(100);
        let a = r.hello(hello("alice", KEY_A), "a").unwrap();
        assert_eq!(
            all(r.handle(a.id, Input::Message(Message::List))),
            [Delivery::Directory {
                to: a.id,
                version: 1
            }]
        );
        let chat = Input::Message(Message::Chat { text: "hola" });
        let d = all(r.handle(a.id, chat));
        assert_eq!(
            d,
            [Delivery::Server {
                to: a.id,
                text: ServerText::Echo("hola")
            }]
        );
        assert_eq!(ServerText::Echo("hola").to_string(), "echo: hola");
        let errors: Vec<(Input<'_>, &str)> = vec![
            (hello("alice", KEY_A), "already registered"),
            (
                Input::Message(Message::Users {
                    users: seguro_core::msg::UserList::EMPTY,
                }),
                "unexpected message type from a client",
            ),
            (
                Input::Message(Message::Error { text: "x" }),
                "unexpected message type from a client",
            ),
            (
                Input::Malformed(ParseError::UnknownType),
                "unknown message type",
            ),
            (
                Input::Malformed(ParseError::MissingType),
                "bad message: missing \"type\"",
            ),
            (
                Input::Overlong,
                "line too long (maximum 100 bytes): skipped",
            ),
            (
                Input::OverRate { notify: true },
                "rate limit exceeded: message dropped",
            ),
        ];
        for (input, text) in errors {
            match all(r.handle(a.id, input))[..] {
                [Delivery::Error { to, error }] => {
                    assert_eq!(to, a.id);
                    assert_eq!(error.to_string(), text);
                }
                ref other => panic!("{other:?}"),
            }
        }
        // Over rate without notice: counted, nothing sent.
        assert!(all(r.handle(a.id, Input::OverRate { notify: false })).is_empty());
    }

    #[test]
    fn dropped_lines_count_towards_the_limit_even_unannounced() {
        let mut r = router(2);
        let a = r.hello(hello("alice", KEY_A), "a").unwrap();
        assert!(all(r.handle(a.id, Input::OverRate { notify: false })).is_empty());
        assert_eq!(
            all(r.handle(a.id, Input::OverRate { notify: false })),
            [Delivery::Close {
                conn: a.id,
                reason: Close::TooManyErrors
            }]
        );
        assert_eq!(
            Close::TooManyErrors.to_string(),
            "too many consecutive bad messages"
        );
        let b = r.hello(hello("bob", KEY_B), "b").unwrap();
        r.handle(b.id, Input::Overlong);
        assert_eq!(
            all(r.handle(b.id, Input::OverRate { notify: true })),
            [
                Delivery::Error {
                    to: b.id,
                    error: ErrorText::RateLimited
                },
                Delivery::Close {
                    conn: b.id,
                    reason: Close::TooManyErrors
                }
            ]
        );
    }

    #[test]
    fn disconnect_frees_the_name_and_forgets_the_connection() {
        let mut r = router(5);
        let a = r.hello(hello("alice", KEY_A), "a").unwrap();
        assert_eq!(r.disconnect(a.id, None), Some("a"));
        assert_eq!(r.version(), 2);
        assert_eq!(r.disconnect(a.id, None), None);
        assert_eq!(r.version(), 2);
        assert!(r.is_empty());
        assert_eq!(r.directory().len(), 0);
        assert!(all(r.handle(a.id, Input::Message(Message::List))).is_empty());
        let again = r.hello(hello("alice", KEY_B), "a2").unwrap();
        assert_ne!(again.id, a.id);
        assert_eq!(r.tags().collect::<Vec<_>>(), [(again.id, &"a2")]);
    }

    #[test]
    fn look_alikes_of_connected_names_are_refused_until_they_leave() {
        let mut r = router(5);
        let a = r.hello(hello("alice", KEY_A), "a").unwrap();
        for n in [
            "Alice",
            "ALICE",
            "aIice",
            "\u{430}\u{4cf}\u{456}\u{441}\u{435}",
        ] {
            let got = r.hello(hello(n, KEY_B), "x").unwrap_err();
            assert_eq!(got, Refusal::LooksLike(n, "alice".into()), "{n}");
        }
        assert_eq!(
            Refusal::LooksLike("Alice", "alice".into()).to_string(),
            "invalid user name: \"Alice\" looks like \"alice\", who is connected"
        );
        assert_eq!(
            r.hello(hello("SYS", KEY_B), "x").unwrap_err().to_string(),
            "invalid user name: user name \"SYS\" (or a look-alike) is reserved"
        );
        assert_eq!((r.len(), r.version()), (1, 1));
        // Once alice leaves, the name and its look-alikes are free.
        r.disconnect(a.id, None);
        r.hello(hello("ALICE", KEY_B), "b").unwrap();
        assert!(matches!(
            r.hello(hello("alice", KEY_A), "a").unwrap_err(),
            Refusal::LooksLike("alice", _)
        ));
    }

    #[test]
    fn max_errors_of_zero_means_one() {
        let mut r = router(0);
        let a = r.hello(hello("alice", KEY_A), "a").unwrap();
        let d = all(r.handle(a.id, Input::Overlong));
        assert!(matches!(
            d[..],
            [Delivery::Error { .. }, Delivery::Close { .. }]
        ));
        assert_eq!(d[1].target(), a.id);
    }

    fn held_router(grace_secs: u64) -> Router<&'static str> {
        Router::new(Config {
            max_line: 100,
            max_errors: 2,
            grace: Duration::from_secs(grace_secs),
        })
    }

    fn names<T>(r: &Router<T>) -> Vec<(String, [u8; 32])> {
        r.directory().map(|(n, k)| (n.to_owned(), *k)).collect()
    }

    #[test]
    fn a_reconnect_with_the_same_key_within_the_grace_changes_nothing_in_the_directory() {
        let mut r = held_router(10);
        let t0 = Instant::now();
        let a = r.hello(hello("alice", KEY_A), "a").unwrap();
        let b = r.hello(hello("bob", KEY_B), "b").unwrap();
        assert!(!a.resumed && !b.resumed);
        let mut out = Vec::new();
        assert_eq!(r.push(&mut out), 2);
        assert_eq!(r.disconnect(b.id, Some(t0)), Some("b"));
        // Still listed, with no connection: no leave, nothing to push.
        assert_eq!(r.version(), 2);
        assert_eq!(r.len(), 1);
        assert_eq!(r.held(), 1);
        assert!(r.is_held("bob"));
        assert_eq!(names(&r), [("alice".into(), KEY_A), ("bob".into(), KEY_B)]);
        assert!(r.tag_of("bob").is_none());
        r.push(&mut out);
        assert!(out.is_empty());
        // Not yet due.
        assert!(r.expire(t0 + Duration::from_secs(9)).is_empty());
        // The same key within the grace takes the entry over...
        let b2 = r.hello(hello("bob", KEY_B), "b2").unwrap();
        assert!(b2.resumed);
        assert_ne!(b2.id, b.id);
        assert_eq!(b2.welcome, 2);
        assert_eq!(r.version(), 2);
        assert_eq!(r.held(), 0);
        assert_eq!(r.tag_of("bob"), Some(&"b2"));
        assert_eq!(names(&r), [("alice".into(), KEY_A), ("bob".into(), KEY_B)]);
        r.push(&mut out);
        assert!(out.is_empty(), "a takeover pushes nothing: {out:?}");
        // ... and once taken over, the name is connected again.
        assert_eq!(
            r.hello(hello("bob", KEY_B), "b3").unwrap_err(),
            Refusal::NameTaken("bob")
        );
        // Relays flow both ways, with no extra directory (alice already had bob's key).
        assert_eq!(
            all(r.handle(a.id, relay("bob"))),
            [Delivery::Relay { to: b2.id }]
        );
        assert_eq!(
            all(r.handle(b2.id, relay("alice"))),
            [Delivery::Relay { to: a.id }]
        );
        // The grace is over for nobody now: expiry later removes nothing.
        assert!(r.expire(t0 + Duration::from_secs(60)).is_empty());
        assert_eq!(r.version(), 2);
    }

    #[test]
    fn a_reconnect_with_another_key_is_a_leave_and_a_join() {
        let mut r = held_router(10);
        let t0 = Instant::now();
        let a = r.hello(hello("alice", KEY_A), "a").unwrap();
        let b = r.hello(hello("bob", KEY_B), "b").unwrap();
        let mut out = Vec::new();
        r.push(&mut out);
        r.disconnect(b.id, Some(t0));
        const KEY_C: [u8; 32] = [0x33; 32];
        let b2 = r.hello(hello("bob", KEY_C), "b2").unwrap();
        assert!(!b2.resumed);
        // The held entry left (3), the new one joined (4).
        assert_eq!(r.version(), 4);
        assert_eq!(b2.welcome, 4);
        assert_eq!(r.held(), 0);
        assert_eq!(names(&r), [("alice".into(), KEY_A), ("bob".into(), KEY_C)]);
        assert_eq!(r.push(&mut out), 4);
        assert_eq!(out, [a.id]);
        // A look-alike of a held name is still refused while it is held.
        let c = r.hello(hello("carol", KEY_A), "c").unwrap();
        r.disconnect(c.id, Some(t0));
        assert!(matches!(
            r.hello(hello("caro1", KEY_B), "x"),
            Err(Refusal::LooksLike("caro1", _))
        ));
    }

    #[test]
    fn a_held_name_leaves_when_its_grace_ends() {
        let mut r = held_router(10);
        let t0 = Instant::now();
        let a = r.hello(hello("alice", KEY_A), "a").unwrap();
        let b = r.hello(hello("bob", KEY_B), "b").unwrap();
        let mut out = Vec::new();
        r.push(&mut out);
        r.disconnect(b.id, Some(t0));
        assert!(r.expire(t0 + Duration::from_millis(9999)).is_empty());
        assert_eq!(r.version(), 2);
        let gone = r.expire(t0 + Duration::from_secs(10));
        assert_eq!(gone.iter().map(|n| &**n).collect::<Vec<_>>(), ["bob"]);
        assert_eq!(r.version(), 3);
        assert_eq!(r.held(), 0);
        assert_eq!(names(&r), [("alice".into(), KEY_A)]);
        assert_eq!(r.push(&mut out), 3);
        assert_eq!(out, [a.id]);
        // Gone for good: relays are to an unknown user, and the name is free again
        // for any key, as a join.
        assert_eq!(
            all(r.handle(a.id, relay("bob"))),
            [Delivery::Error {
                to: a.id,
                error: ErrorText::UserNotConnected("bob")
            }]
        );
        let b2 = r.hello(hello("bob", KEY_B), "b2").unwrap();
        assert!(!b2.resumed);
        assert_eq!(r.version(), 4);
        assert!(r.expire(t0 + Duration::from_secs(100)).is_empty());
    }

    #[test]
    fn relays_to_a_held_name_are_refused_naming_it_and_do_not_count() {
        let mut r = held_router(10);
        let t0 = Instant::now();
        let a = r.hello(hello("alice", KEY_A), "a").unwrap();
        let b = r.hello(hello("bob", KEY_B), "b").unwrap();
        r.disconnect(b.id, Some(t0));
        // max_errors is 2: three in a row would close alice if they counted.
        for _ in 0..3 {
            assert_eq!(
                all(r.handle(a.id, relay("bob"))),
                [Delivery::Error {
                    to: a.id,
                    error: ErrorText::Reconnecting("bob")
                }]
            );
        }
        assert_eq!(
            ErrorText::Reconnecting("bob").to_string(),
            "bob is reconnecting: not delivered"
        );
        assert_eq!(
            ErrorText::Reconnecting("b\u{202e}ob").to_string(),
            "b\u{fffd}ob is reconnecting: not delivered"
        );
        // A disconnect of a held name's old id changes nothing.
        assert_eq!(r.disconnect(b.id, Some(t0)), None);
        assert_eq!(r.version(), 2);
        assert_eq!(r.held(), 1);
    }

    #[test]
    fn without_a_grace_a_disconnect_is_an_immediate_leave() {
        let mut r = router(5);
        let t0 = Instant::now();
        let _a = r.hello(hello("alice", KEY_A), "a").unwrap();
        let b = r.hello(hello("bob", KEY_B), "b").unwrap();
        r.disconnect(b.id, Some(t0));
        assert_eq!(r.version(), 3);
        assert_eq!(r.held(), 0);
        assert!(!r.is_held("bob"));
        assert_eq!(names(&r), [("alice".into(), KEY_A)]);
        assert!(r.expire(t0 + Duration::from_secs(3600)).is_empty());
    }

    #[test]
    fn a_clean_close_is_an_immediate_leave_even_with_a_grace() {
        let mut r = held_router(10);
        let _a = r.hello(hello("alice", KEY_A), "a").unwrap();
        let b = r.hello(hello("bob", KEY_B), "b").unwrap();
        assert_eq!(r.disconnect(b.id, None), Some("b"));
        assert_eq!(r.version(), 3);
        assert_eq!(r.held(), 0);
        assert_eq!(names(&r), [("alice".into(), KEY_A)]);
        let b2 = r.hello(hello("bob", KEY_B), "b2").unwrap();
        assert!(!b2.resumed);
        assert_eq!(r.version(), 4);
    }
}
