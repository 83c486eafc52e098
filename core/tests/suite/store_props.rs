//! Property tests of the storage format and the trust store: encode → decode round
//! trips, every truncation and every single-byte corruption of a file is detected, no
//! input panics, and the trust store's verdicts follow a simple model.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;

use proptest::prelude::*;
use seguro_core::identity::Identity;
use seguro_core::store::{self, Reader, Seed, StoreError, Writer, file_type, kind};
use seguro_core::trust::{Contact, Kept, TrustStore, Verdict};

/// One operation on a trust store.
#[derive(Debug, Clone)]
enum Op {
    Observe { name: u8, key: u8, now: u64 },
    Verify { name: u8, key: u8 },
    Accept { name: u8 },
    Unverify { name: u8 },
    Forget { name: u8 },
    V2 { name: u8, key: Option<u8> },
}

fn op() -> impl Strategy<Value = Op> {
    // Few names and keys, so that repeats, changes and verifications happen often.
    let name = 0u8..6;
    let key = 0u8..4;
    prop_oneof![
        6 => (name.clone(), key.clone(), 0u64..100).prop_map(|(name, key, now)| Op::Observe { name, key, now }),
        2 => (name.clone(), key.clone()).prop_map(|(name, key)| Op::Verify { name, key }),
        1 => name.clone().prop_map(|name| Op::Accept { name }),
        1 => name.clone().prop_map(|name| Op::Unverify { name }),
        1 => name.clone().prop_map(|name| Op::Forget { name }),
        1 => (name, proptest::option::of(key)).prop_map(|(name, key)| Op::V2 { name, key }),
    ]
}

fn name(n: u8) -> String {
    // Multi-byte names too.
    ["alice", "bob", "карл", "dü", "e", "名前"][usize::from(n) % 6].to_owned()
}

fn key(k: u8) -> [u8; 32] {
    [k.wrapping_add(1); 32]
}

fn apply<const N: usize>(s: &mut TrustStore<N>, op: &Op) {
    match *op {
        Op::Observe {
            name: n,
            key: k,
            now,
        } => {
            s.observe(&name(n), &key(k), now).unwrap();
        }
        Op::Verify { name: n, key: k } => {
            let _ = s.verify(&name(n), &key(k));
        }
        Op::Accept { name: n } => {
            let _ = s.accept(&name(n));
        }
        Op::Unverify { name: n } => {
            let _ = s.unverify(&name(n));
        }
        Op::Forget { name: n } => {
            s.forget(&name(n));
        }
        Op::V2 { name: n, key: k } => {
            let _ = s.mark_v2(&name(n), k.map(key).as_ref());
        }
    }
}

fn encode<const N: usize>(s: &TrustStore<N>) -> Vec<u8> {
    let needed = match s.encode_file(&mut []) {
        Err(StoreError::BufferTooSmall { needed }) => needed,
        other => panic!("{other:?}"),
    };
    let mut buf = vec![0u8; needed];
    assert_eq!(s.encode_file(&mut buf), Ok(needed));
    buf
}

fn decode<const N: usize>(data: &[u8]) -> Result<TrustStore<N>, StoreError> {
    let mut t = TrustStore::<N>::new();
    t.load_file(data, file_type::TRUST, |_| {})?;
    Ok(t)
}

/// The obvious model of a store large enough never to evict.
#[derive(Default, Debug)]
struct Model {
    contacts: HashMap<
        String,
        (
            /* key */ u8,
            /* verified */ bool,
            /* pending */ Option<u8>,
        ),
    >,
}

impl Model {
    fn observe(&mut self, n: &str, k: u8) -> Verdict {
        match self.contacts.get_mut(n) {
            None => {
                self.contacts.insert(n.to_owned(), (k, false, None));
                Verdict::FirstContact
            }
            Some((stored, _, pending)) if *stored == k => {
                *pending = None;
                Verdict::Unchanged
            }
            Some((stored, true, pending)) => {
                *pending = Some(k);
                Verdict::ChangedVerified { old: key(*stored) }
            }
            Some((stored, false, _)) => {
                let old = key(*stored);
                *stored = k;
                Verdict::Changed { old }
            }
        }
    }
}

fn same_contacts<const N: usize, const M: usize>(a: &TrustStore<N>, b: &TrustStore<M>) {
    let mut x: Vec<&Contact> = a.iter().collect();
    let mut y: Vec<&Contact> = b.iter().collect();
    x.sort_by_key(|c| c.name().to_owned());
    y.sort_by_key(|c| c.name().to_owned());
    assert_eq!(x, y);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn trust_file_round_trips(ops in prop::collection::vec(op(), 0..60)) {
        let mut s = TrustStore::<8>::new();
        for o in &ops {
            apply(&mut s, o);
        }
        let data = encode(&s);
        let t = decode::<8>(&data).unwrap();
        same_contacts(&s, &t);
        // Encoding is deterministic for the same contents in the same slots.
        prop_assert_eq!(encode(&t), data);
    }

    #[test]
    fn every_truncation_and_byte_corruption_is_detected(
        ops in prop::collection::vec(op(), 1..30),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut s = TrustStore::<8>::new();
        for o in &ops {
            apply(&mut s, o);
        }
        let data = encode(&s);
        for cut in 0..data.len() {
            prop_assert!(decode::<8>(&data[..cut]).is_err(), "truncated to {}", cut);
        }
        let mut bad = data.clone();
        let i = at.index(bad.len());
        bad[i] ^= flip;
        prop_assert!(decode::<8>(&bad).is_err(), "byte {} ^= {:#x} not detected", i, flip);
        let mut longer = data.clone();
        longer.push(flip);
        prop_assert_eq!(decode::<8>(&longer).err(), Some(StoreError::TrailingData));
    }

    #[test]
    fn identity_file_corruption_is_detected(
        x in any::<[u8; 32]>(), ed in any::<[u8; 32]>(), created in any::<u64>(),
        at in any::<prop::sample::Index>(), flip in 1u8..=255,
    ) {
        let id = Identity::from_secrets(&x, &ed, created);
        let mut buf = [0u8; 512];
        let n = id.encode_file("alice", &mut buf).unwrap();
        let data = &buf[..n];
        let (back, name) = Identity::decode_file(data).unwrap();
        prop_assert_eq!(name.as_str(), "alice");
        prop_assert_eq!(back.public(), id.public());
        prop_assert_eq!(back.ed25519_public(), id.ed25519_public());
        prop_assert_eq!(back.created(), created);
        for cut in 0..n {
            prop_assert!(Identity::decode_file(&data[..cut]).is_err());
        }
        let mut bad = data.to_vec();
        let i = at.index(n);
        bad[i] ^= flip;
        prop_assert!(Identity::decode_file(&bad).is_err(), "byte {} ^= {:#x}", i, flip);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode::<4>(&data);
        let _ = Identity::decode_file(&data);
        let _ = store::read_record(&data);
        if let Ok((rec, _)) = store::read_record(&data) {
            let _ = Contact::from_record(&rec);
            let _ = Identity::from_record(&rec);
            let _ = Seed::from_record(&rec);
        }
        if let Ok(mut r) = Reader::new(&data, file_type::TRUST) {
            while let Ok(Some(_)) = r.next() {}
        }
    }

    #[test]
    fn valid_framing_with_arbitrary_bodies_never_panics(
        records in prop::collection::vec((prop_oneof![Just(kind::CONTACT), Just(kind::IDENTITY), Just(kind::SEED), any::<u8>()], 0u8..3, prop::collection::vec(any::<u8>(), 0..300)), 0..6),
        ftype in 0u8..4,
    ) {
        // Records whose checksums are right but whose bodies are garbage: the body
        // parsers are reached and must refuse without panicking.
        let mut buf = vec![0u8; 4096];
        let mut w = Writer::new(&mut buf, ftype);
        for (k, v, body) in &records {
            w.record(*k, *v, |b| b.bytes(body));
        }
        let n = w.finish().unwrap();
        let _ = decode::<4>(&buf[..n]);
        let _ = Identity::decode_file(&buf[..n]);
    }

    #[test]
    fn verdicts_follow_the_model(ops in prop::collection::vec(op(), 0..80)) {
        let mut s = TrustStore::<16>::new();
        let mut m = Model::default();
        for o in &ops {
            match *o {
                Op::Observe { name: n, key: k, now } => {
                    let got = s.observe(&name(n), &key(k), now).unwrap();
                    prop_assert_eq!(got.kept, Kept::Yes);
                    prop_assert_eq!(got.verdict, m.observe(&name(n), k));
                }
                Op::Verify { name: n, key: k } => {
                    let r = s.verify(&name(n), &key(k));
                    match m.contacts.get_mut(&name(n)) {
                        Some((stored, verified, pending)) if *stored == k => {
                            prop_assert!(r.is_ok());
                            *verified = true;
                        }
                        Some((stored, verified, pending)) if *pending == Some(k) => {
                            prop_assert!(r.is_ok());
                            *stored = k;
                            *verified = true;
                            *pending = None;
                        }
                        _ => prop_assert!(r.is_err()),
                    }
                }
                Op::Accept { name: n } => {
                    let r = s.accept(&name(n));
                    match m.contacts.get_mut(&name(n)) {
                        Some((stored, verified, pending)) if pending.is_some() => {
                            prop_assert_eq!(r, Ok(key(pending.unwrap())));
                            *stored = pending.take().unwrap();
                            *verified = false;
                        }
                        _ => prop_assert!(r.is_err()),
                    }
                }
                Op::Unverify { name: n } => {
                    let r = s.unverify(&name(n));
                    match m.contacts.get_mut(&name(n)) {
                        Some((stored, verified, pending)) => {
                            prop_assert!(r.is_ok());
                            if let Some(p) = pending.take() {
                                *stored = p;
                            }
                            *verified = false;
                        }
                        None => prop_assert!(r.is_err()),
                    }
                }
                Op::Forget { name: n } => {
                    prop_assert_eq!(s.forget(&name(n)), m.contacts.remove(&name(n)).is_some());
                }
                Op::V2 { .. } => apply(&mut s, o),
            }
            for (n, (k, verified, pending)) in &m.contacts {
                let c = s.get(n).unwrap();
                prop_assert_eq!(c.key(), &key(*k));
                prop_assert_eq!(c.verified(), *verified);
                prop_assert_eq!(c.pending().map(|p| p.key), pending.map(key));
            }
            prop_assert_eq!(s.len(), m.contacts.len());
        }
    }

    #[test]
    fn a_full_store_never_evicts_a_verified_contact(ops in prop::collection::vec(op(), 0..80)) {
        let mut s = TrustStore::<3>::new();
        let mut verified: Vec<String> = Vec::new();
        for o in &ops {
            let before: Vec<String> = s.iter().filter(|c| c.verified()).map(|c| c.name().to_owned()).collect();
            let oldest_unverified = s.iter().filter(|c| !c.verified()).map(|c| c.last_seen()).min();
            if let Op::Observe { name: n, key: k, now } = *o {
                let r = s.observe(&name(n), &key(k), now).unwrap();
                match r.kept {
                    Kept::Evicted { name: gone } => {
                        prop_assert!(!before.contains(&gone.to_string()));
                        prop_assert_eq!(r.verdict, Verdict::FirstContact);
                        prop_assert_eq!(Some(s.iter().count()), Some(3));
                        let _ = oldest_unverified;
                    }
                    Kept::No => {
                        prop_assert_eq!(before.len(), 3);
                        prop_assert!(s.get(&name(n)).is_none());
                    }
                    Kept::Yes => prop_assert!(s.get(&name(n)).is_some()),
                }
            } else if !matches!(o, Op::Forget { .. } | Op::Unverify { .. } | Op::Accept { .. }) {
                apply(&mut s, o);
            }
            // Only forget/unverify/accept (not applied here) remove a verification.
            for v in &verified {
                prop_assert!(s.get(v).is_some_and(|c| c.verified()), "{} lost", v);
            }
            verified = s.iter().filter(|c| c.verified()).map(|c| c.name().to_owned()).collect();
        }
    }
}

#[test]
fn seed_and_unknown_kinds_in_a_trust_file() {
    let mut s = TrustStore::<2>::new();
    s.observe("bob", &[7; 32], 1).unwrap();
    let mut buf = vec![0u8; 1024];
    let mut w = Writer::new(&mut buf, file_type::TRUST);
    w.record(0x70, 9, |b| b.bytes(b"from the future"));
    s.write(&mut w);
    let n = w.finish().unwrap();
    let mut kept = Vec::new();
    let mut t = TrustStore::<2>::new();
    t.load_file(&buf[..n], file_type::TRUST, |r| {
        kept.push((r.kind, r.version, r.body.to_vec()))
    })
    .unwrap();
    assert_eq!(kept, [(0x70, 9, b"from the future".to_vec())]);
    // Rewritten with the kept record verbatim, it reads the same.
    let mut again = vec![0u8; 1024];
    let mut w = Writer::new(&mut again, file_type::TRUST);
    for (k, v, body) in &kept {
        w.raw(&store::Record {
            kind: *k,
            version: *v,
            body,
        });
    }
    t.write(&mut w);
    let m = w.finish().unwrap();
    assert_eq!(&again[..m], &buf[..n]);
}
