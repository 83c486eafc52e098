//! Protocol v2 sessions of one client with its peers (`docs/protocol-v2.md` §5–§8),
//! in a table the caller owns: the board-sized [`Client`](crate::client::Client) holds
//! none (a board stays on v1), a desktop keeps one [`Sessions`] beside it.
//!
//! What the table does: keeps the client's own prekeys (the signed prekey and the
//! one-time prekeys it publishes, §5.1), sets up a session from a peer's `bundle` (the
//! initiator, §5.3) or from a peer's first message (the responder, deleting the
//! one-time prekey it used), seals texts (inner type `0x01`, §8) and opens what peers
//! send. Every refusal leaves the sessions as they were (the ratchet opens on copies);
//! a message with a prelude opens a **new** session for a peer only if its ephemeral
//! key is not the one the current session was set up with (§5.6), so a replayed first
//! message is refused as a replay rather than shown twice.

use heapless::{String, Vec};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::identity::Identity;
use crate::limits::MAX_NAME_BYTES;
use crate::msg::BufferTooSmall;
use crate::v2::KEY_LEN;
use crate::v2::json::{MAX_OPKS, OpkList, V2Message};
use crate::v2::ratchet::{OpenError, STATE_LEN, SealError, Session, StateError};
use crate::v2::wire::{self, Inner, InnerError};
use crate::v2::x3dh::{Bundle, PeerIdentity, PrekeyPair, SetupError};

/// The client's own prekeys: what it publishes with `prekeys` and needs to answer a
/// first message.
pub struct OwnPrekeys {
    spk: PrekeyPair,
    /// When `spk` was made (seconds since the Unix epoch, as the host tells the time);
    /// 0: not known yet (prekeys made or stored before the clock was set).
    spk_since: u64,
    /// The signed prekey `spk` replaced: first messages sent to it while it was
    /// published still open (§5.1), until the next replacement.
    prev_spk: Option<PrekeyPair>,
    opks: Vec<PrekeyPair, MAX_OPKS>,
}

/// How long a signed prekey is published before it is replaced (§5.1: 7 days, in
/// seconds); the one it replaced still opens first messages until the next
/// replacement, 7 days more.
pub const SPK_LIFETIME_S: u64 = 7 * 24 * 3600;

/// What [`OwnPrekeys::rotate_spk`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpkRotation {
    /// The signed prekey is younger than [`SPK_LIFETIME_S`]: nothing changed.
    Current,
    /// Its age was not known: it counts from now (store the prekeys again).
    Dated,
    /// A new signed prekey replaced it, and it is kept as the previous one: store the
    /// prekeys, then publish them (`prekeys`).
    Rotated,
}

impl core::fmt::Debug for OwnPrekeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OwnPrekeys")
            .field("spk", &self.spk.id())
            .field("spk_since", &self.spk_since)
            .field("prev_spk", &self.prev_spk.as_ref().map(PrekeyPair::id))
            .field("opks", &self.opks.len())
            .finish()
    }
}

impl OwnPrekeys {
    /// A signed prekey with id `spk_id` and [`MAX_OPKS`] one-time prekeys with ids
    /// `first_opk` onwards, from `rng`.
    pub fn generate(rng: &mut impl rand_core::CryptoRngCore, spk_id: u32, first_opk: u32) -> Self {
        let mut opks = Vec::new();
        for i in 0..MAX_OPKS as u32 {
            let _ = opks.push(PrekeyPair::generate(rng, first_opk.wrapping_add(i)));
        }
        Self {
            spk: PrekeyPair::generate(rng, spk_id),
            spk_since: 0,
            prev_spk: None,
            opks,
        }
    }

    /// The signed prekey.
    pub fn spk(&self) -> &PrekeyPair {
        &self.spk
    }

    /// The signed prekey the current one replaced, if any (it still opens first
    /// messages).
    pub fn prev_spk(&self) -> Option<&PrekeyPair> {
        self.prev_spk.as_ref()
    }

    /// When the signed prekey was made (seconds since the Unix epoch; 0: not known).
    pub fn spk_since(&self) -> u64 {
        self.spk_since
    }

    /// Replaces the signed prekey once it is [`SPK_LIFETIME_S`] old at `now_s`
    /// (seconds since the Unix epoch, from the host's clock), keeping the one it
    /// replaces as the previous one and dropping the one before (§5.1). The new id is
    /// the old one plus 1. A signed prekey of unknown age counts from `now_s`; a clock
    /// that went back (`now_s` before the prekey was made) replaces nothing.
    pub fn rotate_spk(
        &mut self,
        rng: &mut impl rand_core::CryptoRngCore,
        now_s: u64,
    ) -> SpkRotation {
        if self.spk_since == 0 {
            self.spk_since = now_s;
            return SpkRotation::Dated;
        }
        if now_s.saturating_sub(self.spk_since) < SPK_LIFETIME_S {
            return SpkRotation::Current;
        }
        let next = PrekeyPair::generate(rng, self.spk.id().wrapping_add(1));
        self.prev_spk = Some(core::mem::replace(&mut self.spk, next));
        self.spk_since = now_s;
        SpkRotation::Rotated
    }

    /// The one-time prekeys not used yet.
    pub fn opks(&self) -> &[PrekeyPair] {
        &self.opks
    }

    /// Longest [`OwnPrekeys::encode`] record: magic, format, the signed prekey, its
    /// date, the previous signed prekey, the count and [`MAX_OPKS`] one-time prekeys
    /// (id and secret), checksum.
    pub const RECORD_MAX: usize = 4 + 1 + 36 + 8 + 1 + 36 + 1 + MAX_OPKS * 36 + 8;

    /// The stored form (holds secrets: store it readable by the owner only):
    /// `"SGRK" || u8 format (2) || u32 spk_id || spk secret (32) || u64 spk_since ||
    /// u8 has_prev (0 or 1) || [u32 prev_id || prev secret (32)] || u8 count ||
    /// count × (u32 id || secret (32)) || SHA256(everything before)[0..8]`. Format 1
    /// (without the date and the previous prekey) is still read.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, StateError> {
        let prev_len = if self.prev_spk.is_some() { 36 } else { 0 };
        let needed = 4 + 1 + 36 + 8 + 1 + prev_len + 1 + self.opks.len() * 36 + 8;
        let dst = out
            .get_mut(..needed)
            .ok_or(StateError::BufferTooSmall { needed })?;
        let mut w = Put { out: dst, pos: 0 };
        w.put(PREKEYS_MAGIC);
        w.put(&[PREKEYS_FORMAT]);
        w.put(&self.spk.id().to_be_bytes());
        w.put(Zeroizing::new(self.spk.secret_bytes()).as_ref());
        w.put(&self.spk_since.to_be_bytes());
        match &self.prev_spk {
            Some(k) => {
                w.put(&[1]);
                w.put(&k.id().to_be_bytes());
                w.put(Zeroizing::new(k.secret_bytes()).as_ref());
            }
            None => w.put(&[0]),
        }
        w.put(&[u8::try_from(self.opks.len()).unwrap_or(0)]);
        for k in &self.opks {
            w.put(&k.id().to_be_bytes());
            w.put(Zeroizing::new(k.secret_bytes()).as_ref());
        }
        let sum = checksum(w.out.get(..w.pos).unwrap_or(&[]));
        w.put(&sum);
        Ok(needed)
    }

    /// Reads an [`OwnPrekeys::encode`] record; anything wrong is
    /// [`StateError::Corrupt`] (or `UnsupportedFormat`).
    pub fn decode(rec: &[u8]) -> Result<Self, StateError> {
        let (format, body) = check_any(rec, PREKEYS_MAGIC, &[FORMAT, PREKEYS_FORMAT])?;
        let mut r = Take { b: body };
        let spk_id = r.u32()?;
        let spk = PrekeyPair::from_secret(spk_id, &Zeroizing::new(r.key()?));
        let (spk_since, prev_spk) = if format == FORMAT {
            (0, None)
        } else {
            let since = u64::from_be_bytes(r.take::<8>()?);
            let prev = match r.byte()? {
                0 => None,
                1 => {
                    let id = r.u32()?;
                    if id == spk_id {
                        return Err(StateError::Corrupt);
                    }
                    Some(PrekeyPair::from_secret(id, &Zeroizing::new(r.key()?)))
                }
                _ => return Err(StateError::Corrupt),
            };
            (since, prev)
        };
        let count = usize::from(r.byte()?);
        if count > MAX_OPKS || r.b.len() != count * 36 {
            return Err(StateError::Corrupt);
        }
        let mut opks: Vec<PrekeyPair, MAX_OPKS> = Vec::new();
        for _ in 0..count {
            let id = r.u32()?;
            if opks.iter().any(|k| k.id() == id) {
                return Err(StateError::Corrupt);
            }
            let k = PrekeyPair::from_secret(id, &Zeroizing::new(r.key()?));
            opks.push(k).map_err(|_| StateError::Corrupt)?;
        }
        Ok(Self {
            spk,
            spk_since,
            prev_spk,
            opks,
        })
    }

    /// Adds fresh one-time prekeys after the server said only `left` remain (§5.5).
    /// The server hands out its oldest first, so the `left` newest kept here are still
    /// on the server and older ones were handed out (kept for first messages still in
    /// flight while there is room). Adds as many as there is room for, and if that is
    /// fewer than `min(8, MAX_OPKS - left)`, drops the oldest handed-out ones to make
    /// room. New ids continue after the highest one kept (or start at a random id
    /// below 2^30 when none is kept). Returns the ids added (publish those).
    pub fn top_up(
        &mut self,
        rng: &mut impl rand_core::CryptoRngCore,
        left: usize,
    ) -> core::ops::Range<u32> {
        let left = left.min(self.opks.len());
        let want = 8.min(MAX_OPKS - left);
        let mut next = match self.opks.iter().map(PrekeyPair::id).max() {
            Some(max) => max.wrapping_add(1),
            None => rng.next_u32() >> 2,
        };
        while MAX_OPKS - self.opks.len() < want {
            // The oldest (lowest id) goes first: it was handed out longest ago.
            let Some((i, _)) = self.opks.iter().enumerate().min_by_key(|(_, k)| k.id()) else {
                break;
            };
            self.opks.swap_remove(i);
        }
        let first = next;
        while !self.opks.is_full() {
            let _ = self.opks.push(PrekeyPair::generate(rng, next));
            next = next.wrapping_add(1);
        }
        first..next
    }

    /// The `prekeys` line publishing these (signed by `me`), with `id` for its `ack`.
    pub fn emit_prekeys(
        &self,
        id: u32,
        me: &Identity,
        out: &mut [u8],
    ) -> Result<usize, BufferTooSmall> {
        self.emit_prekeys_only(id, me, |_| true, out)
    }

    /// [`OwnPrekeys::emit_prekeys`] with only the one-time prekeys whose id `publish`
    /// accepts (the server keeps the ones it has: republishing one it handed out would
    /// hand it out twice). The signed prekey is always in it.
    pub fn emit_prekeys_only(
        &self,
        id: u32,
        me: &Identity,
        publish: impl Fn(u32) -> bool,
        out: &mut [u8],
    ) -> Result<usize, BufferTooSmall> {
        let mut list = [(0u32, [0u8; KEY_LEN]); MAX_OPKS];
        let mut count = 0;
        for k in self.opks.iter().filter(|k| publish(k.id())) {
            if let Some(slot) = list.get_mut(count) {
                *slot = (k.id(), *k.public());
                count += 1;
            }
        }
        let mut text = [0u8; MAX_OPKS * 56];
        let opks = OpkList::encode(list.get(..count).unwrap_or(&[]), &mut text).map_err(|_| {
            BufferTooSmall {
                needed: out.len() + 1,
            }
        })?;
        V2Message::Prekeys {
            id,
            spk_id: self.spk.id(),
            spk: *self.spk.public(),
            spk_sig: me.sign_prekey(self.spk.id(), self.spk.public()),
            opks,
        }
        .emit_line(out)
    }
}

/// One peer's session and the ephemeral key it was answered from (zeros for a session
/// we initiated).
struct Peer {
    name: String<MAX_NAME_BYTES>,
    ek: [u8; KEY_LEN],
    session: Session,
}

/// Why [`Sessions::start`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartError {
    /// The bundle's binding or signed prekey does not verify, or the agreement failed.
    Setup(SetupError),
    /// The table is full and the peer has no session to replace.
    Full,
    /// The peer's name is longer than a name can be.
    BadName,
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Setup(e) => write!(f, "the peer's prekey bundle is refused: {e}"),
            Self::Full => f.write_str("no room for another v2 session"),
            Self::BadName => f.write_str("invalid peer name"),
        }
    }
}

/// Why [`Sessions::seal_text`] failed (nothing was sent; the session is unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// No session with the peer: fetch its bundle first.
    NoSession,
    /// The text is longer than a v2 text may be.
    TooLong,
    /// A receipt lists no id or more than [`wire::MAX_RECEIPT_IDS`].
    BadReceipt,
    /// [`Sessions::seal_control`] was given a text or a receipt.
    NotControl,
    /// The ratchet refused.
    Seal(SealError),
}

impl core::fmt::Display for SendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoSession => f.write_str("no v2 session with this peer"),
            Self::TooLong => f.write_str("text too long"),
            Self::NotControl => f.write_str("not a control message (a text or a receipt)"),
            Self::BadReceipt => {
                write!(f, "a receipt lists 1 to {} messages", wire::MAX_RECEIPT_IDS)
            }
            Self::Seal(e) => write!(f, "{e}"),
        }
    }
}

/// Why a received v2 message is not shown. The sessions are unchanged, except for
/// [`BadInner`](Self::BadInner): that message authenticated (so it counts as
/// received) but carries nothing valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveError {
    /// The ratchet or the session setup refused it.
    Open(OpenError),
    /// The plaintext is not a valid inner message.
    BadInner(InnerError),
    /// A first message from a new peer, and no room for another session.
    Full,
}

impl core::fmt::Display for ReceiveError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Open(e) => write!(f, "{e}"),
            Self::BadInner(e) => write!(f, "invalid content: {e}"),
            Self::Full => f.write_str("no room for another v2 session"),
        }
    }
}

impl From<OpenError> for ReceiveError {
    fn from(e: OpenError) -> Self {
        Self::Open(e)
    }
}

/// What an opened message carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received<'o> {
    /// A text, with the sender's id.
    Text {
        /// The sender's id of the text (for receipts).
        id: u32,
        /// The text.
        text: &'o str,
    },
    /// A receipt: the peer received and showed our texts with these ids.
    Receipt(wire::ReceiptIds<'o>),
    /// A verification (SAS, §9) control message, types `0x10`–`0x14`: the host's
    /// [`crate::v2::sas::Sas`] acts on it.
    Control(Inner<'o>),
}

/// What [`Sessions::open`] returned: the content and whether it set up a new session
/// (the first from this peer, or one replacing a session the peer lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened<'o> {
    /// The content.
    pub content: Received<'o>,
    /// A session was set up by this message.
    pub new_session: bool,
    /// It replaced an existing one (the peer started over).
    pub replaced: bool,
}

/// Up to `N` peer sessions and the client's own prekeys.
pub struct Sessions<const N: usize> {
    own: OwnPrekeys,
    peers: Vec<Peer, N>,
}

impl<const N: usize> core::fmt::Debug for Sessions<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sessions")
            .field("own", &self.own)
            .field(
                "peers",
                &self
                    .peers
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<&str, N>>(),
            )
            .finish()
    }
}

impl<const N: usize> Sessions<N> {
    /// No sessions yet, with the client's prekeys.
    pub fn new(own: OwnPrekeys) -> Self {
        Self {
            own,
            peers: Vec::new(),
        }
    }

    /// The client's prekeys.
    pub fn own(&self) -> &OwnPrekeys {
        &self.own
    }

    /// The client's prekeys, to top up ([`OwnPrekeys::top_up`]).
    pub fn own_mut(&mut self) -> &mut OwnPrekeys {
        &mut self.own
    }

    /// True if a session with `peer` exists.
    pub fn has(&self, peer: &str) -> bool {
        self.find(peer).is_some()
    }

    /// The number of sessions.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// True without sessions.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The session with `peer`, to read (and store, §12.1).
    pub fn session(&self, peer: &str) -> Option<&Session> {
        self.peers
            .iter()
            .find(|p| p.name == peer)
            .map(|p| &p.session)
    }

    /// Drops the session with `peer` (a key change: the next text sets up a new one).
    pub fn forget(&mut self, peer: &str) {
        if let Some(i) = self.find(peer) {
            self.peers.swap_remove(i);
        }
    }

    /// The names of the peers with a session.
    pub fn peers(&self) -> impl Iterator<Item = &str> + '_ {
        self.peers.iter().map(|p| p.name.as_str())
    }

    /// Longest [`Sessions::encode_peer`] record.
    pub const PEER_RECORD_MAX: usize = 4 + 1 + 1 + MAX_NAME_BYTES + KEY_LEN + STATE_LEN + 8;

    /// The stored form of the session with `peer` (§12.1; holds secrets: store it
    /// readable by the owner only): `"SGRP" || u8 format (1) || u8 name length || name
    /// || the ephemeral key it was answered from (32) || the session's record
    /// (`ratchet::STATE_LEN`) || SHA256(everything before)[0..8]`. `None` without a
    /// session.
    pub fn encode_peer(&self, peer: &str, out: &mut [u8]) -> Option<Result<usize, StateError>> {
        let p = self.peers.iter().find(|p| p.name == peer)?;
        let needed = 4 + 1 + 1 + p.name.len() + KEY_LEN + STATE_LEN + 8;
        let Some(dst) = out.get_mut(..needed) else {
            return Some(Err(StateError::BufferTooSmall { needed }));
        };
        let mut w = Put { out: dst, pos: 0 };
        w.put(PEER_MAGIC);
        w.put(&[FORMAT]);
        w.put(&[u8::try_from(p.name.len()).unwrap_or(0)]);
        w.put(p.name.as_bytes());
        w.put(&p.ek);
        let at = w.pos;
        let n = match w.out.get_mut(at..) {
            Some(rest) => match p.session.encode(rest) {
                Ok(n) => n,
                Err(e) => return Some(Err(e)),
            },
            None => return Some(Err(StateError::BufferTooSmall { needed })),
        };
        w.pos += n;
        let sum = checksum(w.out.get(..w.pos).unwrap_or(&[]));
        w.put(&sum);
        Some(Ok(needed))
    }

    /// Restores a session from an [`Sessions::encode_peer`] record, replacing any
    /// with that peer; returns the peer's name. A damaged record is
    /// [`StateError::Corrupt`] and changes nothing.
    pub fn restore_peer(&mut self, rec: &[u8]) -> Result<&str, StateError> {
        let body = check(rec, PEER_MAGIC)?;
        let mut r = Take { b: body };
        let len = usize::from(r.byte()?);
        let name = r.bytes(len)?;
        let name = core::str::from_utf8(name).map_err(|_| StateError::Corrupt)?;
        if crate::msg::validate_name(name).is_err() {
            return Err(StateError::Corrupt);
        }
        let ek = r.key()?;
        if r.b.len() != STATE_LEN {
            return Err(StateError::Corrupt);
        }
        let session = Session::decode(r.b)?;
        if !self.has(name) && self.peers.is_full() {
            return Err(StateError::Corrupt);
        }
        self.put(name, ek, session)
            .map_err(|_| StateError::Corrupt)?;
        Ok(self
            .peers
            .iter()
            .find(|p| p.name == name)
            .map_or("", |p| p.name.as_str()))
    }

    fn find(&self, peer: &str) -> Option<usize> {
        self.peers.iter().position(|p| p.name == peer)
    }

    fn put(&mut self, name: &str, ek: [u8; KEY_LEN], session: Session) -> Result<bool, ()> {
        if let Some(p) = self.peers.iter_mut().find(|p| p.name == name) {
            p.ek = ek;
            p.session = session;
            return Ok(true);
        }
        let mut n = String::new();
        n.push_str(name).map_err(|_| ())?;
        self.peers
            .push(Peer {
                name: n,
                ek,
                session,
            })
            .map_err(|_| ())?;
        Ok(false)
    }

    /// Sets up a session with the peer of `bundle` as the initiator (§5.3), replacing
    /// any session with it. The bundle is verified first.
    pub fn start(
        &mut self,
        rng: &mut impl rand_core::CryptoRngCore,
        me: &Identity,
        my_name: &str,
        bundle: &Bundle<'_>,
    ) -> Result<(), StartError> {
        let name = bundle.peer.name;
        if name.len() > MAX_NAME_BYTES {
            return Err(StartError::BadName);
        }
        if !self.has(name) && self.peers.is_full() {
            return Err(StartError::Full);
        }
        let s = Session::initiate(rng, me, my_name, bundle).map_err(StartError::Setup)?;
        self.put(name, [0; KEY_LEN], s)
            .map_err(|_| StartError::Full)?;
        Ok(())
    }

    /// Seals `text` for `peer` as a `relay2` body (inner type `0x01`) into `out`.
    pub fn seal_text(
        &mut self,
        rng: &mut impl rand_core::CryptoRngCore,
        peer: &str,
        text: &str,
        out: &mut [u8],
    ) -> Result<usize, SendError> {
        let s = self.session_mut(peer)?;
        if text.len() > crate::v2::MAX_TEXT {
            return Err(SendError::TooLong);
        }
        let needed = s.sealed_len(1 + 4 + text.len());
        if out.len() < needed {
            return Err(SendError::Seal(SealError::BufferTooSmall { needed }));
        }
        let mut inner = [0u8; wire::MAX_INNER];
        let id = s.take_text_id();
        let n = Inner::Text { id, text }
            .emit(&mut inner)
            .map_err(|_| SendError::TooLong)?;
        s.seal(rng, inner.get(..n).unwrap_or(&[]), out)
            .map_err(SendError::Seal)
    }

    /// The id the next text sealed for `peer` carries (spec §8): what a receipt from
    /// `peer` names it by.
    pub fn next_text_id(&self, peer: &str) -> Option<u32> {
        self.session(peer).map(Session::next_text_id)
    }

    fn session_mut(&mut self, peer: &str) -> Result<&mut Session, SendError> {
        self.peers
            .iter_mut()
            .find(|p| p.name == peer)
            .map(|p| &mut p.session)
            .ok_or(SendError::NoSession)
    }

    /// Seals a receipt (inner type `0x02`) for `peer`'s texts `ids` (1 to
    /// [`wire::MAX_RECEIPT_IDS`]) as a `relay2` body into `out`.
    pub fn seal_receipt(
        &mut self,
        rng: &mut impl rand_core::CryptoRngCore,
        peer: &str,
        ids: &[u32],
        out: &mut [u8],
    ) -> Result<usize, SendError> {
        let s = self.session_mut(peer)?;
        let mut inner = [0u8; wire::MAX_INNER];
        let n = wire::emit_receipt(ids, &mut inner).map_err(|_| SendError::BadReceipt)?;
        s.seal(rng, inner.get(..n).unwrap_or(&[]), out)
            .map_err(SendError::Seal)
    }

    /// Seals a verification control message (SAS, §9: types `0x10`–`0x14`) for `peer`
    /// as a `relay2` body into `out`. A text or a receipt is refused with
    /// [`SendError::NotControl`] (they have [`Self::seal_text`] and
    /// [`Self::seal_receipt`]).
    pub fn seal_control(
        &mut self,
        rng: &mut impl rand_core::CryptoRngCore,
        peer: &str,
        inner: &Inner<'_>,
        out: &mut [u8],
    ) -> Result<usize, SendError> {
        if matches!(inner, Inner::Text { .. } | Inner::Receipt(_)) {
            return Err(SendError::NotControl);
        }
        let s = self.session_mut(peer)?;
        let mut buf = [0u8; wire::MAX_INNER];
        let n = inner.emit(&mut buf).map_err(|_| SendError::NotControl)?;
        s.seal(rng, buf.get(..n).unwrap_or(&[]), out)
            .map_err(SendError::Seal)
    }

    /// Opens a `relay2` body from `peer` (the directory's identity for the sender) into
    /// `out`. Nothing changes on failure.
    pub fn open<'o>(
        &mut self,
        me: &Identity,
        my_name: &str,
        peer: &PeerIdentity<'_>,
        body: &[u8],
        out: &'o mut [u8],
    ) -> Result<Opened<'o>, ReceiveError> {
        let view = wire::parse(body).map_err(OpenError::from)?;
        let prelude = view.prelude.filter(|_| !view.header.from_responder());
        let existing = self.peers.iter_mut().find(|p| p.name == peer.name);
        let (n, new_session, replaced) = match existing {
            Some(current) => match current.session.open(body, out) {
                Ok(n) => (n, false, false),
                Err(e) => {
                    // Only a first message with another ephemeral key may replace the
                    // session (§5.6); a replay of the one it came from is a replay.
                    let ek = current.ek;
                    let Some(p) = prelude.filter(|p| p.ek != ek) else {
                        return Err(e.into());
                    };
                    match self.respond(me, my_name, peer, &p, body, out) {
                        Ok(n) => (n, true, true),
                        Err(_) => return Err(e.into()),
                    }
                }
            },
            None => {
                let p = prelude.ok_or(ReceiveError::Open(if view.header.from_responder() {
                    OpenError::Reflected
                } else {
                    OpenError::UnknownPrekey
                }))?;
                if self.peers.is_full() {
                    return Err(ReceiveError::Full);
                }
                (self.respond(me, my_name, peer, &p, body, out)?, true, false)
            }
        };
        let content =
            match Inner::parse(out.get(..n).unwrap_or(&[])).map_err(ReceiveError::BadInner)? {
                Inner::Text { id, text } => Received::Text { id, text },
                Inner::Receipt(ids) => Received::Receipt(ids),
                other => Received::Control(other),
            };
        Ok(Opened {
            content,
            new_session,
            replaced,
        })
    }

    /// Answers a first message (§5.3) and stores the new session; the one-time prekey
    /// it used is deleted.
    fn respond(
        &mut self,
        me: &Identity,
        my_name: &str,
        peer: &PeerIdentity<'_>,
        prelude: &wire::Prelude,
        body: &[u8],
        out: &mut [u8],
    ) -> Result<usize, ReceiveError> {
        // The current signed prekey, or the one it replaced (§5.1).
        let spk = match &self.own.prev_spk {
            _ if prelude.spk_id == self.own.spk.id() => &self.own.spk,
            Some(prev) if prelude.spk_id == prev.id() => prev,
            _ => return Err(OpenError::UnknownPrekey.into()),
        };
        let opk_at = match prelude.opk_id {
            Some(id) => Some(
                self.own
                    .opks
                    .iter()
                    .position(|k| k.id() == id)
                    .ok_or(OpenError::UnknownPrekey)?,
            ),
            None => None,
        };
        let opk = opk_at.and_then(|i| self.own.opks.get(i));
        let (s, n) = Session::respond(me, my_name, peer, spk, opk, body, out)?;
        self.put(peer.name, prelude.ek, s)
            .map_err(|_| ReceiveError::Full)?;
        if let Some(i) = opk_at {
            self.own.opks.swap_remove(i);
        }
        Ok(n)
    }
}

const PREKEYS_MAGIC: &[u8; 4] = b"SGRK";
const PEER_MAGIC: &[u8; 4] = b"SGRP";
const FORMAT: u8 = 1;
/// The own-prekeys record's format since the signed prekey is replaced (§5.1).
const PREKEYS_FORMAT: u8 = 2;

fn checksum(bytes: &[u8]) -> [u8; 8] {
    let d = Sha256::digest(bytes);
    d.first_chunk::<8>().copied().unwrap_or([0; 8])
}

/// Checks a record's magic, format and checksum; the bytes between format and checksum.
fn check<'r>(rec: &'r [u8], magic: &[u8; 4]) -> Result<&'r [u8], StateError> {
    check_any(rec, magic, &[FORMAT]).map(|(_, body)| body)
}

/// [`check`] for a record that may be in any of `formats`: the format and the bytes
/// between it and the checksum.
fn check_any<'r>(
    rec: &'r [u8],
    magic: &[u8; 4],
    formats: &[u8],
) -> Result<(u8, &'r [u8]), StateError> {
    let (head, sum) = rec.split_last_chunk::<8>().ok_or(StateError::Corrupt)?;
    let (m, rest) = head.split_first_chunk::<4>().ok_or(StateError::Corrupt)?;
    if m != magic {
        return Err(StateError::Corrupt);
    }
    let (format, body) = rest.split_first().ok_or(StateError::Corrupt)?;
    if checksum(head) != *sum {
        return Err(StateError::Corrupt);
    }
    if !formats.contains(format) {
        return Err(StateError::UnsupportedFormat(*format));
    }
    Ok((*format, body))
}

struct Put<'o> {
    out: &'o mut [u8],
    pos: usize,
}

impl Put<'_> {
    fn put(&mut self, b: &[u8]) {
        if let Some(d) = self.out.get_mut(self.pos..self.pos + b.len()) {
            d.copy_from_slice(b);
        }
        self.pos += b.len();
    }
}

struct Take<'r> {
    b: &'r [u8],
}

impl<'r> Take<'r> {
    fn bytes(&mut self, n: usize) -> Result<&'r [u8], StateError> {
        let (h, t) = self.b.split_at_checked(n).ok_or(StateError::Corrupt)?;
        self.b = t;
        Ok(h)
    }

    fn byte(&mut self) -> Result<u8, StateError> {
        Ok(self.bytes(1)?.first().copied().unwrap_or(0))
    }

    fn u32(&mut self) -> Result<u32, StateError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes(
            b.try_into().map_err(|_| StateError::Corrupt)?,
        ))
    }

    fn key(&mut self) -> Result<[u8; KEY_LEN], StateError> {
        self.take::<KEY_LEN>()
    }

    fn take<const L: usize>(&mut self) -> Result<[u8; L], StateError> {
        self.bytes(L)?.try_into().map_err(|_| StateError::Corrupt)
    }
}
