//! Replayed and reflected v1 messages: a bounded memory of the nonces this client sent
//! to and received from each peer.
//!
//! Protocol v1 has no message counter, and the key two users share is the same in both
//! directions. A lying server can therefore deliver a relay twice (the copy decrypts),
//! or hand a user's own message back to them as the peer's (it decrypts too). Every v1
//! message carries a fresh random 96-bit nonce, so a client that remembers the nonces
//! recognises both without a byte changed on the wire:
//!
//! - a message from `peer` whose nonce was already **received** from `peer` is
//!   [`Seen::Replayed`]: the chat does not show it again and warns (rate-limited);
//! - a message from `peer` whose nonce this client **sent** to `peer` is
//!   [`Seen::Reflected`]: the chat refuses it with a warning.
//!
//! # Bounds, and what overflow means
//!
//! `NonceMemory<PEERS, WINDOW>` keeps, for each of up to `PEERS` peers, the last
//! `WINDOW` nonces sent and the last `WINDOW` received, truncated to their first
//! [`TRUNCATED`] bytes (random nonces collide there with probability 2⁻⁶⁴ per pair).
//! When a window is full the oldest nonce is forgotten: a message replayed after
//! `WINDOW` newer messages in the same direction is shown again as new, and an own
//! message reflected after `WINDOW` newer ones to that peer decrypts as the peer's.
//! When `PEERS` peers are known, the one used longest ago is forgotten whole. A peer's
//! windows cost `2 × WINDOW × 8` bytes plus its name (128 bytes) and counters: about
//! `16 × WINDOW + 150` bytes. The defaults ([`REPLAY_PEERS`], [`REPLAY_WINDOW`]) cost
//! about 5.3 KiB; the desktop keeps more.
//!
//! # Storage
//!
//! One record per peer, kind [`kind::NONCES`] (0x11), version 1, beside the contacts:
//!
//! ```text
//! offset  size   field
//! 0       1      n, peer name length (1..=128)
//! 1       n      peer name (UTF-8)
//! 1+n     4      s, number of sent nonces, u32 LE
//! 5+n     8·s    sent nonces (first 8 bytes each), oldest first
//! ...     4      r, number of received nonces, u32 LE
//! ...     8·r    received nonces, oldest first
//! ```
//!
//! A store smaller than the record keeps the newest nonces.

use heapless::String;

use crate::limits::{MAX_NAME_BYTES, NONCE_LEN, REPLAY_PEERS, REPLAY_WINDOW};
use crate::store::{Body, Cursor, Record, StoreError, Writer, kind};

/// Bytes of each nonce remembered.
pub const TRUNCATED: usize = 8;

/// What the memory says of a received nonce.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not seen before (now remembered).
    New,
    /// Already received from this peer: a copy.
    Replayed,
    /// A nonce this client sent to this peer: its own message handed back.
    Reflected,
}

fn truncate(nonce: &[u8; NONCE_LEN]) -> [u8; TRUNCATED] {
    let mut t = [0u8; TRUNCATED];
    for (d, s) in t.iter_mut().zip(nonce.iter()) {
        *d = *s;
    }
    t
}

/// The last `W` nonces of one direction, a ring.
#[derive(Debug, Clone)]
struct Window<const W: usize> {
    ring: [[u8; TRUNCATED]; W],
    len: usize,
    /// Where the next nonce goes.
    next: usize,
}

impl<const W: usize> Window<W> {
    const fn new() -> Self {
        Self {
            ring: [[0; TRUNCATED]; W],
            len: 0,
            next: 0,
        }
    }

    fn contains(&self, t: &[u8; TRUNCATED]) -> bool {
        self.ring.iter().take(self.len).any(|n| n == t)
    }

    fn push(&mut self, t: [u8; TRUNCATED]) {
        if W == 0 {
            return;
        }
        if let Some(slot) = self.ring.get_mut(self.next) {
            *slot = t;
        }
        self.next = (self.next + 1) % W;
        self.len = (self.len + 1).min(W);
    }

    /// Oldest first.
    fn iter(&self) -> impl Iterator<Item = &[u8; TRUNCATED]> + '_ {
        let start = if self.len < W { 0 } else { self.next };
        (0..self.len).filter_map(move |i| self.ring.get((start + i) % W.max(1)))
    }

    fn body(&self, b: &mut Body<'_, '_>) {
        b.u32(u32::try_from(self.len).unwrap_or(u32::MAX));
        for n in self.iter() {
            b.bytes(n);
        }
    }

    fn read(c: &mut Cursor<'_>) -> Result<Self, StoreError> {
        let count = c.u32()?;
        let mut w = Self::new();
        for _ in 0..count {
            w.push(c.array()?);
        }
        Ok(w)
    }
}

#[derive(Debug, Clone)]
struct Peer<const W: usize> {
    name: String<MAX_NAME_BYTES>,
    sent: Window<W>,
    received: Window<W>,
    used: u64,
}

/// The nonces sent to and received from up to `PEERS` peers, `WINDOW` of each per
/// peer (see the module documentation).
#[derive(Debug, Clone)]
pub struct NonceMemory<const PEERS: usize = REPLAY_PEERS, const WINDOW: usize = REPLAY_WINDOW> {
    peers: [Option<Peer<WINDOW>>; PEERS],
    dirty: [bool; PEERS],
    clock: u64,
}

impl<const P: usize, const W: usize> Default for NonceMemory<P, W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const P: usize, const W: usize> NonceMemory<P, W> {
    /// Empty.
    pub const fn new() -> Self {
        Self {
            peers: [const { None }; P],
            dirty: [false; P],
            clock: 0,
        }
    }

    /// Number of peers remembered.
    pub fn len(&self) -> usize {
        self.peers.iter().flatten().count()
    }

    /// True if no peer is remembered.
    pub fn is_empty(&self) -> bool {
        self.peers.iter().all(Option::is_none)
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.peers
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.name == name))
    }

    /// The slot of `name`, made (forgetting the peer used longest ago) if needed.
    fn slot(&mut self, name: &str) -> Option<usize> {
        self.clock = self.clock.wrapping_add(1);
        let clock = self.clock;
        let i = match self.index(name) {
            Some(i) => i,
            None => {
                let mut n = String::new();
                n.push_str(name).ok()?;
                let i = match self.peers.iter().position(Option::is_none) {
                    Some(i) => i,
                    None => self
                        .peers
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, p)| p.as_ref().map_or(0, |p| p.used))
                        .map(|(i, _)| i)?,
                };
                *self.peers.get_mut(i)? = Some(Peer {
                    name: n,
                    sent: Window::new(),
                    received: Window::new(),
                    used: clock,
                });
                i
            }
        };
        if let Some(Some(p)) = self.peers.get_mut(i) {
            p.used = clock;
        }
        Some(i)
    }

    fn peer_mut(&mut self, i: usize) -> Option<&mut Peer<W>> {
        if let Some(d) = self.dirty.get_mut(i) {
            *d = true;
        }
        self.peers.get_mut(i)?.as_mut()
    }

    /// Records a nonce sent to `peer`.
    pub fn sent(&mut self, peer: &str, nonce: &[u8; NONCE_LEN]) {
        if let Some(p) = self.slot(peer).and_then(|i| self.peer_mut(i)) {
            p.sent.push(truncate(nonce));
        }
    }

    /// Judges the nonce of a message that decrypted as from `peer`, and remembers it
    /// when it is new.
    pub fn received(&mut self, peer: &str, nonce: &[u8; NONCE_LEN]) -> Seen {
        let t = truncate(nonce);
        if let Some(p) = self.index(peer).and_then(|i| self.peers.get(i)?.as_ref()) {
            if p.sent.contains(&t) {
                return Seen::Reflected;
            }
            if p.received.contains(&t) {
                return Seen::Replayed;
            }
        }
        if let Some(p) = self.slot(peer).and_then(|i| self.peer_mut(i)) {
            p.received.push(t);
        }
        Seen::New
    }

    /// Forgets everything (and marks every slot for writing).
    pub fn clear(&mut self) {
        for (p, d) in self.peers.iter_mut().zip(self.dirty.iter_mut()) {
            if p.take().is_some() {
                *d = true;
            }
        }
    }

    /// True if something changed since [`mark_clean`](Self::mark_clean).
    pub fn needs_save(&self) -> bool {
        self.dirty.iter().any(|d| *d)
    }

    /// Slots changed since the last save (a board writes one flash item per slot);
    /// [`encode_slot`](Self::encode_slot) encodes one.
    pub fn dirty_slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.dirty
            .iter()
            .enumerate()
            .filter(|(_, d)| **d)
            .map(|(i, _)| i)
    }

    /// Records that everything was written back.
    pub fn mark_clean(&mut self) {
        self.dirty = [false; P];
    }

    /// Records that slot `i` was written back.
    pub fn mark_slot_clean(&mut self, i: usize) {
        if let Some(d) = self.dirty.get_mut(i) {
            *d = false;
        }
    }

    fn body(p: &Peer<W>, b: &mut Body<'_, '_>) {
        b.name(&p.name);
        p.sent.body(b);
        p.received.body(b);
    }

    /// Appends one record per peer to a file being written.
    pub fn write(&self, w: &mut Writer<'_>) {
        for p in self.peers.iter().flatten() {
            w.record(kind::NONCES, 1, |b| Self::body(p, b));
        }
    }

    /// Encodes slot `i` alone (for a flash map); `Ok(0)` for an empty slot.
    pub fn encode_slot(&self, i: usize, out: &mut [u8]) -> Result<usize, StoreError> {
        match self.peers.get(i).and_then(Option::as_ref) {
            Some(p) => crate::store::encode_record(out, kind::NONCES, 1, |b| Self::body(p, b)),
            None => Ok(0),
        }
    }

    /// The largest record a slot encodes to.
    pub const RECORD_MAX: usize =
        crate::store::RECORD_OVERHEAD + 1 + MAX_NAME_BYTES + 8 + 2 * W * TRUNCATED;

    /// Adds the peer of a nonce record (read from a file or a flash item), into slot
    /// `slot` if given, else the first free one (or the one used longest ago). A name
    /// already held is refused as [`StoreError::Duplicate`]. Marks nothing for writing.
    pub fn load_record(
        &mut self,
        record: &Record<'_>,
        slot: Option<usize>,
    ) -> Result<(), StoreError> {
        if record.kind != kind::NONCES {
            return Err(StoreError::Missing { kind: kind::NONCES });
        }
        record.expect_version(1)?;
        let mut c = Cursor::new(record);
        let name = c.name()?;
        let sent = Window::read(&mut c)?;
        let received = Window::read(&mut c)?;
        c.end()?;
        if self.index(&name).is_some_and(|j| Some(j) != slot) {
            return Err(StoreError::Duplicate { kind: kind::NONCES });
        }
        self.clock = self.clock.wrapping_add(1);
        let peer = Peer {
            name,
            sent,
            received,
            used: self.clock,
        };
        let i = match slot {
            Some(i) if i < P => i,
            Some(_) => return Err(StoreError::Malformed { kind: kind::NONCES }),
            None => match self.peers.iter().position(Option::is_none) {
                Some(i) => i,
                // Full: the records read first are the ones forgotten.
                None => self
                    .peers
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, p)| p.as_ref().map_or(0, |p| p.used))
                    .map(|(i, _)| i)
                    .ok_or(StoreError::Malformed { kind: kind::NONCES })?,
            },
        };
        if let Some(s) = self.peers.get_mut(i) {
            *s = Some(peer);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Reader, file_type, read_record};

    fn n(i: u8) -> [u8; NONCE_LEN] {
        let mut x = [0u8; NONCE_LEN];
        x[0] = i;
        x[11] = 0xEE;
        x
    }

    #[test]
    fn new_replayed_reflected() {
        let mut m = NonceMemory::<4, 4>::new();
        assert_eq!(m.received("bob", &n(1)), Seen::New);
        assert_eq!(m.received("bob", &n(1)), Seen::Replayed);
        // Another peer's nonce is that peer's business.
        assert_eq!(m.received("carol", &n(1)), Seen::New);
        m.sent("bob", &n(9));
        assert_eq!(m.received("bob", &n(9)), Seen::Reflected);
        assert_eq!(m.received("carol", &n(9)), Seen::New);
        assert_eq!(m.received("bob", &n(2)), Seen::New);
        assert_eq!(m.len(), 2);
        assert!(m.needs_save());
        m.mark_clean();
        assert!(!m.needs_save());
        assert_eq!(m.received("bob", &n(2)), Seen::Replayed);
        assert!(!m.needs_save(), "a refused copy changes nothing");
    }

    #[test]
    fn only_the_first_eight_bytes_count() {
        let mut m = NonceMemory::<1, 4>::new();
        let mut a = n(1);
        m.received("bob", &a);
        a[11] ^= 1;
        assert_eq!(m.received("bob", &a), Seen::Replayed);
        a[7] ^= 1;
        assert_eq!(m.received("bob", &a), Seen::New);
    }

    #[test]
    fn window_overflow_forgets_the_oldest() {
        let mut m = NonceMemory::<2, 3>::new();
        for i in 1..=4 {
            assert_eq!(m.received("bob", &n(i)), Seen::New);
        }
        // Four messages in a window of three: the first is forgotten, the others kept.
        assert_eq!(m.received("bob", &n(1)), Seen::New);
        assert_eq!(m.received("bob", &n(3)), Seen::Replayed);
        assert_eq!(m.received("bob", &n(4)), Seen::Replayed);
        for i in 10..14 {
            m.sent("bob", &n(i));
        }
        assert_eq!(m.received("bob", &n(10)), Seen::New);
        assert_eq!(m.received("bob", &n(11)), Seen::Reflected);
    }

    #[test]
    fn full_memory_forgets_the_peer_used_longest_ago() {
        let mut m = NonceMemory::<2, 4>::new();
        m.received("a", &n(1));
        m.received("b", &n(2));
        m.received("a", &n(3));
        m.received("c", &n(4));
        assert_eq!(m.len(), 2);
        assert_eq!(m.received("a", &n(1)), Seen::Replayed);
        assert_eq!(m.received("b", &n(2)), Seen::New);
    }

    #[test]
    fn clear_dirt_and_the_largest_record() {
        let mut m = NonceMemory::<2, 3>::new();
        assert!(m.is_empty());
        let long = "é".repeat(MAX_NAME_BYTES / 2);
        for i in 0..3 {
            m.sent(&long, &n(i));
            m.received(&long, &n(10 + i));
        }
        m.received("b", &n(1));
        assert!(!m.is_empty());
        let mut buf = [0u8; 1024];
        assert_eq!(
            m.encode_slot(0, &mut buf),
            Ok(NonceMemory::<2, 3>::RECORD_MAX)
        );
        m.mark_clean();
        m.received("b", &n(2));
        assert_eq!(m.dirty_slots().collect::<heapless::Vec<_, 2>>(), [1]);
        m.mark_slot_clean(1);
        assert!(!m.needs_save());
        m.clear();
        assert!(m.is_empty());
        assert_eq!(m.len(), 0);
        assert_eq!(m.dirty_slots().count(), 2, "both emptied slots are written");
        assert_eq!(m.received(&long, &n(10)), Seen::New);
    }

    #[test]
    fn zero_sizes_remember_nothing() {
        let mut m = NonceMemory::<0, 4>::new();
        m.received("a", &n(1));
        assert_eq!(m.received("a", &n(1)), Seen::New);
        let mut w = NonceMemory::<2, 0>::new();
        w.sent("a", &n(1));
        assert_eq!(w.received("a", &n(1)), Seen::New);
        assert_eq!(w.received("a", &n(1)), Seen::New);
    }

    #[test]
    fn records_round_trip_newest_kept() {
        let mut m = NonceMemory::<4, 3>::new();
        for i in 1..=5 {
            m.received("bob", &n(i));
        }
        m.sent("bob", &n(20));
        m.sent("eve", &n(30));
        let mut buf = [0u8; 2048];
        let mut w = Writer::new(&mut buf, file_type::TRUST);
        m.write(&mut w);
        let len = w.finish().unwrap();
        let mut back = NonceMemory::<4, 3>::new();
        let mut r = Reader::new(&buf[..len], file_type::TRUST).unwrap();
        while let Some(rec) = r.next().unwrap() {
            back.load_record(&rec, None).unwrap();
        }
        assert_eq!(back.len(), 2);
        assert!(!back.needs_save());
        assert_eq!(back.received("bob", &n(5)), Seen::Replayed);
        assert_eq!(back.received("bob", &n(3)), Seen::Replayed);
        assert_eq!(back.received("bob", &n(20)), Seen::Reflected);
        assert_eq!(back.received("eve", &n(30)), Seen::Reflected);
        // A smaller window keeps the newest of the record.
        let mut small = NonceMemory::<4, 1>::new();
        let mut one = [0u8; 512];
        let k = m.encode_slot(0, &mut one).unwrap();
        let (rec, _) = read_record(&one[..k]).unwrap();
        small.load_record(&rec, Some(0)).unwrap();
        assert_eq!(small.received("bob", &n(5)), Seen::Replayed);
        assert_eq!(small.received("bob", &n(4)), Seen::New);
        // Oldest first: a window of two keeps the two newest (4 and 5), not 3.
        let mut two = NonceMemory::<4, 2>::new();
        two.load_record(&rec, None).unwrap();
        assert_eq!(two.received("bob", &n(4)), Seen::Replayed);
        assert_eq!(two.received("bob", &n(5)), Seen::Replayed);
        assert_eq!(two.received("bob", &n(3)), Seen::New);
        // A window not yet full round-trips whole.
        let mut part = NonceMemory::<1, 8>::new();
        part.received("eve", &n(1));
        part.received("eve", &n(2));
        let mut pbuf = [0u8; 512];
        let k = part.encode_slot(0, &mut pbuf).unwrap();
        let (prec, _) = read_record(&pbuf[..k]).unwrap();
        let mut pback = NonceMemory::<1, 8>::new();
        pback.load_record(&prec, None).unwrap();
        assert_eq!(pback.received("eve", &n(1)), Seen::Replayed);
        assert_eq!(pback.received("eve", &n(2)), Seen::Replayed);
        // The same name twice, a wrong kind, a slot out of range are refused.
        assert!(matches!(
            small.load_record(&rec, Some(1)),
            Err(StoreError::Duplicate { .. })
        ));
        assert!(small.load_record(&rec, Some(9)).is_err());
        // A slot beyond the capacity, for a name not held: refused, not dropped.
        let mut fresh = NonceMemory::<4, 1>::new();
        assert_eq!(
            fresh.load_record(&rec, Some(4)),
            Err(StoreError::Malformed { kind: kind::NONCES })
        );
        assert!(fresh.is_empty());
        fresh.load_record(&rec, Some(3)).unwrap();
        assert_eq!(fresh.received("bob", &n(5)), Seen::Replayed);
        let wrong = Record {
            kind: kind::CONTACT,
            version: 1,
            body: rec.body,
        };
        assert!(small.load_record(&wrong, None).is_err());
        let mut torn = rec.body.to_vec_in_test();
        torn.pop();
        let torn = Record {
            kind: kind::NONCES,
            version: 1,
            body: &torn,
        };
        assert!(small.load_record(&torn, None).is_err());
        assert_eq!(m.encode_slot(3, &mut one), Ok(0));
    }

    trait ToVec {
        fn to_vec_in_test(&self) -> heapless::Vec<u8, 512>;
    }
    impl ToVec for [u8] {
        fn to_vec_in_test(&self) -> heapless::Vec<u8, 512> {
            heapless::Vec::from_slice(self).unwrap()
        }
    }
}
