//! Prekeys, bundles and the X3DH initial agreement (spec §5).
//!
//! [`Session::initiate`](crate::v2::ratchet::Session::initiate) and
//! [`Session::respond`](crate::v2::ratchet::Session::respond) use this module; it is
//! public for the prekey types and for the test vectors.

use core::fmt;

use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::identity::PublicIdentity;
use crate::v2::identity::{IdentityError, verify_binding, verify_prekey};
use crate::v2::{KEY_LEN, SIG_LEN, Z32, dh, hkdf, label, name_ok, x25519_public};

/// An X25519 prekey pair with its id (signed or one-time). The secret is wiped when
/// dropped.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct PrekeyPair {
    id: u32,
    secret: [u8; KEY_LEN],
    #[zeroize(skip)]
    public: [u8; KEY_LEN],
}

impl PrekeyPair {
    /// A new prekey with id `id` from 32 bytes of `rng`.
    pub fn generate(rng: &mut impl rand_core::CryptoRngCore, id: u32) -> Self {
        let mut secret = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(secret.as_mut());
        Self::from_secret(id, &secret)
    }

    /// Rebuilds a stored prekey.
    pub fn from_secret(id: u32, secret: &[u8; KEY_LEN]) -> Self {
        Self {
            id,
            secret: *secret,
            public: x25519_public(secret),
        }
    }

    /// The id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The public key to publish.
    pub fn public(&self) -> &[u8; KEY_LEN] {
        &self.public
    }

    /// A copy of the secret, for storage (not wiped automatically).
    pub fn secret_bytes(&self) -> [u8; KEY_LEN] {
        self.secret
    }

    pub(crate) fn secret(&self) -> &[u8; KEY_LEN] {
        &self.secret
    }
}

impl fmt::Debug for PrekeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrekeyPair")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A peer as the directory presents it: name, keys and binding signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerIdentity<'a> {
    /// The peer's name.
    pub name: &'a str,
    /// The peer's keys.
    pub keys: PublicIdentity,
    /// The peer's binding signature (spec §3.2).
    pub bind: [u8; SIG_LEN],
}

impl PeerIdentity<'_> {
    /// Checks the binding.
    pub fn verify(&self) -> Result<(), IdentityError> {
        verify_binding(self.name, &self.keys, &self.bind)
    }
}

/// What an initiator fetches for a peer (`bundle`, spec §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bundle<'a> {
    /// The peer.
    pub peer: PeerIdentity<'a>,
    /// Signed prekey id.
    pub spk_id: u32,
    /// Signed prekey.
    pub spk: [u8; KEY_LEN],
    /// Its signature by the peer's Ed25519 key.
    pub spk_sig: [u8; SIG_LEN],
    /// A one-time prekey (id, key), if the server had one.
    pub opk: Option<(u32, [u8; KEY_LEN])>,
}

impl Bundle<'_> {
    /// Checks the binding and the signed prekey's signature.
    pub fn verify(&self) -> Result<(), IdentityError> {
        self.peer.verify()?;
        verify_prekey(&self.peer.keys.ed, self.spk_id, &self.spk, &self.spk_sig)
    }
}

/// Why a session could not be set up.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupError {
    /// A binding or prekey signature does not verify (or a name is unusable): the
    /// server presented keys that are not the peer's.
    Identity(IdentityError),
    /// A public key is a low-order point.
    WeakKey,
    /// Key derivation failed (cannot happen; no panicking path).
    KeyDerivation,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Identity(e) => write!(f, "peer identity refused: {e}"),
            Self::WeakKey => f.write_str("a prekey or identity key is a low-order point"),
            Self::KeyDerivation => f.write_str("key derivation failed"),
        }
    }
}

impl core::error::Error for SetupError {}

impl From<IdentityError> for SetupError {
    fn from(e: IdentityError) -> Self {
        Self::Identity(e)
    }
}

/// The binding hash `B` (spec §5.4) of initiator `i` and responder `r`.
pub fn binding_hash(
    i_name: &str,
    i: &PublicIdentity,
    r_name: &str,
    r: &PublicIdentity,
) -> Result<[u8; 32], SetupError> {
    if !name_ok(i_name) || !name_ok(r_name) {
        return Err(SetupError::Identity(IdentityError::BadName));
    }
    let mut h = Sha256::new();
    h.update(label!("ad"));
    for k in [&i.x, &i.ed, &r.x, &r.ed] {
        h.update(k);
    }
    for name in [i_name, r_name] {
        h.update([u8::try_from(name.len()).unwrap_or(0)]);
        h.update(name.as_bytes());
    }
    Ok(h.finalize().into())
}

/// `SK` from the DH outputs, in order (spec §5.3).
pub(crate) fn derive_sk(dhs: &[&[u8; 32]]) -> Result<Zeroizing<[u8; 32]>, SetupError> {
    let mut ikm = Zeroizing::new([0u8; 32 * 5]);
    let mut len = 32;
    if let Some(pad) = ikm.get_mut(..32) {
        pad.fill(0xff);
    }
    for d in dhs {
        let dst = ikm
            .get_mut(len..len + 32)
            .ok_or(SetupError::KeyDerivation)?;
        dst.copy_from_slice(*d);
        len += 32;
    }
    let mut sk = Zeroizing::new([0u8; 32]);
    let ikm = ikm.get(..len).ok_or(SetupError::KeyDerivation)?;
    hkdf(&Z32, ikm, &[b"seguro/v2/x3dh"], sk.as_mut()).map_err(|_| SetupError::KeyDerivation)?;
    Ok(sk)
}

/// The initiator's X3DH: `SK` from its identity secret, the ephemeral secret and the
/// peer's bundle (already verified).
pub(crate) fn initiator_sk(
    ik: &[u8; KEY_LEN],
    ek: &[u8; KEY_LEN],
    bundle: &Bundle<'_>,
) -> Result<Zeroizing<[u8; 32]>, SetupError> {
    let dh1 = dh(ik, &bundle.spk).ok_or(SetupError::WeakKey)?;
    let dh2 = dh(ek, &bundle.peer.keys.x).ok_or(SetupError::WeakKey)?;
    let dh3 = dh(ek, &bundle.spk).ok_or(SetupError::WeakKey)?;
    match &bundle.opk {
        Some((_, opk)) => {
            let dh4 = dh(ek, opk).ok_or(SetupError::WeakKey)?;
            derive_sk(&[&dh1, &dh2, &dh3, &dh4])
        }
        None => derive_sk(&[&dh1, &dh2, &dh3]),
    }
}

/// The responder's X3DH.
pub(crate) fn responder_sk(
    ik: &[u8; KEY_LEN],
    spk: &PrekeyPair,
    opk: Option<&PrekeyPair>,
    initiator_x: &[u8; KEY_LEN],
    ek: &[u8; KEY_LEN],
) -> Result<Zeroizing<[u8; 32]>, SetupError> {
    let dh1 = dh(spk.secret(), initiator_x).ok_or(SetupError::WeakKey)?;
    let dh2 = dh(ik, ek).ok_or(SetupError::WeakKey)?;
    let dh3 = dh(spk.secret(), ek).ok_or(SetupError::WeakKey)?;
    match opk {
        Some(opk) => {
            let dh4 = dh(opk.secret(), ek).ok_or(SetupError::WeakKey)?;
            derive_sk(&[&dh1, &dh2, &dh3, &dh4])
        }
        None => derive_sk(&[&dh1, &dh2, &dh3]),
    }
}
