//! End-to-end encryption v1 (PROTOCOL.md §4): X25519 key agreement, HKDF-SHA256 key
//! derivation and AES-256-GCM sealing into caller-provided buffers.
//!
//! For a message from A to B:
//!
//! 1. `shared = X25519(secret_A, pub_B)`;
//! 2. `key = HKDF-SHA256(ikm = shared, salt = none, info = "chat-e2ee", length = 32)`;
//! 3. `nonce` = 12 fresh random bytes per message;
//! 4. `cipher = AES-256-GCM(key, nonce, plaintext, no associated data)` with the
//!    16-byte tag appended.
//!
//! B derives the same key from `X25519(secret_B, pub_A)`, so one [`PeerKey`] serves both
//! directions. Derive it once per peer with [`KeyPair::peer_key`] and keep it for as
//! long as the peer's public key does not change.
//!
//! Nothing here allocates or draws randomness on its own: the random source is an
//! argument, and every output goes into a caller buffer whose required size is
//! reported in [`E2eeError::BufferTooSmall`]. Secrets ([`KeyPair`]'s X25519 scalar and
//! [`PeerKey`]'s AES key) are wiped when dropped.
//!
//! The limits of v1 (the same key in both directions, static for a session, no
//! associated data binding sender, recipient or order, no forward secrecy) are those
//! of the protocol, not of this module; see PROTOCOL.md §4.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Tag};
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The HKDF `info` string of v1.
pub const HKDF_INFO: &[u8] = b"chat-e2ee";
/// Length in bytes of an X25519 public or secret key.
pub const KEY_LEN: usize = 32;
/// Length in bytes of an AES-256-GCM nonce as used by v1.
pub const NONCE_LEN: usize = 12;
/// Length in bytes of the AES-GCM authentication tag appended to every ciphertext.
pub const TAG_LEN: usize = 16;
/// Largest plaintext AES-GCM can protect under one nonce (2^36 − 32 bytes).
const GCM_MAX_PLAINTEXT: u64 = (1 << 36) - 32;

/// What went wrong in an end-to-end encryption operation.
///
/// [`WeakPeerKey`](E2eeError::WeakPeerKey), [`CipherTooShort`](E2eeError::CipherTooShort)
/// and [`Decrypt`](E2eeError::Decrypt) mean the peer (or the server in between) sent
/// something unusable; [`BufferTooSmall`](E2eeError::BufferTooSmall) and
/// [`PlaintextTooLong`](E2eeError::PlaintextTooLong) mean the caller misused the API.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum E2eeError {
    /// The peer's public key is a low-order point (for example all zeros): the shared
    /// secret would not depend on our secret key, so anyone could compute it.
    WeakPeerKey,
    /// The output buffer is too small; `needed` is the length it must have.
    BufferTooSmall {
        /// Required output buffer length in bytes.
        needed: usize,
    },
    /// The ciphertext is shorter than the 16-byte authentication tag.
    CipherTooShort,
    /// Authentication failed: wrong key, wrong nonce, or the ciphertext or tag was
    /// modified. No plaintext is released.
    Decrypt,
    /// The plaintext is longer than AES-GCM allows under a single nonce.
    PlaintextTooLong,
    /// HKDF refused the output length. Cannot happen with v1's fixed 32-byte key; it
    /// exists so that key derivation has no panicking path.
    KeyDerivation,
}

impl core::fmt::Display for E2eeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::WeakPeerKey => f.write_str("peer public key is a low-order point"),
            Self::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: {needed} bytes needed")
            }
            Self::CipherTooShort => f.write_str("ciphertext shorter than the authentication tag"),
            Self::Decrypt => f.write_str("could not decrypt: authentication failed"),
            Self::PlaintextTooLong => f.write_str("plaintext too long for AES-GCM"),
            Self::KeyDerivation => f.write_str("key derivation failed"),
        }
    }
}

impl core::error::Error for E2eeError {}

/// A long-lived X25519 key pair. The secret scalar is wiped when the pair is dropped.
pub struct KeyPair {
    secret: StaticSecret,
    public: PublicKey,
}

impl KeyPair {
    /// Generates a fresh key pair from 32 bytes of `rng`.
    pub fn generate(rng: &mut impl rand_core::CryptoRngCore) -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(bytes.as_mut());
        Self::from_secret(*bytes)
    }

    /// Rebuilds a key pair from a stored secret (as returned by
    /// [`secret_bytes`](Self::secret_bytes)). Any 32 bytes are a valid secret: X25519
    /// clamps the scalar when it is used.
    pub fn from_secret(bytes: [u8; KEY_LEN]) -> Self {
        let mut bytes = bytes;
        let secret = StaticSecret::from(bytes);
        bytes.zeroize();
        let public = PublicKey::from(&secret);
        Self { secret, public }
    }

    /// The public key, to publish in `hello` and compare through fingerprints.
    pub fn public(&self) -> [u8; KEY_LEN] {
        self.public.to_bytes()
    }

    /// A copy of the secret key, for persisting the key pair.
    ///
    /// Whoever holds these bytes can read every message sent to this key and
    /// impersonate its owner. Write them only to storage readable by the owner alone
    /// (file mode 0600, a protected flash page), never to logs, and wipe the copy once
    /// it is stored (for example with [`zeroize::Zeroize`] or by wrapping it in
    /// [`zeroize::Zeroizing`]); this returned array is *not* wiped automatically.
    pub fn secret_bytes(&self) -> [u8; KEY_LEN] {
        self.secret.to_bytes()
    }

    /// Derives the key shared with the owner of `peer_pub` (both directions use it).
    ///
    /// This costs one X25519 scalar multiplication: derive the key once per peer and
    /// cache the result. Rejects a non-contributory shared secret (a low-order or
    /// all-zero peer public key) with [`E2eeError::WeakPeerKey`].
    pub fn peer_key(&self, peer_pub: &[u8; KEY_LEN]) -> Result<PeerKey, E2eeError> {
        let shared = self.secret.diffie_hellman(&PublicKey::from(*peer_pub));
        if !shared.was_contributory() {
            return Err(E2eeError::WeakPeerKey);
        }
        let hkdf = Hkdf::<Sha256>::new(None, shared.as_bytes());
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        hkdf.expand(HKDF_INFO, key.as_mut())
            .map_err(|_| E2eeError::KeyDerivation)?;
        Ok(PeerKey::from_bytes(*key))
    }
}

impl core::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &crate::fingerprint::short(self.public.as_bytes()))
            .finish_non_exhaustive()
    }
}

/// The AES-256-GCM key shared with one peer (v1 uses it in both directions).
///
/// Holds only the 32-byte key, wiped when dropped; the AES key schedule is expanded on
/// the stack for each call, so a cached `PeerKey` costs 32 bytes of RAM.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct PeerKey {
    key: [u8; KEY_LEN],
}

impl PeerKey {
    /// Wraps an already derived key (test vectors, keys restored from storage).
    pub fn from_bytes(key: [u8; KEY_LEN]) -> Self {
        Self { key }
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.key.into())
    }

    /// Encrypts `plaintext` under a fresh random nonce drawn from `rng`.
    ///
    /// Writes `cipher || tag` (`plaintext.len() + 16` bytes) to the start of `out` and
    /// returns the nonce and the number of bytes written. On error `out` is untouched
    /// and no randomness is consumed.
    pub fn seal(
        &self,
        rng: &mut impl rand_core::CryptoRngCore,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<([u8; NONCE_LEN], usize), E2eeError> {
        sealed_len(plaintext.len(), out.len())?;
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let len = self.seal_with_nonce(&nonce, plaintext, out)?;
        Ok((nonce, len))
    }

    /// Encrypts `plaintext` under `nonce`, which must never be reused with this key
    /// (prefer [`seal`](Self::seal); this exists for test vectors and for hosts that
    /// draw the nonce themselves).
    ///
    /// Writes `cipher || tag` to the start of `out` and returns its length,
    /// `plaintext.len() + 16`. On error `out` is untouched.
    pub fn seal_with_nonce(
        &self,
        nonce: &[u8; NONCE_LEN],
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, E2eeError> {
        let needed = sealed_len(plaintext.len(), out.len())?;
        let body = out
            .get_mut(..plaintext.len())
            .ok_or(E2eeError::BufferTooSmall { needed })?;
        body.copy_from_slice(plaintext);
        self.seal_in_place_with_nonce(nonce, out, plaintext.len())
            .inspect_err(|_| {
                // Unreachable after the checks above, but never leave plaintext behind.
                if let Some(body) = out.get_mut(..plaintext.len()) {
                    body.zeroize();
                }
            })
    }

    /// Encrypts the first `plaintext_len` bytes of `buf` in place and appends the tag:
    /// on success `buf[..plaintext_len + 16]` holds `cipher || tag` and that length is
    /// returned. The nonce must never be reused with this key. On error `buf` is
    /// untouched.
    pub fn seal_in_place_with_nonce(
        &self,
        nonce: &[u8; NONCE_LEN],
        buf: &mut [u8],
        plaintext_len: usize,
    ) -> Result<usize, E2eeError> {
        let needed = sealed_len(plaintext_len, buf.len())?;
        let (body, rest) = buf
            .split_at_mut_checked(plaintext_len)
            .ok_or(E2eeError::BufferTooSmall { needed })?;
        let tag_out = rest
            .get_mut(..TAG_LEN)
            .ok_or(E2eeError::BufferTooSmall { needed })?;
        let tag = self
            .cipher()
            .encrypt_in_place_detached(nonce.into(), &[], body)
            .map_err(|_| E2eeError::PlaintextTooLong)?;
        tag_out.copy_from_slice(&tag);
        Ok(needed)
    }

    /// Decrypts `cipher` (`ciphertext || tag`, as received) into the start of `out`
    /// and returns the plaintext length, `cipher.len() - 16`.
    ///
    /// On [`E2eeError::Decrypt`] every byte this call wrote to `out` is zeroed, so no
    /// unauthenticated plaintext is ever released. On other errors `out` is untouched.
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        cipher: &[u8],
        out: &mut [u8],
    ) -> Result<usize, E2eeError> {
        let (body, tag) = split_tag(cipher)?;
        let dest = out
            .get_mut(..body.len())
            .ok_or(E2eeError::BufferTooSmall { needed: body.len() })?;
        dest.copy_from_slice(body);
        self.decrypt(nonce, dest, &tag)?;
        Ok(body.len())
    }

    /// Decrypts `buf` (`ciphertext || tag`) in place: on success the plaintext is
    /// `buf[..n]` where `n = buf.len() - 16` is returned, and the tag bytes are zeroed.
    ///
    /// On [`E2eeError::Decrypt`] the whole of `buf` is zeroed; on
    /// [`E2eeError::CipherTooShort`] it is untouched.
    pub fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        buf: &mut [u8],
    ) -> Result<usize, E2eeError> {
        let body_len = buf
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(E2eeError::CipherTooShort)?;
        let (body, tag_bytes) = buf
            .split_at_mut_checked(body_len)
            .ok_or(E2eeError::CipherTooShort)?;
        let tag = tag_from(tag_bytes)?;
        tag_bytes.zeroize();
        self.decrypt(nonce, body, &tag)?;
        Ok(body_len)
    }

    /// Authenticates and decrypts `body` in place; zeroes it on failure.
    fn decrypt(
        &self,
        nonce: &[u8; NONCE_LEN],
        body: &mut [u8],
        tag: &Tag,
    ) -> Result<(), E2eeError> {
        match self
            .cipher()
            .decrypt_in_place_detached(nonce.into(), &[], body, tag)
        {
            Ok(()) => Ok(()),
            Err(_) => {
                body.zeroize();
                Err(E2eeError::Decrypt)
            }
        }
    }
}

impl core::fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PeerKey(<redacted>)")
    }
}

/// Checks that a plaintext of `plaintext_len` bytes may be sealed into `out_len` bytes
/// and returns the sealed length.
fn sealed_len(plaintext_len: usize, out_len: usize) -> Result<usize, E2eeError> {
    if u64::try_from(plaintext_len).unwrap_or(u64::MAX) > GCM_MAX_PLAINTEXT {
        return Err(E2eeError::PlaintextTooLong);
    }
    let needed = plaintext_len
        .checked_add(TAG_LEN)
        .ok_or(E2eeError::PlaintextTooLong)?;
    if out_len < needed {
        return Err(E2eeError::BufferTooSmall { needed });
    }
    Ok(needed)
}

/// Splits `ciphertext || tag`.
fn split_tag(cipher: &[u8]) -> Result<(&[u8], Tag), E2eeError> {
    let body_len = cipher
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(E2eeError::CipherTooShort)?;
    let (body, tag) = cipher
        .split_at_checked(body_len)
        .ok_or(E2eeError::CipherTooShort)?;
    Ok((body, tag_from(tag)?))
}

/// Copies an exactly 16-byte slice into a [`Tag`].
fn tag_from(bytes: &[u8]) -> Result<Tag, E2eeError> {
    <[u8; TAG_LEN]>::try_from(bytes)
        .map(Tag::from)
        .map_err(|_| E2eeError::CipherTooShort)
}

/// The X25519 public keys (u-coordinates, little-endian) of the points of small order,
/// bit 255 cleared: 0 and 1, the two order-8 points, p − 1, and the non-canonical
/// encodings p and p + 1 of 0 and 1 (no other small-order u has one below 2^255).
const LOW_ORDER: [[u8; KEY_LEN]; 7] = {
    let mut p_minus_1 = [0xff; KEY_LEN];
    p_minus_1[0] = 0xec;
    p_minus_1[31] = 0x7f;
    let mut p = p_minus_1;
    p[0] = 0xed;
    let mut p_plus_1 = p_minus_1;
    p_plus_1[0] = 0xee;
    let mut one = [0; KEY_LEN];
    one[0] = 1;
    [
        [0; KEY_LEN],
        one,
        [
            0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f,
            0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16,
            0x5f, 0x49, 0xb8, 0x00,
        ],
        [
            0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83,
            0xef, 0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd,
            0xd0, 0x9f, 0x11, 0x57,
        ],
        p_minus_1,
        p,
        p_plus_1,
    ]
};

/// True if `key` is an X25519 public key of small order (all zeros, one, an order-8
/// point, or another encoding of one of them): a Diffie-Hellman with it gives the same
/// shared secret whatever the other side's secret, so it must be refused.
///
/// Deterministic and cheap (a comparison with the 7 known encodings, bit 255 ignored as
/// X25519 ignores it), so a server can check every `hello` without a scalar
/// multiplication; it refuses exactly the keys for which
/// [`KeyPair::peer_key`] reports [`E2eeError::WeakPeerKey`].
pub fn is_low_order(key: &[u8; KEY_LEN]) -> bool {
    LOW_ORDER.iter().any(|bad| {
        key.iter().zip(bad).enumerate().all(|(i, (&k, &b))| {
            if i == KEY_LEN - 1 {
                k & 0x7f == b
            } else {
                k == b
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(0x5e6u64)
    }

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    fn pair() -> (KeyPair, KeyPair) {
        let mut rng = rng();
        (KeyPair::generate(&mut rng), KeyPair::generate(&mut rng))
    }

    #[test]
    fn both_directions_share_a_key() {
        let (a, b) = pair();
        assert_ne!(a.public(), b.public());
        let ab = a.peer_key(&b.public()).unwrap();
        let ba = b.peer_key(&a.public()).unwrap();
        let nonce = [7u8; NONCE_LEN];
        let mut c1 = [0u8; 64];
        let mut c2 = [0u8; 64];
        let n1 = ab.seal_with_nonce(&nonce, b"hola juan", &mut c1).unwrap();
        let n2 = ba.seal_with_nonce(&nonce, b"hola juan", &mut c2).unwrap();
        assert_eq!(n1, 9 + TAG_LEN);
        assert_eq!(c1[..n1], c2[..n2]);
        let mut plain = [0u8; 64];
        let n = ba.open(&nonce, &c1[..n1], &mut plain).unwrap();
        assert_eq!(&plain[..n], b"hola juan");
    }

    #[test]
    fn seal_draws_a_fresh_nonce() {
        let (a, b) = pair();
        let key = a.peer_key(&b.public()).unwrap();
        let mut rng = rng();
        let mut c1 = [0u8; 32];
        let mut c2 = [0u8; 32];
        let (nonce1, n1) = key.seal(&mut rng, b"same", &mut c1).unwrap();
        let (nonce2, n2) = key.seal(&mut rng, b"same", &mut c2).unwrap();
        assert_ne!(nonce1, nonce2);
        assert_ne!(c1[..n1], c2[..n2]);
        let mut plain = [0u8; 4];
        assert_eq!(key.open(&nonce2, &c2[..n2], &mut plain), Ok(4));
        assert_eq!(&plain, b"same");
    }

    #[test]
    fn secret_round_trips() {
        let (a, _) = pair();
        let restored = KeyPair::from_secret(a.secret_bytes());
        assert_eq!(restored.public(), a.public());
    }

    #[test]
    fn rfc7748_public_keys() {
        // RFC 7748 §6.1.
        let alice = KeyPair::from_secret(hex32(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        assert_eq!(
            alice.public(),
            hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        let bob = KeyPair::from_secret(hex32(
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        ));
        assert_eq!(
            bob.public(),
            hex32("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        );
    }

    #[test]
    fn gcm_spec_test_cases_13_and_14() {
        // McGrew & Viega, "The Galois/Counter Mode of Operation", AES-256 with a zero
        // key and a zero 96-bit IV.
        let key = PeerKey::from_bytes([0; 32]);
        let nonce = [0u8; NONCE_LEN];
        let mut out = [0u8; 32];
        assert_eq!(key.seal_with_nonce(&nonce, &[], &mut out), Ok(16));
        assert_eq!(
            out[..16],
            hex32("530f8afbc74536b9a963b4f1c4cb738b00000000000000000000000000000000")[..16]
        );
        assert_eq!(key.seal_with_nonce(&nonce, &[0; 16], &mut out), Ok(32));
        assert_eq!(
            out,
            hex32("cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919")
        );
    }

    #[test]
    fn low_order_peer_keys_are_rejected() {
        let (a, _) = pair();
        let low_order = [
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0100000000000000000000000000000000000000000000000000000000000000",
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ];
        for point in low_order {
            let mut bytes = hex32(point);
            assert_eq!(
                a.peer_key(&bytes).unwrap_err(),
                E2eeError::WeakPeerKey,
                "{point}"
            );
            // The top bit is ignored by X25519, so these are the same points.
            bytes[31] |= 0x80;
            assert_eq!(
                a.peer_key(&bytes).unwrap_err(),
                E2eeError::WeakPeerKey,
                "{point}+msb"
            );
        }
    }

    #[test]
    fn seal_reports_the_size_needed_and_leaves_out_untouched() {
        let key = PeerKey::from_bytes([1; 32]);
        let mut out = [0xaau8; 24];
        assert_eq!(
            key.seal_with_nonce(&[0; 12], &[5; 9], &mut out),
            Err(E2eeError::BufferTooSmall { needed: 25 })
        );
        assert_eq!(out, [0xaa; 24]);
        let mut rng = rng();
        assert_eq!(
            key.seal(&mut rng, &[5; 9], &mut out),
            Err(E2eeError::BufferTooSmall { needed: 25 })
        );
        assert_eq!(out, [0xaa; 24]);
        assert_eq!(
            key.seal_in_place_with_nonce(&[0; 12], &mut out, 9),
            Err(E2eeError::BufferTooSmall { needed: 25 })
        );
        assert_eq!(out, [0xaa; 24]);
        // Exactly enough room.
        let mut out = [0u8; 25];
        assert_eq!(key.seal_with_nonce(&[0; 12], &[5; 9], &mut out), Ok(25));
    }

    #[test]
    fn open_rejects_short_cipher_and_small_buffer() {
        let key = PeerKey::from_bytes([1; 32]);
        let mut out = [0xaau8; 8];
        for len in 0..TAG_LEN {
            assert_eq!(
                key.open(&[0; 12], &[0; 15][..len], &mut out),
                Err(E2eeError::CipherTooShort)
            );
            let mut buf = [3u8; 15];
            assert_eq!(
                key.open_in_place(&[0; 12], &mut buf[..len]),
                Err(E2eeError::CipherTooShort)
            );
            assert_eq!(buf, [3; 15]);
        }
        let mut sealed = [0u8; 9 + TAG_LEN];
        key.seal_with_nonce(&[0; 12], b"123456789", &mut sealed)
            .unwrap();
        assert_eq!(
            key.open(&[0; 12], &sealed, &mut out),
            Err(E2eeError::BufferTooSmall { needed: 9 })
        );
        assert_eq!(out, [0xaa; 8]);
    }

    #[test]
    fn failed_open_releases_no_plaintext() {
        let key = PeerKey::from_bytes([1; 32]);
        let other = PeerKey::from_bytes([2; 32]);
        let mut sealed = [0u8; 5 + TAG_LEN];
        let n = key
            .seal_with_nonce(&[9; 12], b"hello", &mut sealed)
            .unwrap();
        let mut out = [0xaau8; 8];
        assert_eq!(
            other.open(&[9; 12], &sealed[..n], &mut out),
            Err(E2eeError::Decrypt)
        );
        assert_eq!(out, [0, 0, 0, 0, 0, 0xaa, 0xaa, 0xaa]);
        assert_eq!(
            key.open(&[8; 12], &sealed[..n], &mut out),
            Err(E2eeError::Decrypt)
        );
        let mut buf = sealed;
        assert_eq!(
            other.open_in_place(&[9; 12], &mut buf),
            Err(E2eeError::Decrypt)
        );
        assert_eq!(buf, [0; 5 + TAG_LEN]);
    }

    #[test]
    fn in_place_round_trip() {
        let key = PeerKey::from_bytes([4; 32]);
        let mut buf = [0u8; 40];
        buf[..11].copy_from_slice(b"in place ok");
        let n = key
            .seal_in_place_with_nonce(&[1; 12], &mut buf, 11)
            .unwrap();
        assert_eq!(n, 11 + TAG_LEN);
        let mut copy = [0u8; 27];
        assert_eq!(
            key.seal_with_nonce(&[1; 12], b"in place ok", &mut copy),
            Ok(n)
        );
        assert_eq!(buf[..n], copy);
        assert_eq!(key.open_in_place(&[1; 12], &mut buf[..n]), Ok(11));
        assert_eq!(&buf[..11], b"in place ok");
        assert_eq!(buf[11..n], [0; TAG_LEN]);
    }

    #[test]
    fn errors_display_and_debug_redact_secrets() {
        use core::fmt::Write;
        let mut s = heapless::String::<256>::new();
        write!(s, "{}", E2eeError::BufferTooSmall { needed: 42 }).unwrap();
        assert!(s.contains("42"));
        s.clear();
        let (a, b) = pair();
        let key = a.peer_key(&b.public()).unwrap();
        write!(s, "{a:?} {key:?}").unwrap();
        assert!(s.contains(crate::fingerprint::short(&a.public()).as_str()));
        assert!(s.contains("redacted"));
    }
}
