//! Properties of `seguro_core::v2::ratchet::Session` on random schedules: drops,
//! reordering and duplication within the bounds open every message exactly once;
//! beyond them messages are refused; reflections are refused; refusals change nothing;
//! the size bound; the stored record (round trip, every corruption refused).

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use seguro_core::identity::Identity;
use seguro_core::rand_core::SeedableRng;
use seguro_core::v2::ratchet::{
    MAX_SKIP, OpenError, RING, SESSION_SIZE, STATE_LEN, SealError, Session, StateError,
};
use seguro_core::v2::wire::{self, WireError};
use seguro_core::v2::x3dh::{Bundle, PeerIdentity, PrekeyPair, SetupError};

struct Pair {
    rng: ChaCha20Rng,
    a: Session,
    b: Session,
}

fn peer<'a>(name: &'a str, id: &Identity) -> PeerIdentity<'a> {
    PeerIdentity {
        name,
        keys: id.public_keys(),
        bind: id.bind(name).unwrap(),
    }
}

/// Alice initiates, Bob responds to her first message: an established pair.
fn pair(seed: u64) -> Pair {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let alice = Identity::generate(&mut rng, 0);
    let bob = Identity::generate(&mut rng, 0);
    let spk = PrekeyPair::generate(&mut rng, 3);
    let opk = PrekeyPair::generate(&mut rng, 9);
    let bundle = Bundle {
        peer: peer("bob", &bob),
        spk_id: 3,
        spk: *spk.public(),
        spk_sig: bob.sign_prekey(3, spk.public()),
        opk: Some((9, *opk.public())),
    };
    let mut a = Session::initiate(&mut rng, &alice, "alice", &bundle).unwrap();
    let mut out = [0u8; 256];
    let n = a.seal(&mut rng, b"\x01\0\0\0\x01hello", &mut out).unwrap();
    let mut plain = [0u8; 256];
    let (b, m) = Session::respond(
        &bob,
        "bob",
        &peer("alice", &alice),
        &spk,
        Some(&opk),
        &out[..n],
        &mut plain,
    )
    .unwrap();
    assert_eq!(&plain[..m], b"\x01\0\0\0\x01hello");
    Pair { rng, a, b }
}

fn record(s: &Session) -> Vec<u8> {
    let mut r = vec![0; STATE_LEN];
    assert_eq!(s.encode(&mut r), Ok(STATE_LEN));
    r
}

fn seal(rng: &mut ChaCha20Rng, s: &mut Session, text: &[u8]) -> Vec<u8> {
    let mut out = vec![0; s.sealed_len(text.len())];
    let n = s.seal(rng, text, &mut out).unwrap();
    out.truncate(n);
    out
}

fn open(s: &mut Session, wire: &[u8]) -> Result<Vec<u8>, OpenError> {
    let mut out = vec![0; wire.len()];
    let before = record(s);
    match s.open(wire, &mut out) {
        Ok(n) => {
            out.truncate(n);
            Ok(out)
        }
        Err(e) => {
            assert_eq!(
                record(s),
                before,
                "a refused message changed the session ({e:?})"
            );
            Err(e)
        }
    }
}

#[test]
fn one_session_fits_in_two_kib() {
    assert!(
        std::hint::black_box(SESSION_SIZE) <= 2048,
        "Session is {SESSION_SIZE} bytes"
    );
    assert_eq!(SESSION_SIZE, std::mem::size_of::<Session>());
    assert!(
        std::hint::black_box(STATE_LEN) <= 2048,
        "record is {STATE_LEN} bytes"
    );
    assert_eq!(STATE_LEN, 1744);
    println!("Session: {SESSION_SIZE} bytes in RAM, {STATE_LEN} bytes stored");
}

#[test]
fn replay_and_reflection_are_refused() {
    let Pair {
        mut rng,
        mut a,
        mut b,
    } = pair(1);
    let m = seal(&mut rng, &mut a, b"to bob");
    assert_eq!(open(&mut b, &m).unwrap(), b"to bob");
    assert_eq!(open(&mut b, &m), Err(OpenError::Stale));
    // Handed back to its author as if from Bob.
    assert_eq!(open(&mut a, &m), Err(OpenError::Reflected));
    let r = seal(&mut rng, &mut b, b"to alice");
    assert_eq!(open(&mut b, &r), Err(OpenError::Reflected));
    // The role bit flipped to dodge the check: the tag fails.
    let mut flipped = r.clone();
    flipped[1] ^= wire::FLAG_RESPONDER;
    assert_eq!(open(&mut b, &flipped), Err(OpenError::Decrypt));
    assert_eq!(open(&mut a, &r).unwrap(), b"to alice");
    assert!(a.is_established());
    // A message of the previous chain, opened late from the ring, replayed: Stale.
    let b1 = seal(&mut rng, &mut b, b"b1");
    let b2 = seal(&mut rng, &mut b, b"b2");
    assert_eq!(open(&mut a, &b2).unwrap(), b"b2");
    let a1 = seal(&mut rng, &mut a, b"a1");
    assert_eq!(open(&mut b, &a1).unwrap(), b"a1");
    let b3 = seal(&mut rng, &mut b, b"b3, new chain");
    assert_eq!(open(&mut a, &b3).unwrap(), b"b3, new chain");
    assert_eq!(open(&mut a, &b1).unwrap(), b"b1");
    assert_eq!(open(&mut a, &b1), Err(OpenError::Stale));
    assert_eq!(open(&mut a, &b3), Err(OpenError::Stale));
}

#[test]
fn beyond_the_skip_bound_is_refused_and_harmless() {
    let Pair {
        mut rng,
        mut a,
        mut b,
    } = pair(2);
    let msgs: Vec<_> = (0..=MAX_SKIP + 1)
        .map(|i| seal(&mut rng, &mut a, &i.to_be_bytes()))
        .collect();
    // Bob already opened nothing of this chain (its first message was the hello, n = 0 of
    // the first chain): message MAX_SKIP + 1 of the same chain skips MAX_SKIP + 1 keys.
    assert_eq!(
        open(&mut b, &msgs[MAX_SKIP as usize + 1]),
        Err(OpenError::TooFarAhead)
    );
    assert_eq!(
        open(&mut b, &msgs[MAX_SKIP as usize]).unwrap(),
        MAX_SKIP.to_be_bytes()
    );
    assert_eq!(b.skipped_keys(), RING);
    // The ring keeps the newest 32 skipped keys.
    assert_eq!(open(&mut b, &msgs[0]), Err(OpenError::Stale));
    assert_eq!(
        open(&mut b, &msgs[MAX_SKIP as usize - 1]).unwrap(),
        (MAX_SKIP - 1).to_be_bytes()
    );
    assert_eq!(
        open(&mut b, &msgs[MAX_SKIP as usize - RING]).unwrap(),
        (MAX_SKIP - RING as u32).to_be_bytes()
    );
    assert_eq!(
        open(&mut b, &msgs[MAX_SKIP as usize - RING - 1]),
        Err(OpenError::Stale)
    );
    assert_eq!(
        open(&mut b, &msgs[MAX_SKIP as usize + 1]).unwrap(),
        (MAX_SKIP + 1).to_be_bytes()
    );
}

#[test]
fn bad_input_is_refused_cleanly() {
    let Pair {
        mut rng,
        mut a,
        mut b,
    } = pair(3);
    let m = seal(&mut rng, &mut a, b"x");
    assert_eq!(
        open(&mut b, &[]),
        Err(OpenError::Malformed(WireError::TooShort))
    );
    assert_eq!(
        open(&mut b, &m[..m.len() - 1]).unwrap_err(),
        OpenError::Decrypt
    );
    assert_eq!(
        open(&mut b, &m[..wire::HEADER_LEN + 15]),
        Err(OpenError::Malformed(WireError::TooShort))
    );
    let mut v = m.clone();
    v[0] = 1;
    assert_eq!(
        open(&mut b, &v),
        Err(OpenError::Malformed(WireError::UnsupportedVersion(1)))
    );
    v[0] = 2;
    v[1] |= 0x80;
    let flags = v[1];
    assert_eq!(
        open(&mut b, &v),
        Err(OpenError::Malformed(WireError::BadFlags(flags)))
    );
    assert_eq!(
        open(&mut b, &vec![2u8; wire::MAX_BODY + 1]),
        Err(OpenError::Malformed(WireError::TooLong))
    );
    // A new ratchet key before Bob has sent anything: no honest Alice does that.
    let mut weak = m.clone();
    weak[2..34].fill(0);
    assert_eq!(open(&mut b, &weak), Err(OpenError::UnexpectedRatchetKey));
    // Once Bob has sent (and holds a ratchet secret), a low-order key is named as such.
    let _ = seal(&mut rng, &mut b, b"from bob");
    assert_eq!(open(&mut b, &weak), Err(OpenError::WeakKey));
    // Every single-bit change anywhere is refused.
    for i in 0..m.len() {
        let mut t = m.clone();
        t[i] ^= 0x10;
        assert!(open(&mut b, &t).is_err(), "byte {i}");
    }
    // Small output buffers: reported, nothing changes.
    let mut small = [0u8; 0];
    assert_eq!(
        b.open(&m, &mut small),
        Err(OpenError::BufferTooSmall { needed: 1 })
    );
    let before = record(&a);
    assert_eq!(
        a.seal(&mut rng, b"abc", &mut [0u8; 10]),
        Err(SealError::BufferTooSmall {
            needed: a.sealed_len(3)
        })
    );
    assert_eq!(
        a.seal(&mut rng, &vec![0; wire::MAX_INNER + 1], &mut vec![0; 4096]),
        Err(SealError::TooLong)
    );
    assert_eq!(record(&a), before);
    assert_eq!(open(&mut b, &m).unwrap(), b"x");
}

#[test]
fn bad_bundles_are_refused() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let alice = Identity::generate(&mut rng, 0);
    let bob = Identity::generate(&mut rng, 0);
    let mallory = Identity::generate(&mut rng, 0);
    let spk = PrekeyPair::generate(&mut rng, 1);
    let good = Bundle {
        peer: peer("bob", &bob),
        spk_id: 1,
        spk: *spk.public(),
        spk_sig: bob.sign_prekey(1, spk.public()),
        opk: None,
    };
    assert!(Session::initiate(&mut rng, &alice, "alice", &good).is_ok());
    // A prekey signed by someone else, or with another id.
    let forged = Bundle {
        spk_sig: mallory.sign_prekey(1, spk.public()),
        ..good
    };
    assert!(matches!(
        Session::initiate(&mut rng, &alice, "alice", &forged),
        Err(SetupError::Identity(_))
    ));
    let renumbered = Bundle { spk_id: 2, ..good };
    assert!(matches!(
        Session::initiate(&mut rng, &alice, "alice", &renumbered),
        Err(SetupError::Identity(_))
    ));
    // Bob's binding presented under another name.
    let renamed = Bundle {
        peer: PeerIdentity {
            name: "bobby",
            ..good.peer
        },
        ..good
    };
    assert!(matches!(
        Session::initiate(&mut rng, &alice, "alice", &renamed),
        Err(SetupError::Identity(_))
    ));
    // A low-order signed prekey, properly signed.
    let zero = [0u8; 32];
    let weak = Bundle {
        spk: zero,
        spk_sig: bob.sign_prekey(1, &zero),
        ..good
    };
    assert_eq!(
        Session::initiate(&mut rng, &alice, "alice", &weak).unwrap_err(),
        SetupError::WeakKey
    );
}

#[test]
fn stored_record_round_trips_and_refuses_corruption() {
    let Pair {
        mut rng,
        mut a,
        mut b,
    } = pair(5);
    for i in 0..5u8 {
        let m = seal(&mut rng, &mut a, &[i]);
        if i % 2 == 0 {
            open(&mut b, &m).unwrap();
        }
    }
    let r = seal(&mut rng, &mut b, b"r");
    open(&mut a, &r).unwrap();
    for s in [&a, &b] {
        let rec = record(s);
        let back = Session::decode(&rec).unwrap();
        assert_eq!(record(&back), rec);
        assert_eq!(back.skipped_keys(), s.skipped_keys());
        // Every single-bit flip, truncation and extension is refused.
        for i in 0..rec.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = rec.clone();
                bad[i] ^= bit;
                assert!(
                    matches!(
                        Session::decode(&bad),
                        Err(StateError::Corrupt | StateError::UnsupportedFormat(_))
                    ),
                    "byte {i} bit {bit:#x}"
                );
            }
        }
        assert_eq!(
            Session::decode(&rec[..rec.len() - 1]).unwrap_err(),
            StateError::Corrupt
        );
        assert_eq!(
            Session::decode(&[rec.clone(), vec![0]].concat()).unwrap_err(),
            StateError::Corrupt
        );
        assert_eq!(Session::decode(&[]).unwrap_err(), StateError::Corrupt);
        assert_eq!(
            s.encode(&mut [0u8; 100]),
            Err(StateError::BufferTooSmall { needed: STATE_LEN })
        );
    }
    // A newer format is named as such (with a valid checksum).
    let mut newer = record(&a);
    newer[4] = 2;
    assert_eq!(
        Session::decode(&newer).unwrap_err(),
        StateError::UnsupportedFormat(2)
    );
    // A restored session carries on.
    let mut a2 = Session::decode(&record(&a)).unwrap();
    let m = seal(&mut rng, &mut a2, b"after restore");
    assert_eq!(open(&mut b, &m).unwrap(), b"after restore");
}

/// One step of a random schedule.
#[derive(Debug, Clone)]
enum Step {
    /// Alice (true) or Bob seals the next message.
    Send(bool),
    /// The network delivers the pending message at this index (mod the queue length).
    Deliver(usize),
    /// The network delivers a copy and keeps the original queued.
    Duplicate(usize),
    /// The network drops a pending message.
    Drop(usize),
    /// The server hands a pending message back to its sender.
    Reflect(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => any::<bool>().prop_map(Step::Send),
        3 => any::<usize>().prop_map(Step::Deliver),
        1 => any::<usize>().prop_map(Step::Duplicate),
        1 => any::<usize>().prop_map(Step::Drop),
        1 => any::<usize>().prop_map(Step::Reflect),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// With at most RING messages in flight (so the ring never evicts a key still
    /// needed), every delivered message opens exactly once and shows what was sent;
    /// duplicates are Stale; reflections are refused.
    #[test]
    fn every_message_opens_exactly_once(seed in any::<u64>(), steps in proptest::collection::vec(step(), 1..200)) {
        let Pair { mut rng, mut a, mut b } = pair(seed);
        // (from alice, wire, text, opened)
        let mut queue: Vec<(bool, Vec<u8>, Vec<u8>)> = Vec::new();
        let mut opened: Vec<Vec<u8>> = Vec::new();
        let mut counter = 0u32;
        let mut dropped = 0usize;
        for s in steps {
            match s {
                Step::Send(from_alice) => {
                    // Dropped messages keep their skipped keys in the ring until evicted, so
                    // they count against it too.
                    if queue.len() + dropped >= RING {
                        continue;
                    }
                    counter += 1;
                    let text = counter.to_be_bytes().to_vec();
                    let w = seal(&mut rng, if from_alice { &mut a } else { &mut b }, &text);
                    queue.push((from_alice, w, text));
                }
                Step::Deliver(i) | Step::Duplicate(i) | Step::Drop(i) | Step::Reflect(i) if queue.is_empty() => { let _ = i; }
                Step::Deliver(i) => {
                    let (from_alice, w, text) = queue.remove(i % queue.len());
                    let to = if from_alice { &mut b } else { &mut a };
                    prop_assert_eq!(open(to, &w).unwrap(), text.clone());
                    opened.push(text);
                }
                Step::Duplicate(i) => {
                    let (from_alice, w, text) = queue.remove(i % queue.len());
                    let to = if from_alice { &mut b } else { &mut a };
                    prop_assert_eq!(open(to, &w).unwrap(), text.clone());
                    // From the current or the previous chain: named a replay. From an
                    // older chain it is refused all the same (`open` checks that the
                    // refusal changed nothing).
                    let again = open(to, &w);
                    prop_assert!(again.is_err());
                    opened.push(text);
                }
                Step::Drop(i) => {
                    queue.remove(i % queue.len());
                    dropped += 1;
                }
                Step::Reflect(i) => {
                    let (from_alice, w, _) = &queue[i % queue.len()];
                    let back = if *from_alice { &mut a } else { &mut b };
                    prop_assert_eq!(open(back, w), Err(OpenError::Reflected));
                }
            }
        }
        // Whatever is still queued opens now, in any order, exactly once.
        for (from_alice, w, text) in queue.drain(..).rev() {
            let to = if from_alice { &mut b } else { &mut a };
            prop_assert_eq!(open(to, &w).unwrap(), text.clone());
            prop_assert!(open(to, &w).is_err());
            opened.push(text);
        }
        let mut sorted = opened.clone();
        sorted.sort();
        sorted.dedup();
        prop_assert_eq!(sorted.len(), opened.len());
    }

    /// Random bytes never open and never change a session.
    #[test]
    fn garbage_never_opens(seed in any::<u64>(), junk in proptest::collection::vec(any::<u8>(), 0..300)) {
        let Pair { mut b, .. } = pair(seed % 8);
        prop_assert!(open(&mut b, &junk).is_err());
    }
}

/// Rewrites a stored record's flags (byte 6) and key fields, with a valid checksum, as a
/// state file edited by someone who knows the format would be.
fn forge(rec: &[u8], flags: u8, zero: core::ops::Range<usize>) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut r = rec.to_vec();
    r[6] = flags;
    r[zero].fill(0);
    let body = r.len() - 8;
    let sum = Sha256::digest(&r[..body]);
    r[body..].copy_from_slice(&sum[..8]);
    r
}

#[test]
fn a_record_without_any_ratchet_key_is_refused_even_with_a_valid_checksum() {
    let Pair {
        mut rng,
        mut a,
        mut b,
    } = pair(8);
    let m = seal(&mut rng, &mut b, b"r");
    open(&mut a, &m).unwrap();
    // Alice has read Bob's reply: his ratchet key and a receiving chain (hers comes with
    // her next message). Bob has all four.
    let (rec_a, rec_b) = (record(&a), record(&b));
    assert_eq!((rec_a[6], rec_b[6]), (0x0a, 0x0f));
    // The forge itself keeps a valid record valid.
    assert!(Session::decode(&forge(&rec_a, rec_a[6], 0..0)).is_ok());
    // Fields: 4 magic + 3 header + rk (32), then dhs secret, dhs public, dhr, cks, ckr.
    let field = |i: usize| 7 + 32 * i..7 + 32 * (i + 1);
    let (dhs, dhr, cks, ckr) = (7 + 32..7 + 3 * 32, field(3), field(4), field(5));
    // No ratchet key at all: nothing to ratchet with.
    let none = forge(&rec_a, 0, dhr.clone());
    let none = forge(&none, 0, ckr.clone());
    assert_eq!(Session::decode(&none).unwrap_err(), StateError::Corrupt);
    // Only the peer's ratchet key, or only ours, are states a session can be in.
    let dhr_only = forge(&rec_a, 0x02, ckr.clone());
    assert!(Session::decode(&dhr_only).is_ok());
    let dhs_only = forge(&rec_b, 0x01, 7 + 3 * 32..7 + 6 * 32);
    assert!(Session::decode(&dhs_only).is_ok());
    // A sending chain without our ratchet key, a receiving chain without the peer's.
    let cks_alone = forge(&rec_b, 0x06, dhs);
    let cks_alone = forge(&cks_alone, 0x06, ckr);
    assert_eq!(
        Session::decode(&cks_alone).unwrap_err(),
        StateError::Corrupt
    );
    let ckr_alone = forge(&rec_b, 0x09, dhr);
    let ckr_alone = forge(&ckr_alone, 0x09, cks);
    assert_eq!(
        Session::decode(&ckr_alone).unwrap_err(),
        StateError::Corrupt
    );
}

/// Each side knows its role; an initiator sends its prelude until the peer answers,
/// a responder never does.
#[test]
fn roles_and_the_prelude_until_the_first_answer() {
    let Pair {
        mut rng,
        mut a,
        mut b,
    } = pair(21);
    assert!(a.is_initiator() && !b.is_initiator());
    assert!(!a.is_established(), "no answer from bob yet");
    assert!(a.pending_prelude().is_some());
    assert!(b.is_established() && b.pending_prelude().is_none());
    let m = seal(&mut rng, &mut a, b"still the prelude");
    assert!(wire::parse(&m).unwrap().prelude.is_some());
    assert_eq!(open(&mut b, &m).unwrap(), b"still the prelude");
    let r = seal(&mut rng, &mut b, b"the answer");
    assert_eq!(open(&mut a, &r).unwrap(), b"the answer");
    assert!(a.is_established() && a.pending_prelude().is_none());
    assert!(a.is_initiator(), "the role stays");
    let m = seal(&mut rng, &mut a, b"no prelude now");
    assert!(wire::parse(&m).unwrap().prelude.is_none());
}

/// `record` with the sending counter `ns` set to `ns` and, if `drop_cks`, without a
/// sending chain; the record's checksum made right again.
fn with_ns(record: &[u8], ns: u32, drop_cks: bool) -> Session {
    use sha2::{Digest as _, Sha256};
    let mut r = record.to_vec();
    // MAGIC (4), format, role, flags, then six 32-byte keys, then ns.
    if drop_cks {
        r[6] &= !0x04;
    }
    let at = 7 + 6 * 32;
    r[at..at + 4].copy_from_slice(&ns.to_be_bytes());
    let body = STATE_LEN - 8;
    let sum = Sha256::digest(&r[..body]);
    r[body..].copy_from_slice(&sum[..8]);
    Session::decode(&r).unwrap()
}

/// A sending chain whose counter reached its end refuses to seal (no nonce is ever
/// used twice); a counter at its end without a sending chain is no obstacle: the next
/// message starts a new chain.
#[test]
fn a_worn_out_sending_chain_refuses_and_a_new_chain_starts_afresh() {
    let Pair { mut rng, a, b } = pair(22);
    let mut worn = with_ns(&record(&a), u32::MAX, false);
    let before = record(&worn);
    let mut out = vec![0u8; 512];
    assert_eq!(
        worn.seal(&mut rng, b"one too many", &mut out),
        Err(SealError::Exhausted)
    );
    assert_eq!(record(&worn), before, "a refusal changes nothing");
    assert!(
        SealError::Exhausted
            .to_string()
            .contains("start a new session")
    );
    let mut fresh = with_ns(&record(&b), u32::MAX, true);
    let n = fresh.seal(&mut rng, b"a new chain", &mut out).unwrap();
    let header = wire::parse(&out[..n]).unwrap().header;
    assert_eq!((header.n, header.pn), (0, u32::MAX));
}

#[test]
fn stored_session_errors_say_what_is_wrong() {
    assert_eq!(StateError::Corrupt.to_string(), "stored session is corrupt");
    assert!(
        StateError::UnsupportedFormat(7)
            .to_string()
            .contains("format 7")
    );
    assert!(
        StateError::BufferTooSmall { needed: 1234 }
            .to_string()
            .contains("1234 bytes needed")
    );
}
