//! `e2ee::is_low_order` against the published list of small-order Curve25519 points and
//! against the definition (a Diffie-Hellman whose result is all zeros).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use seguro_core::e2ee::{E2eeError, KeyPair, is_low_order};
use x25519_dalek::{PublicKey, StaticSecret};

/// The small-order encodings as published (libsodium's blacklist, written out as
/// big-endian numbers here and converted, so the test does not share the table's form).
fn published() -> Vec<[u8; 32]> {
    let p = |hex: &str| {
        let be: Vec<u8> = (0..64)
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let mut le = [0u8; 32];
        for (i, b) in be.iter().rev().enumerate() {
            le[i] = *b;
        }
        le
    };
    vec![
        // 0 (order 4) and 1 (order 1).
        p("0000000000000000000000000000000000000000000000000000000000000000"),
        p("0000000000000000000000000000000000000000000000000000000000000001"),
        // 325606250916557431795983626356110631294008115727848805560023387167927233504 (order 8)
        p("00b8495f16056286fdb1329ceb8d09da6ac49ff1fae35616aeb8413b7c7aebe0"),
        // 39382357235489614581723060781553021112529911719440698176882885853963445705823 (order 8)
        p("57119fd0dd4e22d8868e1c58c45c44045bef839c55b1d0b1248c50a3bc959c5f"),
        // p - 1 (order 2), p (= 0), p + 1 (= 1), with p = 2^255 - 19.
        p("7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffec"),
        p("7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffed"),
        p("7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffee"),
    ]
}

/// The definition: X25519 with a fixed secret gives all zeros.
fn probe_says_low_order(key: &[u8; 32]) -> bool {
    let probe = StaticSecret::from([0x5a; 32]);
    !probe
        .diffie_hellman(&PublicKey::from(*key))
        .was_contributory()
}

#[test]
fn every_published_encoding_is_refused_with_and_without_bit_255() {
    for key in published() {
        assert!(is_low_order(&key), "{key:02x?}");
        assert!(
            probe_says_low_order(&key),
            "list entry not low order: {key:02x?}"
        );
        let mut high = key;
        high[31] |= 0x80;
        assert!(is_low_order(&high), "bit 255 set: {high:02x?}");
        assert!(probe_says_low_order(&high));
    }
}

#[test]
fn near_misses_are_accepted() {
    // Each listed encoding with any single bit flipped (except bit 255) is a different
    // u-coordinate, and none of those is of small order.
    for key in published() {
        for bit in 0..255 {
            let mut k = key;
            k[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(is_low_order(&k), probe_says_low_order(&k), "{k:02x?}");
        }
    }
}

#[test]
fn agrees_with_the_definition_on_random_and_structured_keys() {
    let mut rng = ChaCha20Rng::seed_from_u64(25519);
    let mut keys = Vec::new();
    for _ in 0..2000 {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        keys.push(k);
    }
    // Small values and their non-canonical forms p + n.
    for n in 0u8..=40 {
        let mut k = [0u8; 32];
        k[0] = n;
        keys.push(k);
        let mut pn = [0xff; 32];
        pn[31] = 0x7f;
        pn[0] = 0xed_u8.wrapping_add(n);
        if n <= 18 {
            keys.push(pn);
        }
    }
    keys.push([0xff; 32]);
    for k in keys {
        assert_eq!(is_low_order(&k), probe_says_low_order(&k), "{k:02x?}");
    }
}

#[test]
fn agrees_with_peer_key() {
    let kp = KeyPair::from_secret([7; 32]);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut keys = published();
    keys.push(KeyPair::generate(&mut rng).public());
    for k in keys {
        let weak = matches!(kp.peer_key(&k), Err(E2eeError::WeakPeerKey));
        assert_eq!(is_low_order(&k), weak, "{k:02x?}");
    }
}
