//! Cost of the v1 end-to-end encryption: sealing and opening 100 B and 4 KiB messages
//! through `PeerKey` (which expands the AES key schedule on every call), against a
//! plain AES-256-GCM baseline whose schedule is expanded once, plus the per-peer key
//! derivation (X25519 + HKDF) and the fingerprints.
//!
//! Run with `cargo bench -p seguro-core --bench crypto`; compare the ratios between
//! lines of the same run rather than absolute times.

use std::hint::black_box;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Tag};
use criterion::{BenchmarkId, Criterion, Throughput};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use seguro_core::e2ee::{KeyPair, PeerKey, TAG_LEN};
use seguro_core::fingerprint;

const SIZES: [usize; 2] = [100, 4096];
const NONCE: [u8; 12] = [0x24; 12];

fn keys() -> (KeyPair, KeyPair) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    (KeyPair::generate(&mut rng), KeyPair::generate(&mut rng))
}

fn seal_open(c: &mut Criterion) {
    let key_bytes = [7u8; 32];
    let peer = PeerKey::from_bytes(key_bytes);
    let baseline = Aes256Gcm::new(&key_bytes.into());
    let mut rng = ChaCha20Rng::seed_from_u64(2);

    for size in SIZES {
        let plaintext = vec![0x61u8; size];
        let mut out = vec![0u8; size + TAG_LEN];
        let mut sealed = vec![0u8; size + TAG_LEN];
        let n = peer
            .seal_with_nonce(&NONCE, &plaintext, &mut sealed)
            .expect("seal into a large enough buffer");

        let mut group = c.benchmark_group("seal");
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("PeerKey::seal_with_nonce", size), |b| {
            b.iter(|| peer.seal_with_nonce(black_box(&NONCE), black_box(&plaintext), &mut out))
        });
        group.bench_function(
            BenchmarkId::new("PeerKey::seal (ChaCha20 rng)", size),
            |b| b.iter(|| peer.seal(&mut rng, black_box(&plaintext), &mut out)),
        );
        group.bench_function(BenchmarkId::new("baseline Aes256Gcm", size), |b| {
            b.iter(|| {
                let (body, tag) = out.split_at_mut(size);
                body.copy_from_slice(black_box(&plaintext));
                let t = baseline.encrypt_in_place_detached(black_box(&NONCE.into()), &[], body);
                if let Ok(t) = t {
                    tag.copy_from_slice(&t);
                }
            })
        });
        group.finish();

        let mut group = c.benchmark_group("open");
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("PeerKey::open", size), |b| {
            b.iter(|| peer.open(black_box(&NONCE), black_box(&sealed[..n]), &mut out))
        });
        group.bench_function(BenchmarkId::new("baseline Aes256Gcm", size), |b| {
            b.iter(|| {
                let (body, tag) = sealed[..n].split_at(size);
                let tag = Tag::clone_from_slice(tag);
                let dest = &mut out[..size];
                dest.copy_from_slice(black_box(body));
                baseline.decrypt_in_place_detached(black_box(&NONCE.into()), &[], dest, &tag)
            })
        });
        group.finish();
    }
}

fn derivation(c: &mut Criterion) {
    let (alice, bob) = keys();
    let bob_pub = bob.public();
    let mut group = c.benchmark_group("keys");
    group.bench_function("KeyPair::peer_key (X25519 + HKDF)", |b| {
        b.iter(|| alice.peer_key(black_box(&bob_pub)).is_ok())
    });
    group.bench_function("KeyPair::from_secret (X25519 base point)", |b| {
        b.iter(|| KeyPair::from_secret(black_box([9; 32])).public())
    });
    group.bench_function("fingerprint::short", |b| {
        b.iter(|| fingerprint::short(black_box(&bob_pub)))
    });
    group.bench_function("fingerprint::safety_code", |b| {
        b.iter(|| fingerprint::safety_code(black_box(&bob_pub)))
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    seal_open(&mut c);
    derivation(&mut c);
    c.final_summary();
}
