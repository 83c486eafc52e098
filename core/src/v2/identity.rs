//! What v2 signs with the long-term identity ([`crate::identity::Identity`], spec §3–§4):
//! the binding of both keys to a name, the `hello` proof of possession and prekey
//! signatures.
//!
//! The client side is [`Identity::bind`], [`Identity::hello_proof`] and
//! [`Identity::sign_prekey`]; the server side is [`Challenge`] (with
//! [`Challenge::verify`]); everyone checks bindings with [`verify_binding`].

use core::fmt;

use ed25519_dalek::{Signature, VerifyingKey};
use zeroize::Zeroizing;

use crate::identity::{Identity, PublicIdentity};
use crate::v2::{Concat, KEY_LEN, SIG_LEN, dh, hkdf, hmac, label, name_ok, x25519_public};

/// Length of the `hello` challenge nonce.
pub const NONCE_LEN: usize = 32;

/// Longest signed or MACed input: the `hello` proof.
const MAX_SIGNED: usize = 16 + 3 * 32 + 1 + crate::v2::MAX_NAME_BYTES + 2 * KEY_LEN;

/// What went wrong with an identity operation.
///
/// [`BadName`](Self::BadName) is a caller mistake; the others mean the peer or the
/// server presented something that does not verify.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityError {
    /// The name is empty or longer than 128 bytes.
    BadName,
    /// A signature does not verify (or the Ed25519 key is not a valid point).
    BadSignature,
    /// The proof's MAC does not verify.
    BadMac,
    /// An X25519 key is a low-order point.
    WeakKey,
    /// Key derivation failed (cannot happen; no panicking path).
    KeyDerivation,
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadName => "name must be 1 to 128 bytes",
            Self::BadSignature => "signature does not verify",
            Self::BadMac => "proof of possession of the X25519 key does not verify",
            Self::WeakKey => "X25519 key is a low-order point",
            Self::KeyDerivation => "key derivation failed",
        })
    }
}

impl core::error::Error for IdentityError {}

/// The answer to a server's challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloProof {
    /// Ed25519 signature over the proof input.
    pub sig: [u8; SIG_LEN],
    /// HMAC over the proof input with a key from `X25519(ik, eph)`.
    pub mac: [u8; 32],
}

/// v2's statements, signed with the identity's Ed25519 key.
impl Identity {
    /// The binding signature for `name` (spec §3.2).
    pub fn bind(&self, name: &str) -> Result<[u8; SIG_LEN], IdentityError> {
        let msg = binding_message(name, &self.public_keys())?;
        Ok(self.sign(msg.bytes().ok_or(IdentityError::BadName)?))
    }

    /// Signs a signed prekey (spec §5.1).
    pub fn sign_prekey(&self, id: u32, public: &[u8; KEY_LEN]) -> [u8; SIG_LEN] {
        let mut m = Concat::<64>::new();
        m.push(label!("spk")).push(&id.to_be_bytes()).push(public);
        self.sign(m.bytes().unwrap_or(&[]))
    }

    /// Answers a server's `challenge` (spec §4.2): `spki` is the SHA-256 of the pinned
    /// server certificate's SubjectPublicKeyInfo, `nonce` and `server_eph` come from the
    /// challenge.
    pub fn hello_proof(
        &self,
        name: &str,
        spki: &[u8; 32],
        nonce: &[u8; NONCE_LEN],
        server_eph: &[u8; KEY_LEN],
    ) -> Result<HelloProof, IdentityError> {
        let p = proof_input(name, &self.public_keys(), spki, nonce, server_eph)?;
        let p = p.bytes().ok_or(IdentityError::BadName)?;
        let shared = dh(&self.x_secret_bytes(), server_eph).ok_or(IdentityError::WeakKey)?;
        let key = proof_mac_key(nonce, &shared)?;
        Ok(HelloProof {
            sig: self.sign(p),
            mac: hmac(key.as_ref(), &[p]),
        })
    }
}

fn binding_message(name: &str, id: &PublicIdentity) -> Result<Concat<256>, IdentityError> {
    if !name_ok(name) {
        return Err(IdentityError::BadName);
    }
    let mut m = Concat::new();
    m.push(label!("identity"))
        .push_name(name)
        .push(&id.x)
        .push(&id.ed);
    Ok(m)
}

fn proof_input(
    name: &str,
    id: &PublicIdentity,
    spki: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    server_eph: &[u8; KEY_LEN],
) -> Result<Concat<MAX_SIGNED>, IdentityError> {
    if !name_ok(name) {
        return Err(IdentityError::BadName);
    }
    let mut m = Concat::new();
    m.push(label!("hello"))
        .push(spki)
        .push(nonce)
        .push(server_eph)
        .push_name(name)
        .push(&id.x)
        .push(&id.ed);
    Ok(m)
}

fn proof_mac_key(
    nonce: &[u8; NONCE_LEN],
    shared: &[u8; 32],
) -> Result<Zeroizing<[u8; 32]>, IdentityError> {
    let mut key = Zeroizing::new([0u8; 32]);
    hkdf(nonce, shared, &[b"seguro/v2/hello-mac"], key.as_mut())
        .map_err(|_| IdentityError::KeyDerivation)?;
    Ok(key)
}

fn verify(ed: &[u8; KEY_LEN], msg: &[u8], sig: &[u8; SIG_LEN]) -> Result<(), IdentityError> {
    let key = VerifyingKey::from_bytes(ed).map_err(|_| IdentityError::BadSignature)?;
    key.verify_strict(msg, &Signature::from_bytes(sig))
        .map_err(|_| IdentityError::BadSignature)
}

/// Checks that `bind` is `id.ed`'s signature binding `id.x` to `name` (spec §3.2).
pub fn verify_binding(
    name: &str,
    id: &PublicIdentity,
    bind: &[u8; SIG_LEN],
) -> Result<(), IdentityError> {
    let m = binding_message(name, id)?;
    verify(&id.ed, m.bytes().ok_or(IdentityError::BadName)?, bind)
}

/// Checks a signed prekey's signature (spec §5.1).
pub fn verify_prekey(
    ed: &[u8; KEY_LEN],
    id: u32,
    public: &[u8; KEY_LEN],
    sig: &[u8; SIG_LEN],
) -> Result<(), IdentityError> {
    let mut m = Concat::<64>::new();
    m.push(label!("spk")).push(&id.to_be_bytes()).push(public);
    verify(ed, m.bytes().unwrap_or(&[]), sig)
}

/// A server's challenge for one connection: a fresh nonce and X25519 key pair, wiped
/// when dropped.
pub struct Challenge {
    nonce: [u8; NONCE_LEN],
    eph_secret: Zeroizing<[u8; KEY_LEN]>,
    eph_public: [u8; KEY_LEN],
}

impl Challenge {
    /// Draws a challenge from `rng`.
    pub fn generate(rng: &mut impl rand_core::CryptoRngCore) -> Self {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let mut eph = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(eph.as_mut());
        Self::from_parts(nonce, &eph)
    }

    /// Rebuilds a challenge from its nonce and ephemeral secret (test vectors).
    pub fn from_parts(nonce: [u8; NONCE_LEN], eph_secret: &[u8; KEY_LEN]) -> Self {
        Self {
            nonce,
            eph_secret: Zeroizing::new(*eph_secret),
            eph_public: x25519_public(eph_secret),
        }
    }

    /// The nonce to send (`challenge.nonce`).
    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    /// The ephemeral public key to send (`challenge.eph`).
    pub fn eph_public(&self) -> &[u8; KEY_LEN] {
        &self.eph_public
    }

    /// Checks a client's `hello` binding and `proof` for `name` (spec §4.2). `spki` is
    /// the SHA-256 of the server's own certificate's SubjectPublicKeyInfo.
    pub fn verify(
        &self,
        name: &str,
        id: &PublicIdentity,
        bind: &[u8; SIG_LEN],
        spki: &[u8; 32],
        proof: &HelloProof,
    ) -> Result<(), IdentityError> {
        verify_binding(name, id, bind)?;
        let p = proof_input(name, id, spki, &self.nonce, &self.eph_public)?;
        let p = p.bytes().ok_or(IdentityError::BadName)?;
        verify(&id.ed, p, &proof.sig)?;
        let shared = dh(&self.eph_secret, &id.x).ok_or(IdentityError::WeakKey)?;
        let key = proof_mac_key(&self.nonce, &shared)?;
        let expected = hmac(key.as_ref(), &[p]);
        if subtle_eq(&expected, &proof.mac) {
            Ok(())
        } else {
            Err(IdentityError::BadMac)
        }
    }
}

/// Constant-time equality of two 32-byte values.
pub(crate) fn subtle_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proof_buffer_is_exactly_the_longest_proof_input() {
        // MAX_SIGNED bytes live on the stack (boards count them); the longest name fits.
        let name = "\u{1F680}".repeat(crate::v2::MAX_NAME_BYTES / 4);
        let id = PublicIdentity {
            x: [1; 32],
            ed: [2; 32],
        };
        let p = proof_input(&name, &id, &[3; 32], &[4; 32], &[5; 32]).unwrap();
        assert_eq!(p.bytes().map(<[u8]>::len), Some(MAX_SIGNED));
    }
}
