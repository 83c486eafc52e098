//! Topping up a client's one-time prekeys (`OwnPrekeys::top_up`, protocol v2 §5.5) and
//! publishing only some of them (`emit_prekeys_only`): the keys the server still holds
//! and the ones handed out but not used yet stay, the oldest handed-out ones make room
//! when needed, new ids continue after the kept ones, and a `prekeys` line carries
//! exactly the one-time prekeys asked for, with a signed prekey that verifies.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use seguro_core::chat::sessions::{OwnPrekeys, Sessions};
use seguro_core::identity::Identity;
use seguro_core::v2::identity::verify_prekey;
use seguro_core::v2::json::{self as v2json, MAX_OPKS, V2Message};

fn ids(own: &OwnPrekeys) -> Vec<u32> {
    let mut v: Vec<u32> = own.opks().iter().map(|k| k.id()).collect();
    v.sort_unstable();
    v
}

/// The one-time prekey ids of a `prekeys` line, and whether its signed prekey verifies.
fn published(line: &[u8], id: &Identity) -> (Vec<u32>, bool) {
    let mut scratch = vec![0u8; line.len()];
    let Ok(V2Message::Prekeys {
        spk_id,
        spk,
        spk_sig,
        opks,
        ..
    }) = v2json::parse(line.strip_suffix(b"\n").unwrap(), &mut scratch)
    else {
        panic!("not a prekeys line");
    };
    let ok = verify_prekey(&id.ed25519_public(), spk_id, &spk, &spk_sig).is_ok();
    (opks.iter().map(|(i, _)| i).collect(), ok)
}

/// Removes the one-time prekeys with these ids, as first messages using them would.
fn use_up(own: &mut OwnPrekeys, gone: &[u32], rng: &mut ChaCha20Rng) -> OwnPrekeys {
    // Rebuilt from a record without those keys: the record format is public.
    let mut out = vec![0u8; OwnPrekeys::RECORD_MAX];
    let n = own.encode(&mut out).unwrap();
    let rec = &out[..n];
    // After magic, format, the signed prekey (id, secret), its date and the flag of a
    // previous one (none here).
    const COUNT_AT: usize = 4 + 1 + 36 + 8 + 1;
    assert_eq!(rec[COUNT_AT - 1], 0);
    let count = usize::from(rec[COUNT_AT]);
    let mut keep = Vec::new();
    for i in 0..count {
        let at = COUNT_AT + 1 + i * 36;
        let id = u32::from_be_bytes(rec[at..at + 4].try_into().unwrap());
        if !gone.contains(&id) {
            keep.extend_from_slice(&rec[at..at + 36]);
        }
    }
    let mut r = rec[..COUNT_AT].to_vec();
    r.push(u8::try_from(keep.len() / 36).unwrap());
    r.extend_from_slice(&keep);
    let sum = {
        use sha2::Digest;
        sha2::Sha256::digest(&r)
    };
    r.extend_from_slice(&sum[..8]);
    let _ = rng;
    OwnPrekeys::decode(&r).unwrap()
}

#[test]
fn a_top_up_keeps_the_keys_in_use_and_continues_the_ids() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut own = OwnPrekeys::generate(&mut rng, 7, 100);
    assert_eq!(ids(&own), (100..116).collect::<Vec<_>>());
    // The server handed out 100..=112 (3 left); first messages used 100..=105.
    let mut own = use_up(&mut own, &[100, 101, 102, 103, 104, 105], &mut rng);
    assert_eq!(own.opks().len(), 10);
    let new = own.top_up(&mut rng, 3);
    // Room for 6: enough (at least min(8, 13) = 8 is wanted), so 106..=112 (handed
    // out, not used yet) make room only as far as needed: the two oldest go.
    assert_eq!(new, 116..124);
    assert_eq!(own.opks().len(), MAX_OPKS);
    let mut want: Vec<u32> = (108..124).collect();
    want.sort_unstable();
    assert_eq!(ids(&own), want);
    // The signed prekey is unchanged.
    assert_eq!(own.spk().id(), 7);
}

#[test]
fn a_top_up_with_room_drops_nothing_and_one_without_keys_starts_somewhere_new() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let full = OwnPrekeys::generate(&mut rng, 7, 100);
    let mut own = {
        let mut f = full;
        use_up(&mut f, &(100..112).collect::<Vec<_>>(), &mut rng)
    };
    assert_eq!(ids(&own), vec![112, 113, 114, 115]);
    let new = own.top_up(&mut rng, 2);
    assert_eq!(new, 116..128);
    assert_eq!(ids(&own), (112..128).collect::<Vec<_>>());
    // Full and the server still holds 14: at least min(8, 2) = 2 new, the oldest go.
    let new = own.top_up(&mut rng, 14);
    assert_eq!(new, 128..130);
    assert_eq!(ids(&own), (114..130).collect::<Vec<_>>());
    // No key left at all: ids start at a random place below 2^30.
    let mut own = {
        let mut f = own;
        use_up(&mut f, &(114..130).collect::<Vec<_>>(), &mut rng)
    };
    assert!(own.opks().is_empty());
    let new = own.top_up(&mut rng, 0);
    assert_eq!(new.len(), MAX_OPKS);
    assert!(new.end <= (1 << 30) + 16, "{new:?}");
    assert_eq!(ids(&own), new.collect::<Vec<_>>());
    // Keys differ from each other (fresh randomness for each).
    let mut pubs: Vec<[u8; 32]> = own.opks().iter().map(|k| *k.public()).collect();
    pubs.sort_unstable();
    pubs.dedup();
    assert_eq!(pubs.len(), MAX_OPKS);
}

#[test]
fn a_prekeys_line_carries_only_the_one_time_prekeys_asked_for() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let me = Identity::generate(&mut rng, 0);
    let mut s: Sessions<2> = Sessions::new(OwnPrekeys::generate(&mut rng, 9, 40));
    let mut out = vec![0u8; 4096];
    let n = s
        .own()
        .emit_prekeys_only(5, &me, |i| i % 2 == 0, &mut out)
        .unwrap();
    let (got, ok) = published(&out[..n], &me);
    assert!(ok);
    assert_eq!(got, (40..56).filter(|i| i % 2 == 0).collect::<Vec<_>>());
    let n = s
        .own()
        .emit_prekeys_only(6, &me, |_| false, &mut out)
        .unwrap();
    assert_eq!(published(&out[..n], &me), (vec![], true));
    let n = s.own().emit_prekeys(7, &me, &mut out).unwrap();
    assert_eq!(published(&out[..n], &me).0, (40..56).collect::<Vec<_>>());
    // Through the table: a top-up changes the table's own prekeys.
    let before = ids(s.own());
    assert_eq!(
        s.own_mut().top_up(&mut rng, 16),
        56..56,
        "the server holds all: none added"
    );
    let added = s.own_mut().top_up(&mut rng, 14);
    assert_eq!(added, 56..58);
    assert_ne!(ids(s.own()), before);
    // A buffer too small is an error, not a cut line.
    assert!(
        s.own()
            .emit_prekeys_only(8, &me, |_| true, &mut out[..100])
            .is_err()
    );
}
