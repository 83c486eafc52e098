//! Cost of protocol v2 per message against v1 in the same run: seal and open of 100 B
//! and 1 KiB inner messages in a steady chain, the DH ratchet step (a seal that starts
//! a new sending chain, an open that starts a new receiving chain), session setup, and
//! v1's `PeerKey::seal`/`open` as the baseline.
//!
//! Run with `cargo bench -p seguro-core --bench v2`; compare the ratios between lines
//! of the same run rather than absolute times.

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use seguro_core::e2ee::{PeerKey, TAG_LEN};
use seguro_core::identity::Identity;
use seguro_core::v2::ratchet::{STATE_LEN, Session};
use seguro_core::v2::x3dh::{Bundle, PeerIdentity, PrekeyPair};

const SIZES: [usize; 2] = [100, 1024];

struct Setup {
    rng: ChaCha20Rng,
    alice: Identity,
    bob: Identity,
    spk: PrekeyPair,
}

fn setup() -> Setup {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let alice = Identity::generate(&mut rng, 0);
    let bob = Identity::generate(&mut rng, 0);
    let spk = PrekeyPair::generate(&mut rng, 1);
    Setup {
        rng,
        alice,
        bob,
        spk,
    }
}

fn bundle(s: &Setup) -> Bundle<'static> {
    Bundle {
        peer: PeerIdentity {
            name: "bob",
            keys: s.bob.public_keys(),
            bind: s.bob.bind("bob").unwrap(),
        },
        spk_id: 1,
        spk: *s.spk.public(),
        spk_sig: s.bob.sign_prekey(1, s.spk.public()),
        opk: None,
    }
}

/// An established pair (Alice → Bob, Bob → Alice, Alice → Bob), as records.
fn pair(s: &mut Setup) -> (Vec<u8>, Vec<u8>) {
    let b = bundle(s);
    let mut a = Session::initiate(&mut s.rng, &s.alice, "alice", &b).unwrap();
    let mut out = vec![0u8; 2048];
    let mut plain = vec![0u8; 2048];
    let n = a.seal(&mut s.rng, b"\x01\0\0\0\x01hi", &mut out).unwrap();
    let ap = PeerIdentity {
        name: "alice",
        keys: s.alice.public_keys(),
        bind: s.alice.bind("alice").unwrap(),
    };
    let (mut bs, _) =
        Session::respond(&s.bob, "bob", &ap, &s.spk, None, &out[..n], &mut plain).unwrap();
    let n = bs.seal(&mut s.rng, b"\x01\0\0\0\x01yo", &mut out).unwrap();
    a.open(&out[..n], &mut plain).unwrap();
    (record(&a), record(&bs))
}

fn record(s: &Session) -> Vec<u8> {
    let mut r = vec![0u8; STATE_LEN];
    s.encode(&mut r).unwrap();
    r
}

fn messages(c: &mut Criterion) {
    let mut s = setup();
    let (a_rec, b_rec) = pair(&mut s);
    for size in SIZES {
        let inner = vec![0x61u8; size];
        let mut out = vec![0u8; size + 200];
        let v1 = PeerKey::from_bytes([7; 32]);
        let mut v1_sealed = vec![0u8; size + TAG_LEN];
        let (nonce, v1_len) = v1.seal(&mut s.rng, &inner, &mut v1_sealed).unwrap();

        let mut group = c.benchmark_group("seal");
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("v1 PeerKey::seal", size), |b| {
            b.iter(|| v1.seal(&mut s.rng, black_box(&inner), &mut out))
        });
        let mut a = Session::decode(&a_rec).unwrap();
        // Alice's next seal starts a new chain; do it once so the loop measures the
        // steady chain.
        a.seal(&mut s.rng, &inner, &mut out).unwrap();
        group.bench_function(
            BenchmarkId::new("v2 Session::seal (chain step)", size),
            |b| b.iter(|| a.seal(&mut s.rng, black_box(&inner), &mut out)),
        );
        group.bench_function(
            BenchmarkId::new("v2 Session::seal (DH ratchet step)", size),
            |b| {
                b.iter_batched_ref(
                    || Session::decode(&a_rec).unwrap(),
                    |a| a.seal(&mut s.rng, black_box(&inner), &mut out),
                    BatchSize::SmallInput,
                )
            },
        );
        group.finish();

        let mut group = c.benchmark_group("open");
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("v1 PeerKey::open", size), |b| {
            b.iter(|| v1.open(black_box(&nonce), black_box(&v1_sealed[..v1_len]), &mut out))
        });
        // Bob opens Alice's messages: the first of her new chain (DH ratchet step) and
        // a later one in the same chain (chain step; the loop restores Bob's state
        // after the first, so each open is the first open of that message).
        let mut a = Session::decode(&a_rec).unwrap();
        let mut first = vec![0u8; size + 200];
        let n1 = a.seal(&mut s.rng, &inner, &mut first).unwrap();
        first.truncate(n1);
        let mut second = vec![0u8; size + 200];
        let n2 = a.seal(&mut s.rng, &inner, &mut second).unwrap();
        second.truncate(n2);
        let mut bob = Session::decode(&b_rec).unwrap();
        let mut plain = vec![0u8; size + 200];
        bob.open(&first, &mut plain).unwrap();
        let after_first = record(&bob);
        group.bench_function(
            BenchmarkId::new("v2 Session::open (chain step)", size),
            |b| {
                b.iter_batched_ref(
                    || Session::decode(&after_first).unwrap(),
                    |bob| bob.open(black_box(&second), &mut plain),
                    BatchSize::SmallInput,
                )
            },
        );
        group.bench_function(
            BenchmarkId::new("v2 Session::open (DH ratchet step)", size),
            |b| {
                b.iter_batched_ref(
                    || Session::decode(&b_rec).unwrap(),
                    |bob| bob.open(black_box(&first), &mut plain),
                    BatchSize::SmallInput,
                )
            },
        );
        group.finish();
    }
}

fn session_setup(c: &mut Criterion) {
    let mut s = setup();
    let b = bundle(&s);
    let mut group = c.benchmark_group("setup");
    group.bench_function(
        "v2 Session::initiate (2 Ed25519 verify + 3 X25519)",
        |bch| bch.iter(|| Session::initiate(&mut s.rng, &s.alice, "alice", black_box(&b)).is_ok()),
    );
    let (a_rec, _) = pair(&mut s);
    group.bench_function("v2 Session::decode (restore a stored session)", |bch| {
        bch.iter(|| Session::decode(black_box(&a_rec)).is_ok())
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    messages(&mut c);
    session_setup(&mut c);
    c.final_summary();
}
