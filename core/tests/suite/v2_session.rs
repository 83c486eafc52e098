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

/// Alice has initiated and sealed her first message (`hello`); Bob has not read it.
struct Start {
    rng: ChaCha20Rng,
    alice: Identity,
    bob: Identity,
    spk: PrekeyPair,
    opk: PrekeyPair,
    a: Session,
    hello: Vec<u8>,
}

fn start(seed: u64) -> Start {
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
    Start {
        rng,
        alice,
        bob,
        spk,
        opk,
        a,
        hello: out[..n].to_vec(),
    }
}

impl Start {
    /// Bob's answer to `first` as `Session::respond` gives it.
    fn respond(&self, first: &[u8]) -> Result<(Session, Vec<u8>), OpenError> {
        let mut plain = [0u8; 256];
        let (b, m) = Session::respond(
            &self.bob,
            "bob",
            &peer("alice", &self.alice),
            &self.spk,
            Some(&self.opk),
            first,
            &mut plain,
        )?;
        Ok((b, plain[..m].to_vec()))
    }
}

/// Alice initiates, Bob responds to her first message: an established pair.
fn pair(seed: u64) -> Pair {
    let st = start(seed);
    let (b, plain) = st.respond(&st.hello).unwrap();
    assert_eq!(plain, b"\x01\0\0\0\x01hello");
    Pair {
        rng: st.rng,
        a: st.a,
        b,
    }
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
    // Only the peer's ratchet key is a state a session can be in; only ours is not
    // (a responder has it only inside `respond`, before the first message opens).
    let dhr_only = forge(&rec_a, 0x02, ckr.clone());
    assert!(Session::decode(&dhr_only).is_ok());
    let dhs_only = forge(&rec_b, 0x01, 7 + 3 * 32..7 + 6 * 32);
    assert_eq!(Session::decode(&dhs_only).unwrap_err(), StateError::Corrupt);
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

// Offsets in a stored record (spec §12.1): magic (4), format, role, flags, six 32-byte
// keys, four u32 counters, B (32), the prelude (40), the previous DHr tag (8), the ring
// head, 32 ring entries of 45 bytes (used, tag 8, n 4, mk 32), the checksum (8).
const ROLE: usize = 5;
const FLAGS: usize = 6;
const fn key(i: usize) -> core::ops::Range<usize> {
    7 + 32 * i..7 + 32 * (i + 1)
}
const DHS_SECRET: usize = 1;
const DHS_PUBLIC: usize = 2;
const DHR: usize = 3;
const CKS: usize = 4;
const CKR: usize = 5;
const TEXT_ID: usize = 7 + 6 * 32 + 12;
const PRELUDE: core::ops::Range<usize> = TEXT_ID + 4 + 32..TEXT_ID + 4 + 32 + 40;
const HEAD: usize = PRELUDE.end + 8;
const fn entry(i: usize) -> usize {
    HEAD + 1 + 45 * i
}

/// `rec` edited by `edit`, its checksum made right again (as by someone who knows the
/// format), then decoded.
fn decode_edited(rec: &[u8], edit: impl FnOnce(&mut [u8])) -> Result<Session, StateError> {
    use sha2::{Digest as _, Sha256};
    let mut r = rec.to_vec();
    edit(&mut r);
    let body = STATE_LEN - 8;
    let sum = Sha256::digest(&r[..body]);
    r[body..].copy_from_slice(&sum[..8]);
    Session::decode(&r)
}

/// What the checksum cannot vouch for, decoding checks: each rule of §12.1 broken in a
/// record whose checksum is right is refused, and the same record with the rule kept
/// (the control beside each case) is accepted, so the refusal is the rule's.
#[test]
fn a_record_that_breaks_a_rule_is_refused_even_with_a_valid_checksum() {
    assert_eq!(entry(RING) + 8, STATE_LEN, "the offsets above add up");
    let Pair { mut rng, a, mut b } = pair(23);
    seal(&mut rng, &mut b, b"an answer Alice has not read");
    // Alice still sends her prelude and has no receiving chain; Bob has all four keys
    // and, having skipped nothing, an empty ring.
    let (rec_a, rec_b) = (record(&a), record(&b));
    assert_eq!((rec_a[FLAGS], rec_b[FLAGS]), (0x17, 0x0f));
    assert_eq!(b.skipped_keys(), 0);
    let corrupt = Err(StateError::Corrupt);

    // The role: 0 or 1.
    assert!(decode_edited(&rec_a, |r| r[ROLE] = 1).is_ok());
    assert_eq!(
        decode_edited(&rec_a, |r| r[ROLE] = 2).unwrap_err(),
        StateError::Corrupt
    );
    // No undefined flag.
    for bit in [0x20, 0x40, 0x80] {
        assert!(matches!(
            decode_edited(&rec_b, |r| r[FLAGS] |= bit),
            Err(StateError::Corrupt)
        ));
    }
    // The ring head below 32.
    assert!(decode_edited(&rec_b, |r| r[HEAD] = 31).is_ok());
    assert!(matches!(
        decode_edited(&rec_b, |r| r[HEAD] = 32),
        Err(StateError::Corrupt)
    ));
    // A ring entry: `used` 0 or 1; an unused one all zeros, each of its fields.
    let fill = |r: &mut [u8], used: u8, from: usize, to: usize| {
        let e = entry(5);
        r[e] = used;
        r[e + from..e + to].fill(0x5a);
    };
    assert!(decode_edited(&rec_b, |r| fill(r, 1, 1, 45)).is_ok());
    assert!(matches!(
        decode_edited(&rec_b, |r| fill(r, 2, 1, 45)),
        Err(StateError::Corrupt)
    ));
    for (what, from, to) in [("tag", 1, 9), ("n", 9, 13), ("key", 13, 45)] {
        assert!(
            matches!(
                decode_edited(&rec_b, |r| fill(r, 0, from, to)),
                Err(StateError::Corrupt)
            ),
            "an unused entry with a {what}"
        );
    }
    // An absent value is zeros: for each flag, the value left in place is refused and
    // the value wiped is accepted.
    /// What, in which record, with which flags, the other values wiped, the value left.
    type Case<'a> = (&'a str, &'a [u8], u8, &'a [usize], usize);
    let cases: [Case; 5] = [
        ("DHs secret", &rec_b, 0x0a, &[DHS_PUBLIC, CKS], DHS_SECRET),
        ("DHs public", &rec_b, 0x0a, &[DHS_SECRET, CKS], DHS_PUBLIC),
        ("CKs", &rec_b, 0x0b, &[], CKS),
        ("CKr", &rec_b, 0x07, &[], CKR),
        ("prelude", &rec_a, 0x07, &[], usize::MAX),
    ];
    for (what, rec, flags, wiped, left) in cases {
        let range = |k: usize| if k == usize::MAX { PRELUDE } else { key(k) };
        let edit = |r: &mut [u8], wipe_left: bool| {
            r[FLAGS] = flags;
            for &k in wiped {
                r[range(k)].fill(0);
            }
            if wipe_left {
                r[range(left)].fill(0);
            }
        };
        assert!(
            decode_edited(rec, |r| edit(r, true)).is_ok(),
            "{what} wiped"
        );
        assert!(
            matches!(
                decode_edited(rec, |r| edit(r, false)),
                Err(StateError::Corrupt)
            ),
            "{what} left while absent"
        );
    }
    // The stored DHs public key is the secret's.
    assert!(matches!(
        decode_edited(&rec_b, |r| r[key(DHS_PUBLIC).start] ^= 1),
        Err(StateError::Corrupt)
    ));
    // A sending chain needs our ratchet key, and every session has the peer's.
    let no_dhs = |r: &mut [u8]| {
        r[FLAGS] = 0x0e;
        r[key(DHS_SECRET)].fill(0);
        r[key(DHS_PUBLIC)].fill(0);
    };
    assert_eq!(decode_edited(&rec_b, no_dhs).map(|_| ()), corrupt);
    let no_dhr = |r: &mut [u8]| {
        r[FLAGS] = 0x05;
        r[key(DHR)].fill(0);
        r[key(CKR)].fill(0);
    };
    assert_eq!(decode_edited(&rec_b, no_dhr).map(|_| ()), corrupt);
    // Text ids start at 1.
    assert!(
        decode_edited(&rec_b, |r| r[TEXT_ID..TEXT_ID + 4]
            .copy_from_slice(&7u32.to_be_bytes()))
        .is_ok()
    );
    assert_eq!(
        decode_edited(&rec_b, |r| r[TEXT_ID..TEXT_ID + 4].fill(0)).map(|_| ()),
        corrupt
    );
}

/// `open` writes the inner message into a buffer of exactly its length, and names the
/// length when the buffer is one byte short (changing nothing).
#[test]
fn open_needs_exactly_the_inner_length() {
    let Pair {
        mut rng,
        mut a,
        mut b,
    } = pair(24);
    let m = seal(&mut rng, &mut a, b"exact");
    let before = record(&b);
    assert_eq!(
        b.open(&m, &mut [0u8; 4]),
        Err(OpenError::BufferTooSmall { needed: 5 })
    );
    assert_eq!(record(&b), before);
    let mut out = [0u8; 5];
    assert_eq!(b.open(&m, &mut out), Ok(5));
    assert_eq!(&out, b"exact");
}

/// A first message whose ratchet key is all zeros (a low-order point: the shared
/// secret would be zero) is refused as a weak key, not taken for a known chain.
#[test]
fn a_first_message_with_a_zero_ratchet_key_is_refused_as_weak() {
    let st = start(25);
    let mut forged = st.hello.clone();
    forged[2..34].fill(0);
    assert_eq!(st.respond(&forged).unwrap_err(), OpenError::WeakKey);
    assert!(st.respond(&st.hello).is_ok());
}

/// Before Bob answers, Alice's only peer ratchet key is his signed prekey, with no
/// receiving chain: a message claiming that key is stale (nothing can be received on
/// it); an answer with a forged PN fails authentication (there is no previous chain to
/// bound, so it is not TooFarAhead); the genuine answer opens.
#[test]
fn before_the_answer_a_forged_ratchet_key_or_pn_is_refused_for_what_it_is() {
    let Pair {
        mut rng,
        mut a,
        mut b,
    } = pair(26);
    let answer = seal(&mut rng, &mut b, b"the answer");
    let spk = &record(&a)[key(DHR)];
    let mut on_the_prekey = answer.clone();
    on_the_prekey[2..34].copy_from_slice(spk);
    assert_eq!(open(&mut a, &on_the_prekey), Err(OpenError::Stale));
    let mut far_pn = answer.clone();
    far_pn[34..38].copy_from_slice(&(MAX_SKIP + 1).to_be_bytes());
    assert_eq!(open(&mut a, &far_pn), Err(OpenError::Decrypt));
    assert_eq!(open(&mut a, &answer).unwrap(), b"the answer");
}

/// Bob's first chain: his answer (read by Alice) and `lost` more she never sees; then
/// Alice starts her second chain, Bob reads it and answers on his second chain, whose
/// header says PN = 1 + `lost`. Returns Alice (before reading it), the answer and the
/// lost messages.
fn answer_after_lost(seed: u64, lost: u32) -> (Session, Vec<u8>, Vec<Vec<u8>>) {
    let Pair {
        mut rng,
        mut a,
        mut b,
    } = pair(seed);
    let first = seal(&mut rng, &mut b, b"first");
    open(&mut a, &first).unwrap();
    let lost: Vec<_> = (0..lost)
        .map(|i| seal(&mut rng, &mut b, &i.to_be_bytes()))
        .collect();
    let m = seal(&mut rng, &mut a, b"alice's second chain");
    open(&mut b, &m).unwrap();
    let answer = seal(&mut rng, &mut b, b"bob's second chain");
    assert_eq!(
        wire::parse(&answer).unwrap().header.pn,
        1 + lost.len() as u32
    );
    (a, answer, lost)
}

/// The previous chain's gap (PN − Nr) is bounded like any other: exactly MAX_SKIP
/// keys are skipped (the newest 32 kept), one more is TooFarAhead and changes nothing.
#[test]
fn the_previous_chain_may_skip_exactly_max_skip() {
    let (mut a, answer, lost) = answer_after_lost(27, MAX_SKIP);
    assert_eq!(open(&mut a, &answer).unwrap(), b"bob's second chain");
    assert_eq!(a.skipped_keys(), RING);
    let last = lost.len() - 1;
    assert_eq!(
        open(&mut a, &lost[last]).unwrap(),
        (last as u32).to_be_bytes()
    );
    assert_eq!(
        open(&mut a, &lost[last + 1 - RING]).unwrap(),
        ((last + 1 - RING) as u32).to_be_bytes()
    );
    assert_eq!(open(&mut a, &lost[last - RING]), Err(OpenError::Stale));

    let (mut a, answer, _) = answer_after_lost(28, MAX_SKIP + 1);
    assert_eq!(open(&mut a, &answer), Err(OpenError::TooFarAhead));
    assert_eq!(a.skipped_keys(), 0);
}

/// A session's debug form says where it stands and shows no key.
#[test]
fn a_session_debugs_without_its_keys() {
    let Pair { a, b, .. } = pair(29);
    assert_eq!(
        format!("{a:?}"),
        "Session { initiator: true, established: false, ns: 1, nr: 0, skipped: 0, .. }"
    );
    assert_eq!(
        format!("{b:?}"),
        "Session { initiator: false, established: true, ns: 0, nr: 1, skipped: 0, .. }"
    );
}
