//! The long-term identity (PLAN decision 1, spec §3): an X25519 key pair and an Ed25519
//! signing key pair, created, stored and backed up together as one [`Identity`].
//!
//! - The X25519 key pair is the v1 key (the `pub` of `hello`, what fingerprints and
//!   safety codes describe, so they work with v1 peers) and v2's identity DH key.
//! - The Ed25519 key signs v2's statements: the binding of both keys to a name, the
//!   `hello` proof and signed prekeys.
//!
//! One type serves every layer, each adding what it needs in its own module:
//!
//! | where | what |
//! |---|---|
//! | here | the keys, the creation time, the v1 [`KeyPair`], fingerprints, `Debug` |
//! | [`crate::store`] | the identity record and file (format, key-pair checks on load) |
//! | [`crate::v2::identity`] | the binding, the `hello` proof, prekey signatures and their checks |
//!
//! Both secrets are wiped when the identity is dropped (x25519-dalek's `StaticSecret`
//! and ed25519-dalek's `SigningKey` zeroize themselves, checked at compile time below),
//! and `Debug` shows fingerprints only.

use core::fmt;

use ed25519_dalek::{Signer as _, SigningKey};
use zeroize::Zeroizing;

use crate::e2ee::{KEY_LEN, KeyPair};
use crate::fingerprint::{self, SafetyCode, ShortFingerprint};

/// The public half of an identity, as the v2 directory lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicIdentity {
    /// X25519 public key (the v1 key; fingerprints are over it).
    pub x: [u8; KEY_LEN],
    /// Ed25519 public key.
    pub ed: [u8; KEY_LEN],
}

/// A long-term identity: X25519 (v1 key, v2 identity DH key) and Ed25519 (v2 signing
/// key), with the host's timestamp of its creation. Both secrets are wiped when the
/// identity is dropped.
pub struct Identity {
    x25519: KeyPair,
    ed25519: SigningKey,
    created: u64,
}

// The secrets wipe themselves. `SigningKey` is `ZeroizeOnDrop`; `KeyPair` holds a
// `StaticSecret`, which is `Zeroize` with a `Drop` that calls it (`zeroize(drop)`): a bare
// `[u8; 32]` would need no drop, so `needs_drop` shows that `Drop` is there.
const _: () = {
    const fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    const fn zeroize<T: zeroize::Zeroize>() {}
    zeroized_on_drop::<SigningKey>();
    zeroize::<x25519_dalek::StaticSecret>();
    assert!(core::mem::needs_drop::<x25519_dalek::StaticSecret>());
};

impl Identity {
    /// Makes a new identity from 64 bytes of `rng` (32 per key); `created` is the
    /// host's timestamp (desktop: Unix seconds; a board: its boot counter, or 0).
    pub fn generate(rng: &mut impl rand_core::CryptoRngCore, created: u64) -> Self {
        let mut x = Zeroizing::new([0u8; KEY_LEN]);
        let mut ed = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(x.as_mut());
        rng.fill_bytes(ed.as_mut());
        Self::from_secrets(&x, &ed, created)
    }

    /// Rebuilds an identity from its two secrets: the X25519 secret (the 32 bytes of
    /// [`KeyPair::from_secret`]) and the Ed25519 seed (RFC 8032's 32-byte secret key).
    pub fn from_secrets(x25519: &[u8; KEY_LEN], ed25519: &[u8; KEY_LEN], created: u64) -> Self {
        Self {
            x25519: KeyPair::from_secret(*x25519),
            ed25519: SigningKey::from_bytes(ed25519),
            created,
        }
    }

    /// The X25519 key pair: what v1 uses.
    pub fn x25519(&self) -> &KeyPair {
        &self.x25519
    }

    /// The X25519 key pair, dropping (and wiping) the Ed25519 key: for a host that
    /// speaks v1 only.
    pub fn into_x25519(self) -> KeyPair {
        self.x25519
    }

    /// A copy of the X25519 key pair, for a v1 conversation while the identity is kept
    /// for v2.
    pub fn v1_key_pair(&self) -> KeyPair {
        let secret = Zeroizing::new(self.x25519.secret_bytes());
        KeyPair::from_secret(*secret)
    }

    /// The X25519 public key: what `hello` publishes and fingerprints describe.
    pub fn public(&self) -> [u8; KEY_LEN] {
        self.x25519.public()
    }

    /// The Ed25519 public (verifying) key.
    pub fn ed25519_public(&self) -> [u8; KEY_LEN] {
        self.ed25519.verifying_key().to_bytes()
    }

    /// Both public keys.
    pub fn public_keys(&self) -> PublicIdentity {
        PublicIdentity {
            x: self.public(),
            ed: self.ed25519_public(),
        }
    }

    /// The Ed25519 signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.ed25519
    }

    /// Copies of the two secrets (X25519 secret, Ed25519 seed), for storage. They are
    /// not wiped automatically: write them readable by the owner only, then wipe them.
    pub fn secrets(&self) -> ([u8; KEY_LEN], [u8; KEY_LEN]) {
        (self.x25519.secret_bytes(), self.ed25519.to_bytes())
    }

    /// When the identity was made (the host's timestamp given at creation).
    pub fn created(&self) -> u64 {
        self.created
    }

    /// The short fingerprint of the X25519 public key.
    pub fn fingerprint(&self) -> ShortFingerprint {
        fingerprint::short(&self.public())
    }

    /// The 80-digit safety code of the X25519 public key.
    pub fn safety_code(&self) -> SafetyCode {
        fingerprint::safety_code(&self.public())
    }

    /// The X25519 secret, wiped when the copy is dropped.
    pub(crate) fn x_secret_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.x25519.secret_bytes())
    }

    /// An Ed25519 signature of `msg`.
    pub(crate) fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.ed25519.sign(msg).to_bytes()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("x25519", &self.fingerprint())
            .field("ed25519", &fingerprint::short(&self.ed25519_public()))
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::format;
    use std::string::String;

    use super::*;

    fn hex<const N: usize>(s: &str) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    /// RFC 7748 §6.1 (Alice's X25519 pair) and RFC 8032 §7.1 TEST 1 (the Ed25519 pair
    /// and its signature of the empty message).
    fn rfc_identity() -> Identity {
        Identity::from_secrets(
            &hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"),
            &hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"),
            1_700_000_000,
        )
    }

    #[test]
    fn keys_and_signatures_match_the_rfcs() {
        let id = rfc_identity();
        let x: [u8; 32] = hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        let ed: [u8; 32] = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        assert_eq!(id.public(), x);
        assert_eq!(id.x25519().public(), x);
        assert_eq!(id.ed25519_public(), ed);
        assert_eq!(id.public_keys(), PublicIdentity { x, ed });
        assert_eq!(
            id.sign(b""),
            hex::<64>(
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb882159\
                 0a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
            )
        );
        assert_eq!(id.created(), 1_700_000_000);
        assert_eq!(id.fingerprint(), fingerprint::short(&x));
        assert_eq!(id.safety_code(), fingerprint::safety_code(&x));
    }

    #[test]
    fn secrets_round_trip_and_the_v1_pair_is_the_same_key() {
        let id = rfc_identity();
        let (xs, eds) = id.secrets();
        assert_eq!(*id.x_secret_bytes(), xs);
        assert_eq!(id.x25519().secret_bytes(), xs);
        assert_eq!(id.signing_key().to_bytes(), eds);
        let again = Identity::from_secrets(&xs, &eds, 5);
        assert_eq!(again.public_keys(), id.public_keys());
        assert_eq!(again.created(), 5);
        let v1 = id.v1_key_pair();
        assert_eq!(v1.public(), id.public());
        assert_eq!(v1.secret_bytes(), xs);
        // The same X25519 key agrees with a peer as the v1 pair does.
        let peer = KeyPair::from_secret([9; 32]);
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        let k1 = v1.peer_key(&peer.public()).unwrap();
        let k2 = id.into_x25519().peer_key(&peer.public()).unwrap();
        let n1 = k1.seal_with_nonce(&[0; 12], b"same key", &mut a).unwrap();
        let n2 = k2.seal_with_nonce(&[0; 12], b"same key", &mut b).unwrap();
        assert_eq!(a[..n1], b[..n2]);
    }

    #[test]
    fn generate_draws_both_keys_from_the_rng() {
        struct Counting(u8);
        impl rand_core::RngCore for Counting {
            fn next_u32(&mut self) -> u32 {
                0
            }
            fn next_u64(&mut self) -> u64 {
                0
            }
            fn fill_bytes(&mut self, dest: &mut [u8]) {
                for b in dest {
                    self.0 = self.0.wrapping_add(1);
                    *b = self.0;
                }
            }
            fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
                self.fill_bytes(dest);
                Ok(())
            }
        }
        impl rand_core::CryptoRng for Counting {}
        let mut rng = Counting(0);
        let id = Identity::generate(&mut rng, 3);
        let x: [u8; 32] = core::array::from_fn(|i| i as u8 + 1);
        let ed: [u8; 32] = core::array::from_fn(|i| i as u8 + 33);
        assert_eq!(id.secrets(), (x, ed));
        assert_eq!(id.created(), 3);
        let other = Identity::generate(&mut rng, 3);
        assert_ne!(other.public_keys(), id.public_keys());
    }

    #[test]
    fn debug_shows_fingerprints_never_secrets() {
        let id = rfc_identity();
        let s = format!("{id:?}");
        assert!(s.contains(id.fingerprint().as_str()), "{s}");
        assert!(
            s.contains(fingerprint::short(&id.ed25519_public()).as_str()),
            "{s}"
        );
        assert!(s.contains("1700000000"), "{s}");
        // Neither secret appears, in hex or as Debug prints arrays.
        let (xs, eds) = id.secrets();
        for secret in [xs, eds] {
            let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            let array = format!("{:?}", &secret[..3]);
            assert!(!s.contains(&hex[..8]), "{s}");
            assert!(!s.contains(array.trim_end_matches(']')), "{s}");
        }
    }
}
