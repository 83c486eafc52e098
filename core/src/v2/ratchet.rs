//! The Double Ratchet of one peer session (spec §6–§7, §12.1): [`Session`] seals and
//! opens v2 messages and persists itself in a fixed-length record.
//!
//! - Nonces are derived with each message key from the chain; the only randomness is a
//!   new ratchet key pair at the first [`Session::seal`] after each DH ratchet step.
//! - [`Session::open`] changes nothing unless the message authenticates: forged,
//!   replayed (`Stale`), reflected and out-of-bound (`TooFarAhead`) messages leave the
//!   session exactly as it was.
//! - Skipped message keys live in a fixed ring of [`RING`] entries; a gap larger than
//!   [`MAX_SKIP`] is refused.
//! - A session is [`SESSION_SIZE`] bytes in RAM (≤ 2 KiB, asserted in the tests) and
//!   [`STATE_LEN`] bytes stored.

use core::fmt;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Tag};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::identity::Identity;
use crate::v2::wire::{
    self, FLAG_PRELUDE, FLAG_RESPONDER, HEADER_LEN, Header, MAX_INNER, PRELUDE_LEN, Prelude,
    TAG_LEN, WireError,
};
use crate::v2::x3dh::{
    Bundle, PeerIdentity, PrekeyPair, SetupError, binding_hash, initiator_sk, responder_sk,
};
use crate::v2::{KEY_LEN, KdfFailed, Z32, dh, hkdf, hmac, x25519_public};

/// The most message keys one received message may make a chain skip.
pub const MAX_SKIP: u32 = 256;
/// Entries of the skipped-message-key ring.
pub const RING: usize = 32;
/// Bytes of one [`Session`] in RAM.
pub const SESSION_SIZE: usize = core::mem::size_of::<Session>();
/// Length of a stored session record ([`Session::encode`]).
pub const STATE_LEN: usize =
    4 + 3 + 6 * 32 + 4 * 4 + 32 + PRELUDE_LEN + 8 + 1 + RING * SKIPPED_LEN + 8;

// A board holds 8 sessions in 16 KiB.
const _: () = assert!(SESSION_SIZE <= 2048 && STATE_LEN <= 2048);

const SKIPPED_LEN: usize = 1 + 8 + 4 + 32;
const MAGIC: &[u8; 4] = b"SGR2";
const FORMAT: u8 = 1;

const ROLE_INITIATOR: u8 = 0;
const ROLE_RESPONDER: u8 = 1;

const HAS_DHS: u8 = 0x01;
const HAS_DHR: u8 = 0x02;
const HAS_CKS: u8 = 0x04;
const HAS_CKR: u8 = 0x08;
const HAS_PRELUDE: u8 = 0x10;
const ALL_FLAGS: u8 = HAS_DHS | HAS_DHR | HAS_CKS | HAS_CKR | HAS_PRELUDE;

/// Why [`Session::seal`] failed. Every variant is a caller mistake or a worn-out
/// session; the session is unchanged and no randomness was drawn.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealError {
    /// The output buffer is too small; `needed` bytes are required.
    BufferTooSmall {
        /// Bytes required.
        needed: usize,
    },
    /// The inner message is longer than [`MAX_INNER`] bytes.
    TooLong,
    /// The sending chain has carried 2³² − 1 messages; set up a new session.
    Exhausted,
    /// The peer's ratchet key is a low-order point (a corrupt restored state).
    WeakKey,
    /// Key derivation failed (cannot happen; no panicking path).
    KeyDerivation,
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: {needed} bytes needed")
            }
            Self::TooLong => write!(f, "inner message longer than {MAX_INNER} bytes"),
            Self::Exhausted => f.write_str("sending chain exhausted; start a new session"),
            Self::WeakKey => f.write_str("peer ratchet key is a low-order point"),
            Self::KeyDerivation => f.write_str("key derivation failed"),
        }
    }
}

impl core::error::Error for SealError {}

/// Why a received message was refused. The session is unchanged in every case.
///
/// [`BufferTooSmall`](Self::BufferTooSmall) is a caller mistake; every other variant
/// means the peer or the server sent something that must not be shown.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Not a v2 message.
    Malformed(WireError),
    /// The message claims to come from our own side of the session: the server handed
    /// one of our messages back.
    Reflected,
    /// Its key is no longer held: it was opened before (a replay) or skipped too long
    /// ago (evicted from the ring).
    Stale,
    /// It would skip more than [`MAX_SKIP`] message keys.
    TooFarAhead,
    /// A new ratchet key arrived although we have not sent since the last one; an
    /// honest peer cannot do that.
    UnexpectedRatchetKey,
    /// Authentication failed: forged, altered, or not for this session.
    Decrypt,
    /// The sender's ratchet key is a low-order point.
    WeakKey,
    /// [`Session::respond`]: the message has no prelude, or the prekeys passed do not
    /// match the ids it names.
    UnknownPrekey,
    /// [`Session::respond`]: the peer's identity or the agreement was refused.
    Setup(SetupError),
    /// The output buffer is too small; `needed` bytes are required.
    BufferTooSmall {
        /// Bytes required.
        needed: usize,
    },
    /// Key derivation failed (cannot happen; no panicking path).
    KeyDerivation,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "malformed v2 message: {e}"),
            Self::Reflected => f.write_str(
                "one of our own messages was handed back as the peer's (the server reflected it)",
            ),
            Self::Stale => {
                f.write_str("message already received or too old (the server may be replaying it)")
            }
            Self::TooFarAhead => write!(f, "message skips more than {MAX_SKIP} messages"),
            Self::UnexpectedRatchetKey => f.write_str("unexpected new ratchet key"),
            Self::Decrypt => f.write_str("could not decrypt: authentication failed"),
            Self::WeakKey => f.write_str("sender's ratchet key is a low-order point"),
            Self::UnknownPrekey => f.write_str("the message names prekeys we do not have"),
            Self::Setup(e) => write!(f, "session setup refused: {e}"),
            Self::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: {needed} bytes needed")
            }
            Self::KeyDerivation => f.write_str("key derivation failed"),
        }
    }
}

impl core::error::Error for OpenError {}

impl From<WireError> for OpenError {
    fn from(e: WireError) -> Self {
        Self::Malformed(e)
    }
}

/// Why a stored session could not be restored or stored.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateError {
    /// The record is damaged: wrong length, magic, checksum or an impossible value.
    Corrupt,
    /// The record was written by a newer format.
    UnsupportedFormat(u8),
    /// The output buffer is too small; `needed` bytes are required.
    BufferTooSmall {
        /// Bytes required.
        needed: usize,
    },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Corrupt => f.write_str("stored session is corrupt"),
            Self::UnsupportedFormat(v) => write!(f, "stored session has unknown format {v}"),
            Self::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: {needed} bytes needed")
            }
        }
    }
}

impl core::error::Error for StateError {}

/// One skipped message key.
#[derive(Zeroize)]
struct Skipped {
    used: u8,
    tag: [u8; 8],
    n: [u8; 4],
    mk: [u8; 32],
}

impl Skipped {
    const EMPTY: Self = Self {
        used: 0,
        tag: [0; 8],
        n: [0; 4],
        mk: [0; 32],
    };
}

/// The state of one peer session: the Double Ratchet, the binding hash and the
/// skipped-key ring. Every secret is wiped when it is dropped.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Session {
    role: u8,
    flags: u8,
    ring_head: u8,
    rk: [u8; 32],
    dhs_secret: [u8; 32],
    dhs_public: [u8; 32],
    dhr: [u8; 32],
    cks: [u8; 32],
    ckr: [u8; 32],
    ns: u32,
    nr: u32,
    pn: u32,
    next_text_id: u32,
    binding: [u8; 32],
    prelude: [u8; PRELUDE_LEN],
    /// First 8 bytes of the previous receiving ratchet key (zeros before the second).
    prev_tag: [u8; 8],
    ring: [Skipped; RING],
}

/// A pair of derived keys, wiped when dropped.
pub type KeyPair32 = (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>);

/// `KDF_RK` (spec §6): (new root key, chain key). Public for the test vectors.
pub fn kdf_rk(rk: &[u8; 32], dh_out: &[u8; 32]) -> Result<KeyPair32, KdfFailed> {
    let mut okm = Zeroizing::new([0u8; 64]);
    hkdf(rk, dh_out, &[b"seguro/v2/root"], okm.as_mut())?;
    let (a, b) = okm.split_at(32);
    let mut root = Zeroizing::new([0u8; 32]);
    let mut chain = Zeroizing::new([0u8; 32]);
    root.copy_from_slice(a);
    chain.copy_from_slice(b);
    Ok((root, chain))
}

/// `KDF_CK` (spec §6): (message key, next chain key). Public for the test vectors.
pub fn kdf_ck(ck: &[u8; 32]) -> KeyPair32 {
    (
        Zeroizing::new(hmac(ck, &[&[0x01]])),
        Zeroizing::new(hmac(ck, &[&[0x02]])),
    )
}

/// AES key (bytes 0..32) and nonce (32..44) of a message key (spec §6). Public for the
/// test vectors.
pub fn message_keys(mk: &[u8; 32]) -> Result<Zeroizing<[u8; 44]>, KdfFailed> {
    let mut okm = Zeroizing::new([0u8; 44]);
    hkdf(&Z32, mk, &[b"seguro/v2/message"], okm.as_mut())?;
    Ok(okm)
}

/// Splits the 44 bytes of [`message_keys`].
fn cipher_and_nonce(okm: &[u8; 44]) -> (Aes256Gcm, [u8; 12]) {
    let (key, nonce) = okm.split_first_chunk::<32>().unwrap_or((&[0; 32], &[]));
    let nonce: [u8; 12] = nonce.try_into().unwrap_or([0; 12]);
    (Aes256Gcm::new(key.into()), nonce)
}

/// `B || header || prelude`, the associated data.
struct Ad {
    buf: [u8; 32 + HEADER_LEN + PRELUDE_LEN],
    len: usize,
}

impl Ad {
    fn new(binding: &[u8; 32], authenticated: &[u8]) -> Option<Self> {
        let mut buf = [0u8; 32 + HEADER_LEN + PRELUDE_LEN];
        let len = 32 + authenticated.len();
        let (b, rest) = buf.split_at_mut(32);
        b.copy_from_slice(binding);
        rest.get_mut(..authenticated.len())?
            .copy_from_slice(authenticated);
        Some(Self { buf, len })
    }

    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

/// Walks a chain `steps` times and returns (message key at the end, chain key after it).
fn walk(ck: &[u8; 32], steps: u32) -> KeyPair32 {
    let mut ck = Zeroizing::new(*ck);
    for _ in 0..steps {
        ck = kdf_ck(&ck).1;
    }
    kdf_ck(&ck)
}

impl Session {
    fn blank(role: u8, rk: &[u8; 32], binding: [u8; 32]) -> Self {
        Self {
            role,
            flags: 0,
            ring_head: 0,
            rk: *rk,
            dhs_secret: [0; 32],
            dhs_public: [0; 32],
            dhr: [0; 32],
            cks: [0; 32],
            ckr: [0; 32],
            ns: 0,
            nr: 0,
            pn: 0,
            next_text_id: 1,
            binding,
            prelude: [0; PRELUDE_LEN],
            prev_tag: [0; 8],
            ring: [Skipped::EMPTY; RING],
        }
    }

    /// Starts a session with the owner of `bundle` (spec §5.3): verifies the bundle,
    /// draws the ephemeral key from `rng` and derives the root key. Every message sealed
    /// until one from the peer opens carries the prelude the peer needs.
    pub fn initiate(
        rng: &mut impl rand_core::CryptoRngCore,
        me: &Identity,
        my_name: &str,
        bundle: &Bundle<'_>,
    ) -> Result<Self, SetupError> {
        bundle.verify()?;
        let binding = binding_hash(
            my_name,
            &me.public_keys(),
            bundle.peer.name,
            &bundle.peer.keys,
        )?;
        let mut ek = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(ek.as_mut());
        let sk = initiator_sk(&me.x_secret_bytes(), &ek, bundle)?;
        let mut s = Self::blank(ROLE_INITIATOR, &sk, binding);
        s.dhr = bundle.spk;
        s.prelude = Prelude {
            ek: x25519_public(&ek),
            spk_id: bundle.spk_id,
            opk_id: bundle.opk.map(|(id, _)| id),
        }
        .to_bytes();
        s.flags = HAS_DHR | HAS_PRELUDE;
        Ok(s)
    }

    /// Accepts a session from `peer` with its first message `body` (spec §5.3): `spk`
    /// and `opk` are the prekeys the message's prelude names (read it with
    /// [`wire::parse`]). On success returns the session and the length of the inner
    /// message written to `out`; the caller then deletes the one-time prekey for good.
    pub fn respond(
        me: &Identity,
        my_name: &str,
        peer: &PeerIdentity<'_>,
        spk: &PrekeyPair,
        opk: Option<&PrekeyPair>,
        body: &[u8],
        out: &mut [u8],
    ) -> Result<(Self, usize), OpenError> {
        let view = wire::parse(body)?;
        if view.header.from_responder() {
            return Err(OpenError::Reflected);
        }
        let prelude = view.prelude.ok_or(OpenError::UnknownPrekey)?;
        if prelude.spk_id != spk.id() || prelude.opk_id != opk.map(PrekeyPair::id) {
            return Err(OpenError::UnknownPrekey);
        }
        peer.verify().map_err(|e| OpenError::Setup(e.into()))?;
        let binding = binding_hash(peer.name, &peer.keys, my_name, &me.public_keys())
            .map_err(OpenError::Setup)?;
        let sk = responder_sk(&me.x_secret_bytes(), spk, opk, &peer.keys.x, &prelude.ek)
            .map_err(OpenError::Setup)?;
        let mut s = Self::blank(ROLE_RESPONDER, &sk, binding);
        s.dhs_secret = spk.secret_bytes();
        s.dhs_public = *spk.public();
        s.flags = HAS_DHS;
        let n = s.open(body, out)?;
        Ok((s, n))
    }

    /// Whether this side started the session.
    pub fn is_initiator(&self) -> bool {
        self.role == ROLE_INITIATOR
    }

    /// Whether the peer has answered yet (an initiator's messages stop carrying the
    /// prelude then).
    pub fn is_established(&self) -> bool {
        self.flags & HAS_PRELUDE == 0
    }

    /// The prelude this initiator still sends, if any (its `EK` identifies the session
    /// when a new first message from the same peer arrives).
    pub fn pending_prelude(&self) -> Option<Prelude> {
        (self.flags & HAS_PRELUDE != 0).then(|| Prelude::from_bytes(&self.prelude))
    }

    /// The binding hash `B` of this session.
    pub fn binding(&self) -> &[u8; 32] {
        &self.binding
    }

    /// The id [`take_text_id`](Self::take_text_id) gives next.
    pub fn next_text_id(&self) -> u32 {
        self.next_text_id
    }

    /// A fresh id for the next inner text message (spec §8), 1, 2, … per session.
    pub fn take_text_id(&mut self) -> u32 {
        let id = self.next_text_id;
        self.next_text_id = self.next_text_id.wrapping_add(1).max(1);
        id
    }

    /// Length of the body [`seal`](Self::seal) writes for `inner_len` bytes.
    pub fn sealed_len(&self, inner_len: usize) -> usize {
        self.authenticated_len() + inner_len + TAG_LEN
    }

    fn authenticated_len(&self) -> usize {
        if self.flags & HAS_PRELUDE != 0 {
            HEADER_LEN + PRELUDE_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Encrypts the inner message `inner` (see [`wire::Inner::emit`]) and writes the
    /// whole v2 body (header, prelude while pending, cipher text and tag) into the start
    /// of `out`; returns its length, [`sealed_len`](Self::sealed_len). Draws 32 bytes
    /// from `rng` only when a new sending chain starts. On error nothing changes.
    pub fn seal(
        &mut self,
        rng: &mut impl rand_core::CryptoRngCore,
        inner: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SealError> {
        if inner.len() > MAX_INNER {
            return Err(SealError::TooLong);
        }
        let needed = self.sealed_len(inner.len());
        if out.len() < needed {
            return Err(SealError::BufferTooSmall { needed });
        }
        if self.flags & HAS_CKS != 0 && self.ns == u32::MAX {
            return Err(SealError::Exhausted);
        }
        if self.flags & HAS_CKS == 0 {
            let mut secret = Zeroizing::new([0u8; KEY_LEN]);
            rng.fill_bytes(secret.as_mut());
            let shared = dh(&secret, &self.dhr).ok_or(SealError::WeakKey)?;
            let (rk, cks) = kdf_rk(&self.rk, &shared).map_err(|_| SealError::KeyDerivation)?;
            self.rk = *rk;
            self.cks = *cks;
            self.dhs_secret = *secret;
            self.dhs_public = x25519_public(&secret);
            self.pn = self.ns;
            self.ns = 0;
            self.flags |= HAS_DHS | HAS_CKS;
        }
        let (mk, next) = kdf_ck(&self.cks);
        let keys = message_keys(&mk).map_err(|_| SealError::KeyDerivation)?;
        let header = Header {
            flags: if self.role == ROLE_RESPONDER {
                FLAG_RESPONDER
            } else {
                0
            } | if self.flags & HAS_PRELUDE != 0 {
                FLAG_PRELUDE
            } else {
                0
            },
            dh: self.dhs_public,
            pn: self.pn,
            n: self.ns,
        };
        let auth_len = self.authenticated_len();
        let (auth, rest) = out
            .split_at_mut_checked(auth_len)
            .ok_or(SealError::BufferTooSmall { needed })?;
        let (head, prelude) = auth.split_at_mut(HEADER_LEN);
        head.copy_from_slice(&header.to_bytes());
        if let Some(p) = prelude.get_mut(..PRELUDE_LEN) {
            p.copy_from_slice(&self.prelude);
        }
        let ad = Ad::new(&self.binding, auth).ok_or(SealError::BufferTooSmall { needed })?;
        let (body, tag_out) = rest
            .split_at_mut_checked(inner.len())
            .ok_or(SealError::BufferTooSmall { needed })?;
        body.copy_from_slice(inner);
        let (cipher, nonce) = cipher_and_nonce(&keys);
        let tag = cipher
            .encrypt_in_place_detached(&nonce.into(), ad.bytes(), body)
            .map_err(|_| SealError::TooLong)?;
        tag_out
            .get_mut(..TAG_LEN)
            .ok_or(SealError::BufferTooSmall { needed })?
            .copy_from_slice(&tag);
        self.cks = *next;
        self.ns += 1;
        Ok(needed)
    }

    /// Authenticates and decrypts a v2 body; writes the inner message into the start of
    /// `out` and returns its length. On any error the session is unchanged and nothing
    /// readable is left in `out`.
    pub fn open(&mut self, body: &[u8], out: &mut [u8]) -> Result<usize, OpenError> {
        let view = wire::parse(body)?;
        let h = view.header;
        if h.from_responder() == (self.role == ROLE_RESPONDER) {
            return Err(OpenError::Reflected);
        }
        let inner_len = view.ciphertext.len().saturating_sub(TAG_LEN);
        if out.len() < inner_len {
            return Err(OpenError::BufferTooSmall { needed: inner_len });
        }
        let ad = Ad::new(&self.binding, view.authenticated).ok_or(OpenError::KeyDerivation)?;
        let ad = ad.bytes();
        let tag8: [u8; 8] = h.dh.first_chunk::<8>().copied().unwrap_or([0; 8]);

        // 1. A skipped key.
        let mut matched = false;
        for i in 0..RING {
            let Some(e) = self.ring.get(i) else { break };
            if e.used == 0 || e.tag != tag8 || u32::from_be_bytes(e.n) != h.n {
                continue;
            }
            matched = true;
            let mk = Zeroizing::new(e.mk);
            if decrypt(&mk, ad, view.ciphertext, out).is_ok() {
                if let Some(e) = self.ring.get_mut(i) {
                    e.zeroize();
                }
                self.received();
                return Ok(inner_len);
            }
        }
        if matched {
            return Err(OpenError::Decrypt);
        }

        // 2. The current receiving chain.
        if self.flags & HAS_DHR != 0 && h.dh == self.dhr {
            if self.flags & HAS_CKR == 0 || h.n < self.nr {
                return Err(OpenError::Stale);
            }
            let skip = h.n - self.nr;
            if skip > MAX_SKIP {
                return Err(OpenError::TooFarAhead);
            }
            let (mk, next) = walk(&self.ckr, skip);
            decrypt(&mk, ad, view.ciphertext, out)?;
            let ckr = Zeroizing::new(self.ckr);
            self.store_skipped(&ckr, self.nr, h.n, tag8);
            self.ckr = *next;
            self.nr = h.n + 1;
            self.received();
            return Ok(inner_len);
        }

        // 3. The previous receiving chain, whose remaining keys are all in the ring.
        if self.prev_tag != [0; 8] && tag8 == self.prev_tag {
            return Err(OpenError::Stale);
        }

        // 4. A new ratchet key.
        if self.flags & HAS_DHS == 0 {
            return Err(OpenError::UnexpectedRatchetKey);
        }
        let old_chain = self.flags & HAS_CKR != 0;
        if old_chain && h.pn > self.nr && h.pn - self.nr > MAX_SKIP {
            return Err(OpenError::TooFarAhead);
        }
        if h.n > MAX_SKIP {
            return Err(OpenError::TooFarAhead);
        }
        let shared = dh(&self.dhs_secret, &h.dh).ok_or(OpenError::WeakKey)?;
        let (rk, ck) = kdf_rk(&self.rk, &shared).map_err(|_| OpenError::KeyDerivation)?;
        let (mk, next) = walk(&ck, h.n);
        decrypt(&mk, ad, view.ciphertext, out)?;
        if old_chain && h.pn > self.nr {
            let ckr = Zeroizing::new(self.ckr);
            let old_tag = self.dhr.first_chunk::<8>().copied().unwrap_or([0; 8]);
            self.store_skipped(&ckr, self.nr, h.pn, old_tag);
        }
        self.store_skipped(&ck, 0, h.n, tag8);
        if self.flags & HAS_DHR != 0 {
            self.prev_tag = self.dhr.first_chunk::<8>().copied().unwrap_or([0; 8]);
        }
        self.rk = *rk;
        self.dhr = h.dh;
        self.ckr = *next;
        self.nr = h.n + 1;
        self.dhs_secret.zeroize();
        self.dhs_public.zeroize();
        self.cks.zeroize();
        self.flags = (self.flags | HAS_DHR | HAS_CKR) & !(HAS_DHS | HAS_CKS);
        self.received();
        Ok(inner_len)
    }

    /// Stores the keys of messages `from..to` of the chain starting at `ck` (whose
    /// first message is number `from`).
    fn store_skipped(&mut self, ck: &[u8; 32], from: u32, to: u32, tag: [u8; 8]) {
        let mut ck = Zeroizing::new(*ck);
        for n in from..to {
            let (mk, next) = kdf_ck(&ck);
            self.make_room();
            let head = usize::from(self.ring_head) % RING;
            if let Some(e) = self.ring.get_mut(head) {
                e.used = 1;
                e.tag = tag;
                e.n = n.to_be_bytes();
                e.mk = *mk;
            }
            self.ring_head = u8::try_from((head + 1) % RING).unwrap_or(0);
            ck = next;
        }
    }

    /// Before a key is stored at the ring's head: if the head holds a key still unused
    /// while other entries are free (opened since), the held keys are moved together,
    /// oldest first, so the key stored next evicts a key only when all 32 are held, and
    /// then the oldest (§6: every message opens as long as at most 32 are outstanding).
    fn make_room(&mut self) {
        let head = usize::from(self.ring_head) % RING;
        let head_used = self.ring.get(head).is_some_and(|e| e.used != 0);
        let free = self.ring.iter().any(|e| e.used == 0);
        if !head_used || !free {
            return;
        }
        // Oldest first: from the head (the oldest) round to the newest. The entries
        // moved out are left empty (all zeros), as are the free ones.
        let mut packed = [Skipped::EMPTY; RING];
        let mut kept = 0;
        for k in 0..RING {
            let from = (head + k) % RING;
            if let Some(src) = self.ring.get_mut(from).filter(|e| e.used != 0) {
                if let Some(dst) = packed.get_mut(kept) {
                    core::mem::swap(dst, src);
                }
                kept += 1;
            }
        }
        core::mem::swap(&mut self.ring, &mut packed);
        self.ring_head = u8::try_from(kept % RING).unwrap_or(0);
    }

    fn received(&mut self) {
        if self.flags & HAS_PRELUDE != 0 {
            self.flags &= !HAS_PRELUDE;
            self.prelude.zeroize();
        }
    }

    /// Number of skipped message keys held.
    pub fn skipped_keys(&self) -> usize {
        self.ring.iter().filter(|e| e.used != 0).count()
    }

    /// Writes the session's record ([`STATE_LEN`] bytes, spec §12.1) into the start of
    /// `out`. It holds secrets: store it readable by the owner only.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, StateError> {
        let dst = out
            .get_mut(..STATE_LEN)
            .ok_or(StateError::BufferTooSmall { needed: STATE_LEN })?;
        let mut w = Put { out: dst, pos: 0 };
        w.put(MAGIC);
        w.put(&[FORMAT, self.role, self.flags]);
        for k in [
            &self.rk,
            &self.dhs_secret,
            &self.dhs_public,
            &self.dhr,
            &self.cks,
            &self.ckr,
        ] {
            w.put(k);
        }
        for v in [self.ns, self.nr, self.pn, self.next_text_id] {
            w.put(&v.to_be_bytes());
        }
        w.put(&self.binding);
        w.put(&self.prelude);
        w.put(&self.prev_tag);
        w.put(&[self.ring_head]);
        for e in &self.ring {
            w.put(&[e.used]);
            w.put(&e.tag);
            w.put(&e.n);
            w.put(&e.mk);
        }
        let sum = checksum(w.out.get(..w.pos).unwrap_or(&[]));
        w.put(&sum);
        Ok(STATE_LEN)
    }

    /// Restores a session from its record. Any damage is [`StateError::Corrupt`].
    pub fn decode(record: &[u8]) -> Result<Self, StateError> {
        if record.len() != STATE_LEN {
            return Err(StateError::Corrupt);
        }
        let (body, sum) = record
            .split_at_checked(STATE_LEN - 8)
            .ok_or(StateError::Corrupt)?;
        let mut r = Take { rest: body };
        if r.take::<4>()? != *MAGIC {
            return Err(StateError::Corrupt);
        }
        let [format, role, flags] = r.take::<3>()?;
        if format != FORMAT {
            return Err(StateError::UnsupportedFormat(format));
        }
        if checksum(body) != sum {
            return Err(StateError::Corrupt);
        }
        if role > ROLE_RESPONDER || flags & !ALL_FLAGS != 0 {
            return Err(StateError::Corrupt);
        }
        let mut s = Self::blank(role, &[0; 32], [0; 32]);
        s.flags = flags;
        s.rk = r.take()?;
        s.dhs_secret = r.take()?;
        s.dhs_public = r.take()?;
        s.dhr = r.take()?;
        s.cks = r.take()?;
        s.ckr = r.take()?;
        s.ns = u32::from_be_bytes(r.take()?);
        s.nr = u32::from_be_bytes(r.take()?);
        s.pn = u32::from_be_bytes(r.take()?);
        s.next_text_id = u32::from_be_bytes(r.take()?);
        s.binding = r.take()?;
        s.prelude = r.take()?;
        s.prev_tag = r.take()?;
        let [head] = r.take::<1>()?;
        if usize::from(head) >= RING {
            return Err(StateError::Corrupt);
        }
        s.ring_head = head;
        for e in &mut s.ring {
            let [used] = r.take::<1>()?;
            e.used = used;
            e.tag = r.take()?;
            e.n = r.take()?;
            e.mk = r.take()?;
            if used > 1 || (used == 0 && (e.tag != [0; 8] || e.n != [0; 4] || e.mk != [0; 32])) {
                return Err(StateError::Corrupt);
            }
        }
        // Every session a caller can hold has the peer's ratchet key (an initiator from
        // the start, a responder once the first message opened inside `respond`), so a
        // record without it is damaged; the other keys may be absent.
        let absent_ok = |present: bool, v: &[u8]| present || v.iter().all(|b| *b == 0);
        let ok = flags & HAS_DHR != 0
            && absent_ok(flags & HAS_DHS != 0, &s.dhs_secret)
            && absent_ok(flags & HAS_DHS != 0, &s.dhs_public)
            && absent_ok(flags & HAS_CKS != 0, &s.cks)
            && absent_ok(flags & HAS_CKR != 0, &s.ckr)
            && absent_ok(flags & HAS_PRELUDE != 0, &s.prelude)
            && (flags & HAS_DHS == 0 || x25519_public(&s.dhs_secret) == s.dhs_public)
            && (flags & HAS_CKS == 0 || flags & HAS_DHS != 0)
            && s.next_text_id != 0;
        if !ok {
            return Err(StateError::Corrupt);
        }
        Ok(s)
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("initiator", &self.is_initiator())
            .field("established", &self.is_established())
            .field("ns", &self.ns)
            .field("nr", &self.nr)
            .field("skipped", &self.skipped_keys())
            .finish_non_exhaustive()
    }
}

/// Decrypts `cipher || tag` into `out` with the keys of `mk`; on failure zeroes what it
/// wrote.
fn decrypt(mk: &[u8; 32], ad: &[u8], cipher: &[u8], out: &mut [u8]) -> Result<(), OpenError> {
    let body_len = cipher.len().saturating_sub(TAG_LEN);
    let (body, tag) = cipher
        .split_at_checked(body_len)
        .ok_or(OpenError::Malformed(WireError::TooShort))?;
    let tag: [u8; TAG_LEN] = tag
        .try_into()
        .map_err(|_| OpenError::Malformed(WireError::TooShort))?;
    let dst = out
        .get_mut(..body_len)
        .ok_or(OpenError::BufferTooSmall { needed: body_len })?;
    dst.copy_from_slice(body);
    let keys = message_keys(mk).map_err(|_| OpenError::KeyDerivation)?;
    let (cipher, nonce) = cipher_and_nonce(&keys);
    match cipher.decrypt_in_place_detached(&nonce.into(), ad, dst, &Tag::from(tag)) {
        Ok(()) => Ok(()),
        Err(_) => {
            dst.zeroize();
            Err(OpenError::Decrypt)
        }
    }
}

fn checksum(bytes: &[u8]) -> [u8; 8] {
    let d = Sha256::digest(bytes);
    d.first_chunk::<8>().copied().unwrap_or([0; 8])
}

struct Put<'o> {
    out: &'o mut [u8],
    pos: usize,
}

impl Put<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        if let Some(dst) = self.out.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        }
        self.pos = end;
    }
}

struct Take<'a> {
    rest: &'a [u8],
}

impl Take<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], StateError> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(StateError::Corrupt)?;
        self.rest = rest;
        Ok(*head)
    }
}
