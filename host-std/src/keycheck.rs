//! Public key sanity: reject X25519 keys that are low-order points.

use rand_core::OsRng;
use x25519_dalek::{PublicKey, StaticSecret};

/// True if a Diffie-Hellman with `key` is contributory, i.e. `key` is not one of the
/// low-order points (all-zero, one, the order-8 points and their non-canonical forms)
/// whose shared secret is the same whatever the other side's secret.
pub fn is_contributory(key: &[u8; 32]) -> bool {
    let probe = StaticSecret::random_from_rng(OsRng);
    probe
        .diffie_hellman(&PublicKey::from(*key))
        .was_contributory()
}
