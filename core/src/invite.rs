//! Invites: one line that carries a server's addresses and the pin of its key,
//! `seguro://HOST:PORT[,HOST:PORT...]/v=1/k=ALG:PIN[/b=ALG:PIN][/t=TOKEN]/c=CHECK`.
//!
//! The format is specified in `docs/invite.md`. In short:
//!
//! - **addresses**: one to [`MAX_ADDRESSES`] `host:port` pairs separated by `,`, tried
//!   in order; a host is a DNS name, an IPv4 address or a bracketed IPv6 address;
//! - **`v=1`**: the format version; another version is refused as
//!   [`InviteError::UnknownVersion`] before anything else is checked;
//! - **`k=`**: the pin, `ALG:` then the SHA-256 of the server's SubjectPublicKeyInfo in
//!   unpadded lower-case base32 (RFC 4648, 52 characters); `ALG` names the key type
//!   (`p256`, `rsa`, ...) so that a board can refuse a key it cannot verify before it is
//!   built ([`KeyAlg`]);
//! - **`b=`** (optional): a backup pin, for rotating to a new key;
//! - **`t=`** (optional): a join token, 16 to 64 base32 characters, passed on to the
//!   server;
//! - **`c=`**, always last: four base32 characters holding a weighted sum of every byte
//!   before them (the whole line up to and including `c=`) modulo the prime
//!   [`CHECK_MODULUS`], with weights 1, 2, 3, ... Because the modulus is a prime larger
//!   than any byte difference and than the weights, **every single-byte substitution
//!   and every transposition of two different adjacent bytes changes the sum** (the
//!   change is `w·d` or `(w₁−w₂)·d`, a product of non-zero numbers below a prime); a
//!   change inside the four check characters changes the value they encode, and a
//!   swap of `=` with the first check character makes the check unreadable. Tests
//!   check all of them exhaustively. Other errors (several typos, a dropped character)
//!   go unnoticed with a probability of about one in a million.
//!
//! Parsing never allocates or panics: [`Invite::parse`] borrows from the line and
//! keeps at most [`MAX_ADDRESSES`] addresses; [`Invite`]'s `Display` writes the line,
//! computing the check as it goes.

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};

use sha2::{Digest, Sha256};

/// The scheme every invite starts with.
pub const SCHEME: &str = "seguro://";
/// The longest invite accepted, in bytes.
pub const MAX_LEN: usize = 1024;
/// The most addresses one invite holds.
pub const MAX_ADDRESSES: usize = 8;
/// The format version this module reads and writes.
pub const VERSION: u32 = 1;
/// The prime modulus of the check: the largest prime below 2²⁰, so that the check
/// fits four base32 characters.
pub const CHECK_MODULUS: u32 = 1_048_573;
/// Characters of the check.
pub const CHECK_LEN: usize = 4;
/// Shortest and longest join token, in base32 characters.
pub const TOKEN_LEN: core::ops::RangeInclusive<usize> = 16..=64;
/// Length of a key hash in base32 (32 bytes, unpadded).
pub const PIN_B32_LEN: usize = 52;

/// RFC 4648 base32, lower case.
const B32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn b32_value(c: u8) -> Option<u8> {
    match c {
        b'a'..=b'z' => Some(c - b'a'),
        b'2'..=b'7' => Some(c - b'2' + 26),
        _ => None,
    }
}

fn b32_char(v: u32) -> char {
    char::from(B32.get((v & 31) as usize).copied().unwrap_or(b'a'))
}

/// Why an invite was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InviteError {
    /// It does not start with `seguro://`.
    NotAnInvite,
    /// It is longer than [`MAX_LEN`] bytes.
    TooLong,
    /// It contains a character no invite contains (white space, non-ASCII, ...).
    BadCharacter,
    /// The `/` between the addresses and the fields is missing.
    NoFields,
    /// No address before the first `/`.
    NoAddress,
    /// More than [`MAX_ADDRESSES`] addresses.
    TooManyAddresses,
    /// An address is not `host:port` with a DNS name, an IPv4 address or a bracketed
    /// IPv6 address as host (1-based position in the list).
    BadAddress(u8),
    /// An address's port is not a number from 1 to 65535 (1-based position).
    BadPort(u8),
    /// The first field is not `v=`.
    MissingVersion,
    /// The version is not one this code reads (the number, saturated at `u32::MAX`).
    UnknownVersion(u32),
    /// A field this version does not define.
    UnknownField,
    /// A field appears twice.
    DuplicateField,
    /// The fields are not in the order `v`, `k`, `b`, `t`, `c`.
    MisplacedField,
    /// A field is not `name=value`.
    BadField,
    /// There is no `k=` pin.
    MissingPin,
    /// The `k=` pin is not `ALG:` and 52 base32 characters.
    BadPin,
    /// The `b=` backup pin is not `ALG:` and 52 base32 characters.
    BadBackupPin,
    /// A pin names a key type this version does not know.
    UnknownKeyType,
    /// The `t=` token is not 16 to 64 base32 characters.
    BadToken,
    /// The line does not end with `/c=` and four check characters: it is incomplete.
    MissingChecksum,
    /// The check does not match: a character was changed, swapped, added or dropped.
    BadChecksum,
}

impl fmt::Display for InviteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnInvite => f.write_str("not an invite: it must start with seguro://"),
            Self::TooLong => write!(f, "the invite is longer than {MAX_LEN} characters"),
            Self::BadCharacter => f.write_str(
                "the invite contains a character invites never contain (a space, a line \
                 break, a non-ASCII letter?)",
            ),
            Self::NoFields => f.write_str("the invite has nothing after its addresses"),
            Self::NoAddress => f.write_str("the invite has no server address"),
            Self::TooManyAddresses => {
                write!(f, "the invite has more than {MAX_ADDRESSES} addresses")
            }
            Self::BadAddress(i) => write!(
                f,
                "address {i} of the invite is not host:port (a DNS name, an IPv4 address \
                 or [IPv6], then the port)"
            ),
            Self::BadPort(i) => write!(f, "address {i} of the invite has a bad port (1 to 65535)"),
            Self::MissingVersion => {
                f.write_str("the invite has no version (/v=) after its addresses")
            }
            Self::UnknownVersion(v) => write!(
                f,
                "the invite is of version {v}, this program reads version {VERSION}: update it"
            ),
            Self::UnknownField => f.write_str(
                "the invite has a field this program does not know (is it from a newer version?)",
            ),
            Self::DuplicateField => f.write_str("the invite has a field twice"),
            Self::MisplacedField => {
                f.write_str("the invite's fields are out of order (v=, k=, b=, t=, c=)")
            }
            Self::BadField => f.write_str("the invite has a field that is not name=value"),
            Self::MissingPin => f.write_str("the invite has no key pin (k=)"),
            Self::BadPin => f.write_str(
                "the invite's key pin (k=) is not a key type, ':' and 52 base32 characters",
            ),
            Self::BadBackupPin => f.write_str(
                "the invite's backup pin (b=) is not a key type, ':' and 52 base32 characters",
            ),
            Self::UnknownKeyType => f.write_str("the invite's pin names an unknown key type"),
            Self::BadToken => {
                f.write_str("the invite's join token (t=) is not 16 to 64 base32 characters")
            }
            Self::MissingChecksum => f.write_str(
                "the invite does not end with its check (/c= and 4 characters): it is \
                 incomplete, copy all of it",
            ),
            Self::BadChecksum => f.write_str(
                "the invite's check does not match: a character was mistyped, swapped, added \
                 or left out; copy the invite again",
            ),
        }
    }
}

/// The type of a server key, as named in a pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyAlg {
    /// ECDSA on P-256 (secp256r1): what `seguro gen-cert` makes, and what boards need.
    P256,
    /// ECDSA on P-384.
    P384,
    /// ECDSA on P-521.
    P521,
    /// RSA (`rsaEncryption` or RSASSA-PSS).
    Rsa,
    /// Ed25519.
    Ed25519,
    /// Ed448.
    Ed448,
    /// Any other key type.
    Other,
}

impl KeyAlg {
    const ALL: [KeyAlg; 7] = [
        Self::P256,
        Self::P384,
        Self::P521,
        Self::Rsa,
        Self::Ed25519,
        Self::Ed448,
        Self::Other,
    ];

    /// The label in an invite: `p256`, `p384`, `p521`, `rsa`, `ed25519`, `ed448`, `other`.
    pub const fn label(self) -> &'static str {
        match self {
            Self::P256 => "p256",
            Self::P384 => "p384",
            Self::P521 => "p521",
            Self::Rsa => "rsa",
            Self::Ed25519 => "ed25519",
            Self::Ed448 => "ed448",
            Self::Other => "other",
        }
    }

    /// The key type of a label.
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.label() == label)
    }
}

impl fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A SubjectPublicKeyInfo that is not DER this module can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedSpki;

impl fmt::Display for MalformedSpki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the public key (SubjectPublicKeyInfo) is not valid DER")
    }
}

/// One DER element: tag, content and what follows.
fn der_tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), MalformedSpki> {
    let (&tag, rest) = input.split_first().ok_or(MalformedSpki)?;
    let (&first, mut rest) = rest.split_first().ok_or(MalformedSpki)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return Err(MalformedSpki);
        }
        let (bytes, after) = rest.split_at_checked(count).ok_or(MalformedSpki)?;
        rest = after;
        bytes.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b))
    };
    let (content, rest) = rest.split_at_checked(len).ok_or(MalformedSpki)?;
    Ok((tag, content, rest))
}

const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_ED448: &[u8] = &[0x2b, 0x65, 0x71];

/// A key pin: the key's type and the SHA-256 of its DER SubjectPublicKeyInfo.
///
/// Text form: `ALG:` and the hash in unpadded lower-case base32, e.g. `p256:mfrg...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyPin {
    /// The key type (only a label: the hash covers the key's algorithm too).
    pub alg: KeyAlg,
    /// SHA-256 of the DER SubjectPublicKeyInfo (the `SEQUENCE` with its header).
    pub sha256: [u8; 32],
}

impl KeyPin {
    /// The pin of a DER SubjectPublicKeyInfo (with its outer `SEQUENCE` header), as in
    /// a certificate. The key type is read from its AlgorithmIdentifier.
    pub fn of_spki(spki: &[u8]) -> Result<Self, MalformedSpki> {
        let (tag, content, rest) = der_tlv(spki)?;
        if tag != 0x30 || !rest.is_empty() {
            return Err(MalformedSpki);
        }
        let (tag, algorithm, after_alg) = der_tlv(content)?;
        if tag != 0x30 {
            return Err(MalformedSpki);
        }
        let (tag, _bits, tail) = der_tlv(after_alg)?;
        if tag != 0x03 || !tail.is_empty() {
            return Err(MalformedSpki);
        }
        let (tag, oid, params) = der_tlv(algorithm)?;
        if tag != 0x06 {
            return Err(MalformedSpki);
        }
        let alg = if oid == OID_EC_PUBLIC_KEY {
            match der_tlv(params) {
                Ok((0x06, c, _)) if c == OID_P256 => KeyAlg::P256,
                Ok((0x06, c, _)) if c == OID_P384 => KeyAlg::P384,
                Ok((0x06, c, _)) if c == OID_P521 => KeyAlg::P521,
                _ => KeyAlg::Other,
            }
        } else if oid == OID_RSA || oid == OID_RSA_PSS {
            KeyAlg::Rsa
        } else if oid == OID_ED25519 {
            KeyAlg::Ed25519
        } else if oid == OID_ED448 {
            KeyAlg::Ed448
        } else {
            KeyAlg::Other
        };
        Ok(Self {
            alg,
            sha256: Sha256::digest(spki).into(),
        })
    }

    /// Does `spki` (DER, with its header) hash to this pin?
    pub fn matches_spki(&self, spki: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(spki).into();
        digest == self.sha256
    }

    /// Reads the text form `ALG:BASE32`.
    pub fn parse(s: &str) -> Result<Self, InviteError> {
        let (label, hash) = s.split_once(':').ok_or(InviteError::BadPin)?;
        let alg = KeyAlg::from_label(label).ok_or(InviteError::UnknownKeyType)?;
        let sha256 = decode_hash(hash.as_bytes()).ok_or(InviteError::BadPin)?;
        Ok(Self { alg, sha256 })
    }
}

impl fmt::Display for KeyPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.alg)?;
        // 32 bytes = 256 bits = 51 full 5-bit groups and one of 1 bit (padded with 0).
        let mut acc: u32 = 0;
        let mut bits = 0u32;
        for &b in &self.sha256 {
            acc = (acc << 8) | u32::from(b);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                fmt::Write::write_char(f, b32_char(acc >> bits))?;
            }
            acc &= (1 << bits) - 1;
        }
        if bits > 0 {
            fmt::Write::write_char(f, b32_char(acc << (5 - bits)))?;
        }
        Ok(())
    }
}

/// 52 base32 characters → 32 bytes; the 4 unused bits of the last one must be zero,
/// so every hash has exactly one text form.
fn decode_hash(text: &[u8]) -> Option<[u8; 32]> {
    if text.len() != PIN_B32_LEN {
        return None;
    }
    let mut out = [0u8; 32];
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut n = 0usize;
    for &c in text {
        acc = (acc << 5) | u32::from(b32_value(c)?);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(n)? = (acc >> bits) as u8;
            n += 1;
            acc &= (1 << bits) - 1;
        }
    }
    (n == 32 && acc == 0).then_some(out)
}

/// A server's host: a DNS name, an IPv4 or an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    /// A DNS name (letters, digits, `-` and `.`).
    Name(&'a str),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address (bracketed in the text form).
    Ipv6(Ipv6Addr),
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::Ipv4(a) => write!(f, "{a}"),
            Self::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

/// One `host:port` of an invite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address<'a> {
    /// The host.
    pub host: Host<'a>,
    /// The TCP port (never 0).
    pub port: u16,
}

impl fmt::Display for Address<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Why `host:port` was refused: the host, or the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressError {
    /// The host is not a DNS name, an IPv4 address or a bracketed IPv6 address (or
    /// there is no `:port`).
    Host,
    /// The port is not a number from 1 to 65535.
    Port,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host => {
                f.write_str("expected host:port, the host a DNS name, an IPv4 address or [IPv6]")
            }
            Self::Port => f.write_str("the port must be a number from 1 to 65535"),
        }
    }
}

/// A fixed-capacity text buffer.
struct Fixed<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Fixed<N> {
    fn new() -> Self {
        Self {
            bytes: [0; N],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }
}

impl<const N: usize> fmt::Write for Fixed<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        self.bytes
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn is_dns_name(s: &str) -> bool {
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let labels_ok = s.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    // All digits and dots: it must then be an IPv4 address, not a name.
    labels_ok && !s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

impl<'a> Address<'a> {
    /// Reads `host:port`: `name:port`, `a.b.c.d:port` or `[v6]:port`.
    pub fn parse(s: &'a str) -> Result<Self, AddressError> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (v6, port) = rest.split_once("]:").ok_or(AddressError::Host)?;
            let a: Ipv6Addr = v6.parse().map_err(|_| AddressError::Host)?;
            // Only the canonical text (RFC 5952, as `Display` writes it), so that every
            // invite has one text form.
            let mut canon = Fixed::<39>::new();
            fmt::write(&mut canon, format_args!("{a}")).map_err(|_| AddressError::Host)?;
            if canon.as_bytes() != v6.as_bytes() {
                return Err(AddressError::Host);
            }
            (Host::Ipv6(a), port)
        } else {
            let (host, port) = s.rsplit_once(':').ok_or(AddressError::Host)?;
            let host = if let Ok(a) = host.parse::<Ipv4Addr>() {
                Host::Ipv4(a)
            } else if is_dns_name(host) {
                Host::Name(host)
            } else {
                return Err(AddressError::Host);
            };
            (host, port)
        };
        // Decimal without sign or leading zeros, so that every port has one text form.
        if port.is_empty()
            || port.len() > 5
            || port.starts_with('0')
            || !port.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(AddressError::Port);
        }
        let port: u16 = port.parse().map_err(|_| AddressError::Port)?;
        Ok(Self { host, port })
    }
}

/// A join token: 16 to 64 base32 characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a>(&'a str);

impl<'a> Token<'a> {
    /// Checks `s` is 16 to 64 lower-case base32 characters.
    pub fn new(s: &'a str) -> Result<Self, InviteError> {
        if TOKEN_LEN.contains(&s.len()) && s.bytes().all(|b| b32_value(b).is_some()) {
            Ok(Self(s))
        } else {
            Err(InviteError::BadToken)
        }
    }

    /// The token's text.
    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

/// A parsed (or to-be-written) invite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite<'a> {
    addresses: heapless::Vec<Address<'a>, MAX_ADDRESSES>,
    pin: KeyPin,
    backup: Option<KeyPin>,
    token: Option<Token<'a>>,
}

/// Why an invite could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// No address given.
    NoAddress,
    /// More than [`MAX_ADDRESSES`] addresses.
    TooManyAddresses,
    /// The line would be longer than [`MAX_LEN`].
    TooLong,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoAddress => f.write_str("an invite needs at least one address"),
            Self::TooManyAddresses => {
                write!(f, "an invite holds at most {MAX_ADDRESSES} addresses")
            }
            Self::TooLong => write!(f, "the invite would be longer than {MAX_LEN} characters"),
        }
    }
}

/// Counts bytes written, to bound an invite's length before writing it.
struct Count(usize);

impl fmt::Write for Count {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 = self.0.saturating_add(s.len());
        Ok(())
    }
}

/// The check state: position and weighted sum of the bytes so far.
#[derive(Debug, Clone, Copy, Default)]
struct Check {
    pos: u32,
    sum: u32,
}

impl Check {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            // Weights 1, 2, ..., p−1, then 1 again: never 0 mod p, and two neighbours
            // always differ (lines are far shorter than p anyway).
            let w = (self.pos % (CHECK_MODULUS - 1)) + 1;
            let term = (u64::from(w) * u64::from(b)) % u64::from(CHECK_MODULUS);
            self.sum = ((u64::from(self.sum) + term) % u64::from(CHECK_MODULUS)) as u32;
            self.pos = self.pos.wrapping_add(1);
        }
    }
}

/// The check of `body` (everything before the four check characters).
pub fn check_value(body: &[u8]) -> u32 {
    let mut c = Check::default();
    c.feed(body);
    c.sum
}

/// A writer that feeds the check as the text passes through.
struct Checked<'w, W> {
    inner: &'w mut W,
    check: Check,
}

impl<W: fmt::Write> fmt::Write for Checked<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.check.feed(s.as_bytes());
        self.inner.write_str(s)
    }
}

fn write_check<W: fmt::Write>(w: &mut W, value: u32) -> fmt::Result {
    for i in (0..CHECK_LEN as u32).rev() {
        w.write_char(b32_char(value >> (5 * i)))?;
    }
    Ok(())
}

/// Four base32 characters → the value, if below the modulus.
fn read_check(text: &[u8]) -> Option<u32> {
    if text.len() != CHECK_LEN {
        return None;
    }
    let v = text
        .iter()
        .try_fold(0u32, |acc, &c| Some((acc << 5) | u32::from(b32_value(c)?)))?;
    (v < CHECK_MODULUS).then_some(v)
}

impl<'a> Invite<'a> {
    /// An invite for `addresses` (tried in this order) and the server key `pin`.
    pub fn new(addresses: &[Address<'a>], pin: KeyPin) -> Result<Self, BuildError> {
        if addresses.is_empty() {
            return Err(BuildError::NoAddress);
        }
        let addresses =
            heapless::Vec::from_slice(addresses).map_err(|_| BuildError::TooManyAddresses)?;
        let invite = Self {
            addresses,
            pin,
            backup: None,
            token: None,
        };
        invite.check_len()?;
        Ok(invite)
    }

    /// Adds a backup pin (a key the server may switch to).
    pub fn with_backup(mut self, backup: KeyPin) -> Result<Self, BuildError> {
        self.backup = Some(backup);
        self.check_len()?;
        Ok(self)
    }

    /// Adds a join token.
    pub fn with_token(mut self, token: Token<'a>) -> Result<Self, BuildError> {
        self.token = Some(token);
        self.check_len()?;
        Ok(self)
    }

    fn check_len(&self) -> Result<(), BuildError> {
        let mut c = Count(0);
        fmt::write(&mut c, format_args!("{self}")).map_err(|_| BuildError::TooLong)?;
        if c.0 > MAX_LEN {
            Err(BuildError::TooLong)
        } else {
            Ok(())
        }
    }

    /// The server's addresses, in the order to try them.
    pub fn addresses(&self) -> &[Address<'a>] {
        &self.addresses
    }

    /// The pin of the server's key.
    pub fn pin(&self) -> KeyPin {
        self.pin
    }

    /// The backup pin, if any.
    pub fn backup(&self) -> Option<KeyPin> {
        self.backup
    }

    /// The pins a server may match: the pin, then the backup.
    pub fn pins(&self) -> impl Iterator<Item = KeyPin> + '_ {
        core::iter::once(self.pin).chain(self.backup)
    }

    /// The join token, if any.
    pub fn token(&self) -> Option<Token<'a>> {
        self.token
    }

    /// Reads an invite. White space around it is ignored; nothing else is.
    ///
    /// Checks, in this order: the scheme, the length and characters, the version (so
    /// that a newer format is reported as such), the structure (addresses, fields), and
    /// last the check characters.
    pub fn parse(line: &'a str) -> Result<Self, InviteError> {
        let line = line.trim();
        let rest = line.strip_prefix(SCHEME).ok_or(InviteError::NotAnInvite)?;
        if line.len() > MAX_LEN {
            return Err(InviteError::TooLong);
        }
        if !line.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InviteError::BadCharacter);
        }
        let (addrs, fields) = rest.split_once('/').ok_or(InviteError::NoFields)?;

        // The version first: a newer format may differ in everything after it.
        let mut parts = fields.split('/');
        let first = parts.next().unwrap_or("");
        let version = first
            .strip_prefix("v=")
            .ok_or(InviteError::MissingVersion)?;
        if version != "1" {
            // Another number (without leading zeros: one text form per version), or not
            // a number at all.
            let canonical = !version.is_empty()
                && !version.starts_with('0')
                && version.bytes().all(|b| b.is_ascii_digit());
            return Err(if canonical {
                InviteError::UnknownVersion(version.parse::<u32>().unwrap_or(u32::MAX))
            } else {
                InviteError::BadField
            });
        }

        let mut addresses = heapless::Vec::new();
        if addrs.is_empty() {
            return Err(InviteError::NoAddress);
        }
        for (i, a) in addrs.split(',').enumerate() {
            let n = u8::try_from(i + 1).unwrap_or(u8::MAX);
            let addr = Address::parse(a).map_err(|e| match e {
                AddressError::Port => InviteError::BadPort(n),
                _ => InviteError::BadAddress(n),
            })?;
            addresses
                .push(addr)
                .map_err(|_| InviteError::TooManyAddresses)?;
        }

        let mut pin = None;
        let mut backup = None;
        let mut token = None;
        let mut check = None;
        // Fields come in the order k, b, t (one text form per invite).
        let mut last = 0u8;
        for part in parts {
            if check.is_some() {
                // `c=` must be the last field.
                return Err(InviteError::MissingChecksum);
            }
            let (name, value) = part.split_once('=').ok_or(InviteError::BadField)?;
            let rank = match name {
                "k" => 1,
                "b" => 2,
                "t" => 3,
                _ => 4,
            };
            if rank < 4 {
                if rank == last {
                    return Err(InviteError::DuplicateField);
                }
                if rank < last {
                    return Err(InviteError::MisplacedField);
                }
                last = rank;
            }
            match name {
                "k" => {
                    if pin.is_some() {
                        return Err(InviteError::DuplicateField);
                    }
                    pin = Some(KeyPin::parse(value)?);
                }
                "b" => {
                    if backup.is_some() {
                        return Err(InviteError::DuplicateField);
                    }
                    backup = Some(KeyPin::parse(value).map_err(|e| match e {
                        InviteError::BadPin => InviteError::BadBackupPin,
                        e => e,
                    })?);
                }
                "t" => {
                    if token.is_some() {
                        return Err(InviteError::DuplicateField);
                    }
                    token = Some(Token::new(value)?);
                }
                "c" => check = Some(value),
                "v" => return Err(InviteError::DuplicateField),
                _ => return Err(InviteError::UnknownField),
            }
        }
        let check = check.ok_or(InviteError::MissingChecksum)?;
        let pin = pin.ok_or(InviteError::MissingPin)?;
        if check.len() < CHECK_LEN {
            // Cut short when copied: say so rather than "mistyped".
            return Err(InviteError::MissingChecksum);
        }
        let expected = read_check(check.as_bytes()).ok_or(InviteError::BadChecksum)?;
        let body = line
            .as_bytes()
            .get(..line.len() - CHECK_LEN)
            .ok_or(InviteError::MissingChecksum)?;
        if check_value(body) != expected {
            return Err(InviteError::BadChecksum);
        }
        Ok(Self {
            addresses,
            pin,
            backup,
            token,
        })
    }
}

impl fmt::Display for Invite<'_> {
    /// The invite line, check included.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut w = Checked {
            inner: f,
            check: Check::default(),
        };
        fmt::Write::write_str(&mut w, SCHEME)?;
        for (i, a) in self.addresses.iter().enumerate() {
            if i > 0 {
                fmt::Write::write_str(&mut w, ",")?;
            }
            fmt::write(&mut w, format_args!("{a}"))?;
        }
        fmt::write(&mut w, format_args!("/v={VERSION}/k={}", self.pin))?;
        if let Some(b) = self.backup {
            fmt::write(&mut w, format_args!("/b={b}"))?;
        }
        if let Some(t) = self.token {
            fmt::write(&mut w, format_args!("/t={}", t.as_str()))?;
        }
        fmt::Write::write_str(&mut w, "/c=")?;
        let value = w.check.sum;
        write_check(w.inner, value)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;
    use std::string::{String, ToString};

    fn pin(seed: u8, alg: KeyAlg) -> KeyPin {
        let mut sha256 = [0u8; 32];
        for (i, b) in sha256.iter_mut().enumerate() {
            *b = seed.wrapping_mul(31).wrapping_add(i as u8 * 7);
        }
        KeyPin { alg, sha256 }
    }

    fn sample() -> Invite<'static> {
        let addrs = [
            Address::parse("0.tcp.eu.ngrok.io:12345").unwrap(),
            Address::parse("192.168.1.20:5000").unwrap(),
            Address::parse("[fd00::1]:5000").unwrap(),
        ];
        Invite::new(&addrs, pin(1, KeyAlg::P256))
            .unwrap()
            .with_backup(pin(2, KeyAlg::Rsa))
            .unwrap()
            .with_token(Token::new("abcdefghijklmnop234567").unwrap())
            .unwrap()
    }

    fn minimal() -> Invite<'static> {
        Invite::new(&[Address::parse("h:1").unwrap()], pin(0, KeyAlg::P256)).unwrap()
    }

    #[test]
    fn round_trip() {
        let inv = sample();
        let text = inv.to_string();
        let back = Invite::parse(&text).unwrap();
        assert_eq!(back, inv);
        assert_eq!(back.to_string(), text);
        assert!(text.starts_with(
            "seguro://0.tcp.eu.ngrok.io:12345,192.168.1.20:5000,[fd00::1]:5000/v=1/k=p256:"
        ));
        assert_eq!(
            back.pins().collect::<std::vec::Vec<_>>(),
            [inv.pin(), pin(2, KeyAlg::Rsa)]
        );
        assert_eq!(back.token().unwrap().as_str(), "abcdefghijklmnop234567");
    }

    #[test]
    fn minimal_invite() {
        let a = [Address::parse("localhost:5000").unwrap()];
        let inv = Invite::new(&a, pin(9, KeyAlg::P256)).unwrap();
        let text = inv.to_string();
        // scheme + "localhost:5000" + "/v=1/k=p256:" + 52 + "/c=" + 4
        assert_eq!(text.len(), 9 + 14 + 12 + 52 + 3 + 4);
        let back = Invite::parse(&text).unwrap();
        assert_eq!(back.addresses(), &a);
        assert_eq!(back.backup(), None);
        assert_eq!(back.token(), None);
        assert_eq!(back.pins().count(), 1);
    }

    /// Every single-character substitution, by every printable ASCII character, and
    /// every transposition of two different neighbours, anywhere in the line, is refused.
    #[test]
    fn every_substitution_and_transposition_is_caught() {
        for inv in [sample(), minimal()] {
            let text = inv.to_string();
            let orig = text.as_bytes();
            let n = orig.len();
            let mut tried = 0usize;
            for i in 0..n {
                for c in 0x21u8..=0x7e {
                    if c == orig[i] {
                        continue;
                    }
                    let mut bytes = orig.to_vec();
                    bytes[i] = c;
                    let s = core::str::from_utf8(&bytes).unwrap();
                    assert!(Invite::parse(s).is_err(), "substitution at {i}: {s}");
                    tried += 1;
                }
                if i + 1 < n && orig[i] != orig[i + 1] {
                    let mut bytes = orig.to_vec();
                    bytes.swap(i, i + 1);
                    let s = core::str::from_utf8(&bytes).unwrap();
                    assert!(Invite::parse(s).is_err(), "transposition at {i}: {s}");
                    tried += 1;
                }
            }
            assert!(tried > n * 90, "{tried}");
        }
    }

    /// The check alone (not the parser's structure rules) catches them, for any byte:
    /// after every change, the check characters no longer read back to the check of
    /// the body.
    #[test]
    fn the_check_itself_detects_substitutions_and_transpositions() {
        for inv in [sample(), minimal()] {
            let text = inv.to_string();
            let orig = text.as_bytes();
            let n = orig.len();
            let body = n - CHECK_LEN;
            assert_eq!(read_check(&orig[body..]), Some(check_value(&orig[..body])));
            for i in 0..n {
                for c in 0u8..=255 {
                    if c == orig[i] {
                        continue;
                    }
                    let mut bytes = orig.to_vec();
                    bytes[i] = c;
                    let read = read_check(&bytes[body..]);
                    assert_ne!(read, Some(check_value(&bytes[..body])), "at {i}");
                }
                if i + 1 < n && orig[i] != orig[i + 1] {
                    let mut bytes = orig.to_vec();
                    bytes.swap(i, i + 1);
                    let read = read_check(&bytes[body..]);
                    assert_ne!(read, Some(check_value(&bytes[..body])), "swap at {i}");
                }
            }
        }
    }

    #[test]
    fn check_weights_and_encoding() {
        assert_eq!(check_value(b""), 0);
        assert_eq!(check_value(b"a"), 97);
        assert_eq!(check_value(b"ab"), 97 + 2 * 98);
        // Swapping two different bytes changes the sum.
        assert_ne!(check_value(b"ab"), check_value(b"ba"));
        let mut s = String::new();
        write_check(&mut s, CHECK_MODULUS - 1).unwrap();
        assert_eq!(read_check(s.as_bytes()), Some(CHECK_MODULUS - 1));
        // Values at or above the modulus are not checks.
        assert_eq!(read_check(b"7777"), None);
        assert_eq!(read_check(b"aaa"), None);
        assert_eq!(read_check(b"aaab"), Some(1));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let s = sample().to_string();
        let parse = |t: &str| Invite::parse(t).map(|_| ());
        assert_eq!(parse("https://example.org"), Err(InviteError::NotAnInvite));
        // A newer version is reported as such, whatever follows.
        assert_eq!(
            parse("seguro://h:1/v=2/x=y"),
            Err(InviteError::UnknownVersion(2))
        );
        assert_eq!(
            parse(&s.replace("v=1", "v=12")),
            Err(InviteError::UnknownVersion(12))
        );
        assert_eq!(parse("seguro://h:1/v=x"), Err(InviteError::BadField));
        assert_eq!(parse(&s.replace("v=1", "v=01")), Err(InviteError::BadField));
        assert_eq!(
            parse("seguro://h:1/v=99999999999"),
            Err(InviteError::UnknownVersion(u32::MAX))
        );
        assert_eq!(parse("seguro://h:1/k=x"), Err(InviteError::MissingVersion));
        assert_eq!(parse("seguro://h:1"), Err(InviteError::NoFields));
        assert_eq!(parse("seguro:///v=1"), Err(InviteError::NoAddress));
        assert_eq!(parse("seguro://h:1 /v=1"), Err(InviteError::BadCharacter));
        assert_eq!(
            parse(&format!("{s}x").repeat(20)),
            Err(InviteError::TooLong)
        );
        // Truncated: the check is gone, or part of it.
        assert_eq!(parse(&s[..s.len() - 8]), Err(InviteError::MissingChecksum));
        assert_eq!(parse(&s[..s.len() - 1]), Err(InviteError::MissingChecksum));
        assert_eq!(parse(&format!("{s}a")), Err(InviteError::BadChecksum));
        assert_eq!(
            parse(&s.replace("12345", "123456")),
            Err(InviteError::BadPort(1))
        );
        assert_eq!(
            parse(&s.replace("12345", "0")),
            Err(InviteError::BadPort(1))
        );
        assert_eq!(
            parse(&s.replace("192.168.1.20", "192.168.1.300")),
            Err(InviteError::BadAddress(2))
        );
        assert_eq!(
            parse(&s.replace("/k=p256", "/k=p257")),
            Err(InviteError::UnknownKeyType)
        );
        assert_eq!(
            parse(&s.replace("/t=", "/q=")),
            Err(InviteError::UnknownField)
        );
        assert_eq!(
            parse(&s.replace("/t=", "/k=")),
            Err(InviteError::MisplacedField)
        );
        assert_eq!(
            parse(&s.replace("/t=", "/t=abcdefghijklmnop/t=")),
            Err(InviteError::DuplicateField)
        );
        assert_eq!(
            parse(&s.replace("/v=1/", "/v=1/v=1/")),
            Err(InviteError::DuplicateField)
        );
        assert_eq!(parse(&s.replace("/t=", "/")), Err(InviteError::BadField));
        assert_eq!(
            parse(&s.replace("/b=rsa:", "/b=rsa:a")),
            Err(InviteError::BadBackupPin)
        );
        assert_eq!(
            parse(&s.replace("/k=p256:", "/k=p256:a")),
            Err(InviteError::BadPin)
        );
        assert_eq!(
            parse(&s.replace("/t=abcdefghijklmnop", "/t=abc")),
            Err(InviteError::BadToken)
        );
        // `c=` must come last.
        assert_eq!(
            parse(&format!("{s}/t=abcdefghijklmnop")),
            Err(InviteError::MissingChecksum)
        );
        // A well-formed line whose check does not match.
        assert_eq!(
            parse(&s.replace("ngrok", "ngrak")),
            Err(InviteError::BadChecksum)
        );
        // Surrounding white space is fine.
        assert!(parse(&format!("  {s}\n")).is_ok());
        // Every error has a message.
        for e in [InviteError::BadChecksum, InviteError::BadAddress(3)] {
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn no_panic_on_any_prefix_or_garbage() {
        let s = sample().to_string();
        for end in 0..s.len() {
            assert!(Invite::parse(&s[..end]).is_err());
        }
        for g in [
            "",
            "seguro://",
            "seguro:///",
            "seguro://,/v=1",
            "seguro://[::1/v=1",
            "seguro://[::1]/v=1",
            "seguro://a:1/v=1////",
            "seguro://a:1/v=1/c=",
            "seguro://a:1/v=1/c=zzzz/k=p256:",
            "seguro://é:1/v=1",
            "seguro://a:1/v=1/k=p256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/c=",
        ] {
            assert!(Invite::parse(g).is_err(), "{g}");
        }
    }

    #[test]
    fn addresses() {
        assert!(matches!(
            Address::parse("0.tcp.eu.ngrok.io:1").unwrap().host,
            Host::Name("0.tcp.eu.ngrok.io")
        ));
        assert!(matches!(
            Address::parse("10.0.0.1:1").unwrap().host,
            Host::Ipv4(_)
        ));
        assert!(matches!(
            Address::parse("[::1]:65535").unwrap(),
            Address {
                host: Host::Ipv6(_),
                port: 65535
            }
        ));
        assert_eq!(Address::parse("[::1]:5").unwrap().to_string(), "[::1]:5");
        for bad in [
            "h", "h:", ":1", "h:65536", "h:01", "h:+1", "-h:1", "h-:1", "a..b:1", "1.2.3:1",
            "a_b:1", "::1:5", "[::1:5", "[nope]:1",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Address::parse("h:0"), Err(AddressError::Port));
        // IPv6 in its canonical text only.
        assert!(Address::parse("[fd00::1]:1").is_ok());
        assert_eq!(Address::parse("[fd00:0::1]:1"), Err(AddressError::Host));
        assert_eq!(Address::parse("[FD00::1]:1"), Err(AddressError::Host));
        assert_eq!(Address::parse("h h:1"), Err(AddressError::Host));
        let a = "a".repeat(63);
        let long = format!("{a}.{a}.{a}.{}:1", "b".repeat(61));
        assert!(Address::parse(&long).is_ok());
        let too_long = format!("{a}.{a}.{a}.{}:1", "b".repeat(62));
        assert!(Address::parse(&too_long).is_err());
        assert!(Address::parse(&format!("{}:1", "a".repeat(64))).is_err());
    }

    #[test]
    fn too_many_addresses_and_too_long() {
        let a = [Address::parse("h:1").unwrap(); MAX_ADDRESSES + 1];
        assert_eq!(
            Invite::new(&a, pin(0, KeyAlg::P256)),
            Err(BuildError::TooManyAddresses)
        );
        assert_eq!(
            Invite::new(&[], pin(0, KeyAlg::P256)),
            Err(BuildError::NoAddress)
        );
        let l = "a".repeat(63);
        let long = format!("{l}.{l}.{l}.{}:65535", "b".repeat(61));
        let a = [Address::parse(&long).unwrap(); MAX_ADDRESSES];
        assert_eq!(
            Invite::new(&a, pin(0, KeyAlg::P256)),
            Err(BuildError::TooLong)
        );
        let nine = ["h:1"; MAX_ADDRESSES + 1].join(",");
        assert_eq!(
            Invite::parse(&format!("seguro://{nine}/v=1/c=aaaa")),
            Err(InviteError::TooManyAddresses)
        );
    }

    #[test]
    fn pin_text_form() {
        let p = KeyPin {
            alg: KeyAlg::P256,
            sha256: [0xff; 32],
        };
        let t = p.to_string();
        assert_eq!(t.len(), 5 + PIN_B32_LEN);
        assert!(t.ends_with("7777q"), "{t}");
        assert_eq!(KeyPin::parse(&t), Ok(p));
        // The last character's unused bits must be zero: one text per hash.
        let other = format!("{}r", &t[..t.len() - 1]);
        assert_eq!(KeyPin::parse(&other), Err(InviteError::BadPin));
        // RFC 4648 test vector: "foobar" → MZXW6YTBOI.
        let mut h = [0u8; 32];
        h[..6].copy_from_slice(b"foobar");
        let t = KeyPin {
            alg: KeyAlg::Rsa,
            sha256: h,
        }
        .to_string();
        assert!(t.starts_with("rsa:mzxw6ytboi"), "{t}");
        for alg in KeyAlg::ALL {
            assert_eq!(KeyAlg::from_label(alg.label()), Some(alg));
        }
        assert_eq!(KeyPin::parse("p256"), Err(InviteError::BadPin));
    }

    #[test]
    fn spki_classification() {
        // P-256 SPKI header: SEQUENCE { SEQUENCE { ecPublicKey, prime256v1 }, BIT STRING }.
        let mut spki = [0u8; 91];
        spki[..27].copy_from_slice(&[
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
        ]);
        let p = KeyPin::of_spki(&spki).unwrap();
        assert_eq!(p.alg, KeyAlg::P256);
        assert!(p.matches_spki(&spki));
        let mut other = spki;
        other[90] = 1;
        assert!(!p.matches_spki(&other));
        // Ed25519: SEQUENCE { SEQUENCE { 1.3.101.112 }, BIT STRING (33) }.
        let mut ed = [0u8; 44];
        ed[..12].copy_from_slice(&[
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ]);
        assert_eq!(KeyPin::of_spki(&ed).unwrap().alg, KeyAlg::Ed25519);
        ed[8] = 0x71;
        assert_eq!(KeyPin::of_spki(&ed).unwrap().alg, KeyAlg::Ed448);
        ed[8] = 0x72;
        assert_eq!(KeyPin::of_spki(&ed).unwrap().alg, KeyAlg::Other);
        for len in 0..spki.len() {
            assert!(KeyPin::of_spki(&spki[..len]).is_err());
        }
        assert_eq!(KeyPin::of_spki(b"junk"), Err(MalformedSpki));
    }
    /// `tag`, the DER length `len` written as `form` (0: short; 1 to 5: that many length
    /// bytes after 0x80 | count), then `content`.
    fn tlv(tag: u8, form: usize, content: &[u8]) -> std::vec::Vec<u8> {
        let mut v = std::vec![tag];
        let len = content.len();
        if form == 0 {
            v.push(len as u8);
        } else {
            v.push(0x80 | form as u8);
            for i in (0..form).rev() {
                v.push(if i < 8 { (len >> (8 * i)) as u8 } else { 0 });
            }
        }
        v.extend_from_slice(content);
        v
    }

    /// An Ed25519-labelled SPKI whose key bits are `bits` bytes, outer length in `form`.
    fn ed_spki(form: usize, bits: usize) -> std::vec::Vec<u8> {
        let mut body = std::vec![0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
        let mut key = std::vec![0u8; bits + 1];
        key[1] = 0x42;
        body.extend(tlv(0x03, if bits + 1 < 0x80 { 0 } else { 2 }, &key));
        tlv(0x30, form, &body)
    }

    #[test]
    fn spki_lengths_in_every_der_form_and_only_those() {
        // Short form, then one to four length bytes: the same key, read alike.
        for form in 0..=4 {
            let spki = ed_spki(form, 32);
            let p = KeyPin::of_spki(&spki).unwrap_or_else(|e| panic!("form {form}: {e:?}"));
            assert_eq!(p.alg, KeyAlg::Ed25519);
            assert!(p.matches_spki(&spki));
        }
        // Five length bytes: more than this reader takes.
        assert_eq!(KeyPin::of_spki(&ed_spki(5, 32)), Err(MalformedSpki));
        // Lengths of two bytes with a high byte (RSA keys are this long).
        let long = ed_spki(2, 300);
        assert_eq!(&long[..4], &[0x30, 0x82, 0x01, 0x38]);
        assert_eq!(KeyPin::of_spki(&long).unwrap().alg, KeyAlg::Ed25519);
        // 0x80 alone is BER's indefinite length, not DER: refused even when exactly 128
        // bytes of a valid body follow.
        let body = &ed_spki(0, 118)[2..];
        assert_eq!(body.len(), 128);
        let mut indefinite = std::vec![0x30, 0x80];
        indefinite.extend_from_slice(body);
        assert_eq!(KeyPin::of_spki(&indefinite), Err(MalformedSpki));
        let mut definite = std::vec![0x30, 0x81, 0x80];
        definite.extend_from_slice(body);
        assert!(KeyPin::of_spki(&definite).is_ok());
    }

    #[test]
    fn spki_structure_is_checked_in_every_part() {
        let good = ed_spki(0, 32);
        assert!(KeyPin::of_spki(&good).is_ok());
        // Bytes after the SPKI.
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(KeyPin::of_spki(&trailing), Err(MalformedSpki));
        // Not a SEQUENCE outside.
        let mut set = good.clone();
        set[0] = 0x31;
        assert_eq!(KeyPin::of_spki(&set), Err(MalformedSpki));
        // The key is not a BIT STRING.
        let mut octets = good.clone();
        octets[9] = 0x04;
        assert_eq!(KeyPin::of_spki(&octets), Err(MalformedSpki));
        // Something after the BIT STRING, inside the SEQUENCE.
        let mut inner = good[2..].to_vec();
        inner.extend_from_slice(&[0x05, 0x00]);
        assert_eq!(KeyPin::of_spki(&tlv(0x30, 0, &inner)), Err(MalformedSpki));
        // EC keys: the curve is named by its own OID; another curve, or parameters
        // that are not an OID, are "other".
        let ec = |curve: &[u8]| {
            let mut alg = tlv(0x06, 0, OID_EC_PUBLIC_KEY);
            alg.extend(curve);
            let mut body = tlv(0x30, 0, &alg);
            body.extend(tlv(0x03, 0, &[0, 4, 1, 2]));
            KeyPin::of_spki(&tlv(0x30, 0, &body)).map(|p| p.alg)
        };
        assert_eq!(ec(&tlv(0x06, 0, OID_P256)), Ok(KeyAlg::P256));
        assert_eq!(ec(&tlv(0x06, 0, OID_P384)), Ok(KeyAlg::P384));
        assert_eq!(ec(&tlv(0x06, 0, OID_P521)), Ok(KeyAlg::P521));
        assert_eq!(
            ec(&tlv(0x06, 0, &[0x2b, 0x81, 0x04, 0x00, 0x24])),
            Ok(KeyAlg::Other)
        );
        assert_eq!(ec(&[0x05, 0x00]), Ok(KeyAlg::Other));
    }

    #[test]
    fn error_texts_name_the_problem() {
        assert!(MalformedSpki.to_string().contains("not valid DER"));
        assert!(AddressError::Host.to_string().contains("host:port"));
        assert!(AddressError::Port.to_string().contains("1 to 65535"));
        assert!(
            BuildError::NoAddress
                .to_string()
                .contains("at least one address")
        );
        assert!(
            BuildError::TooManyAddresses
                .to_string()
                .contains(&format!("at most {MAX_ADDRESSES} addresses"))
        );
        assert!(
            BuildError::TooLong
                .to_string()
                .contains(&format!("{MAX_LEN}"))
        );
    }

    #[test]
    fn the_backup_pin_is_kept_and_read_back() {
        let s = sample();
        assert_eq!(s.backup(), Some(pin(2, KeyAlg::Rsa)));
        let text = s.to_string();
        assert_eq!(
            Invite::parse(&text).unwrap().backup(),
            Some(pin(2, KeyAlg::Rsa))
        );
        assert_eq!(minimal().backup(), None);
    }

    #[test]
    fn the_token_comes_after_the_backup_pin() {
        let text = sample().to_string();
        let parts: std::vec::Vec<&str> = text.split('/').collect();
        let b = parts.iter().position(|p| p.starts_with("b=")).unwrap();
        let t = parts.iter().position(|p| p.starts_with("t=")).unwrap();
        let mut swapped = parts.clone();
        swapped.swap(b, t);
        assert_eq!(
            Invite::parse(&swapped.join("/")),
            Err(InviteError::MisplacedField)
        );
    }

    /// A DNS name of `len` characters (labels of at most 63).
    fn name_of(len: usize) -> String {
        let mut s = String::new();
        while s.len() < len {
            if !s.is_empty() {
                s.push('.');
            }
            let n = (len - s.len()).min(63);
            s.push_str(&"a".repeat(n));
            if len - s.len() == 1 {
                // A label cannot be empty: take one from this one.
                s.pop();
            }
        }
        s
    }

    #[test]
    fn an_invite_of_exactly_the_longest_length_is_written_and_read() {
        let build = |last: usize| {
            let names = [name_of(250), name_of(250), name_of(250), name_of(last)];
            let texts: std::vec::Vec<String> = names.iter().map(|n| format!("{n}:1")).collect();
            let addrs: std::vec::Vec<Address<'_>> =
                texts.iter().map(|t| Address::parse(t).unwrap()).collect();
            Invite::new(&addrs, pin(3, KeyAlg::P256)).map(|i| i.to_string())
        };
        let short = build(1).unwrap().len();
        assert!(short < MAX_LEN);
        let exact = build(1 + MAX_LEN - short).unwrap();
        assert_eq!(exact.len(), MAX_LEN);
        assert!(Invite::parse(&exact).is_ok());
        assert_eq!(build(2 + MAX_LEN - short), Err(BuildError::TooLong));
    }
}
