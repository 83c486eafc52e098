//! Replays the end-to-end encryption v1 vectors (`../shared/vectors/e2ee-v1.json`, made
//! with pyca/cryptography by the reference implementation) against `seguro_core::e2ee`
//! and `seguro_core::fingerprint`, and checks seal/open properties on random inputs.

use base64ct::{Base64, Encoding};
use hkdf::Hkdf;
use proptest::prelude::*;
use seguro_core::e2ee::{E2eeError, KeyPair, PeerKey, TAG_LEN};
use seguro_core::fingerprint;
use serde::Deserialize;
use sha2::Sha256;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/vectors/e2ee-v1.json"
);

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
}

/// One vector; the `relay_line_*` fields belong to the message tests and are ignored.
#[derive(Deserialize)]
struct Vector {
    name: String,
    alice_secret: String,
    alice_pub: String,
    bob_secret: String,
    bob_pub: String,
    shared_secret: String,
    key: String,
    nonce: String,
    plaintext_utf8: String,
    cipher: String,
    alice_fp: String,
    bob_fp: String,
}

fn b64(s: &str) -> Vec<u8> {
    let mut buf = vec![0u8; s.len()];
    let n = Base64::decode(s, &mut buf)
        .unwrap_or_else(|e| panic!("bad base64 {s:?}: {e}"))
        .len();
    buf.truncate(n);
    buf
}

fn b64_32(s: &str) -> [u8; 32] {
    b64(s).try_into().expect("32-byte value")
}

fn load() -> Vec<Vector> {
    let text = std::fs::read_to_string(VECTORS)
        .unwrap_or_else(|e| panic!("cannot read the e2ee vectors at {VECTORS}: {e}"));
    let file: File = serde_json::from_str(&text).expect("vector file is valid JSON");
    assert!(!file.vectors.is_empty(), "no vectors in {VECTORS}");
    file.vectors
}

#[test]
fn every_vector_replays() {
    let vectors = load();
    for v in &vectors {
        let name = v.name.as_str();
        let alice = KeyPair::from_secret(b64_32(&v.alice_secret));
        let bob = KeyPair::from_secret(b64_32(&v.bob_secret));
        assert_eq!(alice.public(), b64_32(&v.alice_pub), "{name}: alice_pub");
        assert_eq!(bob.public(), b64_32(&v.bob_pub), "{name}: bob_pub");
        assert_eq!(alice.secret_bytes(), b64_32(&v.alice_secret), "{name}");

        // The vector's own chain, recomputed independently of seguro_core.
        let shared = b64_32(&v.shared_secret);
        assert_eq!(
            x25519_dalek::x25519(b64_32(&v.alice_secret), b64_32(&v.bob_pub)),
            shared,
            "{name}: shared secret A→B"
        );
        assert_eq!(
            x25519_dalek::x25519(b64_32(&v.bob_secret), b64_32(&v.alice_pub)),
            shared,
            "{name}: shared secret B→A"
        );
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(None, &shared)
            .expand(b"chat-e2ee", &mut key)
            .unwrap();
        assert_eq!(key, b64_32(&v.key), "{name}: HKDF key");

        let nonce: [u8; 12] = b64(&v.nonce).try_into().expect("12-byte nonce");
        let cipher = b64(&v.cipher);
        let plaintext = v.plaintext_utf8.as_bytes();
        assert_eq!(cipher.len(), plaintext.len() + TAG_LEN, "{name}");

        // The derived keys (both directions) and the vector's key behave identically.
        let keys = [
            ("A→B", alice.peer_key(&bob.public()).unwrap()),
            ("B→A", bob.peer_key(&alice.public()).unwrap()),
            ("vector", PeerKey::from_bytes(key)),
        ];
        for (dir, k) in &keys {
            let mut out = vec![0u8; plaintext.len()];
            assert_eq!(
                k.open(&nonce, &cipher, &mut out),
                Ok(plaintext.len()),
                "{name} {dir}: open"
            );
            assert_eq!(out, plaintext, "{name} {dir}: plaintext");

            let mut sealed = vec![0u8; cipher.len()];
            assert_eq!(
                k.seal_with_nonce(&nonce, plaintext, &mut sealed),
                Ok(cipher.len()),
                "{name} {dir}: seal"
            );
            assert_eq!(sealed, cipher, "{name} {dir}: re-sealed bytes");

            let mut in_place = cipher.clone();
            assert_eq!(k.open_in_place(&nonce, &mut in_place), Ok(plaintext.len()));
            assert_eq!(&in_place[..plaintext.len()], plaintext, "{name} {dir}");
        }

        assert_eq!(
            fingerprint::short(&alice.public()).as_str(),
            v.alice_fp,
            "{name}: alice_fp"
        );
        assert_eq!(
            fingerprint::short(&bob.public()).as_str(),
            v.bob_fp,
            "{name}: bob_fp"
        );
    }
}

#[test]
fn every_flipped_bit_fails_to_open() {
    for v in &load() {
        let name = v.name.as_str();
        let key = PeerKey::from_bytes(b64_32(&v.key));
        let nonce: [u8; 12] = b64(&v.nonce).try_into().unwrap();
        let cipher = b64(&v.cipher);
        let mut out = vec![0u8; cipher.len()];

        for bit in 0..cipher.len() * 8 {
            let mut bad = cipher.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            out.fill(0xaa);
            assert_eq!(
                key.open(&nonce, &bad, &mut out),
                Err(E2eeError::Decrypt),
                "{name}: cipher bit {bit}"
            );
            // Nothing unauthenticated is left in the output.
            let body = cipher.len() - TAG_LEN;
            assert!(out[..body].iter().all(|&b| b == 0), "{name}: bit {bit}");
            assert!(out[body..].iter().all(|&b| b == 0xaa), "{name}: bit {bit}");
        }
        for bit in 0..96 {
            let mut bad = nonce;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                key.open(&bad, &cipher, &mut out),
                Err(E2eeError::Decrypt),
                "{name}: nonce bit {bit}"
            );
        }
        // Truncated or extended ciphertexts do not authenticate either.
        assert_eq!(
            key.open(&nonce, &cipher[..cipher.len() - 1], &mut out),
            if cipher.len() > TAG_LEN {
                Err(E2eeError::Decrypt)
            } else {
                Err(E2eeError::CipherTooShort)
            },
            "{name}: truncated"
        );
        let mut longer = cipher.clone();
        longer.push(0);
        out.push(0);
        assert_eq!(
            key.open(&nonce, &longer, &mut out),
            Err(E2eeError::Decrypt),
            "{name}: extended"
        );
    }
}

#[test]
fn low_order_points_are_weak_peer_keys() {
    let v = &load()[0];
    let alice = KeyPair::from_secret(b64_32(&v.alice_secret));
    // The all-zero key (the identity) and a point of order 8.
    let zero = [0u8; 32];
    let order8: [u8; 32] = [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ];
    assert_eq!(alice.peer_key(&zero).unwrap_err(), E2eeError::WeakPeerKey);
    assert_eq!(alice.peer_key(&order8).unwrap_err(), E2eeError::WeakPeerKey);
    assert!(alice.peer_key(&b64_32(&v.bob_pub)).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn seal_then_open_round_trips(
        a in any::<[u8; 32]>(),
        b in any::<[u8; 32]>(),
        nonce in any::<[u8; 12]>(),
        plaintext in proptest::collection::vec(any::<u8>(), 0..2048),
        slack in 0usize..8,
    ) {
        let alice = KeyPair::from_secret(a);
        let bob = KeyPair::from_secret(b);
        let ab = alice.peer_key(&bob.public()).unwrap();
        let ba = bob.peer_key(&alice.public()).unwrap();

        let mut sealed = vec![0u8; plaintext.len() + TAG_LEN + slack];
        let n = ab.seal_with_nonce(&nonce, &plaintext, &mut sealed).unwrap();
        prop_assert_eq!(n, plaintext.len() + TAG_LEN);

        let mut out = vec![0u8; plaintext.len() + slack];
        prop_assert_eq!(ba.open(&nonce, &sealed[..n], &mut out), Ok(plaintext.len()));
        prop_assert_eq!(&out[..plaintext.len()], &plaintext[..]);
    }

    #[test]
    fn seal_with_rng_round_trips(
        seed in any::<u64>(),
        plaintext in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        let alice = KeyPair::generate(&mut rng);
        let bob = KeyPair::generate(&mut rng);
        let key = alice.peer_key(&bob.public()).unwrap();
        let mut sealed = vec![0u8; plaintext.len() + TAG_LEN];
        let (nonce, n) = key.seal(&mut rng, &plaintext, &mut sealed).unwrap();
        let mut out = vec![0u8; plaintext.len()];
        let back = bob.peer_key(&alice.public()).unwrap();
        prop_assert_eq!(back.open(&nonce, &sealed[..n], &mut out), Ok(plaintext.len()));
        prop_assert_eq!(out, plaintext);
    }

    #[test]
    fn any_single_byte_corruption_fails(
        key in any::<[u8; 32]>(),
        nonce in any::<[u8; 12]>(),
        plaintext in proptest::collection::vec(any::<u8>(), 0..256),
        position in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let key = PeerKey::from_bytes(key);
        let mut sealed = vec![0u8; plaintext.len() + TAG_LEN];
        let n = key.seal_with_nonce(&nonce, &plaintext, &mut sealed).unwrap();
        // Corrupt one byte of nonce || cipher || tag.
        let mut nonce = nonce;
        let at = position.index(nonce.len() + n);
        if at < nonce.len() {
            nonce[at] ^= flip;
        } else {
            sealed[at - nonce.len()] ^= flip;
        }
        let mut out = vec![0xaau8; plaintext.len()];
        prop_assert_eq!(key.open(&nonce, &sealed[..n], &mut out), Err(E2eeError::Decrypt));
        prop_assert!(out.iter().all(|&b| b == 0));
    }

    #[test]
    fn garbage_never_opens(
        key in any::<[u8; 32]>(),
        nonce in any::<[u8; 12]>(),
        cipher in proptest::collection::vec(any::<u8>(), 0..128),
        out_len in 0usize..160,
    ) {
        let key = PeerKey::from_bytes(key);
        let mut out = vec![0u8; out_len];
        let result = key.open(&nonce, &cipher, &mut out);
        let expected = if cipher.len() < TAG_LEN {
            E2eeError::CipherTooShort
        } else if out_len < cipher.len() - TAG_LEN {
            E2eeError::BufferTooSmall { needed: cipher.len() - TAG_LEN }
        } else {
            E2eeError::Decrypt
        };
        prop_assert_eq!(result, Err(expected));
    }
}
