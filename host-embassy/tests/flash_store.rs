//! The board flash store on the Linux runner's file flash: first boot, reboot with the
//! same key, the seed advanced at every boot (even with repeated fresh entropy), a
//! power cut in the middle of every flash operation of a boot, and a full store.
#![cfg(feature = "std")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::ops::Range;
use std::path::{Path, PathBuf};

use embassy_futures::block_on;
use embedded_storage_async::nor_flash::NorFlash;
use rand_core::RngCore;
use seguro_embassy::seguro_core::store::{self as fmt, Seed};
use seguro_embassy::seguro_core::trust::{Kept, Save, TrustStore, Verdict};
use seguro_embassy::store::file::{CutFlash, ERASE_SIZE, FileFlash};
use seguro_embassy::store::{self, FlashStore, KEY_SEED, StoreError};

struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "seguro-flash-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&p);
        Self(p)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn range(pages: u32) -> Range<u32> {
    0..pages * ERASE_SIZE as u32
}

fn open(path: &Path, pages: u32) -> FlashStore<FileFlash> {
    FlashStore::new(FileFlash::open(path, pages).unwrap(), range(pages)).unwrap()
}

/// Fresh entropy that repeats at every boot: the worst board.
const SAME_ENTROPY: &[u8] = b"a ring oscillator that always says the same";

fn stream(rng: &mut impl RngCore) -> [u8; 32] {
    let mut out = [0u8; 32];
    rng.fill_bytes(&mut out);
    out
}

fn stored_seed<F: NorFlash>(s: &mut FlashStore<F>) -> Option<Seed> {
    let mut buf = [0u8; store::BUF_LEN];
    let n = block_on(s.fetch_raw(KEY_SEED, &mut buf)).unwrap()?;
    let (rec, _) = fmt::read_record(&buf[..n]).unwrap();
    Some(Seed::from_record(&rec).unwrap())
}

#[test]
fn first_boot_then_reboots_keep_the_key_and_advance_the_seed() {
    let tmp = Tmp::new("boots");
    let mut streams = Vec::new();
    let mut seeds = Vec::new();
    let mut key = None;
    for boot in 1..=5u64 {
        let mut s = open(&tmp.0, 4);
        let before = stored_seed(&mut s);
        assert_eq!(before.is_none(), boot == 1);
        let mut b = block_on(s.boot_rng(SAME_ENTROPY)).unwrap();
        assert_eq!(b.boots, boot);
        assert!(!b.seed_lost);
        // The seed was replaced before the generator was handed out.
        let after = stored_seed(&mut s).unwrap();
        assert_eq!(after.boots, boot);
        assert_ne!(Some(&after), before.as_ref());
        seeds.push(after.seed);
        let (id, created) = block_on(s.identity("board", &mut b.rng, b.boots)).unwrap();
        assert_eq!(created, boot == 1);
        match key {
            None => key = Some((id.public(), id.ed25519_public())),
            Some(k) => assert_eq!(k, (id.public(), id.ed25519_public())),
        }
        assert_eq!(id.created(), 1);
        streams.push(stream(&mut b.rng));
    }
    // Same fresh entropy every boot, yet no two boots share a stream or a seed, and no
    // stored seed is a stream.
    for (i, a) in streams.iter().enumerate() {
        for b in &streams[i + 1..] {
            assert_ne!(a, b);
        }
        assert!(!seeds.contains(a));
    }
    seeds.sort();
    seeds.dedup();
    assert_eq!(seeds.len(), 5);

    // Another user name on the same flash: refused, not replaced.
    let mut s = open(&tmp.0, 4);
    let mut b = block_on(s.boot_rng(SAME_ENTROPY)).unwrap();
    assert_eq!(
        block_on(s.identity("other", &mut b.rng, 0)).err(),
        Some(StoreError::NameMismatch)
    );
    let (id, created) = block_on(s.identity("board", &mut b.rng, 0)).unwrap();
    assert!(!created);
    assert_eq!(id.public(), key.unwrap().0);
}

#[test]
fn trust_store_survives_reboots_and_writes_only_what_changed() {
    let tmp = Tmp::new("trust");
    let mut s = open(&tmp.0, 4);
    let mut t = TrustStore::<8>::new();
    assert_eq!(block_on(s.load_trust(&mut t)).unwrap().contacts, 0);
    t.observe("alice", &[1; 32], 1).unwrap();
    t.observe("bob", &[2; 32], 1).unwrap();
    t.verify("bob", &[2; 32]).unwrap();
    assert_eq!(block_on(s.save_trust(&mut t, Save::Now)).unwrap(), 2);
    assert_eq!(block_on(s.save_trust(&mut t, Save::Now)).unwrap(), 0);
    // A "last seen" move is held back by a Save::Now save, written by a LastSeen one.
    t.observe("alice", &[1; 32], 2).unwrap();
    assert_eq!(block_on(s.save_trust(&mut t, Save::Now)).unwrap(), 0);
    assert_eq!(t.needs_save(), Save::LastSeen);
    assert_eq!(block_on(s.save_trust(&mut t, Save::LastSeen)).unwrap(), 1);
    drop(s);

    // Reboot: the same contacts; a substituted key for bob is reported.
    let mut s = open(&tmp.0, 4);
    let mut u = TrustStore::<8>::new();
    let l = block_on(s.load_trust(&mut u)).unwrap();
    assert_eq!((l.contacts, l.unreadable), (2, 0));
    assert_eq!(u.get("alice"), t.get("alice"));
    assert_eq!(u.get("alice").unwrap().last_seen(), 2);
    assert!(u.get("bob").unwrap().verified());
    assert_eq!(
        u.observe("bob", &[9; 32], 3).unwrap().verdict,
        Verdict::ChangedVerified { old: [2; 32] }
    );
    assert!(u.forget("alice"));
    block_on(s.save_trust(&mut u, Save::Now)).unwrap();
    drop(s);
    let mut s = open(&tmp.0, 4);
    let mut v = TrustStore::<8>::new();
    block_on(s.load_trust(&mut v)).unwrap();
    assert!(v.get("alice").is_none());
    assert_eq!(v.get("bob").unwrap().pending().unwrap().key, [9; 32]);
}

#[test]
fn the_chat_memory_writes_contacts_and_nonces_as_they_change() {
    use seguro_embassy::seguro_core::chat::KeyMemory;
    use seguro_embassy::seguro_core::replay::Seen;
    use seguro_embassy::store::{BOARD_REPLAY_PEERS, FlashMemory};
    let tmp = Tmp::new("memory");
    let (mut m, n) = block_on(FlashMemory::<_, 8>::load(open(&tmp.0, 4))).unwrap();
    assert_eq!(n, 0);
    assert_eq!(m.observe("bob", &[2; 32], 1), Verdict::FirstContact);
    m.verify("bob", &[2; 32]).unwrap();
    assert_eq!(m.received_nonce("bob", &[7; 12]), Seen::New);
    m.sent_nonce("bob", &[8; 12]);
    for i in 0..BOARD_REPLAY_PEERS as u8 + 1 {
        m.received_nonce(&format!("p{i}"), &[i; 12]);
    }
    assert!(m.take_error().is_none());
    drop(m);
    // Reboot: nothing was flushed by hand, everything is there.
    let (mut m, n) = block_on(FlashMemory::<_, 8>::load(open(&tmp.0, 4))).unwrap();
    assert_eq!(n, 1, "one contact; the nonce peers are not contacts");
    assert!(m.trust().get("bob").unwrap().verified());
    assert_eq!(
        m.observe("bob", &[3; 32], 2),
        Verdict::ChangedVerified { old: [2; 32] }
    );
    // bob was pushed out of the nonce memories by newer peers: the newest are kept.
    let last = BOARD_REPLAY_PEERS as u8;
    assert_eq!(
        m.received_nonce(&format!("p{last}"), &[last; 12]),
        Seen::Replayed
    );
    drop(m);
    let (m, _) = block_on(FlashMemory::<_, 8>::load(open(&tmp.0, 4))).unwrap();
    assert_eq!(
        m.trust().get("bob").unwrap().pending().unwrap().key,
        [3; 32]
    );
}

#[test]
fn the_chat_memory_reports_the_contact_it_forgets() {
    use seguro_embassy::store::FlashMemory;
    let tmp = Tmp::new("evict");
    let (mut m, _) = block_on(FlashMemory::<_, 2>::load(open(&tmp.0, 4))).unwrap();
    assert_eq!(
        m.observe_kept("alice", &[1; 32], 1),
        (Verdict::FirstContact, Kept::Yes)
    );
    assert_eq!(
        m.observe_kept("bob", &[2; 32], 2),
        (Verdict::FirstContact, Kept::Yes)
    );
    assert_eq!(m.observe_kept("bob", &[2; 32], 3).1, Kept::Yes);
    // Full: carol replaces alice, the contact seen longest ago, and the caller is told.
    let (v, kept) = m.observe_kept("carol", &[3; 32], 4);
    assert_eq!(v, Verdict::FirstContact);
    assert_eq!(
        kept,
        Kept::Evicted {
            name: "alice".try_into().unwrap()
        }
    );
    // Both verified: a new name is judged but not kept.
    use seguro_embassy::seguro_core::chat::KeyMemory;
    m.verify("bob", &[2; 32]).unwrap();
    m.verify("carol", &[3; 32]).unwrap();
    assert_eq!(
        m.observe_kept("dave", &[4; 32], 5),
        (Verdict::FirstContact, Kept::No)
    );
    assert!(m.take_error().is_none());
    drop(m);
    // What was kept is in flash: alice and dave are gone after a reboot.
    let (m, n) = block_on(FlashMemory::<_, 2>::load(open(&tmp.0, 4))).unwrap();
    assert_eq!(n, 2);
    assert!(m.trust().get("alice").is_none());
    assert!(m.trust().get("dave").is_none());
    assert!(m.trust().get("carol").unwrap().verified());
}

#[test]
fn nonces_of_a_peer_survive_a_reboot() {
    use seguro_embassy::seguro_core::chat::KeyMemory;
    use seguro_embassy::seguro_core::replay::Seen;
    use seguro_embassy::store::FlashMemory;
    let tmp = Tmp::new("nonces");
    let (mut m, _) = block_on(FlashMemory::<_, 8>::load(open(&tmp.0, 4))).unwrap();
    m.received_nonce("bob", &[7; 12]);
    m.sent_nonce("bob", &[8; 12]);
    drop(m);
    let (mut m, _) = block_on(FlashMemory::<_, 8>::load(open(&tmp.0, 4))).unwrap();
    assert_eq!(m.received_nonce("bob", &[7; 12]), Seen::Replayed);
    assert_eq!(m.received_nonce("bob", &[8; 12]), Seen::Reflected);
    assert_eq!(m.received_nonce("bob", &[9; 12]), Seen::New);
    // RAM only: nothing is kept.
    let mut r = FlashMemory::<FileFlash, 8>::ram();
    r.received_nonce("bob", &[7; 12]);
    assert!(r.take_error().is_none());
}

#[test]
fn a_full_trust_store_and_a_full_flash() {
    // The range is checked against the trust store's worst case before anything is
    // written, so the flash itself never fills up.
    let tmp = Tmp::new("full");
    let mut s = open(&tmp.0, 2);
    let cap = s.capacity();
    assert!(cap >= 4, "{cap}");
    assert_eq!(
        store::max_contacts(4, 4096, 4),
        open(&Tmp::new("c4").0, 4).capacity()
    );
    assert!(store::max_contacts(8, 4096, 4) >= 16);
    let mut big = TrustStore::<64>::new();
    assert_eq!(
        block_on(s.load_trust(&mut big)).err(),
        Some(StoreError::TooSmall { max_contacts: cap })
    );
    assert_eq!(
        block_on(s.save_trust(&mut big, Save::Now)).err(),
        Some(StoreError::TooSmall { max_contacts: cap })
    );

    // At the capacity, with every value at its largest, rewritten many times (the map
    // erases and moves pages): never full, never lost.
    const N: usize = 4;
    assert!(N <= cap);
    let mut b = block_on(s.boot_rng(SAME_ENTROPY)).unwrap();
    let (id, _) = block_on(s.identity("board", &mut b.rng, 1)).unwrap();
    let mut t = TrustStore::<N>::new();
    let name = |i: usize| format!("{i}{}", "ü".repeat(63));
    for i in 0..N {
        t.observe(&name(i), &[i as u8; 32], 1).unwrap();
        t.verify(&name(i), &[i as u8; 32]).unwrap();
        t.mark_v2(&name(i), Some(&[7; 32])).unwrap();
    }
    for round in 0..40u8 {
        for i in 0..N {
            // A pending key (the largest record) that changes every round.
            t.observe(&name(i), &[round.wrapping_add(100); 32], u64::from(round))
                .unwrap();
        }
        block_on(s.save_trust(&mut t, Save::LastSeen)).unwrap();
        if round % 10 == 0 {
            let mut b = block_on(s.boot_rng(SAME_ENTROPY)).unwrap();
            let (again, _) = block_on(s.identity("board", &mut b.rng, 0)).unwrap();
            assert_eq!(again.public(), id.public());
        }
    }
    drop(s);
    let mut s = open(&tmp.0, 2);
    let mut u = TrustStore::<N>::new();
    assert_eq!(block_on(s.load_trust(&mut u)).unwrap().contacts, N);
    for i in 0..N {
        assert_eq!(u.get(&name(i)), t.get(&name(i)));
    }

    // The trust store full: a new contact evicts the unverified one seen longest ago,
    // and that survives a reboot.
    let tmp = Tmp::new("evict");
    let mut s = open(&tmp.0, 4);
    let mut t = TrustStore::<3>::new();
    t.observe("old", &[1; 32], 1).unwrap();
    t.observe("mid", &[2; 32], 2).unwrap();
    t.observe("ver", &[3; 32], 0).unwrap();
    t.verify("ver", &[3; 32]).unwrap();
    block_on(s.save_trust(&mut t, Save::Now)).unwrap();
    let o = t.observe("new", &[4; 32], 5).unwrap();
    assert!(matches!(o.kept, Kept::Evicted { ref name } if name == "old"));
    block_on(s.save_trust(&mut t, Save::Now)).unwrap();
    drop(s);
    let mut s = open(&tmp.0, 4);
    let mut u = TrustStore::<3>::new();
    block_on(s.load_trust(&mut u)).unwrap();
    let mut names: Vec<&str> = u.iter().map(|c| c.name()).collect();
    names.sort();
    assert_eq!(names, ["mid", "new", "ver"]);
}

/// What a boot got done before the power failed.
#[derive(Default)]
struct Progress {
    /// The start of the stream, once the generator was handed out.
    stream: Option<[u8; 32]>,
    boots: Option<u64>,
    identity: Option<[u8; 32]>,
    /// The trust store as of its last completed save.
    saved: Option<TrustStore<6>>,
    /// The trust store being saved when the power failed.
    saving: Option<TrustStore<6>>,
}

/// One boot: seed, identity, trust store loaded, then a burst of contact changes saved
/// one by one (enough to make the map erase pages).
async fn boot_session<F: NorFlash>(
    s: &mut FlashStore<F>,
    p: &mut Progress,
    salt: u8,
) -> Result<(), StoreError> {
    let mut b = s.boot_rng(SAME_ENTROPY).await?;
    p.boots = Some(b.boots);
    p.stream = Some(stream(&mut b.rng));
    let (id, _) = s.identity("board", &mut b.rng, b.boots).await?;
    p.identity = Some(id.public());
    let mut t = TrustStore::<6>::new();
    s.load_trust(&mut t).await?;
    p.saved = Some(t.clone());
    for step in 0..40u8 {
        let n = usize::from(step % 6);
        let name = format!("peer{n}-{}", "x".repeat(n * 20));
        let key = [step ^ salt; 32];
        t.observe(&name, &key, u64::from(step)).unwrap();
        match step % 5 {
            1 => t.verify(&name, &key).unwrap(),
            3 => {
                let _ = t.accept(&name);
            }
            _ => {}
        }
        p.saving = Some(t.clone());
        s.save_trust(&mut t, Save::LastSeen).await?;
        p.saved = Some(t.clone());
        p.saving = None;
    }
    Ok(())
}

fn check_after_cut(path: &Path, base: &Progress, cut: &Progress, what: &str) {
    // The next boot works: the map repairs itself.
    let mut s = open(path, 3);
    let mut b = block_on(s.boot_rng(SAME_ENTROPY)).unwrap_or_else(|e| panic!("{what}: boot: {e}"));
    assert!(!b.seed_lost, "{what}");
    let again = stream(&mut b.rng);
    // Never the stream of a boot that ran (the one cut, if it got that far, or the
    // one before).
    assert_ne!(Some(again), cut.stream, "{what}: stream repeated");
    assert_ne!(Some(again), base.stream, "{what}: stream repeated");
    if let Some(n) = cut.boots {
        assert_eq!(b.boots, n + 1, "{what}");
    } else {
        assert!(b.boots > base.boots.unwrap_or(0), "{what}");
    }
    let (id, created) =
        block_on(s.identity("board", &mut b.rng, 0)).unwrap_or_else(|e| panic!("{what}: {e}"));
    // An identity that was handed out is never lost or replaced.
    if let Some(k) = cut.identity.or(base.identity) {
        assert_eq!(id.public(), k, "{what}: identity changed");
        assert!(!created, "{what}");
    }
    let mut t = TrustStore::<6>::new();
    let l = block_on(s.load_trust(&mut t)).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(l.unreadable, 0, "{what}");
    // Every slot holds its last saved value or the one being saved: never torn.
    let empty = TrustStore::<6>::new();
    let saved = cut.saved.as_ref().or(base.saved.as_ref()).unwrap_or(&empty);
    for i in 0..6 {
        let got = t.slot(i);
        let ok = got == saved.slot(i) || cut.saving.as_ref().is_some_and(|s| got == s.slot(i));
        assert!(
            ok,
            "{what}: slot {i} is {got:?}, neither saved {:?} nor saving",
            saved.slot(i)
        );
    }
}

/// Runs a boot on a copy of `image` with the power cut at every flash operation in
/// turn, and checks the flash after each.
fn cut_at_every_operation(tag: &str, image: Option<&[u8]>, base: &Progress) -> (u64, u64) {
    let work = Tmp::new(tag);
    let reset = |work: &Path| {
        let _ = std::fs::remove_file(work);
        if let Some(img) = image {
            std::fs::write(work, img).unwrap();
        }
    };
    // How many operations a whole boot takes.
    reset(&work.0);
    let mut s = FlashStore::new(
        CutFlash::new(FileFlash::open(&work.0, 3).unwrap(), None),
        range(3),
    )
    .unwrap();
    let mut p = Progress::default();
    block_on(boot_session(&mut s, &mut p, 0x55)).unwrap();
    let flash = s.into_flash();
    let (total, erases) = (flash.ops, flash.erases);
    eprintln!("{tag}: a boot takes {total} flash operations ({erases} erases); cut at each");
    for k in 0..total {
        reset(&work.0);
        let mut s = FlashStore::new(
            CutFlash::new(FileFlash::open(&work.0, 3).unwrap(), Some(k)),
            range(3),
        )
        .unwrap();
        let mut p = Progress::default();
        let r = block_on(boot_session(&mut s, &mut p, 0x55));
        assert!(r.is_err(), "{tag}: cut at {k} of {total} went unnoticed");
        assert!(s.into_flash().dead);
        check_after_cut(&work.0, base, &p, &format!("{tag}: cut at op {k}/{total}"));
    }
    (total, erases)
}

#[test]
fn a_power_cut_in_the_middle_of_any_flash_operation_leaves_old_or_new() {
    // The first boot of an empty flash, cut everywhere.
    let (ops, _) = cut_at_every_operation("first", None, &Progress::default());
    assert!(ops > 12, "{ops}");

    // A boot of a flash that has history (identity, seed, contacts, pages in use),
    // cut everywhere, including in the page erases and the moves of live items that
    // precede them; histories of 1 to 4 boots put those at different points.
    let mut erases_seen = 0;
    for depth in 1..=4u8 {
        let base_file = Tmp::new("base");
        let mut base = Progress::default();
        for salt in 0..depth {
            let mut s =
                FlashStore::new(FileFlash::open(&base_file.0, 3).unwrap(), range(3)).unwrap();
            base = Progress::default();
            block_on(boot_session(&mut s, &mut base, salt)).unwrap();
        }
        let image = std::fs::read(&base_file.0).unwrap();
        let (_, erases) = cut_at_every_operation(&format!("after {depth}"), Some(&image), &base);
        erases_seen += erases;
    }
    assert!(
        erases_seen >= 3,
        "the sweeps reached only {erases_seen} erases"
    );
}
