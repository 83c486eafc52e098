//! The trust store: the contacts a user has seen, the key each one had, whether the user
//! verified it, bounded to `N` contacts, with its storage format.
//!
//! Every key a client sees for a name is judged with [`TrustStore::observe`], which
//! returns a [`Verdict`]:
//!
//! | verdict | when | what a host shows |
//! |---|---|---|
//! | [`FirstContact`](Verdict::FirstContact) | the name is new | a quiet note with the fingerprint |
//! | [`Unchanged`](Verdict::Unchanged) | the stored key | nothing |
//! | [`Changed`](Verdict::Changed) | another key, contact not verified | a loud warning with both fingerprints; the new key is stored (trust on first use, Signal's default) |
//! | [`ChangedVerified`](Verdict::ChangedVerified) | another key, contact verified | louder still, at every sighting; the verified key stays stored and the new one waits as [`Pending`] until the user verifies it ([`TrustStore::verify`]) or accepts it ([`TrustStore::accept`]); strict mode refuses to send meanwhile |
//!
//! A contact whose verified key comes back while another key is pending is
//! `Unchanged` again, and the pending key is dropped.
//!
//! Timestamps are the host's (core has no clock): Unix seconds on the desktop, a boot
//! counter on a board without a clock. They only order contacts by "last seen"; a
//! timestamp older than the stored one never moves it back.
//!
//! # Bounded: who is forgotten when full
//!
//! A store holds `N` contacts. When a new name arrives and every slot is taken, the
//! **unverified contact seen longest ago** is forgotten to make room (ties: the lowest
//! slot). **Verified contacts are never evicted**: when all `N` are verified, the new
//! contact is judged ([`Verdict::FirstContact`]) but not remembered
//! ([`Kept::No`]), and the host should say so. [`Observation::kept`] reports either
//! case so nothing is forgotten silently.
//!
//! Eviction is what a lying server can exploit: by flooding the directory with `N`
//! made-up names it can push an unverified contact out, and a substituted key for that
//! contact then looks like a first contact. Verified contacts are immune; size `N`
//! generously where RAM allows (the desktop keeps 1024).
//!
//! # Per-peer data of later kinds
//!
//! Issue 18's nonce windows and protocol v2's ratchet state are kept in records of
//! their own kinds ([`kind::NONCES`], [`kind::RATCHET`]) in the same file or flash
//! map, each body starting with the peer's name; the contact record does not change.
//!
//! # Contact record
//!
//! Kind [`kind::CONTACT`], version 1:
//!
//! ```text
//! offset  size  field
//! 0       1     flags: bit 0 verified, bit 1 v2 seen, bit 2 Ed25519 key present,
//!               bit 3 changed key pending (only with bit 0); other bits 0
//! 1       1     n, name length in bytes (1..=128)
//! 2       n     name (UTF-8)
//! 2+n     32    X25519 key (the verified one when bit 0 is set)
//! 34+n    8     first seen, u64 LE
//! 42+n    8     last seen, u64 LE
//! 50+n    32    Ed25519 key                       (only with bit 2)
//! ...     32+8+8 pending key, its first and last seen (only with bit 3)
//! ```
//!
//! A trust file is a file of type [`file_type::TRUST`] with one contact record per
//! contact (no name twice); records of other kinds are handed to the caller.

use heapless::String;

use crate::limits::{KEY_LEN, MAX_NAME_BYTES};
use crate::store::{Body, Cursor, Reader, Record, StoreError, Writer, file_type, kind};

/// Largest contact record body (128-byte name, Ed25519 key and a pending key).
pub const CONTACT_BODY_MAX: usize = 2 + MAX_NAME_BYTES + KEY_LEN + 16 + KEY_LEN + KEY_LEN + 16;

/// Largest encoded contact record.
pub const CONTACT_RECORD_MAX: usize = crate::store::RECORD_OVERHEAD + CONTACT_BODY_MAX;

const F_VERIFIED: u8 = 1;
const F_V2: u8 = 2;
const F_ED25519: u8 = 4;
const F_PENDING: u8 = 8;
const F_ALL: u8 = F_VERIFIED | F_V2 | F_ED25519 | F_PENDING;

/// A key that replaced a verified contact's key and waits for the user's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// The new key.
    pub key: [u8; KEY_LEN],
    /// When it was first seen.
    pub first_seen: u64,
    /// When it was last seen.
    pub last_seen: u64,
}

/// One known contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    name: String<MAX_NAME_BYTES>,
    key: [u8; KEY_LEN],
    ed25519: Option<[u8; KEY_LEN]>,
    first_seen: u64,
    last_seen: u64,
    verified: bool,
    v2_seen: bool,
    pending: Option<Pending>,
}

impl Contact {
    fn new(name: String<MAX_NAME_BYTES>, key: [u8; KEY_LEN], now: u64) -> Self {
        Self {
            name,
            key,
            ed25519: None,
            first_seen: now,
            last_seen: now,
            verified: false,
            v2_seen: false,
            pending: None,
        }
    }

    /// The contact's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stored X25519 key: the verified key of a verified contact, else the last
    /// key seen.
    pub fn key(&self) -> &[u8; KEY_LEN] {
        &self.key
    }

    /// The Ed25519 key bound to [`key`](Self::key), once v2 has shown it.
    pub fn ed25519(&self) -> Option<&[u8; KEY_LEN]> {
        self.ed25519.as_ref()
    }

    /// When the name was first seen.
    pub fn first_seen(&self) -> u64 {
        self.first_seen
    }

    /// When the stored key was last seen.
    pub fn last_seen(&self) -> u64 {
        self.last_seen
    }

    /// Whether the user verified the stored key.
    pub fn verified(&self) -> bool {
        self.verified
    }

    /// Whether this contact ever spoke protocol v2 (then v1 must never be used
    /// silently again: downgrade protection).
    pub fn v2_seen(&self) -> bool {
        self.v2_seen
    }

    /// A changed key waiting for the user (only for verified contacts).
    pub fn pending(&self) -> Option<&Pending> {
        self.pending.as_ref()
    }

    fn flags(&self) -> u8 {
        let mut f = 0;
        if self.verified {
            f |= F_VERIFIED;
        }
        if self.v2_seen {
            f |= F_V2;
        }
        if self.ed25519.is_some() {
            f |= F_ED25519;
        }
        if self.pending.is_some() {
            f |= F_PENDING;
        }
        f
    }

    fn body(&self, b: &mut Body<'_, '_>) {
        b.u8(self.flags());
        b.name(&self.name);
        b.bytes(&self.key);
        b.u64(self.first_seen);
        b.u64(self.last_seen);
        if let Some(ed) = &self.ed25519 {
            b.bytes(ed);
        }
        if let Some(p) = &self.pending {
            b.bytes(&p.key);
            b.u64(p.first_seen);
            b.u64(p.last_seen);
        }
    }

    /// Appends this contact's record to a file being written.
    pub fn write(&self, w: &mut Writer<'_>) {
        w.record(kind::CONTACT, 1, |b| self.body(b));
    }

    /// Encodes the contact record alone (for a flash map); returns its length (at most
    /// [`CONTACT_RECORD_MAX`]).
    pub fn encode_record(&self, out: &mut [u8]) -> Result<usize, StoreError> {
        crate::store::encode_record(out, kind::CONTACT, 1, |b| self.body(b))
    }

    /// Parses a contact record.
    pub fn from_record(record: &Record<'_>) -> Result<Self, StoreError> {
        let bad = StoreError::Malformed {
            kind: kind::CONTACT,
        };
        if record.kind != kind::CONTACT {
            return Err(StoreError::Missing {
                kind: kind::CONTACT,
            });
        }
        record.expect_version(1)?;
        let mut c = Cursor::new(record);
        let flags = c.u8()?;
        if flags & !F_ALL != 0 || (flags & F_PENDING != 0 && flags & F_VERIFIED == 0) {
            return Err(bad);
        }
        let name = c.name()?;
        let key = c.array()?;
        let first_seen = c.u64()?;
        let last_seen = c.u64()?;
        let ed25519 = if flags & F_ED25519 != 0 {
            Some(c.array()?)
        } else {
            None
        };
        let pending = if flags & F_PENDING != 0 {
            let p = Pending {
                key: c.array()?,
                first_seen: c.u64()?,
                last_seen: c.u64()?,
            };
            if p.key == key {
                return Err(bad);
            }
            Some(p)
        } else {
            None
        };
        c.end()?;
        Ok(Self {
            name,
            key,
            ed25519,
            first_seen,
            last_seen,
            verified: flags & F_VERIFIED != 0,
            v2_seen: flags & F_V2 != 0,
            pending,
        })
    }
}

/// The judgement of a key seen for a name.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The name was not known.
    FirstContact,
    /// The stored key.
    Unchanged,
    /// Another key than the stored one, for a contact that is not verified; the new key
    /// is now stored.
    Changed {
        /// The key stored before.
        old: [u8; KEY_LEN],
    },
    /// Another key than the verified one: kept as [`Pending`] until the user decides.
    ChangedVerified {
        /// The verified key (still stored).
        old: [u8; KEY_LEN],
    },
}

/// Whether a first contact could be remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// Stored (always the case for a known name).
    Yes,
    /// Stored after forgetting this unverified contact, the one seen longest ago.
    Evicted {
        /// The name forgotten.
        name: String<MAX_NAME_BYTES>,
    },
    /// Not stored: every slot holds a verified contact.
    No,
}

/// What [`TrustStore::observe`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The judgement of the key.
    pub verdict: Verdict,
    /// Whether the contact is remembered.
    pub kept: Kept,
}

/// Why a trust store operation was refused.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustError {
    /// The name is empty or longer than [`MAX_NAME_BYTES`] bytes.
    BadName,
    /// No contact of that name.
    Unknown,
    /// The key is neither the contact's stored key nor its pending key.
    KeyNotSeen,
    /// The contact has no changed key waiting.
    NothingPending,
    /// The slot index is beyond the capacity.
    NoSuchSlot,
    /// Another slot already holds that name.
    Duplicate,
    /// This memory does not keep contacts (it cannot verify, accept or list them).
    Unsupported,
}

impl core::fmt::Display for TrustError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::BadName => "bad contact name",
            Self::Unknown => "unknown contact",
            Self::KeyNotSeen => "that key was not seen for this contact",
            Self::NothingPending => "no changed key is waiting for this contact",
            Self::NoSuchSlot => "no such slot",
            Self::Duplicate => "a contact of that name is already stored",
            Self::Unsupported => "this client does not keep a contact list",
        })
    }
}

impl core::error::Error for TrustError {}

/// How urgently a store should be written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Save {
    /// Nothing changed.
    Clean,
    /// Only "last seen" times moved: write when convenient (at exit, or rarely on
    /// flash to spare erase cycles).
    LastSeen,
    /// A judgement changed (new contact, new key, verified, accepted, forgotten):
    /// write now.
    Now,
}

/// What [`TrustStore::load_file`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    /// Contacts stored.
    pub contacts: usize,
    /// Contacts not stored because the store is smaller than the file (the eviction
    /// rule chose which).
    pub dropped: usize,
}

/// Up to `N` contacts. Each costs about 260 bytes on a 32-bit target (a 128-byte name
/// buffer, three keys, timestamps); `TrustStore<16>` is about 4.2 KiB.
#[derive(Debug, Clone)]
pub struct TrustStore<const N: usize> {
    slots: [Option<Contact>; N],
    dirt: [Save; N],
}

impl<const N: usize> Default for TrustStore<N> {
    fn default() -> Self {
        Self::new()
    }
}

fn name_of(name: &str) -> Result<String<MAX_NAME_BYTES>, TrustError> {
    if name.is_empty() {
        return Err(TrustError::BadName);
    }
    let mut n = String::new();
    n.push_str(name).map_err(|_| TrustError::BadName)?;
    Ok(n)
}

impl<const N: usize> TrustStore<N> {
    /// An empty store.
    pub const fn new() -> Self {
        Self {
            slots: [const { None }; N],
            dirt: [Save::Clean; N],
        }
    }

    /// `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Number of contacts.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// True if there is no contact.
    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(Option::is_none)
    }

    /// Forgets everything (and marks every slot for writing).
    pub fn clear(&mut self) {
        for (s, d) in self.slots.iter_mut().zip(self.dirt.iter_mut()) {
            if s.take().is_some() {
                *d = Save::Now;
            }
        }
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|c| c.name == name))
    }

    fn mark(&mut self, i: usize, level: Save) {
        if let Some(d) = self.dirt.get_mut(i) {
            *d = (*d).max(level);
        }
    }

    fn contact_mut(&mut self, name: &str) -> Result<(usize, &mut Contact), TrustError> {
        let i = self.index(name).ok_or(TrustError::Unknown)?;
        match self.slots.get_mut(i) {
            Some(Some(c)) => Ok((i, c)),
            _ => Err(TrustError::Unknown),
        }
    }

    /// The contact called `name`.
    pub fn get(&self, name: &str) -> Option<&Contact> {
        self.slots.iter().flatten().find(|c| c.name == name)
    }

    /// Every contact, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &Contact> + '_ {
        self.slots.iter().flatten()
    }

    /// The contact in slot `i` (slots are stable: a board stores one flash item per
    /// slot).
    pub fn slot(&self, i: usize) -> Option<&Contact> {
        self.slots.get(i).and_then(Option::as_ref)
    }

    /// Judges `key` seen for `name` at host time `now`, and remembers it (see the
    /// module documentation for the rules).
    pub fn observe(
        &mut self,
        name: &str,
        key: &[u8; KEY_LEN],
        now: u64,
    ) -> Result<Observation, TrustError> {
        let stored_name = name_of(name)?;
        let Ok((i, c)) = self.contact_mut(name) else {
            let kept = self.insert_new(Contact::new(stored_name, *key, now));
            return Ok(Observation {
                verdict: Verdict::FirstContact,
                kept,
            });
        };
        let (verdict, level) = if c.key == *key {
            let level = if c.pending.take().is_some() {
                Save::Now
            } else if now > c.last_seen {
                Save::LastSeen
            } else {
                Save::Clean
            };
            c.last_seen = c.last_seen.max(now);
            (Verdict::Unchanged, level)
        } else if c.verified {
            let old = c.key;
            let level = match &mut c.pending {
                Some(p) if p.key == *key => {
                    let moved = now > p.last_seen;
                    p.last_seen = p.last_seen.max(now);
                    if moved { Save::LastSeen } else { Save::Clean }
                }
                _ => {
                    c.pending = Some(Pending {
                        key: *key,
                        first_seen: now,
                        last_seen: now,
                    });
                    Save::Now
                }
            };
            (Verdict::ChangedVerified { old }, level)
        } else {
            let old = c.key;
            c.key = *key;
            c.ed25519 = None;
            c.last_seen = c.last_seen.max(now);
            (Verdict::Changed { old }, Save::Now)
        };
        self.mark(i, level);
        Ok(Observation {
            verdict,
            kept: Kept::Yes,
        })
    }

    /// Stores a new contact in a free slot, or in place of the unverified contact seen
    /// longest ago.
    fn insert_new(&mut self, contact: Contact) -> Kept {
        if let Some(i) = self.slots.iter().position(Option::is_none) {
            if let Some(s) = self.slots.get_mut(i) {
                *s = Some(contact);
            }
            self.mark(i, Save::Now);
            return Kept::Yes;
        }
        let victim = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|c| (i, c)))
            .filter(|(_, c)| !c.verified)
            .min_by_key(|(i, c)| (c.last_seen, *i))
            .map(|(i, _)| i);
        let Some(i) = victim else {
            return Kept::No;
        };
        let old = self.slots.get_mut(i).and_then(|s| s.replace(contact));
        self.mark(i, Save::Now);
        match old {
            Some(c) => Kept::Evicted { name: c.name },
            None => Kept::Yes,
        }
    }

    /// Marks `key` of `name` verified: the user compared its safety code. `key` must be
    /// the stored key or the pending one (which then replaces the stored key).
    pub fn verify(&mut self, name: &str, key: &[u8; KEY_LEN]) -> Result<(), TrustError> {
        let (i, c) = self.contact_mut(name)?;
        if c.key == *key {
            if c.verified {
                return Ok(());
            }
            c.verified = true;
        } else if let Some(p) = c.pending.take_if(|p| p.key == *key) {
            c.key = p.key;
            c.ed25519 = None;
            c.last_seen = c.last_seen.max(p.last_seen);
            c.verified = true;
        } else {
            return Err(TrustError::KeyNotSeen);
        }
        self.mark(i, Save::Now);
        Ok(())
    }

    /// Accepts the changed key of a verified contact without verifying it: it replaces
    /// the stored key, and the contact is no longer verified. Returns the new key.
    pub fn accept(&mut self, name: &str) -> Result<[u8; KEY_LEN], TrustError> {
        let (i, c) = self.contact_mut(name)?;
        let p = c.pending.take().ok_or(TrustError::NothingPending)?;
        c.key = p.key;
        c.ed25519 = None;
        c.verified = false;
        c.last_seen = c.last_seen.max(p.last_seen);
        self.mark(i, Save::Now);
        Ok(p.key)
    }

    /// Withdraws a verification. A pending key, if any, is then taken as an unverified
    /// contact would have taken it.
    pub fn unverify(&mut self, name: &str) -> Result<(), TrustError> {
        let (i, c) = self.contact_mut(name)?;
        if !c.verified {
            return Ok(());
        }
        c.verified = false;
        if let Some(p) = c.pending.take() {
            c.key = p.key;
            c.ed25519 = None;
            c.last_seen = c.last_seen.max(p.last_seen);
        }
        self.mark(i, Save::Now);
        Ok(())
    }

    /// Records that `name` spoke protocol v2 (downgrade protection), with the Ed25519
    /// key v2 bound to its stored X25519 key if known.
    pub fn mark_v2(
        &mut self,
        name: &str,
        ed25519: Option<&[u8; KEY_LEN]>,
    ) -> Result<(), TrustError> {
        let (i, c) = self.contact_mut(name)?;
        let before = (c.v2_seen, c.ed25519);
        c.v2_seen = true;
        if let Some(k) = ed25519 {
            c.ed25519 = Some(*k);
        }
        if before != (c.v2_seen, c.ed25519) {
            self.mark(i, Save::Now);
        }
        Ok(())
    }

    /// Drops the mark [`mark_v2`](Self::mark_v2) set: the user accepted protocol v1
    /// with `name` (§2.4's `/accept-v1`). The Ed25519 key stays. Returns whether the
    /// mark was set.
    pub fn clear_v2(&mut self, name: &str) -> Result<bool, TrustError> {
        let (i, c) = self.contact_mut(name)?;
        let was = c.v2_seen;
        c.v2_seen = false;
        if was {
            self.mark(i, Save::Now);
        }
        Ok(was)
    }

    /// Forgets `name`; returns whether it was known.
    pub fn forget(&mut self, name: &str) -> bool {
        let Some(i) = self.index(name) else {
            return false;
        };
        if let Some(s) = self.slots.get_mut(i) {
            *s = None;
        }
        self.mark(i, Save::Now);
        true
    }

    /// Puts `contact` into slot `i` (loading from a flash map), without marking it for
    /// writing. Refuses a name another slot holds.
    pub fn set_slot(&mut self, i: usize, contact: Option<Contact>) -> Result<(), TrustError> {
        if i >= N {
            return Err(TrustError::NoSuchSlot);
        }
        if let Some(c) = &contact
            && self.index(&c.name).is_some_and(|j| j != i)
        {
            return Err(TrustError::Duplicate);
        }
        if let Some(s) = self.slots.get_mut(i) {
            *s = contact;
        }
        if let Some(d) = self.dirt.get_mut(i) {
            *d = Save::Clean;
        }
        Ok(())
    }

    /// How urgently the store should be written back.
    pub fn needs_save(&self) -> Save {
        self.dirt.iter().copied().max().unwrap_or(Save::Clean)
    }

    /// The slots changed since [`mark_clean`](Self::mark_clean), with their contents
    /// (`None`: the slot was emptied) and how urgently each needs writing.
    pub fn dirty_slots(&self) -> impl Iterator<Item = (usize, Option<&Contact>, Save)> + '_ {
        self.dirt
            .iter()
            .enumerate()
            .filter(|(_, d)| **d != Save::Clean)
            .map(|(i, d)| (i, self.slot(i), *d))
    }

    /// Records that everything was written back.
    pub fn mark_clean(&mut self) {
        self.dirt = [Save::Clean; N];
    }

    /// Records that slot `i` was written back.
    pub fn mark_slot_clean(&mut self, i: usize) {
        if let Some(d) = self.dirt.get_mut(i) {
            *d = Save::Clean;
        }
    }

    /// Appends every contact's record to a file being written.
    pub fn write(&self, w: &mut Writer<'_>) {
        for c in self.iter() {
            c.write(w);
        }
    }

    /// Encodes a trust file holding the contacts only; returns its length (or the
    /// length needed).
    pub fn encode_file(&self, out: &mut [u8]) -> Result<usize, StoreError> {
        let mut w = Writer::new(out, file_type::TRUST);
        self.write(&mut w);
        w.finish()
    }

    /// Replaces the contents with the contacts of a file of type `ftype` (a trust file
    /// or a bundle), handing every record of another kind to `other` (to keep them
    /// when the file is rewritten). The store is left empty on error. Marks nothing
    /// for writing.
    pub fn load_file<'a>(
        &mut self,
        data: &'a [u8],
        ftype: u8,
        mut other: impl FnMut(Record<'a>),
    ) -> Result<Loaded, StoreError> {
        let r = self.load_inner(data, ftype, &mut other);
        if r.is_err() {
            self.slots = [const { None }; N];
        }
        self.mark_clean();
        r
    }

    fn load_inner<'a>(
        &mut self,
        data: &'a [u8],
        ftype: u8,
        other: &mut impl FnMut(Record<'a>),
    ) -> Result<Loaded, StoreError> {
        self.slots = [const { None }; N];
        let mut r = Reader::new(data, ftype)?;
        let mut loaded = Loaded {
            contacts: 0,
            dropped: 0,
        };
        // Every record is checked, also those read after an error of another record
        // would have stopped a lazier reader: the file is all good or refused.
        while let Some(rec) = r.next()? {
            if rec.kind != kind::CONTACT {
                other(rec);
                continue;
            }
            let c = Contact::from_record(&rec)?;
            if self.index(&c.name).is_some() {
                return Err(StoreError::Duplicate {
                    kind: kind::CONTACT,
                });
            }
            match self.insert_new(c) {
                Kept::Yes => loaded.contacts += 1,
                Kept::Evicted { .. } | Kept::No => loaded.dropped += 1,
            }
        }
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 32] = [1; 32];
    const B: [u8; 32] = [2; 32];
    const C: [u8; 32] = [3; 32];

    fn verdict<const N: usize>(
        s: &mut TrustStore<N>,
        name: &str,
        key: &[u8; 32],
        now: u64,
    ) -> Verdict {
        s.observe(name, key, now).unwrap().verdict
    }

    #[test]
    fn first_unchanged_changed() {
        let mut s = TrustStore::<4>::new();
        assert_eq!(s.needs_save(), Save::Clean);
        assert_eq!(verdict(&mut s, "bob", &A, 10), Verdict::FirstContact);
        assert_eq!(s.needs_save(), Save::Now);
        s.mark_clean();
        assert_eq!(verdict(&mut s, "bob", &A, 10), Verdict::Unchanged);
        assert_eq!(s.needs_save(), Save::Clean);
        assert_eq!(verdict(&mut s, "bob", &A, 20), Verdict::Unchanged);
        assert_eq!(s.needs_save(), Save::LastSeen);
        assert_eq!(verdict(&mut s, "bob", &B, 30), Verdict::Changed { old: A });
        assert_eq!(s.needs_save(), Save::Now);
        // The new key is now the stored one.
        assert_eq!(verdict(&mut s, "bob", &B, 40), Verdict::Unchanged);
        let c = s.get("bob").unwrap();
        assert_eq!((c.key(), c.first_seen(), c.last_seen()), (&B, 10, 40));
        // Time going backwards does not move last seen back.
        assert_eq!(verdict(&mut s, "bob", &B, 5), Verdict::Unchanged);
        assert_eq!(s.get("bob").unwrap().last_seen(), 40);
        assert_eq!(s.observe("", &A, 1).unwrap_err(), TrustError::BadName);
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(s.observe(&long, &A, 1).unwrap_err(), TrustError::BadName);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn verified_contact_change_waits_for_the_user() {
        let mut s = TrustStore::<4>::new();
        verdict(&mut s, "bob", &A, 1);
        assert_eq!(s.verify("bob", &B), Err(TrustError::KeyNotSeen));
        s.verify("bob", &A).unwrap();
        assert!(s.get("bob").unwrap().verified());
        assert_eq!(s.accept("bob"), Err(TrustError::NothingPending));
        assert_eq!(
            verdict(&mut s, "bob", &B, 2),
            Verdict::ChangedVerified { old: A }
        );
        // Loud at every sighting, and the verified key stays stored.
        s.mark_clean();
        assert_eq!(
            verdict(&mut s, "bob", &B, 2),
            Verdict::ChangedVerified { old: A }
        );
        assert_eq!(s.needs_save(), Save::Clean);
        assert_eq!(
            verdict(&mut s, "bob", &B, 3),
            Verdict::ChangedVerified { old: A }
        );
        assert_eq!(s.needs_save(), Save::LastSeen);
        let c = s.get("bob").unwrap();
        assert_eq!((c.key(), c.verified()), (&A, true));
        assert_eq!(
            c.pending().unwrap(),
            &Pending {
                key: B,
                first_seen: 2,
                last_seen: 3
            }
        );
        // A third key replaces the pending one.
        assert_eq!(
            verdict(&mut s, "bob", &C, 4),
            Verdict::ChangedVerified { old: A }
        );
        assert_eq!(s.get("bob").unwrap().pending().unwrap().key, C);
        // The verified key coming back clears the pending one.
        s.mark_clean();
        assert_eq!(verdict(&mut s, "bob", &A, 5), Verdict::Unchanged);
        assert_eq!(s.needs_save(), Save::Now);
        assert!(s.get("bob").unwrap().pending().is_none());
        // Accept: the new key, no longer verified.
        verdict(&mut s, "bob", &B, 6);
        assert_eq!(s.accept("bob"), Ok(B));
        let c = s.get("bob").unwrap();
        assert_eq!((c.key(), c.verified(), c.pending()), (&B, false, None));
        assert_eq!(c.last_seen(), 6);
        // Verify the pending key: stored and verified.
        s.verify("bob", &B).unwrap();
        verdict(&mut s, "bob", &C, 7);
        s.verify("bob", &C).unwrap();
        let c = s.get("bob").unwrap();
        assert_eq!((c.key(), c.verified(), c.pending()), (&C, true, None));
        assert_eq!(s.verify("nobody", &C), Err(TrustError::Unknown));
        assert_eq!(s.accept("nobody"), Err(TrustError::Unknown));
    }

    #[test]
    fn unverify_takes_the_pending_key() {
        let mut s = TrustStore::<2>::new();
        verdict(&mut s, "bob", &A, 1);
        s.verify("bob", &A).unwrap();
        verdict(&mut s, "bob", &B, 2);
        s.mark_clean();
        s.unverify("bob").unwrap();
        assert_eq!(s.needs_save(), Save::Now);
        let c = s.get("bob").unwrap();
        assert_eq!((c.key(), c.verified(), c.pending()), (&B, false, None));
        s.mark_clean();
        s.unverify("bob").unwrap();
        assert_eq!(s.needs_save(), Save::Clean);
        assert_eq!(verdict(&mut s, "bob", &C, 3), Verdict::Changed { old: B });
    }

    #[test]
    fn eviction_takes_the_oldest_unverified_never_a_verified() {
        let mut s = TrustStore::<3>::new();
        verdict(&mut s, "a", &A, 5);
        verdict(&mut s, "b", &A, 1);
        verdict(&mut s, "c", &A, 3);
        s.verify("b", &A).unwrap();
        let o = s.observe("d", &B, 10).unwrap();
        assert_eq!(o.verdict, Verdict::FirstContact);
        assert_eq!(
            o.kept,
            Kept::Evicted {
                name: name_of("c").unwrap()
            }
        );
        assert!(s.get("c").is_none() && s.get("d").is_some());
        // Ties: the lowest slot ("a" at 5 vs "d" at 10: "a").
        let o = s.observe("e", &B, 11).unwrap();
        assert_eq!(
            o.kept,
            Kept::Evicted {
                name: name_of("a").unwrap()
            }
        );
        s.verify("d", &B).unwrap();
        s.verify("e", &B).unwrap();
        let o = s.observe("f", &C, 12).unwrap();
        assert_eq!((o.verdict, o.kept), (Verdict::FirstContact, Kept::No));
        assert!(s.get("f").is_none());
        assert_eq!(s.len(), 3);
        // Known names are always kept.
        assert_eq!(s.observe("b", &A, 13).unwrap().kept, Kept::Yes);
    }

    #[test]
    fn a_slot_written_back_is_no_longer_dirty_and_the_others_stay() {
        let mut s = TrustStore::<2>::new();
        verdict(&mut s, "bob", &A, 1);
        verdict(&mut s, "carol", &B, 1);
        let first = |s: &TrustStore<2>| s.dirty_slots().map(|(i, _, _)| i).next();
        assert_eq!((first(&s), s.dirty_slots().count()), (Some(0), 2));
        s.mark_slot_clean(0);
        assert_eq!((first(&s), s.dirty_slots().count()), (Some(1), 1));
        s.mark_slot_clean(7);
        assert_eq!(s.dirty_slots().count(), 1);
        s.mark_slot_clean(1);
        assert_eq!(s.dirty_slots().count(), 0);
    }

    #[test]
    fn v2_forget_slots() {
        let mut s = TrustStore::<2>::new();
        verdict(&mut s, "bob", &A, 1);
        s.mark_clean();
        s.mark_v2("bob", Some(&C)).unwrap();
        assert_eq!(s.needs_save(), Save::Now);
        s.mark_clean();
        s.mark_v2("bob", Some(&C)).unwrap();
        assert_eq!(s.needs_save(), Save::Clean);
        let c = s.get("bob").unwrap();
        assert_eq!((c.v2_seen(), c.ed25519()), (true, Some(&C)));
        // A changed X25519 key drops the Ed25519 key bound to the old one.
        verdict(&mut s, "bob", &B, 2);
        let c = s.get("bob").unwrap();
        assert_eq!((c.v2_seen(), c.ed25519()), (true, None));
        assert_eq!(s.mark_v2("nobody", None), Err(TrustError::Unknown));
        // Cleared once (written at once), then nothing to clear.
        s.mark_clean();
        assert_eq!(s.clear_v2("bob"), Ok(true));
        assert_eq!(s.needs_save(), Save::Now);
        let c = s.get("bob").unwrap();
        assert_eq!((c.v2_seen(), c.ed25519()), (false, None));
        s.mark_clean();
        assert_eq!(s.clear_v2("bob"), Ok(false));
        assert_eq!(s.needs_save(), Save::Clean);
        assert_eq!(s.clear_v2("nobody"), Err(TrustError::Unknown));
        s.mark_v2("bob", Some(&A)).unwrap();
        assert_eq!(s.clear_v2("bob"), Ok(true));
        assert_eq!(s.get("bob").unwrap().ed25519(), Some(&A));
        s.mark_clean();
        assert!(s.forget("bob"));
        assert!(!s.forget("bob"));
        assert_eq!(
            s.dirty_slots()
                .map(|(i, c, l)| (i, c.is_none(), l))
                .collect::<heapless::Vec<_, 2>>(),
            [(0, true, Save::Now)]
        );
        assert!(s.is_empty());
        // Slots.
        let bob = Contact::new(name_of("bob").unwrap(), A, 1);
        s.mark_clean();
        s.set_slot(1, Some(bob.clone())).unwrap();
        assert_eq!(s.needs_save(), Save::Clean);
        assert_eq!(s.set_slot(0, Some(bob.clone())), Err(TrustError::Duplicate));
        assert_eq!(s.set_slot(2, None), Err(TrustError::NoSuchSlot));
        s.set_slot(1, Some(bob)).unwrap();
        assert_eq!(s.slot(1).unwrap().name(), "bob");
        assert_eq!(s.slot(0), None);
        s.clear();
        assert!(s.is_empty());
        assert_eq!(s.needs_save(), Save::Now);
    }

    #[test]
    fn file_round_trip_and_other_records() {
        let mut s = TrustStore::<4>::new();
        verdict(&mut s, "bob", &A, 1);
        verdict(&mut s, "карл", &B, 2);
        s.verify("bob", &A).unwrap();
        verdict(&mut s, "bob", &C, 3);
        s.mark_v2("карл", Some(&A)).unwrap();
        let mut buf = [0u8; 1024];
        let mut w = Writer::new(&mut buf, file_type::TRUST);
        s.write(&mut w);
        w.record(kind::NONCES, 1, |b| b.bytes(b"later"));
        let n = w.finish().unwrap();
        let mut t = TrustStore::<4>::new();
        let mut others = 0;
        let l = t
            .load_file(&buf[..n], file_type::TRUST, |r| {
                assert_eq!(r.body, b"later");
                others += 1;
            })
            .unwrap();
        assert_eq!((l.contacts, l.dropped, others), (2, 0, 1));
        assert_eq!(t.get("bob"), s.get("bob"));
        assert_eq!(t.get("карл"), s.get("карл"));
        assert_eq!(t.needs_save(), Save::Clean);
        // Into a smaller store: the unverified one is dropped.
        let mut small = TrustStore::<1>::new();
        let l = small
            .load_file(&buf[..n], file_type::TRUST, |_| {})
            .unwrap();
        assert_eq!((l.contacts, l.dropped), (1, 1));
        assert!(small.get("bob").is_some());
        // Single records.
        let mut one = [0u8; 512];
        let m = s.get("bob").unwrap().encode_record(&mut one).unwrap();
        let (rec, _) = crate::store::read_record(&one[..m]).unwrap();
        assert_eq!(&Contact::from_record(&rec).unwrap(), s.get("bob").unwrap());
    }

    #[test]
    fn bad_contact_records_are_refused() {
        let good = {
            let mut s = TrustStore::<1>::new();
            assert!(s.is_empty());
            verdict(&mut s, "bob", &A, 1);
            assert!(!s.is_empty());
            s.get("bob").unwrap().clone()
        };
        let mut body = [0u8; 64];
        body[0] = 0;
        body[1] = 3;
        body[2..5].copy_from_slice(b"bob");
        body[5..37].copy_from_slice(&A);
        let len = 5 + 32 + 16;
        let parse = |body: &[u8]| {
            let mut out = [0u8; 128];
            let n = crate::store::write_record(&mut out, kind::CONTACT, 1, body).unwrap();
            let (rec, _) = crate::store::read_record(&out[..n]).unwrap();
            Contact::from_record(&rec)
        };
        let mut expect = good.clone();
        expect.first_seen = 0;
        expect.last_seen = 0;
        assert_eq!(parse(&body[..len]).unwrap(), expect);
        let bad = StoreError::Malformed {
            kind: kind::CONTACT,
        };
        assert_eq!(parse(&body[..len - 1]), Err(bad));
        assert_eq!(parse(&body[..len + 1]), Err(bad));
        for flags in [0x10, 0x80, F_PENDING] {
            body[0] = flags;
            assert_eq!(parse(&body[..len]), Err(bad), "{flags:#x}");
        }
        body[0] = F_ED25519;
        assert_eq!(parse(&body[..len]), Err(bad));
        // A pending key equal to the stored key.
        let mut full = [0u8; 128];
        full[..len].copy_from_slice(&body[..len]);
        full[0] = F_VERIFIED | F_PENDING;
        full[len..len + 32].copy_from_slice(&A);
        assert_eq!(parse(&full[..len + 48]), Err(bad));
        full[len] ^= 1;
        assert!(parse(&full[..len + 48]).is_ok());
        // A pending key on a contact that is not verified: only verified contacts wait.
        for flags in [F_PENDING, F_PENDING | F_V2] {
            full[0] = flags;
            assert_eq!(parse(&full[..len + 48]), Err(bad), "{flags:#x}");
        }
        let mut out = [0u8; 128];
        let n = crate::store::write_record(&mut out, kind::CONTACT, 2, &body[..len]).unwrap();
        let (rec, _) = crate::store::read_record(&out[..n]).unwrap();
        assert_eq!(
            Contact::from_record(&rec),
            Err(StoreError::UnsupportedVersion {
                kind: kind::CONTACT,
                version: 2
            })
        );
    }

    #[test]
    fn duplicate_names_in_a_file_are_refused_and_leave_the_store_empty() {
        let mut s = TrustStore::<4>::new();
        verdict(&mut s, "bob", &A, 1);
        let mut buf = [0u8; 512];
        let mut w = Writer::new(&mut buf, file_type::TRUST);
        s.write(&mut w);
        s.write(&mut w);
        let n = w.finish().unwrap();
        let mut t = TrustStore::<4>::new();
        verdict(&mut t, "zed", &A, 1);
        assert_eq!(
            t.load_file(&buf[..n], file_type::TRUST, |_| {}),
            Err(StoreError::Duplicate {
                kind: kind::CONTACT
            })
        );
        assert!(t.is_empty());
    }
}
