//! Protocol v2 sessions between two clients' session tables (`chat::sessions`): set up
//! from a published `prekeys` line through a bundle, texts both ways, a relay that
//! drops, reorders and duplicates (every text shown exactly once within the skip
//! bounds), and a hostile relay's replays, reflections and forgeries, each refused
//! with the sessions unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use seguro_core::chat::sessions::{
    Opened, OwnPrekeys, ReceiveError, Received, SPK_LIFETIME_S, SendError, Sessions, SpkRotation,
    StartError,
};
use seguro_core::identity::Identity;
use seguro_core::v2::json::{self as v2json, V2Message};
use seguro_core::v2::ratchet::{OpenError, STATE_LEN, Session};
use seguro_core::v2::wire::MAX_BODY;
use seguro_core::v2::x3dh::{Bundle, PeerIdentity};

type T = Sessions<4>;

struct Party {
    name: &'static str,
    id: Identity,
    s: T,
}

impl Party {
    fn new(rng: &mut ChaCha20Rng, name: &'static str) -> Self {
        let id = Identity::generate(rng, 0);
        Self {
            name,
            id,
            s: Sessions::new(OwnPrekeys::generate(rng, 7, 100)),
        }
    }

    fn peer(&self) -> PeerIdentity<'static> {
        PeerIdentity {
            name: self.name,
            keys: self.id.public_keys(),
            bind: self.id.bind(self.name).unwrap(),
        }
    }

    /// What a server hands out for this party after its `prekeys` line: the line is
    /// emitted and parsed as the server does, with the `n`-th one-time prekey (if any).
    fn bundle(&self, opk: Option<usize>) -> Bundle<'static> {
        let mut out = vec![0u8; 2048];
        let n = self.s.own().emit_prekeys(1, &self.id, &mut out).unwrap();
        let line: &'static [u8] = Box::leak(out[..n].to_vec().into_boxed_slice());
        let scratch: &'static mut [u8] = Box::leak(vec![0u8; n].into_boxed_slice());
        let Ok(V2Message::Prekeys {
            spk_id,
            spk,
            spk_sig,
            opks,
            ..
        }) = v2json::parse(line, scratch)
        else {
            panic!("not a prekeys line")
        };
        assert_eq!(opks.len(), self.s.own().opks().len());
        Bundle {
            peer: self.peer(),
            spk_id,
            spk,
            spk_sig,
            opk: opk.and_then(|i| opks.iter().nth(i)),
        }
    }

    fn seal(&mut self, rng: &mut ChaCha20Rng, to: &str, text: &str) -> Vec<u8> {
        let mut out = vec![0u8; MAX_BODY];
        let n = self.s.seal_text(rng, to, text, &mut out).unwrap();
        out.truncate(n);
        out
    }

    /// Opens `body` from `from`: the text, or the error.
    fn open(
        &mut self,
        from: &Party,
        body: &[u8],
    ) -> Result<(String, Opened<'static>), ReceiveError> {
        let out: &'static mut [u8] = Box::leak(vec![0u8; MAX_BODY].into_boxed_slice());
        let o = self.s.open(&self.id, self.name, &from.peer(), body, out)?;
        match o.content {
            Received::Text { text, .. } => Ok((text.to_owned(), o)),
            Received::Receipt(_) | Received::Control(_) => panic!("not a text"),
        }
    }
}

fn pair(seed: u64) -> (ChaCha20Rng, Party, Party) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let a = Party::new(&mut rng, "alice");
    let b = Party::new(&mut rng, "bob");
    (rng, a, b)
}

#[test]
fn a_session_from_a_bundle_carries_texts_both_ways_and_uses_each_one_time_prekey_once() {
    let (mut rng, mut a, mut b) = pair(1);
    assert_eq!(
        a.s.seal_text(&mut rng, "bob", "x", &mut [0u8; MAX_BODY]),
        Err(SendError::NoSession)
    );
    a.s.start(&mut rng, &a.id, "alice", &b.bundle(Some(0)))
        .unwrap();
    let m1 = a.seal(&mut rng, "bob", "hello bob");
    let m2 = a.seal(&mut rng, "bob", "second");
    assert_eq!(b.s.own().opks().len(), 16);
    let (t, o) = b.open(&a, &m1).unwrap();
    assert_eq!(
        (t.as_str(), o.new_session, o.replaced),
        ("hello bob", true, false)
    );
    assert_eq!(b.s.own().opks().len(), 15, "the one-time prekey is deleted");
    assert_eq!(b.open(&a, &m2).unwrap().0, "second");
    let r1 = b.seal(&mut rng, "alice", "hi alice");
    let (t, o) = a.open(&b, &r1).unwrap();
    assert_eq!((t.as_str(), o.new_session), ("hi alice", false));
    assert!(a.s.session("bob").unwrap().is_established());
    for i in 0..5 {
        let m = a.seal(&mut rng, "bob", &format!("a{i}"));
        assert_eq!(b.open(&a, &m).unwrap().0, format!("a{i}"));
        let r = b.seal(&mut rng, "alice", &format!("b{i}"));
        assert_eq!(a.open(&b, &r).unwrap().0, format!("b{i}"));
    }
    // Another initiator naming the used one-time prekey: refused, no session.
    let mut c = Party::new(&mut rng, "carol");
    c.s.start(&mut rng, &c.id, "carol", &b.bundle(None))
        .unwrap();
    let mut stale = b.bundle(None);
    stale.opk = Some((100, *a.s.own().spk().public()));
    let mut d = Party::new(&mut rng, "dave");
    d.s.start(&mut rng, &d.id, "dave", &stale).unwrap();
    let md = d.seal(&mut rng, "bob", "x");
    assert_eq!(
        b.open(&d, &md).unwrap_err(),
        ReceiveError::Open(OpenError::UnknownPrekey)
    );
    assert!(!b.s.has("dave"));
    // Without a one-time prekey (the server had none left): still a session.
    let mc = c.seal(&mut rng, "bob", "no opk");
    assert_eq!(b.open(&c, &mc).unwrap().0, "no opk");
}

#[test]
fn a_bundle_that_does_not_verify_is_refused_and_a_full_table_says_so() {
    let (mut rng, mut a, b) = pair(2);
    let mut bad = b.bundle(Some(0));
    bad.spk[0] ^= 1;
    assert!(matches!(
        a.s.start(&mut rng, &a.id, "alice", &bad),
        Err(StartError::Setup(_))
    ));
    let mut bad = b.bundle(Some(0));
    bad.peer.bind[0] ^= 1;
    assert!(matches!(
        a.s.start(&mut rng, &a.id, "alice", &bad),
        Err(StartError::Setup(_))
    ));
    assert!(a.s.is_empty());
    let names = ["p0", "p1", "p2", "p3", "p4"];
    let peers: Vec<Party> = names.iter().map(|n| Party::new(&mut rng, n)).collect();
    for p in &peers[..4] {
        a.s.start(&mut rng, &a.id, "alice", &p.bundle(None))
            .unwrap();
    }
    assert_eq!(
        a.s.start(&mut rng, &a.id, "alice", &peers[4].bundle(None)),
        Err(StartError::Full)
    );
    // Replacing an existing one is fine.
    a.s.start(&mut rng, &a.id, "alice", &peers[0].bundle(None))
        .unwrap();
    assert_eq!(a.s.len(), 4);
}

#[test]
fn a_hostile_relay_s_replays_reflections_and_forgeries_are_refused_and_change_nothing() {
    let (mut rng, mut a, mut b) = pair(3);
    a.s.start(&mut rng, &a.id, "alice", &b.bundle(Some(3)))
        .unwrap();
    let first = a.seal(&mut rng, "bob", "one");
    // Reflected to its sender before bob saw it (alice has a session as initiator).
    assert_eq!(
        a.open(&b, &first).unwrap_err(),
        ReceiveError::Open(OpenError::Reflected)
    );
    assert_eq!(b.open(&a, &first).unwrap().0, "one");
    // The first message again: a replay, not a second session (same ephemeral key).
    assert_eq!(
        b.open(&a, &first).unwrap_err(),
        ReceiveError::Open(OpenError::Stale)
    );
    let reply = b.seal(&mut rng, "alice", "two");
    // bob's own reply handed back to bob.
    assert_eq!(
        b.open(&a, &reply).unwrap_err(),
        ReceiveError::Open(OpenError::Reflected)
    );
    // Altered in transit: every byte of the ciphertext and header matters.
    for at in [2, 40, reply.len() - 1] {
        let mut bad = reply.clone();
        bad[at] ^= 0x40;
        assert!(a.open(&b, &bad).is_err(), "byte {at}");
    }
    let mut flipped = reply.clone();
    flipped[1] ^= 0x02; // the role bit: a relay cannot make a reflection pass
    assert!(a.open(&b, &flipped).is_err());
    // Garbage.
    assert!(matches!(
        a.open(&b, &[1, 2, 3]).unwrap_err(),
        ReceiveError::Open(OpenError::Malformed(_))
    ));
    // None of that changed anything: the genuine reply opens, once.
    assert_eq!(a.open(&b, &reply).unwrap().0, "two");
    assert_eq!(
        a.open(&b, &reply).unwrap_err(),
        ReceiveError::Open(OpenError::Stale)
    );
    // A message without prelude from a stranger: no session to open it.
    let mut c = Party::new(&mut rng, "carol");
    c.s.start(&mut rng, &c.id, "carol", &b.bundle(None))
        .unwrap();
    let c1 = c.seal(&mut rng, "bob", "c1");
    b.open(&c, &c1).unwrap();
    let cr = b.seal(&mut rng, "carol", "r");
    c.open(&b, &cr).unwrap();
    let c2 = c.seal(&mut rng, "bob", "c2"); // no prelude any more
    let mut fresh = Party::new(&mut rng, "bob");
    assert_eq!(
        fresh.open(&c, &c2).unwrap_err(),
        ReceiveError::Open(OpenError::UnknownPrekey)
    );
}

#[test]
fn a_peer_that_lost_its_state_starts_a_new_session_which_replaces_the_old_one() {
    let (mut rng, mut a, mut b) = pair(4);
    let alice_id = || Identity::generate(&mut ChaCha20Rng::seed_from_u64(42), 0);
    a.id = alice_id();
    a.s.start(&mut rng, &a.id, "alice", &b.bundle(Some(0)))
        .unwrap();
    let m = a.seal(&mut rng, "bob", "before");
    b.open(&a, &m).unwrap();
    // alice starts over (new table, same identity), from a new bundle.
    let mut a2 = Party {
        name: "alice",
        id: alice_id(),
        s: Sessions::new(OwnPrekeys::generate(&mut rng, 8, 200)),
    };
    a2.s.start(&mut rng, &a2.id, "alice", &b.bundle(Some(0)))
        .unwrap();
    let m2 = a2.seal(&mut rng, "bob", "after");
    let (t, o) = b.open(&a2, &m2).unwrap();
    assert_eq!(
        (t.as_str(), o.new_session, o.replaced),
        ("after", true, true)
    );
    let r = b.seal(&mut rng, "alice", "welcome back");
    assert_eq!(a2.open(&b, &r).unwrap().0, "welcome back");
    // The old session's messages no longer open.
    let old = a.seal(&mut rng, "bob", "old");
    assert!(b.open(&a, &old).is_err());
}

/// A relay that holds up to 16 messages and delivers them in random order, duplicating
/// some and dropping up to 10: every message not dropped is shown exactly once, every
/// duplicate is refused as a replay. (The bound of §6: at most 32 outstanding, lost
/// ones included, so 16 in flight and 10 lost stay inside it.)
#[test]
fn through_a_relay_that_drops_reorders_and_duplicates_every_text_is_shown_exactly_once() {
    for seed in 0..6u64 {
        let (mut rng, mut a, mut b) = pair(100 + seed);
        a.s.start(&mut rng, &a.id, "alice", &b.bundle(Some(1)))
            .unwrap();
        // bob must see one message before he can answer.
        let m0 = a.seal(&mut rng, "bob", "a-start");
        b.open(&a, &m0).unwrap();
        let mut in_flight: Vec<(bool, String, Vec<u8>)> = Vec::new(); // (to bob, text, body)
        let mut shown: Vec<String> = Vec::new();
        let mut dropped: Vec<String> = Vec::new();
        let mut sent: Vec<String> = Vec::new();
        let mut replays = 0;
        for i in 0..400 {
            // Send from one side (alice more often), keeping at most 16 in flight.
            if in_flight.len() < 16 {
                let to_bob = rng.gen_bool(0.7);
                let text = format!("{}-{i}", if to_bob { "a" } else { "b" });
                let body = if to_bob {
                    a.seal(&mut rng, "bob", &text)
                } else {
                    b.seal(&mut rng, "alice", &text)
                };
                sent.push(text.clone());
                in_flight.push((to_bob, text, body));
            }
            // Deliver one at random, sometimes dropping it, sometimes keeping a copy.
            if !in_flight.is_empty() && rng.gen_bool(0.8) {
                let k = rng.gen_range(0..in_flight.len());
                let (to_bob, text, body) = in_flight.swap_remove(k);
                if dropped.len() < 10 && rng.gen_bool(0.05) {
                    dropped.push(text);
                    continue;
                }
                let got = if to_bob {
                    b.open(&a, &body)
                } else {
                    a.open(&b, &body)
                };
                match got {
                    Ok((t, _)) => {
                        assert_eq!(t, text);
                        shown.push(t);
                    }
                    Err(e) => panic!(
                        "seed {seed}: {text} refused: {e}; in flight {}, dropped {}, ring a {} b {}",
                        in_flight.len(),
                        dropped.len(),
                        a.s.session("bob").unwrap().skipped_keys(),
                        b.s.session("alice").unwrap().skipped_keys()
                    ),
                }
                if rng.gen_bool(0.1) {
                    let again = if to_bob {
                        b.open(&a, &body)
                    } else {
                        a.open(&b, &body)
                    };
                    assert!(
                        again.is_err(),
                        "seed {seed}: a duplicate of {text} was shown"
                    );
                    replays += 1;
                }
            }
        }
        for (to_bob, text, body) in in_flight.drain(..) {
            let got = if to_bob {
                b.open(&a, &body)
            } else {
                a.open(&b, &body)
            };
            assert_eq!(got.unwrap().0, text);
            shown.push(text);
        }
        let mut want: Vec<String> = sent.into_iter().filter(|t| !dropped.contains(t)).collect();
        want.sort();
        shown.sort();
        let before = shown.len();
        shown.dedup();
        assert_eq!(before, shown.len(), "seed {seed}: a text was shown twice");
        assert_eq!(shown, want, "seed {seed}");
        assert!(
            replays > 0 && !dropped.is_empty(),
            "seed {seed}: the relay did nothing hostile"
        );
    }
}

/// One message held back while many later ones arrive pairwise swapped: each swap
/// skips a key that is opened right after, so only two keys are ever outstanding, and
/// the held-back message still opens (the ring evicts only when 32 keys are held).
#[test]
fn a_message_held_back_opens_however_many_keys_were_skipped_and_opened_since() {
    let (mut rng, mut a, mut b) = pair(5);
    a.s.start(&mut rng, &a.id, "alice", &b.bundle(None))
        .unwrap();
    let bodies: Vec<Vec<u8>> = (0..81)
        .map(|i| a.seal(&mut rng, "bob", &format!("m{i}")))
        .collect();
    assert_eq!(b.open(&a, &bodies[1]).unwrap().0, "m1");
    for i in (2..80).step_by(2) {
        assert_eq!(b.open(&a, &bodies[i + 1]).unwrap().0, format!("m{}", i + 1));
        assert_eq!(b.open(&a, &bodies[i]).unwrap().0, format!("m{i}"));
    }
    assert_eq!(b.s.session("alice").unwrap().skipped_keys(), 1);
    // The moved ring is a valid stored state (§12.1: free entries are zeros).
    let mut rec = [0u8; STATE_LEN];
    b.s.session("alice").unwrap().encode(&mut rec).unwrap();
    assert_eq!(Session::decode(&rec).unwrap().skipped_keys(), 1);
    assert_eq!(b.open(&a, &bodies[0]).unwrap().0, "m0");
    assert_eq!(b.s.session("alice").unwrap().skipped_keys(), 0);
    // n34 first skips 34 keys: the ring keeps the newest 32, n0 and n1 are refused.
    let more: Vec<Vec<u8>> = (0..35)
        .map(|i| a.seal(&mut rng, "bob", &format!("n{i}")))
        .collect();
    assert_eq!(b.open(&a, &more[34]).unwrap().0, "n34");
    assert_eq!(b.s.session("alice").unwrap().skipped_keys(), 32);
    for i in [0, 1] {
        assert_eq!(
            b.open(&a, &more[i]).unwrap_err(),
            ReceiveError::Open(OpenError::Stale)
        );
    }
    assert_eq!(b.open(&a, &more[2]).unwrap().0, "n2");
    // Two more skipped: the first takes the free entry, the second evicts the oldest.
    let more2: Vec<Vec<u8>> = (0..3)
        .map(|i| a.seal(&mut rng, "bob", &format!("o{i}")))
        .collect();
    assert_eq!(b.open(&a, &more2[2]).unwrap().0, "o2");
    assert_eq!(
        b.open(&a, &more[3]).unwrap_err(),
        ReceiveError::Open(OpenError::Stale)
    );
    assert_eq!(b.open(&a, &more[4]).unwrap().0, "n4");
    assert_eq!(b.open(&a, &more2[0]).unwrap().0, "o0");
    assert_eq!(b.open(&a, &more[33]).unwrap().0, "n33");
}

/// A client's prekeys and sessions stored and restored (a restart): the conversation
/// goes on, a replay of a message opened before the restart is still refused, and a
/// damaged record is refused without changing anything.
#[test]
fn prekeys_and_sessions_survive_a_restart_and_damaged_records_are_refused() {
    let (mut rng, mut a, mut b) = pair(6);
    a.s.start(&mut rng, &a.id, "alice", &b.bundle(Some(2)))
        .unwrap();
    let first = a.seal(&mut rng, "bob", "before");
    let late = a.seal(&mut rng, "bob", "in flight over the restart");
    b.open(&a, &first).unwrap();
    // bob restarts: his prekeys and his session with alice, from their records.
    let mut rec = vec![0u8; OwnPrekeys::RECORD_MAX];
    let n = b.s.own().encode(&mut rec).unwrap();
    let own_rec = rec[..n].to_vec();
    let mut rec = vec![0u8; T::PEER_RECORD_MAX];
    let n = b.s.encode_peer("alice", &mut rec).unwrap().unwrap();
    let peer_rec = rec[..n].to_vec();
    assert!(b.s.encode_peer("zed", &mut rec).is_none());
    let own = OwnPrekeys::decode(&own_rec).unwrap();
    assert_eq!(own.opks().len(), 15);
    assert_eq!(own.spk().public(), b.s.own().spk().public());
    let id = std::mem::replace(&mut b.id, Identity::generate(&mut rng, 0));
    drop(b);
    let mut b2 = Party {
        name: "bob",
        id,
        s: Sessions::new(own),
    };
    assert_eq!(b2.s.restore_peer(&peer_rec).unwrap(), "alice");
    assert_eq!(b2.open(&a, &late).unwrap().0, "in flight over the restart");
    assert_eq!(
        b2.open(&a, &first).unwrap_err(),
        ReceiveError::Open(OpenError::Stale)
    );
    let r = b2.seal(&mut rng, "alice", "after");
    assert_eq!(a.open(&b2, &r).unwrap().0, "after");
    // A new initiator still gets an answer from the restored prekeys.
    let mut c = Party::new(&mut rng, "carol");
    c.s.start(&mut rng, &c.id, "carol", &b2.bundle(Some(0)))
        .unwrap();
    let mc = c.seal(&mut rng, "bob", "hi");
    assert_eq!(b2.open(&c, &mc).unwrap().0, "hi");

    // Every flipped byte, every truncation: refused, nothing restored or changed.
    for rec in [&own_rec, &peer_rec] {
        for i in 0..rec.len() {
            let mut bad = rec.clone();
            bad[i] ^= 0x01;
            assert!(OwnPrekeys::decode(&bad).is_err());
            let mut fresh: T = Sessions::new(OwnPrekeys::generate(&mut rng, 1, 1));
            assert!(fresh.restore_peer(&bad).is_err(), "byte {i}");
            assert!(fresh.is_empty());
        }
        for len in 0..rec.len() {
            assert!(OwnPrekeys::decode(&rec[..len]).is_err());
        }
    }
    // The two kinds of record are not mistaken for one another.
    assert!(OwnPrekeys::decode(&peer_rec).is_err());
    let mut fresh: T = Sessions::new(OwnPrekeys::generate(&mut rng, 1, 1));
    assert!(fresh.restore_peer(&own_rec).is_err());
}

/// The record bounds hosts size their buffers by are exact: a full set of prekeys and a
/// session with a peer of the longest name fill them to the byte.
#[test]
fn the_largest_records_fill_the_stated_bounds_exactly() {
    let (mut rng, _, mut b) = pair(7);
    let mut rec = vec![0u8; OwnPrekeys::RECORD_MAX + 16];
    // Without a previous signed prekey, 36 bytes (its id and secret) less.
    assert_eq!(
        b.s.own().encode(&mut rec),
        Ok(OwnPrekeys::RECORD_MAX - 36),
        "{} one-time prekeys",
        b.s.own().opks().len()
    );
    b.s.own_mut().rotate_spk(&mut rng, 1);
    assert_eq!(
        b.s.own_mut().rotate_spk(&mut rng, 1 + SPK_LIFETIME_S),
        SpkRotation::Rotated
    );
    assert_eq!(b.s.own().encode(&mut rec), Ok(OwnPrekeys::RECORD_MAX));
    assert!(
        b.s.own()
            .encode(&mut rec[..OwnPrekeys::RECORD_MAX - 1])
            .is_err()
    );
    // A peer named with 32 four-byte characters: the longest name (128 bytes).
    let long: &'static str = Box::leak("\u{1F600}".repeat(32).into_boxed_str());
    let mut l = Party::new(&mut rng, long);
    l.s.start(&mut rng, &l.id, long, &b.bundle(Some(0)))
        .unwrap();
    let mut rec = vec![0u8; T::PEER_RECORD_MAX + 16];
    assert_eq!(
        l.s.encode_peer("bob", &mut rec).unwrap(),
        Ok(T::PEER_RECORD_MAX - long.len() + 3)
    );
    let first = l.seal(&mut rng, "bob", "hi");
    let mut b = b;
    assert_eq!(b.open(&l, &first).unwrap().0, "hi");
    assert_eq!(
        b.s.encode_peer(long, &mut rec).unwrap(),
        Ok(T::PEER_RECORD_MAX)
    );
    assert!(matches!(
        b.s.encode_peer(long, &mut rec[..T::PEER_RECORD_MAX - 1]),
        Some(Err(_))
    ));
}

/// A prekeys record whose count disagrees with the keys it carries is refused even
/// with a valid checksum (a record written by another version, or forged).
#[test]
fn a_prekeys_record_with_a_wrong_count_is_refused_even_with_a_valid_checksum() {
    use sha2::{Digest, Sha256};
    let (_, a, _) = pair(8);
    let mut rec = vec![0u8; OwnPrekeys::RECORD_MAX];
    let n = a.s.own().encode(&mut rec).unwrap();
    rec.truncate(n);
    assert!(OwnPrekeys::decode(&rec).is_ok());
    // The count byte sits after magic (4), format (1), spk id (4) and secret (32), its
    // date (8) and the previous prekey's flag (1, none here).
    assert_eq!(rec[49], 0);
    let count = rec[50] as usize;
    assert_eq!(count, a.s.own().opks().len());
    let reseal = |body: &[u8]| {
        let mut r = body.to_vec();
        let d = Sha256::digest(&r);
        r.extend_from_slice(&d[..8]);
        r
    };
    let body = &rec[..rec.len() - 8];
    for c in [0u8, 1, count as u8 - 1, count as u8 + 1, 255] {
        let mut b = body.to_vec();
        b[50] = c;
        assert!(OwnPrekeys::decode(&reseal(&b)).is_err(), "count {c}");
    }
    // Keys dropped with the count lowered to match: accepted, with that many.
    let mut b = body[..body.len() - 36].to_vec();
    b[50] = count as u8 - 1;
    assert_eq!(
        OwnPrekeys::decode(&reseal(&b)).unwrap().opks().len(),
        count - 1
    );
    assert!(OwnPrekeys::decode(&reseal(body)).is_ok());
}

/// The longest text seals; one byte more is refused before anything changes; the
/// errors read as what happened.
#[test]
fn the_longest_text_seals_and_one_byte_more_is_refused() {
    let (mut rng, mut a, mut b) = pair(9);
    a.s.start(&mut rng, &a.id, "alice", &b.bundle(Some(1)))
        .unwrap();
    let max = seguro_core::v2::MAX_TEXT;
    let mut out = vec![0u8; MAX_BODY];
    assert_eq!(
        a.s.seal_text(&mut rng, "bob", &"y".repeat(max + 1), &mut out),
        Err(SendError::TooLong)
    );
    let longest = "x".repeat(max);
    let body = a.seal(&mut rng, "bob", &longest);
    assert_eq!(b.open(&a, &body).unwrap().0, longest);
    assert_eq!(
        a.s.seal_text(&mut rng, "zed", "hi", &mut out),
        Err(SendError::NoSession)
    );
    assert_eq!(
        SendError::NoSession.to_string(),
        "no v2 session with this peer"
    );
    assert_eq!(SendError::TooLong.to_string(), "text too long");
    let small =
        a.s.seal_text(&mut rng, "bob", "hi", &mut out[..8])
            .unwrap_err();
    let SendError::Seal(inner) = small else {
        panic!("{small:?}")
    };
    assert_eq!(small.to_string(), inner.to_string());
    assert!(!small.to_string().is_empty());
}

/// A message opened out of order frees an entry in a full ring of skipped keys: the
/// next skipped key takes it and the oldest key still waiting is kept (§6).
#[test]
fn a_key_freed_in_a_full_ring_is_reused_before_the_oldest_is_evicted() {
    let (mut rng, mut a, mut b) = pair(10);
    a.s.start(&mut rng, &a.id, "alice", &b.bundle(None))
        .unwrap();
    let hello = a.seal(&mut rng, "bob", "hello");
    assert_eq!(b.open(&a, &hello).unwrap().0, "hello");
    let held: Vec<Vec<u8>> = (0..33)
        .map(|i| a.seal(&mut rng, "bob", &format!("h{i}")))
        .collect();
    // h32 first: h0..h31 wait in the ring, which is full.
    assert_eq!(b.open(&a, &held[32]).unwrap().0, "h32");
    assert_eq!(b.s.session("alice").unwrap().skipped_keys(), 32);
    // One in the middle opens: one entry free, the oldest (h0) still at the head.
    assert_eq!(b.open(&a, &held[5]).unwrap().0, "h5");
    let next: Vec<Vec<u8>> = (0..2)
        .map(|i| a.seal(&mut rng, "bob", &format!("n{i}")))
        .collect();
    assert_eq!(b.open(&a, &next[1]).unwrap().0, "n1");
    assert_eq!(b.s.session("alice").unwrap().skipped_keys(), 32);
    for i in (0..32).filter(|&i| i != 5) {
        assert_eq!(b.open(&a, &held[i]).unwrap().0, format!("h{i}"), "h{i}");
    }
    assert_eq!(b.open(&a, &next[0]).unwrap().0, "n0");
    assert_eq!(b.s.session("alice").unwrap().skipped_keys(), 0);
}

/// What a host may log: the table's Debug names ids, counts and peers, never a secret.
#[test]
fn debug_output_names_ids_and_peers_and_no_secret() {
    let (mut rng, mut a, b) = pair(12);
    a.s.start(&mut rng, &a.id, "alice", &b.bundle(Some(0)))
        .unwrap();
    let own = format!("{:?}", b.s.own());
    assert_eq!(
        own,
        "OwnPrekeys { spk: 7, spk_since: 0, prev_spk: None, opks: 16 }"
    );
    assert_eq!(
        format!("{:?}", a.s),
        "Sessions { own: OwnPrekeys { spk: 7, spk_since: 0, prev_spk: None, opks: 16 }, peers: \
         [\"bob\"] }"
    );
    let secret = b.s.own().spk().secret_bytes();
    let hex: String = secret.iter().map(|x| format!("{x:02x}")).collect();
    let all = format!("{:?}{:?}", b.s, a.s);
    assert!(!all.contains(&hex) && !all.contains(&format!("{secret:?}")));
}

/// The refusals read as what happened: a host shows these texts in its warnings.
#[test]
fn refusals_read_as_what_happened() {
    use seguro_core::v2::wire::InnerError;
    use seguro_core::v2::x3dh::SetupError;
    let setup = SetupError::WeakKey;
    assert_eq!(
        StartError::Setup(setup).to_string(),
        format!("the peer's prekey bundle is refused: {setup}")
    );
    assert!(setup.to_string().contains("low-order"));
    assert_eq!(
        StartError::Full.to_string(),
        "no room for another v2 session"
    );
    assert_eq!(StartError::BadName.to_string(), "invalid peer name");
    for e in [OpenError::Reflected, OpenError::Stale, OpenError::Decrypt] {
        assert_eq!(ReceiveError::Open(e).to_string(), e.to_string());
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(
        ReceiveError::BadInner(InnerError::NotUtf8).to_string(),
        format!("invalid content: {}", InnerError::NotUtf8)
    );
    assert_eq!(
        ReceiveError::Full.to_string(),
        "no room for another v2 session"
    );
}

/// A full table: a restored record for a peer it holds replaces that session, one for
/// a new peer is refused; `forget` drops one session and only that one; names of the
/// longest length are accepted and longer ones refused before any work.
#[test]
fn a_full_table_restores_known_peers_and_forgets_one_at_a_time() {
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    let mut a = Party::new(&mut rng, "alice");
    assert!(a.s.is_empty());
    let peers: Vec<Party> = ["bob", "carol", "dan", "eve"]
        .into_iter()
        .map(|n| Party::new(&mut rng, n))
        .collect();
    for p in &peers {
        a.s.start(&mut rng, &a.id, "alice", &p.bundle(Some(0)))
            .unwrap();
    }
    assert!(!a.s.is_empty());
    assert_eq!(a.s.len(), 4);
    let mut rec = vec![0u8; T::PEER_RECORD_MAX];
    let n = a.s.encode_peer("carol", &mut rec).unwrap().unwrap();
    let carol = rec[..n].to_vec();
    assert_eq!(a.s.restore_peer(&carol), Ok("carol"));
    assert_eq!(a.s.len(), 4);
    // A record of a fifth peer, from another table: no room.
    let mut other: T = Sessions::new(OwnPrekeys::generate(&mut rng, 1, 1));
    let zed = Party::new(&mut rng, "zed");
    other
        .start(&mut rng, &a.id, "alice", &zed.bundle(None))
        .unwrap();
    let n = other.encode_peer("zed", &mut rec).unwrap().unwrap();
    assert!(a.s.restore_peer(&rec[..n]).is_err());
    assert!(!a.s.has("zed"));
    a.s.forget("dan");
    assert!(!a.s.has("dan") && a.s.has("bob") && a.s.has("carol") && a.s.has("eve"));
    assert_eq!(a.s.len(), 3);
    let mut out = vec![0u8; MAX_BODY];
    assert_eq!(
        a.s.seal_text(&mut rng, "dan", "hi", &mut out),
        Err(SendError::NoSession)
    );
    a.s.forget("nobody");
    assert_eq!(a.s.len(), 3);
    // Now there is room for zed's record.
    assert_eq!(a.s.restore_peer(&rec[..n]), Ok("zed"));
    for p in ["bob", "carol", "eve", "zed"] {
        a.s.forget(p);
    }
    assert!(a.s.is_empty());

    // The longest name (128 bytes) starts a session; one byte more is BadName.
    let longest: &'static str = Box::leak("\u{1F600}".repeat(32).into_boxed_str());
    let l = Party::new(&mut rng, longest);
    assert_eq!(a.s.start(&mut rng, &a.id, "alice", &l.bundle(None)), Ok(()));
    assert!(a.s.has(longest));
    let mut b = l.bundle(None);
    let over: &'static str = Box::leak(format!("{longest}x").into_boxed_str());
    b.peer.name = over;
    assert_eq!(
        a.s.start(&mut rng, &a.id, "alice", &b),
        Err(StartError::BadName)
    );
    assert_eq!(a.s.len(), 1);
}

/// A buffer too small for the sealed text says exactly how much is needed and changes
/// nothing; a buffer of exactly that size takes the message.
#[test]
fn a_small_buffer_names_the_exact_size_and_changes_nothing() {
    let (mut rng, mut a, mut b) = pair(14);
    a.s.start(&mut rng, &a.id, "alice", &b.bundle(Some(3)))
        .unwrap();
    for text in ["", "hola", &"z".repeat(700)] {
        let mut before = vec![0u8; STATE_LEN];
        a.s.session("bob").unwrap().encode(&mut before).unwrap();
        let mut out = vec![0u8; MAX_BODY];
        let err =
            a.s.seal_text(&mut rng, "bob", text, &mut out[..8])
                .unwrap_err();
        let SendError::Seal(seguro_core::v2::ratchet::SealError::BufferTooSmall { needed }) = err
        else {
            panic!("{err:?}")
        };
        let mut after = vec![0u8; STATE_LEN];
        a.s.session("bob").unwrap().encode(&mut after).unwrap();
        assert_eq!(before, after, "a refused seal changed the session");
        assert!(
            a.s.seal_text(&mut rng, "bob", text, &mut out[..needed - 1])
                .is_err(),
            "{needed}"
        );
        let n =
            a.s.seal_text(&mut rng, "bob", text, &mut out[..needed])
                .unwrap();
        assert_eq!(n, needed);
        assert_eq!(b.open(&a, &out[..n]).unwrap().0, text);
    }
}

#[test]
fn receipts_name_the_texts_by_the_ids_they_were_sealed_with() {
    let (mut rng, mut a, mut b) = pair(41);
    assert_eq!(a.s.next_text_id("bob"), None);
    let mut out = vec![0u8; MAX_BODY];
    assert_eq!(
        a.s.seal_receipt(&mut rng, "bob", &[1], &mut out),
        Err(SendError::NoSession)
    );
    a.s.start(&mut rng, &a.id, "alice", &b.bundle(Some(0)))
        .unwrap();
    assert_eq!(a.s.next_text_id("bob"), Some(1));
    let m1 = a.seal(&mut rng, "bob", "uno");
    assert_eq!(a.s.next_text_id("bob"), Some(2));
    let m2 = a.seal(&mut rng, "bob", "dos");
    assert_eq!(a.s.next_text_id("bob"), Some(3));
    let mut ids = Vec::new();
    for m in [&m1, &m2] {
        let out: &'static mut [u8] = Box::leak(vec![0u8; MAX_BODY].into_boxed_slice());
        match b.s.open(&b.id, "bob", &a.peer(), m, out).unwrap().content {
            Received::Text { id, .. } => ids.push(id),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ids, [1, 2]);
    // No id, or too many: refused, and nothing is sealed.
    for bad in [&[][..], &[7u32; 17][..]] {
        assert_eq!(
            b.s.seal_receipt(&mut rng, "alice", bad, &mut out),
            Err(SendError::BadReceipt)
        );
    }
    assert_eq!(
        SendError::BadReceipt.to_string(),
        "a receipt lists 1 to 16 messages"
    );
    let n = b.s.seal_receipt(&mut rng, "alice", &ids, &mut out).unwrap();
    let mut plain = vec![0u8; MAX_BODY];
    let o =
        a.s.open(&a.id, "alice", &b.peer(), &out[..n], &mut plain)
            .unwrap();
    match o.content {
        Received::Receipt(r) => assert_eq!(r.iter().collect::<Vec<_>>(), [1, 2]),
        other => panic!("{other:?}"),
    }
    // Sixteen ids fit; a receipt is not a text: the next text id is unchanged.
    let sixteen: Vec<u32> = (1..=16).collect();
    let n =
        b.s.seal_receipt(&mut rng, "alice", &sixteen, &mut out)
            .unwrap();
    assert_eq!(b.s.next_text_id("alice"), Some(1));
    let o =
        a.s.open(&a.id, "alice", &b.peer(), &out[..n], &mut plain)
            .unwrap();
    assert!(matches!(o.content, Received::Receipt(r) if r.len() == 16));
    // A buffer too small for the sealed receipt is refused with the size needed.
    assert!(matches!(
        b.s.seal_receipt(&mut rng, "alice", &[1], &mut [0u8; 10]),
        Err(SendError::Seal(_))
    ));
}

#[test]
fn verification_messages_are_sealed_and_opened_as_control_never_as_texts() {
    use seguro_core::v2::wire::{CancelReason, Inner};
    let (mut rng, mut a, mut b) = pair(43);
    let start = Inner::SasStart {
        sid: [7; 16],
        commit: [9; 32],
    };
    let mut out = vec![0u8; MAX_BODY];
    assert_eq!(
        a.s.seal_control(&mut rng, "bob", &start, &mut out),
        Err(SendError::NoSession)
    );
    a.s.start(&mut rng, &a.id, "alice", &b.bundle(Some(0)))
        .unwrap();
    // Texts and receipts have their own calls.
    for not in [
        Inner::Text { id: 1, text: "x" },
        seguro_core::v2::wire::Inner::parse(&[0x02, 1, 0, 0, 0, 1]).unwrap(),
    ] {
        assert_eq!(
            a.s.seal_control(&mut rng, "bob", &not, &mut out),
            Err(SendError::NotControl)
        );
    }
    assert_eq!(
        SendError::NotControl.to_string(),
        "not a control message (a text or a receipt)"
    );
    let first = a.seal(&mut rng, "bob", "hola");
    b.open(&a, &first).unwrap();
    let cancel = Inner::SasCancel {
        sid: [7; 16],
        reason: CancelReason::Mismatch,
    };
    for inner in [start, cancel] {
        let n = a.s.seal_control(&mut rng, "bob", &inner, &mut out).unwrap();
        let mut plain = vec![0u8; MAX_BODY];
        let o =
            b.s.open(&b.id, "bob", &a.peer(), &out[..n], &mut plain)
                .unwrap();
        assert_eq!(o.content, Received::Control(inner));
    }
    // A control message is no text: the text ids go on from where they were.
    assert_eq!(a.s.next_text_id("bob"), Some(2));
    assert!(matches!(
        a.s.seal_control(&mut rng, "bob", &start, &mut [0u8; 8]),
        Err(SendError::Seal(_))
    ));
}

/// §5.1: the signed prekey is replaced after 7 days; first messages to the one it
/// replaced still open (a bundle fetched before the replacement, a message in flight),
/// those to the one before are refused, and the stored form keeps both and the date.
#[test]
fn the_signed_prekey_is_replaced_after_seven_days_and_the_one_before_still_opens() {
    let (mut rng, mut a, mut b) = pair(21);
    assert_eq!(SPK_LIFETIME_S, 7 * 86_400, "7 days, in seconds");
    let t0 = 1_800_000_000u64;
    assert_eq!(b.s.own().spk_since(), 0, "a new prekey's age is not known");
    assert_eq!(b.s.own_mut().rotate_spk(&mut rng, t0), SpkRotation::Dated);
    assert_eq!(b.s.own().spk_since(), t0);
    let (first_id, first_pub) = (b.s.own().spk().id(), *b.s.own().spk().public());
    assert!(b.s.own().prev_spk().is_none());
    let before = b.bundle(Some(0));
    let before_no_opk = b.bundle(None);
    // Not yet 7 days; a clock that went back replaces nothing either.
    for t in [t0, t0 + SPK_LIFETIME_S - 1, t0 - 1000, 0] {
        assert_eq!(
            b.s.own_mut().rotate_spk(&mut rng, t),
            SpkRotation::Current,
            "{t}"
        );
        assert_eq!(b.s.own().spk().id(), first_id);
        assert_eq!(b.s.own().spk_since(), t0);
    }
    let t1 = t0 + SPK_LIFETIME_S;
    assert_eq!(b.s.own_mut().rotate_spk(&mut rng, t1), SpkRotation::Rotated);
    assert_eq!(b.s.own().spk().id(), first_id + 1);
    assert_ne!(*b.s.own().spk().public(), first_pub);
    assert_eq!(
        b.s.own().prev_spk().map(|k| (k.id(), *k.public())),
        Some((first_id, first_pub))
    );
    assert_eq!(b.s.own().spk_since(), t1);
    assert_eq!(
        b.s.own().opks().len(),
        16,
        "one-time prekeys are not touched"
    );
    // What bob publishes now carries the new one, signed.
    let after = b.bundle(Some(1));
    assert_eq!(after.spk_id, first_id + 1);
    assert_eq!(after.spk, *b.s.own().spk().public());

    // alice fetched her bundle before the replacement: her first message opens.
    a.s.start(&mut rng, &a.id, "alice", &before).unwrap();
    let m = a.seal(&mut rng, "bob", "to the previous prekey");
    assert_eq!(b.open(&a, &m).unwrap().0, "to the previous prekey");
    // carol uses the new one.
    let mut c = Party::new(&mut rng, "carol");
    c.s.start(&mut rng, &c.id, "carol", &after).unwrap();
    let m = c.seal(&mut rng, "bob", "to the new prekey");
    assert_eq!(b.open(&c, &m).unwrap().0, "to the new prekey");

    // Stored and restored: the date and the previous prekey are kept.
    let mut rec = vec![0u8; OwnPrekeys::RECORD_MAX];
    let n = b.s.own().encode(&mut rec).unwrap();
    let restored = OwnPrekeys::decode(&rec[..n]).unwrap();
    assert_eq!(restored.spk_since(), t1);
    assert_eq!(restored.spk().public(), b.s.own().spk().public());
    assert_eq!(
        restored.prev_spk().map(|k| (k.id(), *k.public())),
        Some((first_id, first_pub))
    );
    let mut b2 = Party {
        name: "bob",
        id: std::mem::replace(&mut b.id, Identity::generate(&mut rng, 0)),
        s: Sessions::new(restored),
    };
    let mut d = Party::new(&mut rng, "dave");
    d.s.start(&mut rng, &d.id, "dave", &before_no_opk).unwrap();
    let to_first = d.seal(&mut rng, "bob", "to the first prekey");
    let mut e = Party::new(&mut rng, "erin");
    e.s.start(&mut rng, &e.id, "erin", &b2.bundle(None))
        .unwrap();
    let to_second = e.seal(&mut rng, "bob", "to the second prekey");

    // 7 more days: the first prekey is gone for good, the second is the previous one.
    let t2 = t1 + SPK_LIFETIME_S + 5;
    assert_eq!(
        b2.s.own_mut().rotate_spk(&mut rng, t2),
        SpkRotation::Rotated
    );
    assert_eq!(b2.s.own().spk().id(), first_id + 2);
    assert_eq!(b2.s.own().prev_spk().map(|k| k.id()), Some(first_id + 1));
    assert_eq!(
        b2.open(&d, &to_first).unwrap_err(),
        ReceiveError::Open(OpenError::UnknownPrekey)
    );
    assert!(!b2.s.has("dave"), "a refused first message sets nothing up");
    assert_eq!(b2.open(&e, &to_second).unwrap().0, "to the second prekey");
}

/// The own-prekeys record of format 1 (before the replacement of §5.1) is still read:
/// its signed prekey's age counts from the next check; what is written is format 2.
/// A format 2 record whose previous prekey is malformed is refused.
#[test]
fn an_own_prekeys_record_of_the_first_format_is_still_read() {
    use sha2::{Digest, Sha256};
    fn sealed(mut body: Vec<u8>) -> Vec<u8> {
        let sum = Sha256::digest(&body);
        body.extend_from_slice(&sum[..8]);
        body
    }
    let mut v1 = b"SGRK".to_vec();
    v1.push(1);
    v1.extend_from_slice(&9u32.to_be_bytes());
    v1.extend_from_slice(&[7u8; 32]);
    v1.push(1);
    v1.extend_from_slice(&40u32.to_be_bytes());
    v1.extend_from_slice(&[8u8; 32]);
    let own = OwnPrekeys::decode(&sealed(v1.clone())).unwrap();
    assert_eq!(own.spk().id(), 9);
    assert_eq!(own.spk_since(), 0);
    assert!(own.prev_spk().is_none());
    assert_eq!(own.opks().iter().map(|k| k.id()).collect::<Vec<_>>(), [40]);
    let mut rec = vec![0u8; OwnPrekeys::RECORD_MAX];
    let n = own.encode(&mut rec).unwrap();
    assert_eq!(rec[4], 2, "written in the current format");
    assert_eq!(n, 4 + 1 + 36 + 8 + 1 + 1 + 36 + 8);
    let again = OwnPrekeys::decode(&rec[..n]).unwrap();
    assert_eq!(again.spk().public(), own.spk().public());
    assert_eq!(again.opks()[0].public(), own.opks()[0].public());

    // Format 2 by hand: date, then the previous prekey's flag.
    let v2 = |flag: u8, prev_id: u32| {
        let mut r = b"SGRK".to_vec();
        r.push(2);
        r.extend_from_slice(&9u32.to_be_bytes());
        r.extend_from_slice(&[7u8; 32]);
        r.extend_from_slice(&1_800_000_000u64.to_be_bytes());
        r.push(flag);
        if flag == 1 {
            r.extend_from_slice(&prev_id.to_be_bytes());
            r.extend_from_slice(&[6u8; 32]);
        }
        r.push(0);
        sealed(r)
    };
    let ok = OwnPrekeys::decode(&v2(1, 8)).unwrap();
    assert_eq!(ok.spk_since(), 1_800_000_000);
    assert_eq!(ok.prev_spk().map(|k| k.id()), Some(8));
    assert!(OwnPrekeys::decode(&v2(0, 0)).unwrap().prev_spk().is_none());
    assert!(
        OwnPrekeys::decode(&v2(2, 8)).is_err(),
        "a flag other than 0 or 1"
    );
    assert!(
        OwnPrekeys::decode(&v2(1, 9)).is_err(),
        "the previous id is the current one"
    );
    let mut v3 = v1;
    v3[4] = 3;
    assert!(matches!(
        OwnPrekeys::decode(&sealed(v3)),
        Err(seguro_core::v2::ratchet::StateError::UnsupportedFormat(3))
    ));
}

/// §8 `session_lost`: bob lost his session with alice (a restored backup, a deleted
/// file): alice's next message cannot be opened without it. bob sets up a new session
/// from alice's bundle and says so in its first message; alice's table takes it as
/// the peer starting over, and the message reads as `SessionLost`, a control message.
#[test]
fn a_peer_that_lost_its_session_says_so_in_a_new_one() {
    use seguro_core::v2::wire::Inner;
    let (mut rng, mut a, mut b) = pair(44);
    a.s.start(&mut rng, &a.id, "alice", &b.bundle(Some(0)))
        .unwrap();
    let m = a.seal(&mut rng, "bob", "uno");
    assert_eq!(b.open(&a, &m).unwrap().0, "uno");
    let r = b.seal(&mut rng, "alice", "dos");
    assert_eq!(a.open(&b, &r).unwrap().0, "dos");
    // bob's session is gone; alice's next message carries no prelude any more.
    b.s.forget("alice");
    let lost = a.seal(&mut rng, "bob", "tres");
    assert_eq!(
        b.open(&a, &lost).unwrap_err(),
        ReceiveError::Open(OpenError::UnknownPrekey)
    );
    assert!(!b.s.has("alice"));
    b.s.start(&mut rng, &b.id, "bob", &a.bundle(Some(0)))
        .unwrap();
    let mut out = vec![0u8; MAX_BODY];
    let n =
        b.s.seal_control(&mut rng, "alice", &Inner::SessionLost, &mut out)
            .unwrap();
    let mut plain = vec![0u8; MAX_BODY];
    let o =
        a.s.open(&a.id, "alice", &b.peer(), &out[..n], &mut plain)
            .unwrap();
    assert_eq!(o.content, Received::Control(Inner::SessionLost));
    assert!(
        o.new_session && o.replaced,
        "alice's old session is replaced"
    );
    // The new session carries texts both ways; the old message stays unread.
    let m = a.seal(&mut rng, "bob", "cuatro");
    assert_eq!(b.open(&a, &m).unwrap().0, "cuatro");
    assert!(b.open(&a, &lost).is_err());
    // Its encoding: the type byte alone.
    assert_eq!(Inner::SessionLost.encoded_len(), 1);
    let mut one = [0u8; 4];
    assert_eq!(Inner::SessionLost.emit(&mut one), Ok(1));
    assert_eq!(one[0], 0x03);
    assert_eq!(Inner::parse(&[0x03]), Ok(Inner::SessionLost));
    assert_eq!(
        Inner::parse(&[0x03, 0]),
        Err(seguro_core::v2::wire::InnerError::BadLength)
    );
    assert!(Inner::SessionLost.emit(&mut []).is_err());
}
