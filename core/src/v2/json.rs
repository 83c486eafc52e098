//! The JSON messages of v2 (spec §2, §4, §5.5, §7.2, §10–§12) in `msg`'s style: [`parse`]
//! reads one line (any key order, unknown fields ignored, strings borrowed or unescaped
//! into a caller scratch buffer), [`V2Message::emit_line`] writes compact JSON and the
//! final `\n`, leaving the buffer untouched on failure and saying how many bytes were
//! needed.
//!
//! Some v2 additions ride on v1 lines, as fields the reference ignores; v1's
//! [`crate::msg::parse`] reads those lines exactly as before, and these functions read
//! and write the additions:
//!
//! | v1 line | v2 addition | read | write |
//! |---|---|---|---|
//! | `hello` | `v2` (§2.1) | [`parse_hello_v2`] | [`emit_hello_line`] |
//! | `welcome`, `users` | `v2` (§2.2, §10) | [`parse_directory_v2`] | [`emit_directory_line`] |
//! | `relay` | `id` (§11) | [`parse_relay_id`] | [`emit_relay_line_with_id`] |
//! | `error` | `code`, `user` (§12) | [`parse`] ([`V2Message::Error`]) | [`V2Message::emit_line`] |
//!
//! An `error` without `code` is v1's, and [`parse`] answers [`V2ParseError::UnknownType`]
//! for it as for every v1 type: a client tries [`parse`] first, then `msg::parse`.

use core::fmt;

use base64ct::{Base64, Encoding};

use crate::identity::PublicIdentity;
use crate::json::{self, Counter, Reader, Sink, SliceSink, Value};
use crate::msg::{self, BufferTooSmall, Message, UserList};
use crate::v2::x3dh::{Bundle, PeerIdentity};
use crate::v2::{KEY_LEN, SIG_LEN};

/// Most one-time prekeys in one `prekeys` message (and stored per user on the server,
/// §5.5, §12).
pub const MAX_OPKS: usize = 16;
/// Most words in a `caps` field (§2.1).
pub const MAX_CAPS_WORDS: usize = 16;
/// Longest word in a `caps` field.
pub const MAX_CAP_LEN: usize = 16;
/// Longest `error` code.
pub const MAX_CODE_LEN: usize = 32;

/// A v2 message between a v2 client and a Seguro server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V2Message<'a> {
    /// Server → client after a v2 `hello` (§4.1).
    Challenge {
        /// Fresh 32-byte nonce.
        nonce: [u8; 32],
        /// The server's ephemeral X25519 key for this connection.
        eph: [u8; KEY_LEN],
        /// The server's capabilities, words separated by spaces.
        caps: &'a str,
    },
    /// Client → server: the answer to the challenge (§4.2).
    Proof {
        /// Ed25519 signature.
        sig: [u8; SIG_LEN],
        /// HMAC proving possession of the X25519 key.
        mac: [u8; 32],
    },
    /// A v2 message, client → server (`to`, `id`) or server → client (`from`) (§7.2).
    Relay2 {
        /// Recipient (client → server).
        to: Option<&'a str>,
        /// Sender, set by the server.
        from: Option<&'a str>,
        /// The sender's id for the acknowledgement (client → server).
        id: Option<u32>,
        /// Base64 of the v2 body, forwarded unread.
        body: &'a str,
    },
    /// Server → client: what happened to a relay or a `prekeys` (§5.5, §11).
    Ack {
        /// The relay's or the `prekeys`' `id`.
        id: u32,
        /// Forwarded or not, stored or not.
        status: AckStatus,
    },
    /// Either side: are you there? (§11)
    Ping {
        /// Echoed in the pong.
        id: u32,
    },
    /// The answer to a ping.
    Pong {
        /// The ping's id.
        id: u32,
    },
    /// Client → server: the prekey bundle of `user` (§5.5).
    BundleReq {
        /// Whose bundle.
        user: &'a str,
    },
    /// Client → server: a new signed prekey and one-time prekeys to publish (§5.5).
    Prekeys {
        /// Echoed in the `ack`.
        id: u32,
        /// The signed prekey's id.
        spk_id: u32,
        /// The signed prekey.
        spk: [u8; KEY_LEN],
        /// Its signature by the sender's Ed25519 key (§5.1).
        spk_sig: [u8; SIG_LEN],
        /// One-time prekeys, possibly none.
        opks: OpkList<'a>,
    },
    /// Server → client: a user's prekey bundle (§5.2, §5.5). Check it with
    /// [`Bundle::verify`] before use.
    Bundle(Bundle<'a>),
    /// Server → client: your one-time prekeys are running out (§5.5).
    PrekeysLow {
        /// How many the server still holds.
        left: u32,
    },
    /// Server → v2 client: one change of the directory (§10).
    Dir {
        /// The delta's number on this connection (1, 2, …).
        seq: u32,
        /// What changed.
        delta: DirDelta<'a>,
    },
    /// Server → client: an error with a machine-readable code (§12). v1 readers see an
    /// ordinary `error` with its `text`.
    Error {
        /// What went wrong.
        code: ErrorCode<'a>,
        /// The user concerned (`no_prekeys`, `unknown_user`).
        user: Option<&'a str>,
        /// The human-readable text every client shows.
        text: &'a str,
    },
}

/// The `status` of an `ack`.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    /// Written to the recipient's connection.
    Forwarded,
    /// The recipient is not connected.
    NotConnected,
    /// Prekeys stored.
    Stored,
    /// Refused (for example a prekey whose signature does not verify).
    Refused,
    /// No room for more one-time prekeys.
    Full,
}

impl AckStatus {
    /// The wire word.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Forwarded => "forwarded",
            Self::NotConnected => "not_connected",
            Self::Stored => "stored",
            Self::Refused => "refused",
            Self::Full => "full",
        }
    }

    fn from_wire(s: &str) -> Option<Self> {
        Some(match s {
            "forwarded" => Self::Forwarded,
            "not_connected" => Self::NotConnected,
            "stored" => Self::Stored,
            "refused" => Self::Refused,
            "full" => Self::Full,
            _ => return None,
        })
    }
}

/// The `code` of a v2 `error` (§12).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode<'a> {
    /// The `v2` field of `hello` is malformed. The connection is closed.
    BadHello,
    /// The proof does not verify, or another line came first. Closed.
    BadProof,
    /// No proof within 10 s. Closed.
    ProofTimeout,
    /// The name is registered to another key. Closed.
    NameTaken,
    /// A v1 `hello` for a name registered through v2. Closed.
    ProofRequired,
    /// `bundle_req` for a user without prekeys.
    NoPrekeys,
    /// `bundle_req` for an unregistered name.
    UnknownUser,
    /// A v2 message with a missing or malformed field.
    BadMessage,
    /// `relay2.body` longer than the limit.
    TooLarge,
    /// A code this version does not know (from a newer server): words of `[a-z0-9_]`,
    /// never one of the codes above. Show the `text`.
    Other(&'a str),
}

impl<'a> ErrorCode<'a> {
    /// The wire word.
    pub fn as_str(&self) -> &'a str {
        match self {
            Self::BadHello => "bad_hello",
            Self::BadProof => "bad_proof",
            Self::ProofTimeout => "proof_timeout",
            Self::NameTaken => "name_taken",
            Self::ProofRequired => "proof_required",
            Self::NoPrekeys => "no_prekeys",
            Self::UnknownUser => "unknown_user",
            Self::BadMessage => "bad_message",
            Self::TooLarge => "too_large",
            Self::Other(s) => s,
        }
    }

    /// Whether the server closes the connection after this error.
    pub fn closes(&self) -> bool {
        matches!(
            self,
            Self::BadHello
                | Self::BadProof
                | Self::ProofTimeout
                | Self::NameTaken
                | Self::ProofRequired
        )
    }

    fn from_wire(s: &'a str) -> Option<Self> {
        Some(match s {
            "bad_hello" => Self::BadHello,
            "bad_proof" => Self::BadProof,
            "proof_timeout" => Self::ProofTimeout,
            "name_taken" => Self::NameTaken,
            "proof_required" => Self::ProofRequired,
            "no_prekeys" => Self::NoPrekeys,
            "unknown_user" => Self::UnknownUser,
            "bad_message" => Self::BadMessage,
            "too_large" => Self::TooLarge,
            _ => {
                let ok = (1..=MAX_CODE_LEN).contains(&s.len())
                    && s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                return ok.then_some(Self::Other(s));
            }
        })
    }
}

/// One change of the directory (§10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirDelta<'a> {
    /// A user connected.
    Join(DirEntry<'a>),
    /// A user connected again with another X25519 or Ed25519 key: judge it against the
    /// trust store.
    Key(DirEntry<'a>),
    /// A user left.
    Leave {
        /// Who.
        user: &'a str,
    },
}

impl<'a> DirDelta<'a> {
    /// The user the delta is about.
    pub fn user(&self) -> &'a str {
        match self {
            Self::Join(e) | Self::Key(e) => e.user,
            Self::Leave { user } => user,
        }
    }

    fn op(&self) -> &'static str {
        match self {
            Self::Join(_) => "join",
            Self::Key(_) => "key",
            Self::Leave { .. } => "leave",
        }
    }
}

/// A user as a `dir` delta lists it: name, X25519 key and, for a v2 user, its
/// capabilities and identity binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirEntry<'a> {
    /// The name.
    pub user: &'a str,
    /// The X25519 key (v1's `pub`).
    pub x: [u8; KEY_LEN],
    /// The v2 part; `None` for a v1 user.
    pub v2: Option<HelloV2<'a>>,
}

impl<'a> DirEntry<'a> {
    /// The v2 peer this entry describes (check it with [`PeerIdentity::verify`]), or
    /// `None` for a v1 user.
    pub fn peer(&self) -> Option<PeerIdentity<'a>> {
        self.v2.map(|v| PeerIdentity {
            name: self.user,
            keys: PublicIdentity {
                x: self.x,
                ed: v.ed,
            },
            bind: v.bind,
        })
    }
}

/// Why a line is not a valid v2 message. Every variant means the peer sent something
/// wrong, except [`ScratchTooSmall`](Self::ScratchTooSmall) (caller misuse).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V2ParseError {
    /// The line is not UTF-8.
    NotUtf8,
    /// The line is not a JSON object.
    InvalidJson {
        /// Byte offset where reading stopped.
        offset: usize,
        /// What was wrong there.
        what: &'static str,
    },
    /// No `type` string.
    MissingType,
    /// Not a v2 message type (it may be a v1 one: try `msg::parse`).
    UnknownType,
    /// A required field is missing.
    MissingField(&'static str),
    /// A field has the wrong JSON type or an unknown value.
    WrongType(&'static str),
    /// A field is not valid base64.
    BadBase64(&'static str),
    /// A binary field has the wrong length.
    BadLength {
        /// The field.
        field: &'static str,
        /// Its decoded length (a lower bound for very long values).
        len: usize,
    },
    /// A decimal field is not a `u32`.
    BadNumber(&'static str),
    /// A list has more entries than allowed (`opks`: [`MAX_OPKS`]).
    TooMany(&'static str),
    /// A list names the same user or prekey id twice.
    Duplicate(&'static str),
    /// Caller misuse: the scratch buffer must be at least as long as the line.
    ScratchTooSmall {
        /// Bytes of scratch needed.
        needed: usize,
    },
}

impl fmt::Display for V2ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotUtf8 => f.write_str("line is not valid UTF-8"),
            Self::InvalidJson { offset, what } => {
                write!(f, "invalid JSON at byte {offset}: {what}")
            }
            Self::MissingType => f.write_str("missing \"type\""),
            Self::UnknownType => f.write_str("not a v2 message type"),
            Self::MissingField(n) => write!(f, "missing field \"{n}\""),
            Self::WrongType(n) => write!(f, "field \"{n}\" has the wrong type or value"),
            Self::BadBase64(n) => write!(f, "field \"{n}\" is not valid base64"),
            Self::BadLength { field, len } => {
                write!(f, "field \"{field}\" has the wrong length ({len} bytes)")
            }
            Self::BadNumber(n) => write!(f, "field \"{n}\" is not a decimal u32"),
            Self::TooMany(n) => write!(f, "field \"{n}\" has too many entries"),
            Self::Duplicate(n) => write!(f, "field \"{n}\" lists an entry twice"),
            Self::ScratchTooSmall { needed } => {
                write!(f, "scratch buffer too small: {needed} bytes needed")
            }
        }
    }
}

impl core::error::Error for V2ParseError {}

impl From<json::Malformed> for V2ParseError {
    fn from(m: json::Malformed) -> Self {
        Self::InvalidJson {
            offset: m.offset,
            what: m.what,
        }
    }
}

/// The members of a v2 message object.
#[derive(Default)]
struct Fields<'i> {
    ty: Option<Value<'i>>,
    nonce: Option<Value<'i>>,
    eph: Option<Value<'i>>,
    caps: Option<Value<'i>>,
    sig: Option<Value<'i>>,
    mac: Option<Value<'i>>,
    to: Option<Value<'i>>,
    from: Option<Value<'i>>,
    id: Option<Value<'i>>,
    body: Option<Value<'i>>,
    status: Option<Value<'i>>,
    user: Option<Value<'i>>,
    x: Option<Value<'i>>,
    ed: Option<Value<'i>>,
    bind: Option<Value<'i>>,
    spk_id: Option<Value<'i>>,
    spk: Option<Value<'i>>,
    spk_sig: Option<Value<'i>>,
    opk_id: Option<Value<'i>>,
    opk: Option<Value<'i>>,
    opks: Option<Value<'i>>,
    left: Option<Value<'i>>,
    seq: Option<Value<'i>>,
    op: Option<Value<'i>>,
    v2: Option<Value<'i>>,
    code: Option<Value<'i>>,
    text: Option<Value<'i>>,
}

impl<'i> Fields<'i> {
    fn slot(&mut self, key: &str) -> Option<&mut Option<Value<'i>>> {
        Some(match key {
            "type" => &mut self.ty,
            "nonce" => &mut self.nonce,
            "eph" => &mut self.eph,
            "caps" => &mut self.caps,
            "sig" => &mut self.sig,
            "mac" => &mut self.mac,
            "to" => &mut self.to,
            "from" => &mut self.from,
            "id" => &mut self.id,
            "body" => &mut self.body,
            "status" => &mut self.status,
            "user" => &mut self.user,
            "pub" => &mut self.x,
            "ed" => &mut self.ed,
            "bind" => &mut self.bind,
            "spk_id" => &mut self.spk_id,
            "spk" => &mut self.spk,
            "spk_sig" => &mut self.spk_sig,
            "opk_id" => &mut self.opk_id,
            "opk" => &mut self.opk,
            "opks" => &mut self.opks,
            "left" => &mut self.left,
            "seq" => &mut self.seq,
            "op" => &mut self.op,
            "v2" => &mut self.v2,
            "code" => &mut self.code,
            "text" => &mut self.text,
            _ => return None,
        })
    }

    /// Reads every member of the object in `line`; the last of duplicate keys wins, as
    /// in Python's `json`.
    fn read(line: &'i [u8]) -> Result<Self, V2ParseError> {
        core::str::from_utf8(line).map_err(|_| V2ParseError::NotUtf8)?;
        let mut f = Self::default();
        let mut reader = Reader::new(line)?;
        let mut key_buf = [0u8; 8];
        while let Some((key, value)) = reader.next_member(&mut key_buf)? {
            if let Some(slot) = key.and_then(|k| f.slot(k)) {
                *slot = Some(value);
            }
        }
        Ok(f)
    }

    /// The unescaped `type`, in `buf`.
    fn ty<'b>(&self, buf: &'b mut [u8; 12]) -> Result<&'b [u8], V2ParseError> {
        let ty = match self.ty {
            None => return Err(V2ParseError::MissingType),
            Some(Value::Str(s)) => s,
            Some(_) => return Err(V2ParseError::WrongType("type")),
        };
        match json::unescape(ty, buf) {
            Ok(n) => Ok(buf.get(..n).unwrap_or(&[])),
            Err(_) => Err(V2ParseError::UnknownType),
        }
    }
}

/// Hands out disjoint pieces of the scratch buffer.
struct Bump<'a> {
    rest: &'a mut [u8],
    needed: usize,
}

impl<'a> Bump<'a> {
    fn too_small(&self) -> V2ParseError {
        V2ParseError::ScratchTooSmall {
            needed: self.needed,
        }
    }

    fn string(&mut self, raw: json::RawStr<'a>) -> Result<&'a str, V2ParseError> {
        if let Some(s) = raw.as_plain() {
            return Ok(s);
        }
        let too_small = self.too_small();
        let buf = core::mem::take(&mut self.rest);
        let n = json::unescape(raw, buf).map_err(|_| too_small)?;
        let (head, tail) = buf.split_at_mut(n);
        self.rest = tail;
        core::str::from_utf8(head).map_err(|_| V2ParseError::NotUtf8)
    }
}

fn need<'a>(v: Option<Value<'a>>, name: &'static str) -> Result<json::RawStr<'a>, V2ParseError> {
    match v {
        None => Err(V2ParseError::MissingField(name)),
        Some(Value::Str(s)) => Ok(s),
        Some(_) => Err(V2ParseError::WrongType(name)),
    }
}

fn opt<'a>(
    v: Option<Value<'a>>,
    name: &'static str,
) -> Result<Option<json::RawStr<'a>>, V2ParseError> {
    match v {
        None => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s)),
        Some(_) => Err(V2ParseError::WrongType(name)),
    }
}

/// Decodes base64 text that must hold exactly `N` bytes (at most 64).
fn bytes<const N: usize>(
    raw: json::RawStr<'_>,
    field: &'static str,
) -> Result<[u8; N], V2ParseError> {
    let mut text = [0u8; 128];
    let n = json::unescape(raw, &mut text).map_err(|_| V2ParseError::BadLength {
        field,
        len: raw.max_len() / 4 * 3,
    })?;
    b64_array(text.get(..n).unwrap_or(&[]), field)
}

/// Decodes base64 that must hold exactly `N` bytes (at most 64).
fn b64_array<const N: usize>(text: &[u8], field: &'static str) -> Result<[u8; N], V2ParseError> {
    let mut out = [0u8; 96];
    let decoded = Base64::decode(text, &mut out).map_err(|_| V2ParseError::BadBase64(field))?;
    <[u8; N]>::try_from(decoded).map_err(|_| V2ParseError::BadLength {
        field,
        len: decoded.len(),
    })
}

/// A decimal `u32` without sign, leading `+` or leading zeros (except `0` itself).
fn number(raw: json::RawStr<'_>, field: &'static str) -> Result<u32, V2ParseError> {
    decimal(raw.as_plain().ok_or(V2ParseError::BadNumber(field))?, field)
}

fn decimal(s: &str, field: &'static str) -> Result<u32, V2ParseError> {
    let ok = !s.is_empty()
        && s.len() <= 10
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if !ok {
        return Err(V2ParseError::BadNumber(field));
    }
    s.parse().map_err(|_| V2ParseError::BadNumber(field))
}

/// Checks a `caps` string: at most 16 words of `[a-z0-9-]{1,16}`, single spaces.
fn caps_ok(caps: &str) -> bool {
    caps.split(' ').count() <= MAX_CAPS_WORDS
        && caps.split(' ').all(|w| {
            (1..=MAX_CAP_LEN).contains(&w.len())
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Reads a `{"caps":…,"ed":…,"bind":…}` object (the `v2` of `hello`, of a `dir`
/// delta, and each entry of a directory's `v2.users`). `caps` must be plain (no
/// escapes: its words are `[a-z0-9-]`).
fn user_v2(obj: &[u8]) -> Result<HelloV2<'_>, V2ParseError> {
    let (mut caps, mut ed, mut bind) = (None, None, None);
    let mut reader = Reader::new(obj)?;
    let mut key_buf = [0u8; 4];
    while let Some((key, value)) = reader.next_member(&mut key_buf)? {
        match key {
            Some("caps") => caps = Some(value),
            Some("ed") => ed = Some(value),
            Some("bind") => bind = Some(value),
            _ => {}
        }
    }
    let caps = need(caps, "caps")?;
    let caps = caps.as_plain().ok_or(V2ParseError::WrongType("caps"))?;
    if !caps_ok(caps) {
        return Err(V2ParseError::WrongType("caps"));
    }
    Ok(HelloV2 {
        caps,
        ed: bytes(need(ed, "ed")?, "ed")?,
        bind: bytes(need(bind, "bind")?, "bind")?,
    })
}

fn object<'a>(v: Option<Value<'a>>, name: &'static str) -> Result<&'a [u8], V2ParseError> {
    match v {
        None => Err(V2ParseError::MissingField(name)),
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(V2ParseError::WrongType(name)),
    }
}

/// Parses one line (without its `\n`) into a v2 message. v1 types (and an `error`
/// without `code`) give [`V2ParseError::UnknownType`]: a client tries
/// [`crate::msg::parse`] for those. `scratch.len() >= line.len()` is always enough.
pub fn parse<'a>(line: &'a [u8], scratch: &'a mut [u8]) -> Result<V2Message<'a>, V2ParseError> {
    let f = Fields::read(line)?;
    let mut bump = Bump {
        rest: scratch,
        needed: line.len(),
    };
    let mut ty_buf = [0u8; 12];
    Ok(match f.ty(&mut ty_buf)? {
        b"challenge" => V2Message::Challenge {
            nonce: bytes(need(f.nonce, "nonce")?, "nonce")?,
            eph: bytes(need(f.eph, "eph")?, "eph")?,
            caps: bump.string(need(f.caps, "caps")?)?,
        },
        b"proof" => V2Message::Proof {
            sig: bytes(need(f.sig, "sig")?, "sig")?,
            mac: bytes(need(f.mac, "mac")?, "mac")?,
        },
        b"relay2" => {
            let body = need(f.body, "body")?;
            let to = opt(f.to, "to")?;
            let from = opt(f.from, "from")?;
            let id = opt(f.id, "id")?;
            V2Message::Relay2 {
                to: to.map(|s| bump.string(s)).transpose()?,
                from: from.map(|s| bump.string(s)).transpose()?,
                id: id.map(|s| number(s, "id")).transpose()?,
                body: body.as_plain().ok_or(V2ParseError::BadBase64("body"))?,
            }
        }
        b"ack" => V2Message::Ack {
            id: number(need(f.id, "id")?, "id")?,
            status: need(f.status, "status")?
                .as_plain()
                .and_then(AckStatus::from_wire)
                .ok_or(V2ParseError::WrongType("status"))?,
        },
        b"ping" => V2Message::Ping {
            id: number(need(f.id, "id")?, "id")?,
        },
        b"pong" => V2Message::Pong {
            id: number(need(f.id, "id")?, "id")?,
        },
        b"bundle_req" => V2Message::BundleReq {
            user: bump.string(need(f.user, "user")?)?,
        },
        b"prekeys" => V2Message::Prekeys {
            id: number(need(f.id, "id")?, "id")?,
            spk_id: number(need(f.spk_id, "spk_id")?, "spk_id")?,
            spk: bytes(need(f.spk, "spk")?, "spk")?,
            spk_sig: bytes(need(f.spk_sig, "spk_sig")?, "spk_sig")?,
            opks: match opt(f.opks, "opks")? {
                None => OpkList::EMPTY,
                Some(raw) => {
                    OpkList::parse(raw.as_plain().ok_or(V2ParseError::WrongType("opks"))?)?
                }
            },
        },
        b"bundle" => {
            let user = need(f.user, "user")?;
            let opk = match (opt(f.opk_id, "opk_id")?, opt(f.opk, "opk")?) {
                (None, None) => None,
                (Some(id), Some(key)) => Some((number(id, "opk_id")?, bytes(key, "opk")?)),
                (Some(_), None) => return Err(V2ParseError::MissingField("opk")),
                (None, Some(_)) => return Err(V2ParseError::MissingField("opk_id")),
            };
            V2Message::Bundle(Bundle {
                peer: PeerIdentity {
                    name: bump.string(user)?,
                    keys: PublicIdentity {
                        x: bytes(need(f.x, "pub")?, "pub")?,
                        ed: bytes(need(f.ed, "ed")?, "ed")?,
                    },
                    bind: bytes(need(f.bind, "bind")?, "bind")?,
                },
                spk_id: number(need(f.spk_id, "spk_id")?, "spk_id")?,
                spk: bytes(need(f.spk, "spk")?, "spk")?,
                spk_sig: bytes(need(f.spk_sig, "spk_sig")?, "spk_sig")?,
                opk,
            })
        }
        b"prekeys_low" => V2Message::PrekeysLow {
            left: number(need(f.left, "left")?, "left")?,
        },
        b"dir" => {
            let seq = number(need(f.seq, "seq")?, "seq")?;
            let op = need(f.op, "op")?.as_plain();
            let user = bump.string(need(f.user, "user")?)?;
            let delta = match op {
                Some("leave") => DirDelta::Leave { user },
                Some(op @ ("join" | "key")) => {
                    let entry = DirEntry {
                        user,
                        x: bytes(need(f.x, "pub")?, "pub")?,
                        v2: match f.v2 {
                            None => None,
                            v => Some(user_v2(object(v, "v2")?)?),
                        },
                    };
                    if op == "join" {
                        DirDelta::Join(entry)
                    } else {
                        DirDelta::Key(entry)
                    }
                }
                _ => return Err(V2ParseError::WrongType("op")),
            };
            V2Message::Dir { seq, delta }
        }
        b"error" => {
            let Some(code) = opt(f.code, "code")? else {
                return Err(V2ParseError::UnknownType);
            };
            let code = code
                .as_plain()
                .and_then(ErrorCode::from_wire)
                .ok_or(V2ParseError::WrongType("code"))?;
            let text = need(f.text, "text")?;
            let user = opt(f.user, "user")?;
            V2Message::Error {
                code,
                user: user.map(|s| bump.string(s)).transpose()?,
                text: bump.string(text)?,
            }
        }
        _ => return Err(V2ParseError::UnknownType),
    })
}

fn write_b64(s: &mut (impl Sink + ?Sized), bytes: &[u8]) {
    let mut text = [0u8; 128];
    s.put(b"\"");
    if let Ok(t) = Base64::encode(bytes, &mut text) {
        s.put(t.as_bytes());
    }
    s.put(b"\"");
}

/// The decimal digits of `v`, in `digits`.
fn digits(v: u32, digits: &mut [u8; 10]) -> &[u8] {
    let mut i = digits.len();
    let mut v = v;
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + u8::try_from(v % 10).unwrap_or(0);
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    digits.get(i..).unwrap_or(&[])
}

fn write_u32(s: &mut (impl Sink + ?Sized), v: u32) {
    let mut buf = [0u8; 10];
    s.put(b"\"");
    s.put(digits(v, &mut buf));
    s.put(b"\"");
}

/// Writes `,"<name>":` (the name needs no escaping).
fn key(s: &mut (impl Sink + ?Sized), name: &str) {
    s.put(b",\"");
    s.put(name.as_bytes());
    s.put(b"\":");
}

/// `{"caps":…,"ed":…,"bind":…}`
fn write_user_v2(s: &mut (impl Sink + ?Sized), v: &HelloV2<'_>) {
    s.put(b"{\"caps\":");
    json::write_str(s, v.caps);
    key(s, "ed");
    write_b64(s, &v.ed);
    key(s, "bind");
    write_b64(s, &v.bind);
    s.put(b"}");
}

impl V2Message<'_> {
    /// The wire name of this message's `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Challenge { .. } => "challenge",
            Self::Proof { .. } => "proof",
            Self::Relay2 { .. } => "relay2",
            Self::Ack { .. } => "ack",
            Self::Ping { .. } => "ping",
            Self::Pong { .. } => "pong",
            Self::BundleReq { .. } => "bundle_req",
            Self::Prekeys { .. } => "prekeys",
            Self::Bundle(_) => "bundle",
            Self::PrekeysLow { .. } => "prekeys_low",
            Self::Dir { .. } => "dir",
            Self::Error { .. } => "error",
        }
    }

    /// Length of the line [`emit_line`](Self::emit_line) writes, `\n` included.
    pub fn line_len(&self) -> usize {
        let mut c = Counter(0);
        self.write(&mut c);
        c.0
    }

    /// Writes compact JSON and `\n` into `out`; on failure nothing is written and the
    /// error says how many bytes are needed.
    pub fn emit_line(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let needed = self.line_len();
        let dst = out.get_mut(..needed).ok_or(BufferTooSmall { needed })?;
        let mut sink = SliceSink { out: dst, len: 0 };
        self.write(&mut sink);
        Ok(sink.len)
    }

    fn write(&self, s: &mut impl Sink) {
        s.put(b"{\"type\":");
        json::write_str(s, self.type_name());
        match self {
            Self::Challenge { nonce, eph, caps } => {
                key(s, "nonce");
                write_b64(s, nonce);
                key(s, "eph");
                write_b64(s, eph);
                key(s, "caps");
                json::write_str(s, caps);
            }
            Self::Proof { sig, mac } => {
                key(s, "sig");
                write_b64(s, sig);
                key(s, "mac");
                write_b64(s, mac);
            }
            Self::Relay2 { to, from, id, body } => {
                if let Some(to) = to {
                    key(s, "to");
                    json::write_str(s, to);
                }
                if let Some(from) = from {
                    key(s, "from");
                    json::write_str(s, from);
                }
                if let Some(id) = id {
                    key(s, "id");
                    write_u32(s, *id);
                }
                key(s, "body");
                json::write_str(s, body);
            }
            Self::Ack { id, status } => {
                key(s, "id");
                write_u32(s, *id);
                key(s, "status");
                json::write_str(s, status.as_str());
            }
            Self::Ping { id } | Self::Pong { id } => {
                key(s, "id");
                write_u32(s, *id);
            }
            Self::BundleReq { user } => {
                key(s, "user");
                json::write_str(s, user);
            }
            Self::Prekeys {
                id,
                spk_id,
                spk,
                spk_sig,
                opks,
            } => {
                key(s, "id");
                write_u32(s, *id);
                key(s, "spk_id");
                write_u32(s, *spk_id);
                key(s, "spk");
                write_b64(s, spk);
                key(s, "spk_sig");
                write_b64(s, spk_sig);
                if !opks.is_empty() {
                    key(s, "opks");
                    json::write_str(s, opks.as_str());
                }
            }
            Self::Bundle(b) => {
                key(s, "user");
                json::write_str(s, b.peer.name);
                key(s, "pub");
                write_b64(s, &b.peer.keys.x);
                key(s, "ed");
                write_b64(s, &b.peer.keys.ed);
                key(s, "bind");
                write_b64(s, &b.peer.bind);
                key(s, "spk_id");
                write_u32(s, b.spk_id);
                key(s, "spk");
                write_b64(s, &b.spk);
                key(s, "spk_sig");
                write_b64(s, &b.spk_sig);
                if let Some((id, opk)) = &b.opk {
                    key(s, "opk_id");
                    write_u32(s, *id);
                    key(s, "opk");
                    write_b64(s, opk);
                }
            }
            Self::PrekeysLow { left } => {
                key(s, "left");
                write_u32(s, *left);
            }
            Self::Dir { seq, delta } => {
                key(s, "seq");
                write_u32(s, *seq);
                key(s, "op");
                json::write_str(s, delta.op());
                key(s, "user");
                json::write_str(s, delta.user());
                if let DirDelta::Join(e) | DirDelta::Key(e) = delta {
                    key(s, "pub");
                    write_b64(s, &e.x);
                    if let Some(v2) = &e.v2 {
                        key(s, "v2");
                        write_user_v2(s, v2);
                    }
                }
            }
            Self::Error { code, user, text } => {
                key(s, "code");
                json::write_str(s, code.as_str());
                if let Some(user) = user {
                    key(s, "user");
                    json::write_str(s, user);
                }
                key(s, "text");
                json::write_str(s, text);
            }
        }
        s.put(b"}\n");
    }
}

/// The one-time prekeys of a `prekeys` message: the `opks` text, words
/// `<id>:<base64 of 32 bytes>` separated by single spaces, at most [`MAX_OPKS`], no id
/// twice. Checked when parsed or built, so iterating cannot fail.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OpkList<'a> {
    text: &'a str,
}

impl fmt::Debug for OpkList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(id, _)| id))
            .finish()
    }
}

/// Why one-time prekeys could not be put in an [`OpkList`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpkListError {
    /// More than [`MAX_OPKS`] prekeys.
    TooMany,
    /// Two prekeys with the same id.
    DuplicateId,
    /// The buffer is too small; `needed` is the length it must have.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
    },
}

impl fmt::Display for OpkListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooMany => write!(f, "more than {MAX_OPKS} one-time prekeys"),
            Self::DuplicateId => f.write_str("two one-time prekeys with the same id"),
            Self::BufferTooSmall { needed } => {
                write!(f, "buffer too small: {needed} bytes needed")
            }
        }
    }
}

impl core::error::Error for OpkListError {}

/// Base64 of a 32-byte key: 44 characters.
const KEY_B64_LEN: usize = 44;

impl<'a> OpkList<'a> {
    /// No one-time prekeys.
    pub const EMPTY: OpkList<'static> = OpkList { text: "" };

    /// Writes `entries` as `opks` text into `buf` (at most 56 bytes per entry).
    pub fn encode(
        entries: &[(u32, [u8; KEY_LEN])],
        buf: &'a mut [u8],
    ) -> Result<Self, OpkListError> {
        if entries.len() > MAX_OPKS {
            return Err(OpkListError::TooMany);
        }
        for (i, (id, _)) in entries.iter().enumerate() {
            if entries
                .get(..i)
                .is_some_and(|e| e.iter().any(|(j, _)| j == id))
            {
                return Err(OpkListError::DuplicateId);
            }
        }
        let write = |s: &mut dyn Sink| {
            for (i, (id, k)) in entries.iter().enumerate() {
                if i > 0 {
                    s.put(b" ");
                }
                let mut d = [0u8; 10];
                s.put(digits(*id, &mut d));
                s.put(b":");
                let mut text = [0u8; KEY_B64_LEN];
                if let Ok(t) = Base64::encode(k, &mut text) {
                    s.put(t.as_bytes());
                }
            }
        };
        let mut c = Counter(0);
        write(&mut c);
        let needed = c.0;
        let dst = buf
            .get_mut(..needed)
            .ok_or(OpkListError::BufferTooSmall { needed })?;
        let mut sink = SliceSink {
            out: &mut *dst,
            len: 0,
        };
        write(&mut sink);
        let dst: &'a [u8] = dst;
        let text = core::str::from_utf8(dst).unwrap_or("");
        Ok(Self { text })
    }

    fn parse(text: &'a str) -> Result<Self, V2ParseError> {
        if text.is_empty() {
            return Ok(Self::EMPTY);
        }
        let mut count = 0;
        for (i, word) in text.split(' ').enumerate() {
            count += 1;
            if count > MAX_OPKS {
                return Err(V2ParseError::TooMany("opks"));
            }
            let (id, k) = word
                .split_once(':')
                .ok_or(V2ParseError::WrongType("opks"))?;
            let id = decimal(id, "opks")?;
            b64_array::<KEY_LEN>(k.as_bytes(), "opks")?;
            if text.split(' ').take(i).any(|w| {
                w.split_once(':')
                    .is_some_and(|(j, _)| decimal(j, "opks") == Ok(id))
            }) {
                return Err(V2ParseError::Duplicate("opks"));
            }
        }
        Ok(Self { text })
    }

    /// The `opks` text as it travels.
    pub fn as_str(&self) -> &'a str {
        self.text
    }

    /// Number of prekeys.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The prekeys `(id, key)`, in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, [u8; KEY_LEN])> + 'a {
        let text = self.text;
        text.split(' ').filter(|w| !w.is_empty()).filter_map(|w| {
            let (id, k) = w.split_once(':')?;
            Some((
                decimal(id, "opks").ok()?,
                b64_array(k.as_bytes(), "opks").ok()?,
            ))
        })
    }
}

/// The v2 part of a user (§2.1): capabilities and identity binding. It is the `v2`
/// field of `hello`, of a `dir` join or key delta, and of each entry in a directory's
/// `v2.users`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloV2<'a> {
    /// Capabilities, words separated by spaces.
    pub caps: &'a str,
    /// Ed25519 identity key.
    pub ed: [u8; KEY_LEN],
    /// Binding signature.
    pub bind: [u8; SIG_LEN],
}

impl HelloV2<'_> {
    /// Whether `caps` lists `word`.
    pub fn has_cap(&self, word: &str) -> bool {
        self.caps.split(' ').any(|w| w == word)
    }
}

/// Reads the `v2` field of a `hello` line: `Ok(None)` for a v1 `hello` (no such
/// field). The caller parses the v1 fields with [`crate::msg::parse`]. `caps` must be
/// plain (no escapes: its words are `[a-z0-9-]`).
pub fn parse_hello_v2(line: &[u8]) -> Result<Option<HelloV2<'_>>, V2ParseError> {
    let f = Fields::read(line)?;
    match f.v2 {
        None => Ok(None),
        v => user_v2(object(v, "v2")?).map(Some),
    }
}

/// Writes `line` (a v1 line ending in `}\n`) with `extra` (which writes `,"…":…`)
/// inserted before the final `}`; on failure `out` is untouched.
fn emit_extended(
    v1_len: usize,
    v1: impl FnOnce(&mut [u8]) -> Result<usize, BufferTooSmall>,
    extra: impl Fn(&mut dyn Sink),
    out: &mut [u8],
) -> Result<usize, BufferTooSmall> {
    let mut c = Counter(0);
    extra(&mut c);
    let needed = v1_len + c.0;
    let dst = out.get_mut(..needed).ok_or(BufferTooSmall { needed })?;
    let n = v1(dst)?;
    let start = n.saturating_sub(2);
    let tail = dst.get_mut(start..).unwrap_or_default();
    let mut sink = SliceSink { out: tail, len: 0 };
    extra(&mut sink);
    sink.put(b"}\n");
    Ok(start + sink.len)
}

/// Writes a v2 client's `hello` line: v1's fields, then the `v2` field.
pub fn emit_hello_line(
    user: &str,
    x: &[u8; KEY_LEN],
    v2: &HelloV2<'_>,
    out: &mut [u8],
) -> Result<usize, BufferTooSmall> {
    emit_hello_line_with_token(user, x, None, v2, out)
}

/// [`emit_hello_line`] with a private server's join token (v1's `token` field).
pub fn emit_hello_line_with_token(
    user: &str,
    x: &[u8; KEY_LEN],
    token: Option<&str>,
    v2: &HelloV2<'_>,
    out: &mut [u8],
) -> Result<usize, BufferTooSmall> {
    let hello = Message::Hello {
        user,
        key: *x,
        token,
    };
    emit_extended(
        hello.line_len(),
        |o| hello.emit_line(o),
        |s| {
            key(s, "v2");
            write_user_v2(s, v2);
        },
        out,
    )
}

/// The v2 users of a directory, packed in a byte buffer (2-byte little-endian name
/// length, name, Ed25519 key, binding, 2-byte little-endian caps length, caps), in
/// wire order, no name twice.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct V2UserList<'a> {
    data: &'a [u8],
    count: usize,
}

impl fmt::Debug for V2UserList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter().map(|(n, _)| n)).finish()
    }
}

/// Bytes one entry takes in a packed [`V2UserList`].
pub const fn packed_v2_entry_len(name: &str, caps: &str) -> usize {
    2 + name.len() + KEY_LEN + SIG_LEN + 2 + caps.len()
}

/// Appends one packed entry at `pos` of `region`; returns the new end.
fn pack_entry(region: &mut [u8], pos: usize, name: &[u8], v: &HelloV2<'_>) -> Option<usize> {
    let name_len = u16::try_from(name.len()).ok()?;
    let caps_len = u16::try_from(v.caps.len()).ok()?;
    let end = pos + 2 + name.len() + KEY_LEN + SIG_LEN + 2 + v.caps.len();
    let mut at = pos;
    let mut put = |bytes: &[u8]| -> Option<()> {
        region.get_mut(at..at + bytes.len())?.copy_from_slice(bytes);
        at += bytes.len();
        Some(())
    };
    put(&name_len.to_le_bytes())?;
    put(name)?;
    put(&v.ed)?;
    put(&v.bind)?;
    put(&caps_len.to_le_bytes())?;
    put(v.caps.as_bytes())?;
    Some(end)
}

impl<'a> V2UserList<'a> {
    /// An empty list.
    pub const EMPTY: V2UserList<'static> = V2UserList {
        data: &[],
        count: 0,
    };

    /// Packs `entries` into `buf` (see [`packed_v2_entry_len`] for the size needed).
    /// A name listed twice is refused ([`V2PackError::Duplicate`]).
    pub fn pack<'n, I>(entries: I, buf: &'a mut [u8]) -> Result<Self, V2PackError>
    where
        I: IntoIterator<Item = (&'n str, &'n HelloV2<'n>)>,
        I::IntoIter: Clone,
    {
        let entries = entries.into_iter();
        let needed: usize = entries
            .clone()
            .map(|(n, v)| packed_v2_entry_len(n, v.caps))
            .sum();
        if needed > buf.len() {
            return Err(V2PackError::BufferTooSmall { needed });
        }
        let mut pos = 0;
        let mut count = 0;
        // While the names come in strictly ascending byte order (a server lists its
        // directory in name order), each is new if it is above the one before: one
        // comparison instead of a scan of the entries packed so far, which made packing
        // N users O(N²). Out of order, every name is looked up as before.
        let mut ascending: Option<&str> = None;
        let mut in_order = true;
        for (name, v) in entries {
            let known_new =
                in_order && ascending.is_none_or(|last| name.as_bytes() > last.as_bytes());
            in_order = known_new;
            ascending = Some(name);
            if !known_new
                && (V2UserList {
                    data: buf.get(..pos).unwrap_or_default(),
                    count,
                })
                .get(name)
                .is_some()
            {
                return Err(V2PackError::Duplicate);
            }
            pos = pack_entry(buf, pos, name.as_bytes(), v)
                .ok_or(V2PackError::BufferTooSmall { needed })?;
            count += 1;
        }
        let buf: &'a [u8] = buf;
        Ok(Self {
            data: buf.get(..pos).unwrap_or_default(),
            count,
        })
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The users in wire order.
    pub fn iter(&self) -> V2UserIter<'a> {
        V2UserIter { rest: self.data }
    }

    /// The v2 part of `name`, if listed.
    pub fn get(&self, name: &str) -> Option<HelloV2<'a>> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// Why a [`V2UserList`] could not be packed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V2PackError {
    /// The buffer is too small; `needed` is the length it must have.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
    },
    /// A name is listed twice.
    Duplicate,
}

impl fmt::Display for V2PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall { needed } => {
                write!(f, "buffer too small: {needed} bytes needed")
            }
            Self::Duplicate => f.write_str("a user is listed twice"),
        }
    }
}

impl core::error::Error for V2PackError {}

/// Iterator over a [`V2UserList`].
#[derive(Clone)]
pub struct V2UserIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for V2UserIter<'a> {
    type Item = (&'a str, HelloV2<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let (len, rest) = self.rest.split_first_chunk::<2>()?;
        let (name, rest) = rest.split_at_checked(usize::from(u16::from_le_bytes(*len)))?;
        let (ed, rest) = rest.split_first_chunk::<KEY_LEN>()?;
        let (bind, rest) = rest.split_first_chunk::<SIG_LEN>()?;
        let (len, rest) = rest.split_first_chunk::<2>()?;
        let (caps, rest) = rest.split_at_checked(usize::from(u16::from_le_bytes(*len)))?;
        self.rest = rest;
        Some((
            core::str::from_utf8(name).ok()?,
            HelloV2 {
                caps: core::str::from_utf8(caps).ok()?,
                ed: *ed,
                bind: *bind,
            },
        ))
    }
}

/// The `v2` section of a `welcome` or `users` line (§2.2, §10): the number of the last
/// delta it includes, and every connected v2 user's capabilities and binding. Each
/// user's X25519 key is in v1's `users`; [`DirectoryV2::peer`] joins the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectoryV2<'a> {
    /// Deltas continue from `seq + 1`.
    pub seq: u32,
    /// The v2 users.
    pub users: V2UserList<'a>,
}

impl<'a> DirectoryV2<'a> {
    /// `name` as a v2 peer (check it with [`PeerIdentity::verify`]): `None` if v1's
    /// directory does not list it, or lists it without a v2 entry (a v1 user).
    pub fn peer(&self, v1: &UserList<'a>, name: &str) -> Option<PeerIdentity<'a>> {
        let (name, x) = v1.iter().find(|(n, _)| *n == name)?;
        let v = self.users.get(name)?;
        Some(PeerIdentity {
            name,
            keys: PublicIdentity { x: *x, ed: v.ed },
            bind: v.bind,
        })
    }
}

/// Reads the `v2` section of a `welcome` or `users` line: `Ok(None)` without one (a v1
/// server, or a v1 directory). The caller parses v1's `users` with
/// [`crate::msg::parse`] (into another scratch buffer). Names with escapes are decoded
/// into `scratch`; `scratch.len() >= line.len()` is always enough. Other types are
/// [`V2ParseError::UnknownType`].
pub fn parse_directory_v2<'a>(
    line: &'a [u8],
    scratch: &'a mut [u8],
) -> Result<Option<DirectoryV2<'a>>, V2ParseError> {
    let f = Fields::read(line)?;
    let mut ty_buf = [0u8; 12];
    if !matches!(f.ty(&mut ty_buf)?, b"welcome" | b"users") {
        return Err(V2ParseError::UnknownType);
    }
    let v2 = match f.v2 {
        None => return Ok(None),
        v => object(v, "v2")?,
    };
    let (mut seq, mut users) = (None, None);
    let mut reader = Reader::new(v2)?;
    let mut key_buf = [0u8; 8];
    while let Some((key, value)) = reader.next_member(&mut key_buf)? {
        match key {
            Some("seq") => seq = Some(value),
            Some("users") => users = Some(value),
            _ => {}
        }
    }
    let seq = number(need(seq, "seq")?, "seq")?;
    let users = object(users, "users")?;
    let too_small = V2ParseError::ScratchTooSmall { needed: line.len() };
    let mut pos = 0;
    let mut count = 0;
    let mut reader = Reader::new(users)?;
    while let Some((name, value)) = reader.next_raw()? {
        let Value::Object(obj) = value else {
            return Err(V2ParseError::WrongType("users"));
        };
        let v = user_v2(obj)?;
        // The name is unescaped where its entry goes (after its 2-byte length), then the
        // rest of the entry is packed around it.
        let (done, rest) = scratch.split_at_mut_checked(pos).ok_or(too_small)?;
        let name_area = rest.get_mut(2..).ok_or(too_small)?;
        let n = json::unescape(name, name_area).map_err(|_| too_small)?;
        let name_str = core::str::from_utf8(name_area.get(..n).unwrap_or_default())
            .map_err(|_| V2ParseError::NotUtf8)?;
        let before = V2UserList { data: done, count };
        if before.get(name_str).is_some() {
            return Err(V2ParseError::Duplicate("users"));
        }
        pos = pack_in_place(scratch, pos, n, &v).ok_or(too_small)?;
        count += 1;
    }
    let scratch: &'a [u8] = scratch;
    let data = scratch.get(..pos).unwrap_or_default();
    Ok(Some(DirectoryV2 {
        seq,
        users: V2UserList { data, count },
    }))
}

/// Completes a packed entry whose name (`name_len` bytes) is already at `pos + 2`.
fn pack_in_place(region: &mut [u8], pos: usize, name_len: usize, v: &HelloV2<'_>) -> Option<usize> {
    let len = u16::try_from(name_len).ok()?;
    region
        .get_mut(pos..pos + 2)?
        .copy_from_slice(&len.to_le_bytes());
    let caps_len = u16::try_from(v.caps.len()).ok()?;
    let mut at = pos + 2 + name_len;
    for part in [
        &v.ed[..],
        &v.bind[..],
        &caps_len.to_le_bytes(),
        v.caps.as_bytes(),
    ] {
        region.get_mut(at..at + part.len())?.copy_from_slice(part);
        at += part.len();
    }
    Some(at)
}

/// Which v1 directory message a directory line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectoryKind {
    /// The answer to `hello` (after the proof, for a v2 client).
    Welcome,
    /// The answer to `list`.
    Users,
}

/// Writes a `welcome` or `users` line for a v2 client: v1's `users` (what every
/// reader sees), then the `v2` section.
pub fn emit_directory_line(
    kind: DirectoryKind,
    users: &UserList<'_>,
    v2: &DirectoryV2<'_>,
    out: &mut [u8],
) -> Result<usize, BufferTooSmall> {
    let v1 = match kind {
        DirectoryKind::Welcome => Message::Welcome { users: *users },
        DirectoryKind::Users => Message::Users { users: *users },
    };
    emit_extended(
        v1.line_len(),
        |o| v1.emit_line(o),
        |s| {
            key(s, "v2");
            s.put(b"{\"seq\":");
            write_u32(s, v2.seq);
            key(s, "users");
            s.put(b"{");
            for (i, (name, v)) in v2.users.iter().enumerate() {
                if i > 0 {
                    s.put(b",");
                }
                json::write_str(s, name);
                s.put(b":");
                write_user_v2(s, &v);
            }
            s.put(b"}}");
        },
        out,
    )
}

/// Reads the `id` a v2 client adds to a v1 `relay` for the server's `ack` (§11):
/// `Ok(None)` without one. Other types are [`V2ParseError::UnknownType`].
pub fn parse_relay_id(line: &[u8]) -> Result<Option<u32>, V2ParseError> {
    let f = Fields::read(line)?;
    let mut ty_buf = [0u8; 12];
    if f.ty(&mut ty_buf)? != b"relay" {
        return Err(V2ParseError::UnknownType);
    }
    opt(f.id, "id")?.map(|s| number(s, "id")).transpose()
}

/// Writes a v2 client's v1 `relay` line ([`msg::emit_relay_line`]) with the `id` the
/// server acknowledges (and strips before forwarding).
pub fn emit_relay_line_with_id(
    to: &str,
    from: &str,
    nonce: &[u8; crate::limits::NONCE_LEN],
    cipher: &[u8],
    id: u32,
    out: &mut [u8],
) -> Result<usize, BufferTooSmall> {
    let v1_len = match msg::emit_relay_line(to, from, nonce, cipher, &mut []) {
        Err(BufferTooSmall { needed }) => needed,
        Ok(n) => n,
    };
    emit_extended(
        v1_len,
        |o| msg::emit_relay_line(to, from, nonce, cipher, o),
        |s| {
            key(s, "id");
            write_u32(s, id);
        },
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{self, Message};

    fn round_trip(m: V2Message<'_>) {
        let mut out = [0u8; 1024];
        let n = m.emit_line(&mut out).unwrap();
        assert_eq!(n, m.line_len());
        assert_eq!(out[n - 1], b'\n');
        let mut scratch = [0u8; 1024];
        assert_eq!(parse(&out[..n - 1], &mut scratch).unwrap(), m);
        let mut small = [0xaau8; 8];
        assert_eq!(m.emit_line(&mut small), Err(BufferTooSmall { needed: n }));
        assert_eq!(small, [0xaa; 8]);
    }

    #[test]
    fn every_message_round_trips() {
        round_trip(V2Message::Challenge {
            nonce: [1; 32],
            eph: [2; 32],
            caps: "v2 sas ack",
        });
        round_trip(V2Message::Proof {
            sig: [3; 64],
            mac: [4; 32],
        });
        round_trip(V2Message::Relay2 {
            to: Some("bob"),
            from: None,
            id: Some(17),
            body: "AAEC",
        });
        round_trip(V2Message::Relay2 {
            to: None,
            from: Some("José"),
            id: None,
            body: "AAEC",
        });
        round_trip(V2Message::Ack {
            id: 0,
            status: AckStatus::Forwarded,
        });
        round_trip(V2Message::Ack {
            id: u32::MAX,
            status: AckStatus::NotConnected,
        });
        round_trip(V2Message::Ping { id: 41 });
        round_trip(V2Message::Pong { id: 1_000_000 });
        round_trip(V2Message::BundleReq { user: "b\"o\\b" });
        let mut buf = [0u8; 256];
        let opks = OpkList::encode(&[(12, [8; 32]), (0, [9; 32])], &mut buf).unwrap();
        round_trip(V2Message::Prekeys {
            id: 3,
            spk_id: 7,
            spk: [1; 32],
            spk_sig: [2; 64],
            opks,
        });
        round_trip(V2Message::Prekeys {
            id: 0,
            spk_id: u32::MAX,
            spk: [1; 32],
            spk_sig: [2; 64],
            opks: OpkList::EMPTY,
        });
        let peer = PeerIdentity {
            name: "bob",
            keys: PublicIdentity {
                x: [3; 32],
                ed: [4; 32],
            },
            bind: [5; 64],
        };
        for opk in [None, Some((12, [6; 32]))] {
            round_trip(V2Message::Bundle(Bundle {
                peer,
                spk_id: 7,
                spk: [7; 32],
                spk_sig: [8; 64],
                opk,
            }));
        }
        round_trip(V2Message::PrekeysLow { left: 3 });
        let v2 = HelloV2 {
            caps: "v2 sas",
            ed: [1; 32],
            bind: [2; 64],
        };
        for delta in [
            DirDelta::Join(DirEntry {
                user: "carol",
                x: [3; 32],
                v2: None,
            }),
            DirDelta::Key(DirEntry {
                user: "dave\n",
                x: [4; 32],
                v2: Some(v2),
            }),
            DirDelta::Leave { user: "carol" },
        ] {
            round_trip(V2Message::Dir { seq: 9, delta });
        }
        for code in [
            ErrorCode::BadHello,
            ErrorCode::BadProof,
            ErrorCode::ProofTimeout,
            ErrorCode::NameTaken,
            ErrorCode::ProofRequired,
            ErrorCode::NoPrekeys,
            ErrorCode::UnknownUser,
            ErrorCode::BadMessage,
            ErrorCode::TooLarge,
            ErrorCode::Other("later_code_9"),
        ] {
            round_trip(V2Message::Error {
                code,
                user: None,
                text: "t\"x",
            });
            round_trip(V2Message::Error {
                code,
                user: Some("bob"),
                text: "",
            });
        }
    }

    #[test]
    fn error_codes_say_whether_the_connection_closes() {
        let closing = [
            ErrorCode::BadHello,
            ErrorCode::BadProof,
            ErrorCode::ProofTimeout,
            ErrorCode::NameTaken,
            ErrorCode::ProofRequired,
        ];
        let staying = [
            ErrorCode::NoPrekeys,
            ErrorCode::UnknownUser,
            ErrorCode::BadMessage,
            ErrorCode::TooLarge,
            ErrorCode::Other("x"),
        ];
        assert!(closing.iter().all(ErrorCode::closes));
        assert!(!staying.iter().any(ErrorCode::closes));
        // A known word never parses as Other.
        for c in closing.iter().chain(&staying[..4]) {
            assert_eq!(ErrorCode::from_wire(c.as_str()), Some(*c));
        }
        assert_eq!(ErrorCode::from_wire(""), None);
        assert_eq!(ErrorCode::from_wire("a-b"), None);
        assert_eq!(ErrorCode::from_wire("ok_2"), Some(ErrorCode::Other("ok_2")));
    }

    #[test]
    fn the_spec_examples_parse() {
        let mut s = [0u8; 256];
        assert_eq!(
            parse(br#"{"type": "ack", "status": "not_connected", "id": "17", "extra": [1, {"x": 2}]}"#, &mut s),
            Ok(V2Message::Ack { id: 17, status: AckStatus::NotConnected })
        );
        assert_eq!(
            parse(br#"{"type":"relay2","from":"alice","body":"AAEC"}"#, &mut s),
            Ok(V2Message::Relay2 {
                to: None,
                from: Some("alice"),
                id: None,
                body: "AAEC"
            })
        );
    }

    #[test]
    fn bad_lines_are_refused() {
        let mut s = [0u8; 256];
        let cases: [(&[u8], V2ParseError); 10] = [
            (br#"{"type":"ping"}"#, V2ParseError::MissingField("id")),
            (br#"{"type":"ping","id":5}"#, V2ParseError::WrongType("id")),
            (
                br#"{"type":"ping","id":"05"}"#,
                V2ParseError::BadNumber("id"),
            ),
            (
                br#"{"type":"ping","id":"4294967296"}"#,
                V2ParseError::BadNumber("id"),
            ),
            (
                br#"{"type":"ping","id":"-1"}"#,
                V2ParseError::BadNumber("id"),
            ),
            (
                br#"{"type":"ack","id":"1","status":"lost"}"#,
                V2ParseError::WrongType("status"),
            ),
            (
                br#"{"type":"proof","sig":"AAAA","mac":"AAAA"}"#,
                V2ParseError::BadLength {
                    field: "sig",
                    len: 3,
                },
            ),
            (
                br#"{"type":"proof","sig":"!!","mac":"AAAA"}"#,
                V2ParseError::BadBase64("sig"),
            ),
            (br#"{"type":"relay","to":"bob"}"#, V2ParseError::UnknownType),
            (br#"{"text":"x"}"#, V2ParseError::MissingType),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse(line, &mut s),
                Err(want),
                "{}",
                core::str::from_utf8(line).unwrap()
            );
        }
        assert!(matches!(
            parse(br#"{"type":"ping""#, &mut s),
            Err(V2ParseError::InvalidJson { .. })
        ));
        assert_eq!(
            parse(b"{\"type\":\"\xff\"}", &mut s),
            Err(V2ParseError::NotUtf8)
        );
    }

    #[test]
    fn hello_extension_is_invisible_to_v1_and_read_by_v2() {
        let v2 = HelloV2 {
            caps: "v2 sas receipts",
            ed: [5; 32],
            bind: [6; 64],
        };
        let mut out = [0u8; 400];
        let n = emit_hello_line("alice", &[7; 32], &v2, &mut out).unwrap();
        let line = &out[..n - 1];
        // The v1 parser (like the reference server) sees a plain hello.
        let mut scratch = [0u8; 400];
        assert_eq!(
            msg::parse(line, &mut scratch),
            Ok(Message::Hello {
                user: "alice",
                key: [7; 32],
                token: None
            })
        );
        let got = parse_hello_v2(line).unwrap().unwrap();
        assert_eq!(got, v2);
        assert!(got.has_cap("sas") && !got.has_cap("pq"));
        assert_eq!(
            parse_hello_v2(br#"{"type":"hello","user":"a","pub":"x"}"#),
            Ok(None)
        );
        assert_eq!(
            parse_hello_v2(br#"{"type":"hello","v2":{"caps":"V2","ed":"","bind":""}}"#),
            Err(V2ParseError::WrongType("caps"))
        );
        assert_eq!(
            parse_hello_v2(br#"{"type":"hello","v2":"yes"}"#),
            Err(V2ParseError::WrongType("v2"))
        );
        assert_eq!(
            parse_hello_v2(br#"{"type":"hello","v2":{"caps":"v2","ed":"AAAA"}}"#),
            Err(V2ParseError::BadLength {
                field: "ed",
                len: 3
            })
        );
        let mut small = [0x55u8; 10];
        assert_eq!(
            emit_hello_line("alice", &[7; 32], &v2, &mut small),
            Err(BufferTooSmall { needed: n })
        );
        assert_eq!(small, [0x55; 10]);
    }

    /// The packing before names in ascending order skipped the duplicate scan: every
    /// entry appended in turn, each name looked up among those before it.
    fn pack_reference(
        entries: &[(&str, HelloV2<'_>)],
        buf: &mut [u8],
    ) -> Result<usize, V2PackError> {
        let needed: usize = entries
            .iter()
            .map(|(n, v)| packed_v2_entry_len(n, v.caps))
            .sum();
        if needed > buf.len() {
            return Err(V2PackError::BufferTooSmall { needed });
        }
        let mut pos = 0;
        for (i, (name, v)) in entries.iter().enumerate() {
            if entries[..i].iter().any(|(n, _)| n == name) {
                return Err(V2PackError::Duplicate);
            }
            pos = pack_entry(buf, pos, name.as_bytes(), v).unwrap();
        }
        Ok(pos)
    }

    #[test]
    fn v2_user_list_pack_matches_the_reference_in_and_out_of_order() {
        extern crate std;
        use std::{format, string::String, vec, vec::Vec};
        let caps = ["v2", "v2 sas", ""];
        // 300 names in byte order ("u000".."u299"), some with non-ASCII tails.
        let names: Vec<String> = (0..300)
            .map(|i| {
                if i % 7 == 0 {
                    format!("u{i:03}é")
                } else {
                    format!("u{i:03}")
                }
            })
            .collect();
        let hello = |i: usize| HelloV2 {
            caps: caps[i % caps.len()],
            ed: [i as u8; 32],
            bind: [(i * 3) as u8; 64],
        };
        let sorted: Vec<(&str, HelloV2<'_>)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), hello(i)))
            .collect();
        // A fixed permutation (multiplication by a unit mod 300), a sorted list with one
        // entry out of place, and sorted lists with a duplicate after the ascending run
        // (of the first, of a middle name, of the last) or inside it.
        let shuffled: Vec<_> = (0..300).map(|i| sorted[(i * 7 + 11) % 300]).collect();
        let mut one_swap = sorted.clone();
        one_swap.swap(150, 151);
        let mut cases = vec![sorted.clone(), shuffled.clone(), one_swap, Vec::new()];
        for dup in [0, 150, 299] {
            let mut with_dup = sorted.clone();
            with_dup.push(sorted[dup]);
            cases.push(with_dup);
            let mut early = sorted.clone();
            early.insert(dup + 1, sorted[dup]);
            cases.push(early);
            let mut shuffled_dup = shuffled.clone();
            shuffled_dup.insert(200, sorted[dup]);
            cases.push(shuffled_dup);
        }
        let mut one_sorted_dup = sorted.clone();
        one_sorted_dup.swap(10, 200);
        one_sorted_dup.push(sorted[10]);
        cases.push(one_sorted_dup);
        for case in &cases {
            let size: usize = case
                .iter()
                .map(|(n, v)| packed_v2_entry_len(n, v.caps))
                .sum();
            let mut want = vec![0u8; size];
            let expected = pack_reference(case, &mut want);
            let mut got = vec![0u8; size];
            let packed = V2UserList::pack(case.iter().map(|(n, v)| (*n, v)), &mut got);
            match (expected, packed) {
                (Ok(n), Ok(list)) => {
                    assert_eq!(list.data, &want[..n]);
                    assert_eq!(list.len(), case.len());
                    assert!(list.iter().map(|(n, _)| n).eq(case.iter().map(|(n, _)| *n)));
                }
                (Err(e), Err(f)) => assert_eq!(e, f),
                (e, f) => panic!("reference {e:?}, pack {:?}", f.map(|l| l.len())),
            }
            if size > 0 {
                let mut short = vec![0u8; size - 1];
                assert_eq!(
                    V2UserList::pack(case.iter().map(|(n, v)| (*n, v)), &mut short),
                    Err(V2PackError::BufferTooSmall { needed: size })
                );
            }
        }
        let dups = cases
            .iter()
            .filter(|c| {
                V2UserList::pack(c.iter().map(|(n, v)| (*n, v)), &mut vec![0; 1 << 20]).is_err()
            })
            .count();
        assert_eq!(dups, 10);
    }
}
