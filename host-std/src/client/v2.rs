//! Protocol v2 conversations of the desktop client (`docs/protocol-v2.md` §2.3, §5–§8,
//! §11, §12.1): the session table ([`Sessions`], owned here, not by core's board-sized
//! client), the client's own prekeys published after a v2 welcome and topped up on
//! `prekeys_low`, `bundle_req` for a peer without a session (texts wait meanwhile),
//! texts sealed as `relay2` and `relay2` opened, the server's `ack`s, and every
//! session and the prekeys stored in the state directory (owner-only, atomic) after
//! each change and before the message is shown or sent.
//!
//! Everything a v2 line can go wrong with is a `[WARN]` naming the peer and the
//! reason; nothing refused is shown as a message and no typed text is dropped
//! without saying so.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64ct::{Base64, Encoding};
use seguro_core::chat::Line;
use seguro_core::chat::sessions::{OwnPrekeys, Received, Sessions, SpkRotation};
use seguro_core::client::Event;
use seguro_core::identity::{Identity, PublicIdentity};
use seguro_core::v2::json::{self as v2json, AckStatus, DirDelta, ErrorCode, V2Message};
use seguro_core::v2::sas::{Sas, SasCode, SasError, SasParties};
use seguro_core::v2::wire::{CancelReason, Inner, MAX_BODY};
use seguro_core::v2::x3dh::{PeerIdentity, binding_hash};

use super::{Delivery, DesktopChat, Printer};
use crate::state::{self, StateDir};

/// Most peer sessions kept (each about 1.8 KB).
pub const SESSIONS: usize = 64;

/// Where the v2 state lives: the state directory and the user.
#[derive(Debug, Clone)]
pub struct Place {
    dir: StateDir,
    user: String,
}

impl Place {
    /// `user`'s files under `dir`.
    pub fn new(dir: StateDir, user: &str) -> Self {
        Self {
            dir,
            user: user.to_owned(),
        }
    }

    fn prekeys(&self) -> PathBuf {
        self.dir.user_dir(&self.user).join("v2-prekeys")
    }

    fn session(&self, peer: &str) -> PathBuf {
        self.dir
            .user_dir(&self.user)
            .join(format!("{SESSION_PREFIX}{}", state::encode_name(peer)))
    }

    fn write(&self, path: &std::path::Path, data: &[u8]) -> Result<(), state::StateError> {
        let _lock = self.dir.lock(&self.user)?;
        state::write_atomic(path, data)
    }
}

const SESSION_PREFIX: &str = "v2-session.";

/// The desktop client's protocol v2 state.
pub struct V2 {
    me: Identity,
    name: String,
    sessions: Box<Sessions<SESSIONS>>,
    place: Option<Place>,
    /// One-time prekey ids not published yet.
    unpublished: HashSet<u32>,
    /// The prekeys were published on this connection.
    published: bool,
    /// The last id used for a `prekeys` or `relay2`.
    next_id: u32,
    /// Binding signatures of the directory's v2 users (to answer a first message).
    binds: HashMap<String, [u8; 64]>,
    /// Texts waiting for a peer's bundle, in order.
    waiting: HashMap<String, Vec<String>>,
    /// Bundles asked for on this connection.
    asked: HashSet<String>,
    /// `relay2`s, and v1 relays with an id (§11), sent and not acknowledged yet: id →
    /// (peer, text).
    in_flight: HashMap<u32, (String, String)>,
    /// Our `prekeys` lines not acknowledged yet.
    prekey_acks: HashSet<u32>,
    /// The protocol line last printed per peer (§2.3).
    told: HashMap<String, String>,
    /// Bundles to ask for again (the peer had published no prekeys yet: it may have
    /// just joined): attempts so far and when.
    retry: HashMap<String, (u32, Instant)>,
    /// Peers a v2 session was set up or used with since the host last looked, with
    /// their Ed25519 keys: the host remembers them in the trust store (§2.4).
    spoke: Vec<(String, [u8; 32])>,
    /// Names the last directory line listed with v2 keys: their Ed25519 keys are
    /// compared with the trust store's once core has taken the line.
    recheck: Vec<String>,
    /// Texts sent per peer, by their session's text id (§8), newest last: what a
    /// receipt names. At most [`SENT_KEPT`] per peer.
    sent: HashMap<String, VecDeque<(u32, String)>>,
    /// Ids of texts shown, per peer, whose receipt is not sent yet.
    receipts_due: HashMap<String, Vec<u32>>,
    /// When the last receipt went to each peer (at most one a second, §8).
    receipt_last: HashMap<String, Instant>,
    /// Our `relay2` receipts not acknowledged yet (a receipt the server could not
    /// deliver is not worth a warning).
    receipt_acks: HashSet<u32>,
    /// Verifications by short codes (§9) running, one per peer.
    sas: HashMap<String, Sas>,
    /// When each peer's run (by its `sid`) is cancelled if not complete (§9: 10
    /// minutes).
    sas_deadline: HashMap<String, ([u8; 16], Instant)>,
    /// The commitment of each run we started and that is still running: when both
    /// users start at once, the start with the smaller one goes on (§9).
    sas_commit: HashMap<String, [u8; 32]>,
    /// How long a run may take ([`SAS_TIMEOUT`] unless a test sets it).
    sas_timeout: Duration,
    /// SAS messages to send (made while opening a message), in order.
    control_out: Vec<(String, Inner<'static>)>,
    /// Peers whose message could not be opened because we have no session with them
    /// (ours was lost): a new session is set up and its first message says so (§8
    /// `session_lost`). Once per peer and connection.
    lost_told: HashSet<String>,
    /// Of those, the ones whose bundle is awaited.
    lost_pending: HashSet<String>,
    /// Peers an SAS run verified, with the X25519 key it verified: the host marks
    /// them verified in the trust store.
    verified: Vec<(String, [u8; 32])>,
}

/// Sent texts remembered per peer for their receipts.
const SENT_KEPT: usize = 256;
/// At most one receipt per peer per this time (§8).
const RECEIPT_EVERY: Duration = Duration::from_secs(1);
/// How long a verification by short codes may take before it is cancelled (§9).
pub const SAS_TIMEOUT: Duration = Duration::from_secs(600);

/// How often a `no_prekeys` answer is retried (a peer that just joined publishes its
/// prekeys right after its welcome), and the first delay (doubled each time).
const RETRIES: u32 = 5;
const RETRY_FIRST: Duration = Duration::from_millis(250);

impl std::fmt::Debug for V2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V2")
            .field("name", &self.name)
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

/// What a v2 line did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Not a v2 line this layer acts on: give it to core.
    No,
    /// Consumed.
    Yes,
}

impl V2 {
    /// The state of `name` with identity `me`: the prekeys and sessions stored in
    /// `place` (none yet: fresh prekeys, saved at once), or in memory only without a
    /// place. Returns what to tell the user (a damaged file, a failed save).
    pub fn load(
        me: Identity,
        name: &str,
        place: Option<Place>,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> (Self, Vec<String>) {
        let mut notes = Vec::new();
        let mut own = None;
        let mut published_before = false;
        if let Some(p) = &place {
            let path = p.prekeys();
            match state::read_private(&path, &p.user, true) {
                Ok(Some(data)) => match OwnPrekeys::decode(&data) {
                    Ok(k) => {
                        own = Some(k);
                        published_before = true;
                    }
                    Err(e) => notes.push(format!(
                        "{}: damaged protocol v2 prekeys ({e}): new ones are made and \
                         published; first messages peers sent to the old ones cannot be read",
                        path.display()
                    )),
                },
                Ok(None) => {}
                Err(e) => notes.push(format!(
                    "{e}: new protocol v2 prekeys are made and published"
                )),
            }
        }
        let own = match own {
            Some(k) => k,
            None => {
                let spk_id = rng.next_u32();
                let first = rng.next_u32() >> 2;
                OwnPrekeys::generate(rng, spk_id, first)
            }
        };
        let unpublished = if published_before {
            HashSet::new()
        } else {
            own.opks().iter().map(|k| k.id()).collect()
        };
        let mut v2 = Self {
            me,
            name: name.to_owned(),
            sessions: Box::new(Sessions::new(own)),
            place,
            unpublished,
            published: false,
            next_id: 0,
            binds: HashMap::new(),
            waiting: HashMap::new(),
            asked: HashSet::new(),
            in_flight: HashMap::new(),
            prekey_acks: HashSet::new(),
            told: HashMap::new(),
            retry: HashMap::new(),
            spoke: Vec::new(),
            recheck: Vec::new(),
            sent: HashMap::new(),
            receipts_due: HashMap::new(),
            receipt_last: HashMap::new(),
            receipt_acks: HashSet::new(),
            sas: HashMap::new(),
            sas_deadline: HashMap::new(),
            sas_commit: HashMap::new(),
            sas_timeout: SAS_TIMEOUT,
            control_out: Vec::new(),
            lost_told: HashSet::new(),
            lost_pending: HashSet::new(),
            verified: Vec::new(),
        };
        if !published_before && let Err(e) = v2.save_prekeys() {
            notes.push(e);
        }
        v2.load_sessions(&mut notes);
        (v2, notes)
    }

    fn load_sessions(&mut self, notes: &mut Vec<String>) {
        let Some(p) = self.place.clone() else {
            return;
        };
        let dir = p.dir.user_dir(&p.user);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut files: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|f| {
                f.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(SESSION_PREFIX))
            })
            .collect();
        files.sort();
        for f in files {
            let peer = f
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(SESSION_PREFIX))
                .and_then(state::decode_name)
                .unwrap_or_default();
            let why = match state::read_private(&f, &p.user, true) {
                Ok(Some(data)) => match self.sessions.restore_peer(&data) {
                    Ok(name) if name == peer => continue,
                    Ok(name) => {
                        let name = name.to_owned();
                        self.sessions.forget(&name);
                        "it names another peer".to_owned()
                    }
                    Err(e) => e.to_string(),
                },
                Ok(None) => continue,
                Err(e) => e.to_string(),
            };
            notes.push(format!(
                "{}: the stored protocol v2 session with {peer} is unusable ({why}): it is \
                 dropped; the next message sets up a new one",
                f.display()
            ));
            let _ = std::fs::remove_file(&f);
        }
    }

    /// The session table.
    pub fn sessions(&self) -> &Sessions<SESSIONS> {
        &self.sessions
    }

    /// How many texts wait for a peer's bundle.
    pub fn waiting(&self) -> usize {
        self.waiting.values().map(Vec::len).sum()
    }

    /// When [`V2::on_timer`] is due.
    pub fn timer_at(&self) -> Option<Instant> {
        let now = Instant::now();
        let receipts = self
            .receipts_due
            .keys()
            .map(|p| self.receipt_at(p).unwrap_or(now));
        let sas = self.sas_deadline.values().map(|(_, at)| *at);
        self.retry
            .values()
            .map(|(_, at)| *at)
            .chain(receipts)
            .chain(sas)
            .min()
    }

    /// How long a verification by short codes may take (tests shorten it).
    pub fn set_sas_timeout(&mut self, timeout: Duration) {
        self.sas_timeout = timeout;
    }

    /// Runs `peer`'s verification under its deadline (`run` is now the one with it).
    fn sas_begin(&mut self, peer: &str, run: Sas) {
        let deadline = Instant::now() + self.sas_timeout;
        self.sas_deadline
            .insert(peer.to_owned(), (*run.sid(), deadline));
        self.sas.insert(peer.to_owned(), run);
    }

    /// Cancels the runs past their deadline (§9, reason 4), telling the user and the peer.
    fn sas_expire(&mut self, printer: &mut dyn Printer) {
        let now = Instant::now();
        let mut due: Vec<String> = self
            .sas_deadline
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(p, _)| p.clone())
            .collect();
        due.sort();
        for peer in due {
            let Some((sid, _)) = self.sas_deadline.remove(&peer) else {
                continue;
            };
            if self.sas.get(&peer).is_none_or(|r| *r.sid() != sid) {
                continue; // finished or replaced meanwhile
            }
            self.sas.remove(&peer);
            self.control_out.push((
                peer.clone(),
                Inner::SasCancel {
                    sid,
                    reason: CancelReason::Timeout,
                },
            ));
            printer.print_about(
                &peer,
                &Line::HostWarn(&format_args!(
                    "the verification with {peer} took more than {} and stopped: it does NOT \
                     verify them (/sas {peer} starts another)",
                    Self::minutes(self.sas_timeout)
                )),
            );
        }
    }

    /// "10 minutes", "1 minute" or "5 seconds".
    fn minutes(d: Duration) -> String {
        let s = d.as_secs();
        match s {
            60 => "1 minute".into(),
            _ if s >= 60 && s.is_multiple_of(60) => format!("{} minutes", s / 60),
            1 => "1 second".into(),
            _ => format!("{} seconds", s.max(1)),
        }
    }

    /// When the next receipt to `peer` may go; `None`: now.
    fn receipt_at(&self, peer: &str) -> Option<Instant> {
        self.receipt_last.get(peer).map(|t| *t + RECEIPT_EVERY)
    }

    /// Sends the receipts that are due, each for up to 16 texts.
    fn send_receipts(
        &mut self,
        rng: &mut impl rand_core::CryptoRngCore,
        printer: &mut dyn Printer,
        wire: &mut Vec<u8>,
    ) {
        let now = Instant::now();
        let mut due: Vec<String> = self
            .receipts_due
            .keys()
            .filter(|p| self.receipt_at(p).is_none_or(|at| at <= now))
            .cloned()
            .collect();
        due.sort();
        for peer in due {
            let ids = self.receipts_due.remove(&peer).unwrap_or_default();
            for chunk in ids.chunks(seguro_core::v2::wire::MAX_RECEIPT_IDS) {
                let mut body = vec![0u8; MAX_BODY];
                let Ok(n) = self.sessions.seal_receipt(rng, &peer, chunk, &mut body) else {
                    continue; // the session is gone (dropped, replaced): nothing to say
                };
                if let Err(e) = self.save_session(&peer) {
                    printer.print(&Line::HostError(&e));
                }
                let b64 = Base64::encode_string(body.get(..n).unwrap_or(&[]));
                let id = self.id();
                emit(
                    &V2Message::Relay2 {
                        to: Some(&peer),
                        from: None,
                        id: Some(id),
                        body: &b64,
                    },
                    wire,
                );
                self.receipt_acks.insert(id);
            }
            self.receipt_last.insert(peer, now);
        }
    }

    /// Asks again for the bundles whose retry is due; sends the receipts that are due.
    pub fn on_timer(
        &mut self,
        chat: &DesktopChat,
        rng: &mut impl rand_core::CryptoRngCore,
        printer: &mut dyn Printer,
        wire: &mut Vec<u8>,
    ) {
        if chat.is_registered() {
            self.send_receipts(rng, printer, wire);
            self.sas_expire(printer);
            self.send_controls(rng, printer, wire);
            // A client connected for 7 days replaces its signed prekey meanwhile.
            if self.published && self.rotate_spk(rng, printer) {
                self.publish(printer, wire);
            }
        }
        let now = Instant::now();
        let due: Vec<String> = self
            .retry
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(p, _)| p.clone())
            .collect();
        for peer in due {
            if let Some(r) = self.retry.get_mut(&peer) {
                // Not due again until an answer reschedules it.
                r.1 = now + Duration::from_secs(3600);
            }
            if chat.is_registered() && self.waiting.contains_key(&peer) {
                self.asked.remove(&peer);
                self.ask_bundle(&peer, wire);
            } else {
                self.retry.remove(&peer);
            }
        }
    }

    /// Leaving: texts still waiting for a bundle are said to be NOT sent.
    pub fn abandon(&mut self, printer: &mut dyn Printer) {
        let mut peers: Vec<String> = self.waiting.keys().cloned().collect();
        peers.sort();
        for peer in peers {
            for text in self.waiting.remove(&peer).unwrap_or_default() {
                printer.print_about(
                    &peer,
                    &Line::HostWarn(&format_args!(
                        "message to {peer} NOT sent (no protocol v2 session could be set up \
                     before leaving): {text}"
                    )),
                );
            }
        }
    }

    /// True if the session with `peer` was set up with the keys the directory lists for
    /// both of us now (else the peer, or we, changed keys: it is of no use).
    fn session_current(&self, chat: &DesktopChat, peer: &str) -> bool {
        let Some(s) = self.sessions.session(peer) else {
            return false;
        };
        let client = chat.client();
        let Some(theirs) = client
            .key_of(peer)
            .copied()
            .zip(client.peer_ed25519(peer))
            .map(|(x, ed)| PublicIdentity { x, ed })
        else {
            return false;
        };
        let mine = self.me.public_keys();
        let b = s.binding();
        [
            binding_hash(&self.name, &mine, peer, &theirs),
            binding_hash(peer, &theirs, &self.name, &mine),
        ]
        .iter()
        .any(|h| h.as_ref().is_ok_and(|h| h == b))
    }

    fn forget(&mut self, peer: &str) {
        self.sessions.forget(peer);
        if let Some(p) = &self.place {
            let _ = std::fs::remove_file(p.session(peer));
        }
    }

    /// A connection is up: prekeys are published again after its welcome, bundles
    /// asked for again.
    pub fn connected(&mut self) {
        self.published = false;
        self.asked.clear();
    }

    /// The connection ended: relays not acknowledged are reported as uncertain.
    pub fn disconnected(&mut self, printer: &mut dyn Printer) {
        let mut lost: Vec<(u32, (String, String))> = self.in_flight.drain().collect();
        lost.sort_by_key(|(id, _)| *id);
        for (_, (peer, text)) in lost {
            printer.print_about(
                &peer,
                &Line::HostWarn(&format_args!(
                    "the connection ended before the server confirmed your message to {peer}: \
                 it may NOT have been delivered: {text}"
                )),
            );
        }
        self.prekey_acks.clear();
        self.receipt_acks.clear();
        // Receipts not sent by now are not sent: the texts were shown all the same.
        self.receipts_due.clear();
        self.asked.clear();
        self.lost_told.clear();
        self.lost_pending.clear();
    }

    /// A v1 relay of `text` to `peer` goes out with an id (§11): its `ack` is reported
    /// as a v2 message's is (forwarded, or the peer was not connected). Returns the id.
    pub fn v1_relay_sent(&mut self, peer: &str, text: &str) -> u32 {
        let id = self.id();
        self.in_flight
            .insert(id, (peer.to_owned(), text.to_owned()));
        id
    }

    fn id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    /// §5.1: replaces the signed prekey once it is 7 days old, keeping the one it
    /// replaces for first messages still on their way; stored before it is published.
    /// True if a new one must be published (`prekeys`).
    fn rotate_spk(
        &mut self,
        rng: &mut impl rand_core::CryptoRngCore,
        printer: &mut dyn Printer,
    ) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if now == 0 {
            return false; // no clock: the prekey's age cannot be told
        }
        match self.sessions.own_mut().rotate_spk(rng, now) {
            SpkRotation::Current => false,
            SpkRotation::Dated => {
                if let Err(e) = self.save_prekeys() {
                    printer.print(&Line::HostError(&e));
                }
                false
            }
            SpkRotation::Rotated => match self.save_prekeys() {
                Ok(()) => true,
                Err(e) => {
                    // The server keeps the old one, which still opens first messages.
                    printer.print(&Line::HostError(&format_args!(
                        "{e}: the new signed prekey is not published"
                    )));
                    false
                }
            },
        }
    }

    fn save_prekeys(&self) -> Result<(), String> {
        let Some(p) = &self.place else {
            return Ok(());
        };
        let mut rec = vec![0u8; OwnPrekeys::RECORD_MAX];
        let n = self
            .sessions
            .own()
            .encode(&mut rec)
            .map_err(|e| format!("cannot store the protocol v2 prekeys: {e}"))?;
        let r = p.write(&p.prekeys(), rec.get(..n).unwrap_or(&[]));
        rec.fill(0);
        r.map_err(|e| format!("cannot store the protocol v2 prekeys: {e}"))
    }

    fn save_session(&self, peer: &str) -> Result<(), String> {
        let Some(p) = &self.place else {
            return Ok(());
        };
        let mut rec = vec![0u8; Sessions::<SESSIONS>::PEER_RECORD_MAX];
        let r = match self.sessions.encode_peer(peer, &mut rec) {
            Some(Ok(n)) => p.write(&p.session(peer), rec.get(..n).unwrap_or(&[])),
            Some(Err(e)) => {
                rec.fill(0);
                return Err(format!(
                    "cannot store the protocol v2 session with {peer}: {e}"
                ));
            }
            None => return Ok(()),
        };
        rec.fill(0);
        r.map_err(|e| format!("cannot store the protocol v2 session with {peer}: {e}"))
    }

    /// Which protocol the conversation with `peer` uses now (§2.3), as the status bar
    /// and the conversation line say it.
    pub fn protocol(&self, chat: &DesktopChat, peer: &str) -> &'static str {
        let client = chat.client();
        match client.server_v2() {
            Some(false) => "v1 (server speaks v1 only)",
            Some(true) if self.uses_v2(chat, peer) => "v2",
            Some(true) if client.key_of(peer).is_some() => "v1 (peer speaks v1)",
            _ if self.sessions.has(peer) => "v2",
            _ => "v1",
        }
    }

    /// The conversation line, if it changed (§2.3): `protocol v2`, or `v1` with the
    /// reason.
    /// `v1_message`: a v1 message from `peer` is about to be shown.
    pub fn tell_protocol(
        &mut self,
        chat: &DesktopChat,
        peer: &str,
        v1_message: bool,
        printer: &mut dyn Printer,
    ) {
        if peer.is_empty() || peer == self.name {
            return;
        }
        let client = chat.client();
        let now = match client.server_v2() {
            _ if v1_message && self.uses_v2(chat, peer) => {
                format!("protocol v1 ({peer} sent this message with v1)")
            }
            _ if self.uses_v2(chat, peer) => "protocol v2".to_owned(),
            Some(false) => "protocol v1 (this server speaks v1 only)".to_owned(),
            _ => format!("protocol v1 ({peer}'s client speaks v1)"),
        };
        if self.told.get(peer) != Some(&now) {
            printer.print_about(
                peer,
                &Line::HostInfo(&format_args!("conversation with {peer}: {now}")),
            );
            self.told.insert(peer.to_owned(), now);
        }
    }

    /// True if `peer` used protocol v2 with us: a v2 session is stored, or the trust
    /// store remembers it (the session file may have been lost).
    pub fn v2_seen(&self, chat: &DesktopChat, peer: &str) -> bool {
        self.sessions.has(peer) || chat.memory().v2_seen(peer)
    }

    /// Every contact protocol v2 was used with (a stored session or the trust store's
    /// mark), by name.
    pub fn v2_contacts(&self, chat: &DesktopChat) -> Vec<String> {
        let mut names: Vec<String> = chat
            .memory()
            .store()
            .iter()
            .filter(|c| c.v2_seen())
            .map(|c| c.name().to_owned())
            .chain(self.sessions.peers().map(str::to_owned))
            .filter(|n| *n != self.name)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// §2.4: `peer` used v2 before ([`Self::v2_seen`]) but the directory or the server
    /// now offers only v1: no silent fall-back.
    pub fn downgraded(&self, chat: &DesktopChat, peer: &str) -> bool {
        peer != self.name && self.v2_seen(chat, peer) && !self.uses_v2(chat, peer)
    }

    /// The peers v2 was used with since the last call, with their Ed25519 keys, for
    /// the trust store.
    pub fn take_spoke(&mut self) -> Vec<(String, [u8; 32])> {
        std::mem::take(&mut self.spoke)
    }

    fn spoke_with(&mut self, chat: &DesktopChat, peer: &str) {
        if let Some(ed) = chat.client().peer_ed25519(peer)
            && !chat.memory().v2_seen(peer)
            && !self.spoke.iter().any(|(p, _)| p == peer)
        {
            self.spoke.push((peer.to_owned(), ed));
        }
    }

    /// The §2.4 warning for `peer`.
    pub fn downgrade_warning(peer: &str) -> String {
        format!(
            "{peer} used protocol v2 before; this connection offers only v1 — the server \
             may be downgrading you. /accept-v1 {peer} to send with v1 anyway"
        )
    }

    /// `/accept-v1 <peer> [yes]` (§2.4): without `yes`, what it does; with it, the v2
    /// session with `peer` is dropped so v1 may be used (a later v2 offer sets up a
    /// new session).
    pub fn accept_v1(
        &mut self,
        chat: &mut DesktopChat,
        peer: &str,
        confirmed: bool,
        printer: &mut dyn Printer,
    ) {
        if !self.v2_seen(chat, peer) {
            printer.print_about(
                peer,
                &Line::HostInfo(&format_args!(
                    "no protocol v2 session with {peer}: nothing to accept"
                )),
            );
        } else if !confirmed {
            printer.print_about(
                peer,
                &Line::HostWarn(&format_args!(
                    "this drops the protocol v2 session with {peer}, and messages with them \
                 may go with v1 (no forward secrecy; the server could replay or reflect \
                 them). Type /accept-v1 {peer} yes to confirm"
                )),
            );
        } else {
            self.forget(peer);
            chat.memory_mut().clear_v2(peer);
            self.told.remove(peer);
            printer.print_about(
                peer,
                &Line::HostInfo(&format_args!(
                    "the protocol v2 session with {peer} is dropped: v1 is accepted with them \
                 until v2 is offered again"
                )),
            );
        }
    }

    /// True if messages to `peer` go as v2 (§2.3).
    pub fn uses_v2(&self, chat: &DesktopChat, peer: &str) -> bool {
        peer != self.name && chat.client().peer_v2(peer)
    }

    /// After each server line: publishes the prekeys once the v2 welcome came.
    pub fn after_line(
        &mut self,
        chat: &DesktopChat,
        printer: &mut dyn Printer,
        wire: &mut Vec<u8>,
    ) {
        self.check_signing_keys(chat, printer);
        if self.published || !chat.is_registered() || chat.client().server_v2() != Some(true) {
            return;
        }
        self.published = true;
        // A signed prekey 7 days old is replaced before it is published again.
        self.rotate_spk(&mut rand_core::OsRng, printer);
        self.publish(printer, wire);
        // Texts that waited for a bundle across a reconnection: ask again.
        let mut peers: Vec<String> = self.waiting.keys().cloned().collect();
        peers.sort();
        for peer in peers {
            self.ask_bundle(&peer, wire);
        }
    }

    /// §3.3: a directory that lists a known X25519 key with another Ed25519 key than
    /// the one v2 was used with is reported loudly, at every sighting.
    fn check_signing_keys(&mut self, chat: &DesktopChat, printer: &mut dyn Printer) {
        let client = chat.client();
        for peer in std::mem::take(&mut self.recheck) {
            let (Some(x), Some(ed)) = (client.key_of(&peer), client.peer_ed25519(&peer)) else {
                continue;
            };
            let Some(c) = chat.memory().store().get(&peer) else {
                continue;
            };
            if c.key() == x && c.ed25519().is_some_and(|k| *k != ed) {
                printer.print_about(
                    &peer,
                    &Line::HostWarn(&format_args!(
                        "the server lists {peer} with another protocol v2 signing key (Ed25519) \
                     than the one {peer} used before, with the same X25519 key (the \
                     fingerprint): the server may be substituting it; sessions set up with \
                     it fail to authenticate"
                    )),
                );
            }
        }
    }

    /// Sends the signed prekey and the one-time prekeys not published yet.
    fn publish(&mut self, printer: &mut dyn Printer, wire: &mut Vec<u8>) {
        let id = self.id();
        let mut out = vec![0u8; 4096];
        let unpublished = &self.unpublished;
        match self.sessions.own().emit_prekeys_only(
            id,
            &self.me,
            |k| unpublished.contains(&k),
            &mut out,
        ) {
            Ok(n) => {
                wire.extend_from_slice(out.get(..n).unwrap_or(&[]));
                self.unpublished.clear();
                self.prekey_acks.insert(id);
            }
            Err(e) => printer.print(&Line::HostError(&format_args!(
                "cannot publish the protocol v2 prekeys: {e}"
            ))),
        }
    }

    fn ask_bundle(&mut self, peer: &str, wire: &mut Vec<u8>) {
        if !self.asked.insert(peer.to_owned()) {
            return;
        }
        emit(&V2Message::BundleReq { user: peer }, wire);
    }

    /// Sends `text` to `peer` (who [`V2::uses_v2`]): sealed at once with a session, or
    /// kept until the peer's bundle arrives. True if sent now, false if it waits.
    pub fn send(
        &mut self,
        chat: &DesktopChat,
        peer: &str,
        text: &str,
        rng: &mut impl rand_core::CryptoRngCore,
        printer: &mut dyn Printer,
        wire: &mut Vec<u8>,
    ) -> bool {
        self.tell_protocol(chat, peer, false, printer);
        if self.sessions.has(peer) && !self.session_current(chat, peer) {
            self.forget(peer);
            printer.print_about(
                peer,
                &Line::HostInfo(&format_args!(
                    "the keys of {peer} (or ours) changed since the protocol v2 session was set \
                 up: a new one is set up"
                )),
            );
        }
        if !self.sessions.has(peer) {
            let first = !self.waiting.contains_key(peer);
            self.waiting
                .entry(peer.to_owned())
                .or_default()
                .push(text.to_owned());
            if first {
                printer.print_about(
                    peer,
                    &Line::HostInfo(&format_args!(
                        "setting up a protocol v2 session with {peer} (asking the server for \
                     their prekeys): the message goes out then"
                    )),
                );
            }
            if chat.is_registered() {
                self.ask_bundle(peer, wire);
            }
            return false;
        }
        self.seal_and_send(peer, text, rng, printer, wire)
    }

    fn seal_and_send(
        &mut self,
        peer: &str,
        text: &str,
        rng: &mut impl rand_core::CryptoRngCore,
        printer: &mut dyn Printer,
        wire: &mut Vec<u8>,
    ) -> bool {
        let mut body = vec![0u8; MAX_BODY];
        let text_id = self.sessions.next_text_id(peer);
        let n = match self.sessions.seal_text(rng, peer, text, &mut body) {
            Ok(n) => n,
            Err(e) => {
                printer.print_about(
                    peer,
                    &Line::HostWarn(&format_args!(
                        "message to {peer} NOT sent: {e} (protocol v2 texts hold up to {} \
                     bytes): {text}",
                        seguro_core::v2::MAX_TEXT
                    )),
                );
                return false;
            }
        };
        // Stored before it leaves: a restart never reuses a message key.
        if let Err(e) = self.save_session(peer) {
            printer.print(&Line::HostError(&e));
        }
        let b64 = Base64::encode_string(body.get(..n).unwrap_or(&[]));
        let id = self.id();
        emit(
            &V2Message::Relay2 {
                to: Some(peer),
                from: None,
                id: Some(id),
                body: &b64,
            },
            wire,
        );
        self.in_flight
            .insert(id, (peer.to_owned(), text.to_owned()));
        if let Some(text_id) = text_id {
            let sent = self.sent.entry(peer.to_owned()).or_default();
            if sent.len() >= SENT_KEPT {
                sent.pop_front();
            }
            sent.push_back((text_id, text.to_owned()));
        }
        true
    }

    /// Records what a directory line says about v2 users (their binding signatures,
    /// needed to answer a first message). Never consumes the line.
    /// Returns whether `line` is a `welcome` or `users` line with a v2 section.
    fn observe_directory(&mut self, line: &[u8], scratch: &mut [u8]) -> bool {
        // Cheap first: every directory has a "users" key (a relay's body is base64).
        if !line.windows(7).any(|w| w == b"\"users\"") {
            return false;
        }
        let Ok(Some(d)) = v2json::parse_directory_v2(line, scratch) else {
            return false;
        };
        self.binds.clear();
        for (name, v) in d.users.iter() {
            self.binds.insert(name.to_owned(), v.bind);
            self.recheck.push(name.to_owned());
        }
        true
    }

    /// A line from the server: the v2 messages this layer owns are handled here
    /// ([`Handled::Yes`]); the rest goes to core.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_line(
        &mut self,
        chat: &DesktopChat,
        line: &[u8],
        scratch: &mut [u8],
        rng: &mut impl rand_core::CryptoRngCore,
        printer: &mut dyn Printer,
        wire: &mut Vec<u8>,
    ) -> Handled {
        // Any JSON spacing or key order: a directory is known by its parse.
        if self.observe_directory(line, scratch) {
            return Handled::No;
        }
        let m = match v2json::parse(line, scratch) {
            Ok(m) => m,
            Err(_) => return Handled::No,
        };
        match m {
            V2Message::Dir {
                delta: DirDelta::Join(e) | DirDelta::Key(e),
                ..
            } => {
                match e.v2 {
                    Some(v) => {
                        self.recheck.push(e.user.to_owned());
                        self.binds.insert(e.user.to_owned(), v.bind)
                    }
                    None => self.binds.remove(e.user),
                };
                Handled::No
            }
            V2Message::Relay2 {
                from: Some(from),
                body,
                ..
            } => {
                let from = from.to_owned();
                let body = body.to_owned();
                self.receive(chat, &from, &body, printer);
                if self.lost_pending.contains(&from) {
                    self.ask_bundle(&from, wire);
                }
                self.send_receipts(rng, printer, wire);
                self.send_controls(rng, printer, wire);
                Handled::Yes
            }
            V2Message::Relay2 { from: None, .. } => {
                printer.print(&Line::HostWarn(
                    &"the server sent a protocol v2 message without a sender: not shown",
                ));
                Handled::Yes
            }
            V2Message::Bundle(b) => {
                let name = b.peer.name.to_owned();
                let verdict = self.check_bundle(chat, &b);
                let started = match verdict {
                    Err(why) => Err(why),
                    Ok(()) => self
                        .sessions
                        .start(rng, &self.me, &self.name, &b)
                        .map_err(|e| e.to_string()),
                };
                self.bundle_done(chat, &name, started, rng, printer, wire);
                Handled::Yes
            }
            V2Message::Error {
                code: code @ (ErrorCode::NoPrekeys | ErrorCode::UnknownUser),
                user: Some(user),
                text,
            } if self.asked.contains(user) => {
                let user = user.to_owned();
                let tries = self.retry.get(&user).map_or(0, |r| r.0);
                if code == ErrorCode::NoPrekeys && tries < RETRIES {
                    // It may have just joined: its prekeys come right after its welcome.
                    let delay = RETRY_FIRST * 2u32.pow(tries);
                    self.retry.insert(user, (tries + 1, Instant::now() + delay));
                    return Handled::Yes;
                }
                let why = match code {
                    ErrorCode::NoPrekeys => format!("{user} has published no prekeys"),
                    _ => format!("the server does not know {user} ({text})"),
                };
                self.bundle_done(chat, &user, Err(why), rng, printer, wire);
                Handled::Yes
            }
            V2Message::Ack { id, status } => {
                self.ack(id, status, printer);
                Handled::Yes
            }
            V2Message::PrekeysLow { left } => {
                let added = self
                    .sessions
                    .own_mut()
                    .top_up(rng, usize::try_from(left).unwrap_or(usize::MAX));
                // Stored before they are published: a peer may use them at once.
                match self.save_prekeys() {
                    Ok(()) => {
                        self.unpublished.extend(added);
                        self.publish(printer, wire);
                    }
                    Err(e) => printer.print(&Line::HostError(&format_args!(
                        "{e}: the new prekeys are not published"
                    ))),
                }
                Handled::Yes
            }
            _ => Handled::No,
        }
    }

    /// The bundle must be the directory's v2 entry for that name (the server could
    /// substitute keys in a bundle as in a directory).
    fn check_bundle(
        &self,
        chat: &DesktopChat,
        b: &seguro_core::v2::x3dh::Bundle<'_>,
    ) -> Result<(), String> {
        let name = b.peer.name;
        if !self.asked.contains(name) {
            return Err("the server sent a bundle nobody asked for".to_owned());
        }
        let client = chat.client();
        let listed = client.key_of(name).copied().zip(client.peer_ed25519(name));
        match listed {
            Some((x, ed)) if x == b.peer.keys.x && ed == b.peer.keys.ed => Ok(()),
            Some(_) => Err(format!(
                "the server's prekey bundle for {name} has other keys than its directory: \
                 refused (the server may be substituting keys)"
            )),
            None => Err(format!(
                "{name} is not listed as a protocol v2 user any more"
            )),
        }
    }

    /// A bundle answered (a session started) or refused: the waiting texts go out, or
    /// are reported as not sent.
    fn bundle_done(
        &mut self,
        chat: &DesktopChat,
        peer: &str,
        started: Result<(), String>,
        rng: &mut impl rand_core::CryptoRngCore,
        printer: &mut dyn Printer,
        wire: &mut Vec<u8>,
    ) {
        let waiting = self.waiting.remove(peer).unwrap_or_default();
        self.retry.remove(peer);
        match started {
            Ok(()) => {
                if let Err(e) = self.save_session(peer) {
                    printer.print(&Line::HostError(&e));
                }
                self.spoke_with(chat, peer);
                self.tell_protocol(chat, peer, false, printer);
                if self.lost_pending.remove(peer) {
                    // The new session's first message tells the peer why it is new.
                    self.control_out.push((peer.to_owned(), Inner::SessionLost));
                    self.send_controls(rng, printer, wire);
                }
                for text in waiting {
                    if self.seal_and_send(peer, &text, rng, printer, wire) {
                        printer.sent_from_outbox(Some(peer), &text);
                    }
                }
            }
            Err(why) => {
                self.lost_pending.remove(peer);
                self.asked.remove(peer);
                printer.print_about(
                    peer,
                    &Line::HostWarn(&format_args!("no protocol v2 session with {peer}: {why}")),
                );
                for text in waiting {
                    printer.print_about(
                        peer,
                        &Line::HostWarn(&format_args!(
                            "message to {peer} NOT sent (protocol v2 is required with a v2 \
                         peer and no session could be set up): {text}"
                        )),
                    );
                    printer.dropped_from_outbox(Some(peer), &text);
                }
            }
        }
    }

    fn ack(&mut self, id: u32, status: AckStatus, printer: &mut dyn Printer) {
        if self.receipt_acks.remove(&id) {
            return;
        }
        if self.prekey_acks.remove(&id) {
            if status == AckStatus::Refused {
                printer.print(&Line::HostWarn(
                    &"the server refused our protocol v2 prekeys: peers cannot set up new \
                      sessions with us",
                ));
            }
            return;
        }
        let Some((peer, text)) = self.in_flight.remove(&id) else {
            return;
        };
        match status {
            AckStatus::NotConnected => printer.print_about(
                &peer,
                &Line::HostWarn(&format_args!(
                    "{peer} is not connected: your message was NOT delivered (the server keeps \
                 no mailbox; send it again when they are back): {text}"
                )),
            ),
            AckStatus::Forwarded => printer.delivered(&peer, &text, Delivery::Forwarded),
            _ => {}
        }
    }

    fn receive(&mut self, chat: &DesktopChat, from: &str, body: &str, printer: &mut dyn Printer) {
        let warn = |printer: &mut dyn Printer, why: &dyn std::fmt::Display| {
            printer.print_about(
                from,
                &Line::HostWarn(&format_args!(
                    "a protocol v2 message from {from} was refused: {why}; not shown"
                )),
            );
        };
        if body.len() > MAX_BODY.div_ceil(3) * 4 {
            return warn(printer, &"it is too long");
        }
        let Ok(body) = Base64::decode_vec(body) else {
            return warn(printer, &"its body is not base64");
        };
        let client = chat.client();
        let peer = match (
            client.key_of(from).copied(),
            client.peer_ed25519(from),
            self.binds.get(from),
        ) {
            (Some(x), Some(ed), Some(bind)) if client.peer_v2(from) => PeerIdentity {
                name: from,
                keys: PublicIdentity { x, ed },
                bind: *bind,
            },
            // Not listed as a v2 user now (a downgrading directory, §2.4), but a
            // session exists: the session authenticates the message itself. Without a
            // binding no new session can be set up (the responder checks it).
            (Some(x), _, _) if self.sessions.has(from) => PeerIdentity {
                name: from,
                keys: PublicIdentity { x, ed: [0; 32] },
                bind: [0; 64],
            },
            _ => return warn(printer, &"the sender is not listed as a protocol v2 user"),
        };
        let mut out = vec![0u8; seguro_core::v2::wire::MAX_INNER];
        let had = self.sessions.has(from);
        let opened = self
            .sessions
            .open(&self.me, &self.name, &peer, &body, &mut out);
        let mut receipt: Vec<u32> = Vec::new();
        let mut control: Option<Inner<'static>> = None;
        let (text, new_session, replaced) = match opened {
            Ok(o) => (
                match o.content {
                    Received::Text { id, text } => Some((id, text.to_owned())),
                    Received::Receipt(ids) => {
                        receipt.extend(ids.iter());
                        None
                    }
                    Received::Control(inner) => {
                        control = owned_control(inner);
                        None
                    }
                },
                o.new_session,
                o.replaced,
            ),
            Err(e) => {
                use seguro_core::chat::sessions::ReceiveError;
                use seguro_core::v2::ratchet::OpenError;
                // No session with them here (ours was lost) and none to open from this
                // message: ask their client to start over, once per connection.
                // Without any session here, a message without a prelude (flagged as
                // from either side) cannot be a reflection of ours either: ours is lost.
                let no_session = !had
                    && matches!(
                        e,
                        ReceiveError::Open(OpenError::UnknownPrekey | OpenError::Reflected)
                    );
                if no_session {
                    warn(
                        printer,
                        &format_args!("this client has no protocol v2 session with {from}"),
                    );
                }
                if no_session && client.peer_v2(from) && self.lost_told.insert(from.to_owned()) {
                    self.lost_pending.insert(from.to_owned());
                    printer.print_about(
                        from,
                        &Line::HostInfo(&format_args!(
                            "this client has no protocol v2 session with {from} (it was lost): \
                             setting up a new one and telling {from}'s client, so that {from} \
                             knows what was not read"
                        )),
                    );
                    return;
                }
                if no_session {
                    return;
                }
                let bad_inner = matches!(e, ReceiveError::BadInner(_));
                if bad_inner && let Err(e) = self.save_session(from) {
                    printer.print(&Line::HostError(&e));
                }
                return warn(printer, &e);
            }
        };
        // Stored before it is shown: a restart does not open it twice.
        if let Err(e) = self.save_session(from) {
            printer.print(&Line::HostError(&e));
        }
        if new_session && let Err(e) = self.save_prekeys() {
            printer.print(&Line::HostError(&e));
        }
        if replaced || (new_session && had) {
            printer.print_about(
                from,
                &Line::HostWarn(&format_args!(
                    "{from} started a new protocol v2 session (their client lost its state, or \
                 was restored from a backup)"
                )),
            );
        }
        // A new session numbers its texts from 1 again.
        let old_sent = if replaced {
            self.sent.remove(from)
        } else {
            None
        };
        if control == Some(Inner::SessionLost) {
            control = None;
            self.peer_lost_session(from, old_sent.unwrap_or_default(), printer);
        }
        self.spoke_with(chat, from);
        self.tell_protocol(chat, from, false, printer);
        if let Some((id, text)) = text {
            printer.print(&Line::Received(Event::Message { from, text: &text }));
            if chat.client().peer_takes_receipts(from) {
                self.receipts_due
                    .entry(from.to_owned())
                    .or_default()
                    .push(id);
            }
        }
        if let Some(inner) = control {
            self.on_control(chat, from, inner, printer);
        }
        for id in receipt {
            let sent = self.sent.get_mut(from);
            let Some(at) = sent
                .as_ref()
                .and_then(|s| s.iter().position(|(i, _)| *i == id))
            else {
                continue; // sent before a restart, or long ago: nothing to mark
            };
            if let Some((_, text)) = sent.and_then(|s| s.remove(at)) {
                printer.delivered(from, &text, Delivery::Received);
            }
        }
    }
}

impl V2 {
    /// `peer` had lost its session with us (§8 `session_lost`): what we sent in the old
    /// one and saw no receipt for may not have been read; the user is told which.
    fn peer_lost_session(
        &mut self,
        peer: &str,
        old_sent: VecDeque<(u32, String)>,
        printer: &mut dyn Printer,
    ) {
        const SHOWN: usize = 5;
        let texts: Vec<&str> = old_sent.iter().map(|(_, t)| t.as_str()).collect();
        let what = if texts.is_empty() {
            "nothing you sent is known to be unread".to_owned()
        } else {
            let start = texts.len().saturating_sub(SHOWN);
            let listed: Vec<String> = texts[start..].iter().map(|t| format!("{t:?}")).collect();
            let more = if start > 0 {
                format!("{start} earlier and ")
            } else {
                String::new()
            };
            format!(
                "{more}{} without a receipt from {peer} may NOT have been read: {} (send again \
                 what matters)",
                if start > 0 || texts.len() > 1 {
                    "these"
                } else {
                    "this one"
                },
                listed.join(", ")
            )
        };
        printer.print_about(
            peer,
            &Line::HostWarn(&format_args!(
                "{peer}'s client lost its protocol v2 session with you and started a new one; \
                 {what}"
            )),
        );
    }
}

fn emit(m: &V2Message<'_>, wire: &mut Vec<u8>) {
    let mut out = vec![0u8; m.line_len()];
    if let Ok(n) = m.emit_line(&mut out) {
        wire.extend_from_slice(out.get(..n).unwrap_or(&[]));
    }
}

/// Verification by short authentication strings (§9): `/sas <user>` starts a run, the
/// codes appear on both screens, `/sas <user> yes` or `no` says whether they match.
impl V2 {
    /// Which peers an SAS run verified since the last call, with the X25519 key
    /// verified: for the trust store.
    pub fn take_verified(&mut self) -> Vec<(String, [u8; 32])> {
        std::mem::take(&mut self.verified)
    }

    /// The SAS parties of a run between `me` (`mine`) and `peer`: the starter is `a`.
    fn parties<'a>(
        chat: &DesktopChat,
        me: &'a str,
        mine: PublicIdentity,
        peer: &'a str,
        starter: bool,
    ) -> Option<SasParties<'a>> {
        let client = chat.client();
        let theirs = PublicIdentity {
            x: *client.key_of(peer)?,
            ed: client.peer_ed25519(peer)?,
        };
        Some(if starter {
            SasParties {
                a_name: me,
                a: mine,
                b_name: peer,
                b: theirs,
            }
        } else {
            SasParties {
                a_name: peer,
                a: theirs,
                b_name: me,
                b: mine,
            }
        })
    }

    /// `/sas <peer>` (start), `/sas <peer> yes` (the codes match), `/sas <peer> no`
    /// (they differ, or stop).
    pub fn sas_command(
        &mut self,
        chat: &DesktopChat,
        peer: &str,
        answer: Option<bool>,
        rng: &mut impl rand_core::CryptoRngCore,
        printer: &mut dyn Printer,
        wire: &mut Vec<u8>,
    ) {
        match answer {
            None => {
                if peer == self.name {
                    printer.print_about(peer, &Line::HostError(&"you cannot verify yourself"));
                    return;
                }
                if !self.uses_v2(chat, peer) {
                    printer.print_about(
                        peer,
                        &Line::HostError(&format_args!(
                            "short codes need protocol v2 with {peer}, and {peer} is not listed \
                         as a v2 user now: compare fingerprints instead (/fp {peer})"
                        )),
                    );
                    return;
                }
                if !self.sessions.has(peer) {
                    printer.print_about(
                        peer,
                        &Line::HostError(&format_args!(
                            "no protocol v2 session with {peer} yet: send {peer} a message \
                         first, then /sas {peer}"
                        )),
                    );
                    return;
                }
                if self.sas.contains_key(peer) {
                    // Starting again would replace the run the peer is answering (or
                    // the one they asked for): both screens would lose their codes.
                    printer.print_about(
                        peer,
                        &Line::HostError(&format_args!(
                            "a verification with {peer} is already running: compare the codes \
                             when they appear (/sas {peer} no stops it)"
                        )),
                    );
                    return;
                }
                let (run, start) = Sas::start(rng);
                if let Inner::SasStart { commit, .. } = &start {
                    self.sas_commit.insert(peer.to_owned(), *commit);
                }
                self.sas_begin(peer, run);
                self.control_out.push((peer.to_owned(), start));
                printer.print_about(
                    peer,
                    &Line::HostInfo(&format_args!(
                        "verifying {peer} by short codes: waiting for {peer}'s client (the \
                     codes appear on both screens)"
                    )),
                );
            }
            Some(answer) => {
                let Some(run) = self.sas.get_mut(peer) else {
                    printer.print_about(
                        peer,
                        &Line::HostError(&format_args!(
                            "no verification with {peer} is running: /sas {peer} starts one"
                        )),
                    );
                    return;
                };
                if !answer {
                    let sid = *run.sid();
                    self.sas.remove(peer);
                    self.control_out.push((
                        peer.to_owned(),
                        Inner::SasCancel {
                            sid,
                            reason: CancelReason::Mismatch,
                        },
                    ));
                    printer.print_about(
                        peer,
                        &Line::HostWarn(&format_args!(
                            "the codes differ: this verification of {peer} failed and does NOT \
                         verify them. Someone may be in the middle (the server substituting \
                         keys): tell {peer} by another way"
                        )),
                    );
                } else if run.code().is_none() {
                    printer.print_about(
                        peer,
                        &Line::HostError(&format_args!(
                            "the codes with {peer} are not shown yet: wait for them"
                        )),
                    );
                    return;
                } else {
                    match run.confirm() {
                        Ok(confirm) => {
                            self.control_out.push((peer.to_owned(), confirm));
                            self.after_confirm(chat, peer, printer);
                        }
                        Err(e) => self.sas_failed(peer, e, printer),
                    }
                }
            }
        }
        self.send_controls(rng, printer, wire);
    }

    /// Both confirmations in: verified; else say who is awaited.
    fn after_confirm(&mut self, chat: &DesktopChat, peer: &str, printer: &mut dyn Printer) {
        let Some(run) = self.sas.get(peer) else {
            return;
        };
        if run.is_verified() {
            self.sas.remove(peer);
            if let Some(x) = chat.client().key_of(peer) {
                self.verified.push((peer.to_owned(), *x));
            }
            printer.print_about(
                peer,
                &Line::HostInfo(&format_args!(
                    "{peer} is verified: the short codes matched on both screens"
                )),
            );
        } else {
            printer.print_about(
                peer,
                &Line::HostInfo(&format_args!(
                    "you confirmed the codes with {peer}: waiting for {peer} to confirm"
                )),
            );
        }
    }

    fn sas_failed(&mut self, peer: &str, e: SasError, printer: &mut dyn Printer) {
        if let Some(run) = self.sas.remove(peer) {
            let reason = match e {
                SasError::Mismatch | SasError::BadCommitment => CancelReason::Mismatch,
                _ => CancelReason::Protocol,
            };
            self.control_out.push((
                peer.to_owned(),
                Inner::SasCancel {
                    sid: *run.sid(),
                    reason,
                },
            ));
        }
        printer.print_about(
            peer,
            &Line::HostWarn(&format_args!(
                "the verification with {peer} failed: {e}; it does NOT verify them"
            )),
        );
    }

    fn show_code(&self, peer: &str, code: &SasCode, printer: &mut dyn Printer) {
        let emoji: Vec<String> = code
            .emoji()
            .iter()
            .map(|(e, name)| format!("{e} {name}"))
            .collect();
        printer.print_about(
            peer,
            &Line::HostInfo(&format_args!(
                "compare with {peer}: {} — or the numbers {code}. The same on both screens? \
             /sas {peer} yes — different? /sas {peer} no",
                emoji.join(", ")
            )),
        );
    }

    /// A verification message from `peer` (it authenticated: it is from `peer`'s
    /// session).
    fn on_control(
        &mut self,
        chat: &DesktopChat,
        peer: &str,
        inner: Inner<'static>,
        printer: &mut dyn Printer,
    ) {
        if let Inner::SasStart { sid, commit } = inner {
            match self.sas.get(peer) {
                // Our own start is already answered by this one.
                Some(run) if *run.sid() == sid => return,
                // Both users typed /sas at once: both clients keep the start with the
                // smaller commitment (§9), so the two do not replace each other and
                // leave both waiting. Theirs goes; they take ours when it arrives.
                Some(run)
                    if run.is_starter()
                        && run.code().is_none()
                        && self.sas_commit.get(peer).is_some_and(|c| *c < commit) =>
                {
                    printer.print_about(
                        peer,
                        &Line::HostInfo(&format_args!(
                            "{peer} started a verification at the same time: going on with one \
                             of the two"
                        )),
                    );
                    return;
                }
                _ => {}
            }
            // A new run replaces any other with this peer (theirs or ours).
            let mut rng = rand_core::OsRng;
            let (run, key) = Sas::accept(&mut rng, sid, commit);
            self.sas_begin(peer, run);
            self.control_out.push((peer.to_owned(), key));
            printer.print_about(
                peer,
                &Line::HostInfo(&format_args!(
                    "{peer} asks to verify you by short codes: the codes appear in a moment \
                 (/sas {peer} no to refuse)"
                )),
            );
            return;
        }
        if let Inner::SasCancel { sid, reason } = inner {
            if self.sas.get(peer).is_some_and(|r| *r.sid() == sid) {
                self.sas.remove(peer);
                let why = match reason {
                    CancelReason::Mismatch => "the codes differ on their screen",
                    CancelReason::User => "they stopped it",
                    CancelReason::Timeout => "it took too long",
                    _ => "a verification message went wrong",
                };
                printer.print_about(
                    peer,
                    &Line::HostWarn(&format_args!(
                        "{peer} cancelled the verification ({why}): it does NOT verify them"
                    )),
                );
            }
            return;
        }
        let Some(starter) = self.sas.get(peer).map(Sas::is_starter) else {
            printer.print_about(
                peer,
                &Line::HostWarn(&format_args!(
                    "an unexpected verification message from {peer}: ignored"
                )),
            );
            return;
        };
        let me = self.name.clone();
        let Some(parties) = Self::parties(chat, &me, self.me.public_keys(), peer, starter) else {
            return self.sas_failed(peer, SasError::OutOfOrder, printer);
        };
        let Some(run) = self.sas.get_mut(peer) else {
            return;
        };
        let step: Result<Option<Inner<'static>>, SasError> = match inner {
            Inner::SasKey { sid, epk } => run.on_key(&parties, &sid, &epk).map(Some),
            Inner::SasReveal { sid, epk } => run.on_reveal(&parties, &sid, &epk).map(|()| None),
            Inner::SasConfirm { sid, mac } => match run.on_confirm(&sid, &mac) {
                Ok(()) => {
                    if run.is_verified() {
                        self.after_confirm(chat, peer, printer);
                    } else {
                        printer.print_about(
                            peer,
                            &Line::HostInfo(&format_args!(
                                "{peer} says the codes match; if they match on your screen \
                             too: /sas {peer} yes"
                            )),
                        );
                    }
                    return;
                }
                Err(e) => Err(e),
            },
            _ => Err(SasError::OutOfOrder),
        };
        match step {
            // Another run's message (a late one): not ours to act on.
            Err(SasError::WrongRun) => {}
            Err(e) => self.sas_failed(peer, e, printer),
            Ok(reply) => {
                if let Some(reply) = reply {
                    self.control_out.push((peer.to_owned(), reply));
                }
                if let Some(code) = self.sas.get(peer).and_then(Sas::code) {
                    self.show_code(peer, &code, printer);
                }
            }
        }
    }

    /// Seals and sends the SAS messages made so far.
    fn send_controls(
        &mut self,
        rng: &mut impl rand_core::CryptoRngCore,
        printer: &mut dyn Printer,
        wire: &mut Vec<u8>,
    ) {
        for (peer, inner) in std::mem::take(&mut self.control_out) {
            let mut body = vec![0u8; MAX_BODY];
            let n = match self.sessions.seal_control(rng, &peer, &inner, &mut body) {
                Ok(n) => n,
                Err(e) if inner == Inner::SessionLost => {
                    printer.print_about(
                        &peer,
                        &Line::HostError(&format_args!(
                            "cannot tell {peer} that the session was lost: {e}"
                        )),
                    );
                    continue;
                }
                Err(e) => {
                    self.sas.remove(&peer);
                    printer.print_about(
                        &peer,
                        &Line::HostWarn(&format_args!("the verification with {peer} stopped: {e}")),
                    );
                    continue;
                }
            };
            if let Err(e) = self.save_session(&peer) {
                printer.print_about(&peer, &Line::HostError(&e));
            }
            let b64 = Base64::encode_string(body.get(..n).unwrap_or(&[]));
            let id = self.id();
            emit(
                &V2Message::Relay2 {
                    to: Some(&peer),
                    from: None,
                    id: Some(id),
                    body: &b64,
                },
                wire,
            );
            // Not a text: a receipt-like ack (a peer not connected ends the run).
            self.receipt_acks.insert(id);
        }
    }
}

/// A control message without the borrow of the buffer it was opened into (its fields
/// are arrays); `None` for a text or a receipt.
fn owned_control(inner: Inner<'_>) -> Option<Inner<'static>> {
    Some(match inner {
        Inner::SessionLost => Inner::SessionLost,
        Inner::SasStart { sid, commit } => Inner::SasStart { sid, commit },
        Inner::SasKey { sid, epk } => Inner::SasKey { sid, epk },
        Inner::SasReveal { sid, epk } => Inner::SasReveal { sid, epk },
        Inner::SasConfirm { sid, mac } => Inner::SasConfirm { sid, mac },
        Inner::SasCancel { sid, reason } => Inner::SasCancel { sid, reason },
        _ => return None,
    })
}
