//! The memory of the keys seen per user name, across leave and rejoin: the hook where
//! a persistent trust store plugs in.
//!
//! [`crate::chat::Chat`] asks its [`KeyMemory`] for a [`Verdict`] (the trust store's:
//! first contact, unchanged, changed, changed of a verified contact) every time the
//! directory shows a user with a key, and warns when the verdict is a change. The
//! default, [`RecentKeys`], remembers the last key of the most recently seen users for
//! as long as the program runs; [`TrustStore`], the persistent store of contacts (which
//! also knows which ones the user verified), implements the same trait.

use heapless::Vec;
use sha2::{Digest, Sha256};

use crate::limits::{CHAT_KNOWN_KEYS, KEY_LEN, NONCE_LEN};
use crate::replay::{NonceMemory, Seen};
pub use crate::trust::Verdict;
use crate::trust::{TrustError, TrustStore};

/// What a memory knows of one contact: for `/trust`, `/verify` and strict mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The stored key (the verified one of a verified contact).
    pub key: [u8; KEY_LEN],
    /// The user verified `key`.
    pub verified: bool,
    /// A changed key of a verified contact, waiting for `/verify` or `/accept`.
    pub pending: Option<[u8; KEY_LEN]>,
}

/// Remembers the last key seen per user name.
pub trait KeyMemory {
    /// Records that `name` presented `key` at `now` (the host's clock: seconds since
    /// the Unix epoch where there is a wall clock, else since boot), and judges the key
    /// against what was remembered before this call.
    fn observe(&mut self, name: &str, key: &[u8; KEY_LEN], now: u64) -> Verdict;

    /// The key last recorded for `name`, if remembered.
    fn last_key(&self, name: &str) -> Option<[u8; KEY_LEN]>;

    /// What is known of `name`. By default: its last key, never verified.
    fn status(&self, name: &str) -> Option<Status> {
        self.last_key(name).map(|key| Status {
            key,
            verified: false,
            pending: None,
        })
    }

    /// Marks `key` of `name` verified (`/verify <user> yes`). By default the memory
    /// keeps no contacts: [`TrustError::Unsupported`].
    fn verify(&mut self, name: &str, key: &[u8; KEY_LEN]) -> Result<(), TrustError> {
        let _ = (name, key);
        Err(TrustError::Unsupported)
    }

    /// Takes the changed key of a verified contact without verifying it (`/accept`);
    /// returns the new key. By default: [`TrustError::Unsupported`].
    fn accept(&mut self, name: &str) -> Result<[u8; KEY_LEN], TrustError> {
        let _ = name;
        Err(TrustError::Unsupported)
    }

    /// Number of contact slots [`KeyMemory::contact`] looks into (0: no list).
    fn slots(&self) -> usize {
        0
    }

    /// The contact in slot `i`, for `/trust`.
    fn contact(&self, i: usize) -> Option<(&str, Status)> {
        let _ = i;
        None
    }

    /// Records a nonce this client sent to `peer` (to recognise it handed back).
    fn sent_nonce(&mut self, peer: &str, nonce: &[u8; NONCE_LEN]) {
        let _ = (peer, nonce);
    }

    /// Judges (and records) the nonce of a message that decrypted as from `peer`. By
    /// default nothing is remembered: every message is [`Seen::New`].
    fn received_nonce(&mut self, peer: &str, nonce: &[u8; NONCE_LEN]) -> Seen {
        let _ = (peer, nonce);
        Seen::New
    }
}

impl<M: KeyMemory + ?Sized> KeyMemory for &mut M {
    fn observe(&mut self, name: &str, key: &[u8; KEY_LEN], now: u64) -> Verdict {
        (**self).observe(name, key, now)
    }

    fn last_key(&self, name: &str) -> Option<[u8; KEY_LEN]> {
        (**self).last_key(name)
    }

    fn status(&self, name: &str) -> Option<Status> {
        (**self).status(name)
    }

    fn verify(&mut self, name: &str, key: &[u8; KEY_LEN]) -> Result<(), TrustError> {
        (**self).verify(name, key)
    }

    fn accept(&mut self, name: &str) -> Result<[u8; KEY_LEN], TrustError> {
        (**self).accept(name)
    }

    fn slots(&self) -> usize {
        (**self).slots()
    }

    fn contact(&self, i: usize) -> Option<(&str, Status)> {
        (**self).contact(i)
    }

    fn sent_nonce(&mut self, peer: &str, nonce: &[u8; NONCE_LEN]) {
        (**self).sent_nonce(peer, nonce);
    }

    fn received_nonce(&mut self, peer: &str, nonce: &[u8; NONCE_LEN]) -> Seen {
        (**self).received_nonce(peer, nonce)
    }
}

fn status_of(c: &crate::trust::Contact) -> Status {
    Status {
        key: *c.key(),
        verified: c.verified(),
        pending: c.pending().map(|p| p.key),
    }
}

/// The persistent store judges and remembers; what it could not remember (a full store
/// of verified contacts, an evicted contact: [`crate::trust::Observation::kept`]) is the
/// host's to report and to save.
impl<const N: usize> KeyMemory for TrustStore<N> {
    fn observe(&mut self, name: &str, key: &[u8; KEY_LEN], now: u64) -> Verdict {
        // Directory names are never empty nor longer than a stored name, the only
        // refusals: such a name could not be remembered anyway.
        TrustStore::observe(self, name, key, now).map_or(Verdict::FirstContact, |o| o.verdict)
    }

    fn last_key(&self, name: &str) -> Option<[u8; KEY_LEN]> {
        self.get(name).map(|c| *c.key())
    }

    fn status(&self, name: &str) -> Option<Status> {
        self.get(name).map(status_of)
    }

    fn verify(&mut self, name: &str, key: &[u8; KEY_LEN]) -> Result<(), TrustError> {
        TrustStore::verify(self, name, key)
    }

    fn accept(&mut self, name: &str) -> Result<[u8; KEY_LEN], TrustError> {
        TrustStore::accept(self, name)
    }

    fn slots(&self) -> usize {
        N
    }

    fn contact(&self, i: usize) -> Option<(&str, Status)> {
        self.slot(i).map(|c| (c.name(), status_of(c)))
    }
}

/// A trust store and nonce memories kept together (and saved together): the key memory
/// of a host that persists both.
#[derive(Debug, Clone, Default)]
pub struct Contacts<const N: usize, const PEERS: usize, const WINDOW: usize> {
    /// The contacts.
    pub trust: TrustStore<N>,
    /// The nonces sent to and received from each peer.
    pub nonces: NonceMemory<PEERS, WINDOW>,
}

impl<const N: usize, const PEERS: usize, const WINDOW: usize> Contacts<N, PEERS, WINDOW> {
    /// Empty.
    pub const fn new() -> Self {
        Self {
            trust: TrustStore::new(),
            nonces: NonceMemory::new(),
        }
    }
}

impl<const N: usize, const PEERS: usize, const WINDOW: usize> KeyMemory
    for Contacts<N, PEERS, WINDOW>
{
    fn observe(&mut self, name: &str, key: &[u8; KEY_LEN], now: u64) -> Verdict {
        KeyMemory::observe(&mut self.trust, name, key, now)
    }

    fn last_key(&self, name: &str) -> Option<[u8; KEY_LEN]> {
        KeyMemory::last_key(&self.trust, name)
    }

    fn status(&self, name: &str) -> Option<Status> {
        KeyMemory::status(&self.trust, name)
    }

    fn verify(&mut self, name: &str, key: &[u8; KEY_LEN]) -> Result<(), TrustError> {
        self.trust.verify(name, key)
    }

    fn accept(&mut self, name: &str) -> Result<[u8; KEY_LEN], TrustError> {
        self.trust.accept(name)
    }

    fn slots(&self) -> usize {
        N
    }

    fn contact(&self, i: usize) -> Option<(&str, Status)> {
        KeyMemory::contact(&self.trust, i)
    }

    fn sent_nonce(&mut self, peer: &str, nonce: &[u8; NONCE_LEN]) {
        self.nonces.sent(peer, nonce);
    }

    fn received_nonce(&mut self, peer: &str, nonce: &[u8; NONCE_LEN]) -> Seen {
        self.nonces.received(peer, nonce)
    }
}

/// Length of the name hash a [`RecentKeys`] entry keeps instead of the name.
const NAME_ID_LEN: usize = 16;

#[derive(Debug, Clone)]
struct Known {
    name: [u8; NAME_ID_LEN],
    key: [u8; KEY_LEN],
    used: u64,
}

/// The default [`KeyMemory`]: the last key of up to `N` users, in RAM. When full, the
/// user seen least recently is forgotten (and is a first contact if seen again).
///
/// Names are kept as the first 16 bytes of their SHA-256 (collision resistant: no user
/// can pick a name that overwrites another's memory), so an entry costs 56 bytes.
/// Verification is not tracked: no verdict is [`Verdict::ChangedVerified`].
#[derive(Debug, Clone, Default)]
pub struct RecentKeys<const N: usize = CHAT_KNOWN_KEYS> {
    entries: Vec<Known, N>,
    clock: u64,
}

fn name_id(name: &str) -> [u8; NAME_ID_LEN] {
    let digest = Sha256::new()
        .chain_update(b"seguro chat name\0")
        .chain_update(name.as_bytes())
        .finalize();
    let mut id = [0u8; NAME_ID_LEN];
    for (dst, src) in id.iter_mut().zip(digest.iter()) {
        *dst = *src;
    }
    id
}

impl<const N: usize> RecentKeys<N> {
    /// An empty memory.
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
            clock: 0,
        }
    }

    /// How many users are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if nobody is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<const N: usize> KeyMemory for RecentKeys<N> {
    fn observe(&mut self, name: &str, key: &[u8; KEY_LEN], _now: u64) -> Verdict {
        self.clock = self.clock.wrapping_add(1);
        let id = name_id(name);
        if let Some(e) = self.entries.iter_mut().find(|e| e.name == id) {
            e.used = self.clock;
            if e.key == *key {
                return Verdict::Unchanged;
            }
            let old = core::mem::replace(&mut e.key, *key);
            return Verdict::Changed { old };
        }
        let known = Known {
            name: id,
            key: *key,
            used: self.clock,
        };
        if let Err(known) = self.entries.push(known) {
            let oldest = self.entries.iter_mut().min_by_key(|e| e.used);
            if let Some(slot) = oldest {
                *slot = known;
            }
        }
        Verdict::FirstContact
    }

    fn last_key(&self, name: &str) -> Option<[u8; KEY_LEN]> {
        let id = name_id(name);
        self.entries.iter().find(|e| e.name == id).map(|e| e.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_unchanged_changed() {
        let mut m = RecentKeys::<4>::new();
        assert_eq!(m.observe("bob", &[1; 32], 0), Verdict::FirstContact);
        assert_eq!(m.observe("bob", &[1; 32], 0), Verdict::Unchanged);
        assert_eq!(
            m.observe("bob", &[2; 32], 0),
            Verdict::Changed { old: [1; 32] }
        );
        assert_eq!(m.observe("bob", &[2; 32], 0), Verdict::Unchanged);
        assert_eq!(m.last_key("bob"), Some([2; 32]));
        assert_eq!(m.last_key("carol"), None);
        assert_eq!(m.observe("Bob", &[2; 32], 0), Verdict::FirstContact);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn full_memory_forgets_the_least_recently_seen() {
        let mut m = RecentKeys::<2>::new();
        m.observe("a", &[1; 32], 0);
        m.observe("b", &[2; 32], 0);
        m.observe("a", &[1; 32], 0); // a is now more recent than b
        assert_eq!(m.observe("c", &[3; 32], 0), Verdict::FirstContact);
        assert_eq!(m.len(), 2);
        assert_eq!(m.last_key("b"), None);
        assert_eq!(m.last_key("a"), Some([1; 32]));
        assert_eq!(m.last_key("c"), Some([3; 32]));
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let mut m = RecentKeys::<0>::new();
        assert_eq!(m.observe("a", &[1; 32], 0), Verdict::FirstContact);
        assert_eq!(m.observe("a", &[2; 32], 0), Verdict::FirstContact);
        assert!(m.is_empty());
    }

    #[test]
    fn the_trust_store_is_a_key_memory() {
        let mut t = TrustStore::<4>::new();
        let m: &mut dyn KeyMemory = &mut t;
        assert_eq!(m.observe("bob", &[1; 32], 10), Verdict::FirstContact);
        assert_eq!(m.observe("bob", &[1; 32], 11), Verdict::Unchanged);
        assert_eq!(
            m.observe("bob", &[2; 32], 12),
            Verdict::Changed { old: [1; 32] }
        );
        assert_eq!(m.last_key("bob"), Some([2; 32]));
        assert_eq!(m.last_key("eve"), None);
        assert_eq!(m.observe("", &[3; 32], 13), Verdict::FirstContact);
        t.verify("bob", &[2; 32]).unwrap();
        let m: &mut dyn KeyMemory = &mut t;
        assert_eq!(
            m.observe("bob", &[3; 32], 14),
            Verdict::ChangedVerified { old: [2; 32] }
        );
        // The store kept the verified key and holds the new one for the user to decide.
        assert_eq!(KeyMemory::last_key(&t, "bob"), Some([2; 32]));
        assert!(t.get("bob").is_some_and(|c| c.pending().is_some()));
    }

    #[test]
    fn works_through_a_mutable_reference() {
        fn first_sight<M: KeyMemory>(mut m: M) -> (Verdict, Option<[u8; 32]>) {
            (m.observe("a", &[1; 32], 5), m.last_key("a"))
        }
        let mut m = RecentKeys::<2>::new();
        assert!(m.is_empty());
        assert_eq!(first_sight(&mut m), (Verdict::FirstContact, Some([1; 32])));
        assert_eq!(m.len(), 1);
        assert!(!m.is_empty());
    }

    /// Everything a host reads through the trait (`/trust` lists `slots` and `contact`,
    /// the chat records sent nonces and judges received ones), for each memory that
    /// keeps contacts, directly and through `&mut`.
    #[test]
    fn contacts_and_nonces_through_the_trait() {
        fn check<M: KeyMemory>(mut m: M, slots: usize) {
            assert_eq!(m.slots(), slots);
            assert_eq!(m.contact(0), None);
            assert_eq!(m.observe("bob", &[1; 32], 1), Verdict::FirstContact);
            assert_eq!(m.observe("carol", &[2; 32], 1), Verdict::FirstContact);
            assert_eq!(m.last_key("bob"), Some([1; 32]));
            assert_eq!(m.last_key("carol"), Some([2; 32]));
            assert_eq!(m.last_key("dave"), None);
            let listed: Vec<(&str, Status), 8> =
                (0..m.slots()).filter_map(|i| m.contact(i)).collect();
            assert_eq!(listed.len(), 2, "{listed:?}");
            for (name, key) in [("bob", [1; 32]), ("carol", [2; 32])] {
                let expected = Status {
                    key,
                    verified: false,
                    pending: None,
                };
                assert!(listed.contains(&(name, expected)), "{name}: {listed:?}");
            }
        }
        check(TrustStore::<4>::new(), 4);
        check(&mut TrustStore::<3>::new(), 3);
        check(Contacts::<4, 4, 8>::new(), 4);
        check(&mut Contacts::<5, 4, 8>::new(), 5);

        fn nonces<M: KeyMemory>(mut m: M) {
            m.sent_nonce("bob", &[7; NONCE_LEN]);
            assert_eq!(m.received_nonce("bob", &[7; NONCE_LEN]), Seen::Reflected);
            assert_eq!(m.received_nonce("bob", &[8; NONCE_LEN]), Seen::New);
            assert_eq!(m.received_nonce("bob", &[8; NONCE_LEN]), Seen::Replayed);
        }
        let mut c = Contacts::<4, 4, 8>::new();
        nonces(&mut c);
        // The nonces went into the memory behind the reference.
        assert_eq!(c.received_nonce("bob", &[8; NONCE_LEN]), Seen::Replayed);
        nonces(Contacts::<4, 4, 8>::new());
    }
}
