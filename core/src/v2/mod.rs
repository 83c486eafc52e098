//! Protocol v2 cryptography (`docs/protocol-v2.md`): identities bound to names, the
//! `hello` proof, X3DH session setup from signed prekeys, the Double Ratchet, short
//! authentication strings and the byte layouts they travel in.
//!
//! Everything here is `no_std`, allocation-free and panic-free on input, like the rest
//! of core: outputs go into caller buffers (errors say how many bytes were needed),
//! randomness is an argument, secrets are wiped when dropped, and every operation has
//! its own small `Copy` error enum.
//!
//! | module | job |
//! |---|---|
//! | [`identity`] | what v2 signs with the long-term identity ([`crate::identity::Identity`]): its binding to a name, the `hello` proof, prekey signatures |
//! | [`x3dh`] | prekey bundles and the initial agreement |
//! | [`ratchet`] | [`ratchet::Session`]: seal and open v2 messages, persist the state |
//! | [`sas`] | short authentication strings (commit, key, reveal, confirm) |
//! | [`wire`] | the header, the prelude and the inner messages, byte for byte |
//! | [`json`] | every v2 JSON message (`challenge`, `proof`, `relay2`, `ack`, `ping`, `prekeys`, `bundle`, `dir`, `error` with `code`, …) and the v2 fields of v1's `hello`, `welcome`/`users` and `relay` |
//!
//! A typical exchange (the JSON around it is §2 and §7.2 of the spec):
//!
//! 1. Bob publishes a signed prekey ([`x3dh::PrekeyPair`], [`crate::identity::Identity::sign_prekey`]).
//! 2. Alice fetches Bob's [`x3dh::Bundle`] and calls [`ratchet::Session::initiate`], then
//!    [`ratchet::Session::seal`] for each inner message ([`wire::Inner`]).
//! 3. Bob reads the prelude of the first message with [`wire::parse`], finds the
//!    prekeys it names and calls [`ratchet::Session::respond`]; later messages go to
//!    [`ratchet::Session::open`].

pub mod identity;
pub mod json;
pub mod ratchet;
pub mod sas;
pub mod wire;
pub mod x3dh;

use hkdf::{Hkdf, HkdfExtract};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// The protocol version byte of every v2 header.
pub const VERSION: u8 = 0x02;
/// Length of an X25519 or Ed25519 public key, and of every chain and root key (the
/// same 32 bytes as v1's keys).
pub use crate::e2ee::KEY_LEN;
/// Length of an Ed25519 signature.
pub const SIG_LEN: usize = 64;
/// The longest name, in UTF-8 bytes, that enters a length-prefixed field.
pub const MAX_NAME_BYTES: usize = crate::limits::MAX_NAME_BYTES;
/// The longest text of an inner text message, in bytes.
pub const MAX_TEXT: usize = crate::limits::CLIENT_MAX_TEXT;

/// HKDF salt of 32 zero bytes.
const Z32: [u8; 32] = [0; 32];

/// A KDF label as a prefix: `seguro/v2/<name>` and one zero byte.
macro_rules! label {
    ($name:literal) => {
        concat!("seguro/v2/", $name, "\0").as_bytes()
    };
}
pub(crate) use label;

/// HKDF-SHA256 expand failed: cannot happen for the fixed lengths v2 uses (at most 64
/// bytes); it exists so that no key derivation has a panicking path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfFailed;

impl core::fmt::Display for KdfFailed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("key derivation failed")
    }
}

impl core::error::Error for KdfFailed {}

/// `HKDF(salt, ikm, info = concatenation of info, L = out.len())`.
pub(crate) fn hkdf(
    salt: &[u8],
    ikm: &[u8],
    info: &[&[u8]],
    out: &mut [u8],
) -> Result<(), KdfFailed> {
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand_multi_info(info, out)
        .map_err(|_| KdfFailed)
}

/// `HMAC-SHA256(key, concatenation of parts)`, computed as HKDF-Extract with `key` as
/// the salt, which is its definition (RFC 5869 §2.2).
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = HkdfExtract::<Sha256>::new(Some(key));
    for p in parts {
        ctx.input_ikm(p);
    }
    ctx.finalize().0.into()
}

/// X25519, refusing a non-contributory result (a low-order peer point).
pub(crate) fn dh(secret: &[u8; 32], public: &[u8; 32]) -> Option<Zeroizing<[u8; 32]>> {
    let secret = StaticSecret::from(*secret);
    let shared = secret.diffie_hellman(&PublicKey::from(*public));
    if shared.was_contributory() {
        Some(Zeroizing::new(shared.to_bytes()))
    } else {
        None
    }
}

/// The X25519 public key of a secret.
pub(crate) fn x25519_public(secret: &[u8; 32]) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(*secret)).to_bytes()
}

/// Checks a name for a length-prefixed field: 1 to [`MAX_NAME_BYTES`] bytes.
pub(crate) fn name_ok(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_BYTES
}

/// A fixed-capacity byte string for building signed and hashed inputs on the stack.
pub(crate) struct Concat<const N: usize> {
    buf: [u8; N],
    len: usize,
    overflow: bool,
}

impl<const N: usize> Concat<N> {
    pub(crate) const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
            overflow: false,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) -> &mut Self {
        let end = self.len.saturating_add(bytes.len());
        match self.buf.get_mut(self.len..end) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len = end;
            }
            None => self.overflow = true,
        }
        self
    }

    /// `u8(len(name)) || name`; the caller has checked the name with [`name_ok`].
    pub(crate) fn push_name(&mut self, name: &str) -> &mut Self {
        match u8::try_from(name.len()) {
            Ok(len) => self.push(&[len]).push(name.as_bytes()),
            Err(_) => {
                self.overflow = true;
                self
            }
        }
    }

    /// The bytes, or `None` if a push did not fit (a bug: every user sizes `N` for the
    /// longest input).
    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        if self.overflow {
            None
        } else {
            self.buf.get(..self.len)
        }
    }
}

impl<const N: usize> Drop for Concat<N> {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.buf);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;

    #[test]
    fn kdf_failure_says_what_failed() {
        assert_eq!(super::KdfFailed.to_string(), "key derivation failed");
    }
}
