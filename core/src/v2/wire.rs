//! The byte layouts of v2 (spec §7 and §8): the message header, the prekey prelude and
//! the inner messages carried inside the encryption.
//!
//! [`parse`] splits a received `relay2.body` into its header, optional prelude and
//! cipher text without decrypting anything; [`Inner::parse`] reads a decrypted inner
//! message and [`Inner::emit`] writes one. Parsers borrow from their input, check every
//! length and never panic; emitters leave the output untouched on failure and say how
//! many bytes were needed.

use core::fmt;

use crate::v2::{KEY_LEN, MAX_TEXT, VERSION};

/// Length of the fixed header: version, flags, ratchet key, `PN`, `N`.
pub const HEADER_LEN: usize = 2 + KEY_LEN + 4 + 4;
/// Length of the prekey prelude: `EK`, `spk_id`, `opk_id`.
pub const PRELUDE_LEN: usize = KEY_LEN + 4 + 4;
/// Length of the AES-GCM tag that ends every body (as in v1).
pub use crate::e2ee::TAG_LEN;
/// Flag bit: a prelude follows the header.
pub const FLAG_PRELUDE: u8 = 0x01;
/// Flag bit: the sender is the session's responder.
pub const FLAG_RESPONDER: u8 = 0x02;
/// `opk_id` value meaning "no one-time prekey".
pub const NO_OPK: u32 = 0xFFFF_FFFF;
/// Length of an SAS transaction id.
pub const SID_LEN: usize = 16;
/// The most ids one receipt carries.
pub const MAX_RECEIPT_IDS: usize = 16;
/// The longest inner message: type, id and [`MAX_TEXT`] bytes of text.
pub const MAX_INNER: usize = 1 + 4 + MAX_TEXT;
/// The longest body: header, prelude, inner message and tag.
pub const MAX_BODY: usize = HEADER_LEN + PRELUDE_LEN + MAX_INNER + TAG_LEN;

/// Why bytes are not a v2 message. Every variant means the peer (or the server) sent
/// something wrong.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than its header, prelude and tag.
    TooShort,
    /// Longer than [`MAX_BODY`].
    TooLong,
    /// The version byte is not [`VERSION`].
    UnsupportedVersion(u8),
    /// A flag bit that v2 does not define is set.
    BadFlags(u8),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort => f.write_str("v2 message too short"),
            Self::TooLong => write!(f, "v2 message longer than {MAX_BODY} bytes"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported protocol version {v}"),
            Self::BadFlags(b) => write!(f, "undefined header flags {b:#04x}"),
        }
    }
}

impl core::error::Error for WireError {}

/// The fixed header of a v2 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// [`FLAG_PRELUDE`] and [`FLAG_RESPONDER`].
    pub flags: u8,
    /// The sender's current ratchet public key.
    pub dh: [u8; KEY_LEN],
    /// Number of messages in the sender's previous sending chain.
    pub pn: u32,
    /// This message's number in its chain.
    pub n: u32,
}

impl Header {
    /// Whether the sender is the responder of the session.
    pub fn from_responder(&self) -> bool {
        self.flags & FLAG_RESPONDER != 0
    }

    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let (v, rest) = out.split_at_mut(2);
        v.copy_from_slice(&[VERSION, self.flags]);
        let (dh, rest) = rest.split_at_mut(KEY_LEN);
        dh.copy_from_slice(&self.dh);
        let (pn, n) = rest.split_at_mut(4);
        pn.copy_from_slice(&self.pn.to_be_bytes());
        n.copy_from_slice(&self.n.to_be_bytes());
        out
    }
}

/// The prelude the initiator sends until the responder has answered: what the
/// responder needs to run X3DH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prelude {
    /// The initiator's ephemeral X25519 public key.
    pub ek: [u8; KEY_LEN],
    /// Id of the responder's signed prekey that was used.
    pub spk_id: u32,
    /// Id of the responder's one-time prekey that was used, if any.
    pub opk_id: Option<u32>,
}

impl Prelude {
    /// The prelude's bytes.
    pub fn to_bytes(&self) -> [u8; PRELUDE_LEN] {
        let mut out = [0u8; PRELUDE_LEN];
        let (ek, rest) = out.split_at_mut(KEY_LEN);
        ek.copy_from_slice(&self.ek);
        let (spk, opk) = rest.split_at_mut(4);
        spk.copy_from_slice(&self.spk_id.to_be_bytes());
        opk.copy_from_slice(&self.opk_id.unwrap_or(NO_OPK).to_be_bytes());
        out
    }

    /// Reads a prelude from exactly [`PRELUDE_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8; PRELUDE_LEN]) -> Self {
        let (ek, rest) = bytes
            .split_first_chunk::<KEY_LEN>()
            .unwrap_or((&[0; KEY_LEN], &[]));
        let (spk, rest) = rest.split_first_chunk::<4>().unwrap_or((&[0; 4], &[]));
        let opk = rest.first_chunk::<4>().copied().unwrap_or([0xff; 4]);
        let opk = u32::from_be_bytes(opk);
        Self {
            ek: *ek,
            spk_id: u32::from_be_bytes(*spk),
            opk_id: (opk != NO_OPK).then_some(opk),
        }
    }
}

/// A received v2 message, split but not decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageView<'a> {
    /// The header.
    pub header: Header,
    /// The prelude, if the header says one follows.
    pub prelude: Option<Prelude>,
    /// Header and prelude as received (they are authenticated as associated data).
    pub authenticated: &'a [u8],
    /// Cipher text and tag.
    pub ciphertext: &'a [u8],
}

/// Splits a v2 message (`relay2.body`, decoded) into header, prelude and cipher text.
pub fn parse(body: &[u8]) -> Result<MessageView<'_>, WireError> {
    if body.len() > MAX_BODY {
        return Err(WireError::TooLong);
    }
    let (fixed, _) = body
        .split_first_chunk::<HEADER_LEN>()
        .ok_or(WireError::TooShort)?;
    let (vf, rest) = fixed.split_first_chunk::<2>().ok_or(WireError::TooShort)?;
    let [version, flags] = *vf;
    if version != VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    if flags & !(FLAG_PRELUDE | FLAG_RESPONDER) != 0 {
        return Err(WireError::BadFlags(flags));
    }
    let (dh, rest) = rest
        .split_first_chunk::<KEY_LEN>()
        .ok_or(WireError::TooShort)?;
    let (pn, rest) = rest.split_first_chunk::<4>().ok_or(WireError::TooShort)?;
    let n = rest.first_chunk::<4>().ok_or(WireError::TooShort)?;
    let header = Header {
        flags,
        dh: *dh,
        pn: u32::from_be_bytes(*pn),
        n: u32::from_be_bytes(*n),
    };
    let auth_len = if flags & FLAG_PRELUDE != 0 {
        HEADER_LEN + PRELUDE_LEN
    } else {
        HEADER_LEN
    };
    if body.len() < auth_len + TAG_LEN {
        return Err(WireError::TooShort);
    }
    let (authenticated, ciphertext) = body.split_at_checked(auth_len).ok_or(WireError::TooShort)?;
    // The authenticated part holds a prelude exactly when the flag says so (auth_len).
    let prelude = authenticated
        .get(HEADER_LEN..)
        .and_then(|p| p.first_chunk())
        .map(Prelude::from_bytes);
    Ok(MessageView {
        header,
        prelude,
        authenticated,
        ciphertext,
    })
}

/// Why a decrypted inner message is refused. The peer sent it (it authenticated), so
/// every variant means the peer's client is broken or hostile.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InnerError {
    /// No bytes at all.
    Empty,
    /// A type byte v2 does not define.
    UnknownType(u8),
    /// The length does not fit the type.
    BadLength,
    /// A text that is not UTF-8.
    NotUtf8,
    /// A text longer than [`MAX_TEXT`] bytes.
    TextTooLong,
    /// A receipt without ids or with more than [`MAX_RECEIPT_IDS`].
    BadReceipt,
    /// An SAS cancel reason other than 1–4.
    BadReason(u8),
}

impl fmt::Display for InnerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty inner message"),
            Self::UnknownType(t) => write!(f, "unknown inner message type {t:#04x}"),
            Self::BadLength => f.write_str("inner message has the wrong length for its type"),
            Self::NotUtf8 => f.write_str("text is not UTF-8"),
            Self::TextTooLong => write!(f, "text longer than {MAX_TEXT} bytes"),
            Self::BadReceipt => {
                write!(f, "receipt must carry 1 to {MAX_RECEIPT_IDS} message ids")
            }
            Self::BadReason(r) => write!(f, "unknown SAS cancel reason {r}"),
        }
    }
}

impl core::error::Error for InnerError {}

/// Why an SAS run was cancelled (`sas_cancel`'s reason byte).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// The user cancelled.
    User = 1,
    /// The codes or the confirmation did not match.
    Mismatch = 2,
    /// An unexpected or malformed SAS message.
    Protocol = 3,
    /// Not completed in time.
    Timeout = 4,
}

impl CancelReason {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::User,
            2 => Self::Mismatch,
            3 => Self::Protocol,
            4 => Self::Timeout,
            _ => return None,
        })
    }
}

/// The ids of a receipt, as received (big-endian `u32`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptIds<'a> {
    raw: &'a [u8],
}

impl<'a> ReceiptIds<'a> {
    /// The ids in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        self.raw
            .chunks_exact(4)
            .filter_map(|c| c.first_chunk::<4>().map(|b| u32::from_be_bytes(*b)))
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.raw.len() / 4
    }

    /// Always false for a parsed receipt (it has at least one id).
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

/// A decrypted inner message (spec §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inner<'a> {
    /// `0x01`: a text, with the sender's id for receipts.
    Text {
        /// The sender's id of this text.
        id: u32,
        /// The text.
        text: &'a str,
    },
    /// `0x02`: the listed texts were received and shown.
    Receipt(ReceiptIds<'a>),
    /// `0x03`: the sender had no session with the recipient when a message of theirs
    /// came (its state was lost): this message starts a new one, and what the
    /// recipient sent in the old one was not read.
    SessionLost,
    /// `0x10`: an SAS run starts; `commit` hides the starter's key.
    SasStart {
        /// Transaction id.
        sid: [u8; SID_LEN],
        /// `SHA256(label || sid || epk_A)`.
        commit: [u8; 32],
    },
    /// `0x11`: the responder's SAS key.
    SasKey {
        /// Transaction id.
        sid: [u8; SID_LEN],
        /// The responder's ephemeral X25519 key.
        epk: [u8; 32],
    },
    /// `0x12`: the starter reveals the key it committed to.
    SasReveal {
        /// Transaction id.
        sid: [u8; SID_LEN],
        /// The starter's ephemeral X25519 key.
        epk: [u8; 32],
    },
    /// `0x13`: the sender's user confirmed that the codes match.
    SasConfirm {
        /// Transaction id.
        sid: [u8; SID_LEN],
        /// The confirmation MAC.
        mac: [u8; 32],
    },
    /// `0x14`: the run is over.
    SasCancel {
        /// Transaction id.
        sid: [u8; SID_LEN],
        /// Why.
        reason: CancelReason,
    },
}

const T_TEXT: u8 = 0x01;
const T_RECEIPT: u8 = 0x02;
const T_SESSION_LOST: u8 = 0x03;
const T_SAS_START: u8 = 0x10;
const T_SAS_KEY: u8 = 0x11;
const T_SAS_REVEAL: u8 = 0x12;
const T_SAS_CONFIRM: u8 = 0x13;
const T_SAS_CANCEL: u8 = 0x14;

/// `sid || 32 bytes`, exactly.
fn sid_and_32(body: &[u8]) -> Result<([u8; SID_LEN], [u8; 32]), InnerError> {
    let (sid, rest) = body
        .split_first_chunk::<SID_LEN>()
        .ok_or(InnerError::BadLength)?;
    let value: [u8; 32] = rest.try_into().map_err(|_| InnerError::BadLength)?;
    Ok((*sid, value))
}

impl<'a> Inner<'a> {
    /// Reads a decrypted inner message.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, InnerError> {
        let (&ty, body) = bytes.split_first().ok_or(InnerError::Empty)?;
        Ok(match ty {
            T_TEXT => {
                let (id, text) = body.split_first_chunk::<4>().ok_or(InnerError::BadLength)?;
                if text.len() > MAX_TEXT {
                    return Err(InnerError::TextTooLong);
                }
                Self::Text {
                    id: u32::from_be_bytes(*id),
                    text: core::str::from_utf8(text).map_err(|_| InnerError::NotUtf8)?,
                }
            }
            T_RECEIPT => {
                let (&count, raw) = body.split_first().ok_or(InnerError::BadLength)?;
                let count = usize::from(count);
                if count == 0 || count > MAX_RECEIPT_IDS {
                    return Err(InnerError::BadReceipt);
                }
                if raw.len() != count * 4 {
                    return Err(InnerError::BadLength);
                }
                Self::Receipt(ReceiptIds { raw })
            }
            T_SESSION_LOST if body.is_empty() => Self::SessionLost,
            T_SESSION_LOST => return Err(InnerError::BadLength),
            T_SAS_START => {
                let (sid, commit) = sid_and_32(body)?;
                Self::SasStart { sid, commit }
            }
            T_SAS_KEY => {
                let (sid, epk) = sid_and_32(body)?;
                Self::SasKey { sid, epk }
            }
            T_SAS_REVEAL => {
                let (sid, epk) = sid_and_32(body)?;
                Self::SasReveal { sid, epk }
            }
            T_SAS_CONFIRM => {
                let (sid, mac) = sid_and_32(body)?;
                Self::SasConfirm { sid, mac }
            }
            T_SAS_CANCEL => {
                let (sid, rest) = body
                    .split_first_chunk::<SID_LEN>()
                    .ok_or(InnerError::BadLength)?;
                let [reason] = *rest else {
                    return Err(InnerError::BadLength);
                };
                Self::SasCancel {
                    sid: *sid,
                    reason: CancelReason::from_byte(reason).ok_or(InnerError::BadReason(reason))?,
                }
            }
            other => return Err(InnerError::UnknownType(other)),
        })
    }

    /// Length of the encoding [`emit`](Self::emit) writes.
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            Self::Text { text, .. } => 4 + text.len(),
            Self::Receipt(ids) => 1 + ids.raw.len(),
            Self::SessionLost => 0,
            Self::SasCancel { .. } => SID_LEN + 1,
            Self::SasStart { .. }
            | Self::SasKey { .. }
            | Self::SasReveal { .. }
            | Self::SasConfirm { .. } => SID_LEN + 32,
        }
    }

    /// Writes the message into the start of `out` and returns its length. A text longer
    /// than [`MAX_TEXT`] is refused; if `out` is too small nothing is written.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, EmitError> {
        if let Self::Text { text, .. } = self
            && text.len() > MAX_TEXT
        {
            return Err(EmitError::TextTooLong);
        }
        let needed = self.encoded_len();
        let dst = out
            .get_mut(..needed)
            .ok_or(EmitError::BufferTooSmall { needed })?;
        let (ty, body) = dst
            .split_first_mut()
            .ok_or(EmitError::BufferTooSmall { needed })?;
        let mut w = Writer { out: body, pos: 0 };
        match self {
            Self::Text { id, text } => {
                *ty = T_TEXT;
                w.put(&id.to_be_bytes());
                w.put(text.as_bytes());
            }
            Self::Receipt(ids) => {
                *ty = T_RECEIPT;
                w.put(&[u8::try_from(ids.len()).unwrap_or(0)]);
                w.put(ids.raw);
            }
            Self::SessionLost => *ty = T_SESSION_LOST,
            Self::SasStart { sid, commit: v }
            | Self::SasKey { sid, epk: v }
            | Self::SasReveal { sid, epk: v }
            | Self::SasConfirm { sid, mac: v } => {
                *ty = match self {
                    Self::SasStart { .. } => T_SAS_START,
                    Self::SasKey { .. } => T_SAS_KEY,
                    Self::SasReveal { .. } => T_SAS_REVEAL,
                    _ => T_SAS_CONFIRM,
                };
                w.put(sid);
                w.put(v);
            }
            Self::SasCancel { sid, reason } => {
                *ty = T_SAS_CANCEL;
                w.put(sid);
                w.put(&[*reason as u8]);
            }
        }
        Ok(needed)
    }
}

/// Writes a receipt for `ids` (1 to [`MAX_RECEIPT_IDS`]) into the start of `out`.
pub fn emit_receipt(ids: &[u32], out: &mut [u8]) -> Result<usize, EmitError> {
    if ids.is_empty() || ids.len() > MAX_RECEIPT_IDS {
        return Err(EmitError::BadReceipt);
    }
    let needed = 2 + 4 * ids.len();
    let dst = out
        .get_mut(..needed)
        .ok_or(EmitError::BufferTooSmall { needed })?;
    let mut w = Writer { out: dst, pos: 0 };
    w.put(&[T_RECEIPT, u8::try_from(ids.len()).unwrap_or(0)]);
    for id in ids {
        w.put(&id.to_be_bytes());
    }
    Ok(needed)
}

/// Why an inner message could not be written. Each is a caller mistake.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitError {
    /// The output buffer is too small; `needed` bytes are required.
    BufferTooSmall {
        /// Bytes required.
        needed: usize,
    },
    /// The text is longer than [`MAX_TEXT`] bytes.
    TextTooLong,
    /// A receipt needs 1 to [`MAX_RECEIPT_IDS`] ids.
    BadReceipt,
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: {needed} bytes needed")
            }
            Self::TextTooLong => write!(f, "text longer than {MAX_TEXT} bytes"),
            Self::BadReceipt => write!(f, "a receipt carries 1 to {MAX_RECEIPT_IDS} ids"),
        }
    }
}

impl core::error::Error for EmitError {}

/// Sequential writes into a slice already checked to be long enough.
struct Writer<'o> {
    out: &'o mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        if let Some(dst) = self.out.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        }
        self.pos = end;
    }
}
