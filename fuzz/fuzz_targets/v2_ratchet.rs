//! The ratchet's receive path: an established pair, then fuzzer-chosen operations
//! (seal on either side, deliver a sealed message possibly mutated, duplicated or
//! reflected, inject raw bytes). Never panics; a refused message leaves the session
//! unchanged (its record is identical); a genuine, unmutated message within the bounds
//! opens to what was sealed, exactly once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand_core::{CryptoRng, RngCore};
use seguro_core::identity::Identity;
use seguro_core::v2::ratchet::{STATE_LEN, Session};
use seguro_core::v2::x3dh::{Bundle, PeerIdentity, PrekeyPair};

struct Counter(u64);
impl RngCore for Counter {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0
    }
    fn fill_bytes(&mut self, d: &mut [u8]) {
        for c in d.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
    fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(d);
        Ok(())
    }
}
impl CryptoRng for Counter {}

fn record(s: &Session) -> Vec<u8> {
    let mut r = vec![0u8; STATE_LEN];
    s.encode(&mut r).expect("record");
    r
}

fuzz_target!(|data: &[u8]| {
    let mut rng = Counter(7);
    let alice = Identity::from_secrets(&[1; 32], &[2; 32], 0);
    let bob = Identity::from_secrets(&[3; 32], &[4; 32], 0);
    let spk = PrekeyPair::from_secret(1, &[5; 32]);
    let bundle = Bundle {
        peer: PeerIdentity {
            name: "bob",
            keys: bob.public_keys(),
            bind: bob.bind("bob").unwrap(),
        },
        spk_id: 1,
        spk: *spk.public(),
        spk_sig: bob.sign_prekey(1, spk.public()),
        opk: None,
    };
    let mut a = Session::initiate(&mut rng, &alice, "alice", &bundle).unwrap();
    let mut out = vec![0u8; 2048];
    let n = a.seal(&mut rng, b"\x01\0\0\0\x01hi", &mut out).unwrap();
    let apeer = PeerIdentity {
        name: "alice",
        keys: alice.public_keys(),
        bind: alice.bind("alice").unwrap(),
    };
    let mut plain = vec![0u8; 2048];
    let (mut b, _) =
        Session::respond(&bob, "bob", &apeer, &spk, None, &out[..n], &mut plain).unwrap();

    // (from_alice, wire, inner, opened)
    let mut sent: Vec<(bool, Vec<u8>, Vec<u8>, bool)> = Vec::new();
    let mut ops = data.chunks(3);
    while let Some(op) = ops.next() {
        let [kind, x, y] = [op[0], *op.get(1).unwrap_or(&0), *op.get(2).unwrap_or(&0)];
        match kind % 5 {
            0 | 1 => {
                let from_alice = kind % 5 == 0;
                let inner = vec![x; usize::from(y % 40) + 1];
                let s = if from_alice { &mut a } else { &mut b };
                let n = s.seal(&mut rng, &inner, &mut out).unwrap();
                if sent.len() < 400 {
                    sent.push((from_alice, out[..n].to_vec(), inner, false));
                }
            }
            2 | 3 if !sent.is_empty() => {
                let i = usize::from(x) % sent.len();
                let (from_alice, mut wire, inner, opened) = sent[i].clone();
                let mutate = kind % 5 == 3;
                if mutate {
                    let at = usize::from(y) % wire.len();
                    wire[at] ^= 1 << (x % 8);
                }
                // Deliver to the recipient, or reflect to the sender when y is odd and mutated.
                let to_sender = mutate && y & 1 == 1;
                let target = if from_alice != to_sender {
                    &mut b
                } else {
                    &mut a
                };
                let before = record(target);
                match target.open(&wire, &mut plain) {
                    Ok(m) => {
                        assert!(!to_sender, "a reflected message opened");
                        assert!(!opened, "a message opened twice");
                        assert!(!mutate, "a mutated message opened");
                        assert_eq!(plain[..m], inner[..]);
                        sent[i].3 = true;
                    }
                    Err(_) => assert_eq!(record(target), before, "refusal changed the session"),
                }
            }
            _ => {
                let raw: Vec<u8> = ops
                    .by_ref()
                    .take(usize::from(x % 32))
                    .flatten()
                    .copied()
                    .collect();
                let target = if y & 1 == 0 { &mut a } else { &mut b };
                let before = record(target);
                if target.open(&raw, &mut plain).is_err() {
                    assert_eq!(record(target), before);
                }
            }
        }
    }
});
