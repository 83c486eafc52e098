//! The router with its wire side: parsed lines in, serialized lines into each
//! connection's outbox. No I/O and no locks of its own; the server keeps one `Hub`
//! behind a mutex, and the in-process tests drive one directly.
//!
//! A line's path: the connection's task parses it and, for a `relay`, serializes the
//! forwarded line ([`prepare`]) before taking the lock; under the lock, [`Hub::handle`]
//! asks the [`Router`] where things go and pushes the lines into the recipients'
//! [`Outbox`]es (in-memory queues: nobody waits for a socket). Doing the pushes under
//! the lock gives every queue the router's order, which is what makes "a recipient gets
//! the sender's key before the sender's first relay" hold.
//!
//! The `users` line is built once per directory version and shared by every queue it
//! goes to.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use seguro_core::limits::KEY_LEN;

use seguro_core::msg::{self, Message, Relay, UserList};
use tracing::debug;

use seguro_core::v2::json::DirectoryKind;

use super::router::{self, Close, ConnId, Delivery, Input, Joined, Refusal, Router};

/// One serialized line (JSON and `\n`), shared between the queues it is sent to.
pub type Line = Arc<[u8]>;

/// A line queued for a connection, with its kind (the writer's coalescing needs it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// The `welcome` reply to `hello`.
    Welcome(Line),
    /// A `users` line (a push or a `list` reply) listing directory `version`.
    Directory {
        /// The directory version it lists.
        version: u64,
        /// The line.
        line: Line,
    },
    /// A forwarded `relay`.
    Relay(Line),
    /// An `error` or `server` line.
    Text(Line),
}

impl Outgoing {
    /// The bytes to write.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Welcome(l) | Self::Directory { line: l, .. } | Self::Relay(l) | Self::Text(l) => {
                l
            }
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    /// True for an empty line (never produced).
    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }
}

/// Where a connection's lines go: the driver's queue for it.
pub trait Outbox {
    /// Queues a line (never blocks).
    fn send(&self, item: Outgoing);
    /// Queues a relayed line if the queue has room for it; gives it back if not.
    fn offer(&self, item: Outgoing) -> Result<(), Outgoing> {
        self.send(item);
        Ok(())
    }
    /// Closes the connection for `reason`, after what is queued.
    fn close(&self, reason: Close);
}

/// Serializes a message into a fresh line.
pub fn line_of(m: &Message<'_>) -> Line {
    line_sized(m, m.line_len())
}

/// Serializes a message into a fresh line, in one pass if it takes at most `guess`
/// bytes (two passes if not: the first one says how many).
pub fn line_sized(m: &Message<'_>, guess: usize) -> Line {
    thread_local! {
        /// Where lines are emitted before they are copied into their `Line`: one
        /// allocation per line (the `Arc`), where a fresh zeroed `Vec` per line was two
        /// and a zeroing. Kept between lines up to [`EMIT_SCRATCH_MAX`].
        static EMIT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    EMIT.with_borrow_mut(|v| {
        if v.len() < guess {
            v.resize(guess, 0);
        }
        let n = match m.emit_line_once(v) {
            Ok(n) => n,
            Err(e) => {
                v.resize(e.needed, 0);
                m.emit_line_once(v).unwrap_or(0)
            }
        };
        let line: Line = Arc::from(v.get(..n).unwrap_or_default());
        if v.len() > EMIT_SCRATCH_MAX {
            *v = Vec::new();
        }
        line
    })
}

/// The largest emission buffer a thread keeps between lines (a relay of the usual
/// sizes fits; a directory line of a large server is emitted and freed).
const EMIT_SCRATCH_MAX: usize = 16 * 1024;

/// An `error` line.
pub fn error_line(text: &str) -> Line {
    line_of(&Message::Error { text })
}

/// Parses a line (`scratch` at least as long as it) into router input.
pub fn parse<'m>(line: &'m [u8], scratch: &'m mut [u8]) -> Input<'m> {
    match msg::parse(line, scratch) {
        Ok(m) => Input::Message(m),
        Err(e) => Input::Malformed(e),
    }
}

/// A line ready for [`Hub::handle`]: the router input and, for a `relay`, the line to
/// forward, serialized outside the lock.
#[derive(Debug)]
pub struct Prepared<'m> {
    input: Input<'m>,
    relay: Option<Line>,
    /// A v2 heartbeat (protocol v2 §11): `Some(Some(id))` a ping, `Some(None)` a pong.
    beat: Option<Option<u32>>,
    /// The `id` of a `relay` that carries one (protocol v2 §11): a v2 connection is
    /// answered with an `ack` for it.
    ack: Option<u32>,
}

impl<'m> Prepared<'m> {
    /// Input that is not a `relay` (or whose forwarded line is not needed).
    pub fn new(input: Input<'m>) -> Self {
        Self {
            input,
            relay: None,
            beat: None,
            ack: None,
        }
    }

    /// For a `relay`: the recipient's name and the length of the line to forward.
    pub fn relay_to(&self) -> Option<(&'m str, usize)> {
        match (&self.input, &self.relay) {
            (Input::Message(Message::Relay(r)), Some(line)) => Some((r.to, line.len())),
            _ => None,
        }
    }
}

/// Room for `,"from":""` and the `\n` (and a few escapes) in a forwarded line.
const RELAY_SLACK: usize = 16;

/// Parses a line from the connection registered as `from` and, if it is a `relay`,
/// serializes the line to forward (with `from` rewritten).
pub fn prepare<'m>(line: &'m [u8], scratch: &'m mut [u8], from: &str) -> Prepared<'m> {
    let input = parse(line, scratch);
    let relay = match input {
        // The forwarded line is the incoming one with `from` set: as long as it, plus
        // the `from` field and its `\n` (an incoming `from` or escapes only shorten it),
        // so it is emitted in one pass over the cipher text.
        Input::Message(Message::Relay(r)) => Some(line_sized(
            &Message::Relay(Relay {
                from: Some(from),
                ..r
            }),
            line.len() + from.len() + RELAY_SLACK,
        )),
        _ => None,
    };
    // Only a relay with an `"id"` key is read a second time (cheap check first); the
    // forwarded line is emitted from the parsed fields, so the id never reaches the
    // recipient.
    let ack = match input {
        Input::Message(Message::Relay(_)) if contains(line, b"\"id\"") => {
            seguro_core::v2::json::parse_relay_id(line).ok().flatten()
        }
        _ => None,
    };
    Prepared {
        beat: heartbeat(&input, line),
        input,
        relay,
        ack,
    }
}

/// True if `needle` occurs in `hay` (a cheap check before a second parse).
pub(super) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// An `ack` line for relay `id` (protocol v2 §11): forwarded or not connected.
pub(super) fn ack_line(id: u32, forwarded: bool) -> Line {
    use seguro_core::v2::json::{AckStatus, V2Message};
    let status = if forwarded {
        AckStatus::Forwarded
    } else {
        AckStatus::NotConnected
    };
    v2_line_of(&V2Message::Ack { id, status })
}

/// Serializes a protocol v2 message into a fresh line.
pub(super) fn v2_line_of(m: &seguro_core::v2::json::V2Message<'_>) -> Line {
    let mut v = vec![0u8; m.line_len()];
    let n = m.emit_line(&mut v).unwrap_or(0);
    v.truncate(n);
    v.into()
}

/// A `ping` (its id) or a `pong` (`None`), for a line v1 does not know.
fn heartbeat(input: &Input<'_>, line: &[u8]) -> Option<Option<u32>> {
    use seguro_core::v2::json::{self as v2json, V2Message};
    if !matches!(input, Input::Malformed(msg::ParseError::UnknownType)) {
        return None;
    }
    // Pings and pongs carry nothing to unescape: a small scratch is enough.
    let mut scratch = [0u8; 16];
    match v2json::parse(line, &mut scratch) {
        Ok(V2Message::Ping { id }) => Some(Some(id)),
        Ok(V2Message::Pong { .. }) => Some(None),
        _ => None,
    }
}

/// A `pong` line answering ping `id`.
fn pong_line(id: u32) -> Line {
    v2_line_of(&seguro_core::v2::json::V2Message::Pong { id })
}

/// The router, the current directory's `users` line and the outboxes.
#[derive(Debug)]
pub struct Hub<T> {
    router: Router<T>,
    /// The `users` line of directory version `.0`, built on first use.
    users: Option<(u64, Line)>,
    /// The directory of version `.0` with the v2 entries, for `dir` deltas.
    snap: Option<(u64, Arc<Snapshot>)>,
    /// What each v2 connection was last sent of the directory (protocol v2 §10).
    views: HashMap<ConnId, View>,
    /// Scratch for pushes.
    targets: Vec<ConnId>,
}

impl<T: Outbox> Hub<T> {
    /// An empty hub.
    pub fn new(cfg: router::Config) -> Self {
        Self {
            router: Router::new(cfg),
            users: None,
            snap: None,
            views: HashMap::new(),
            targets: Vec::new(),
        }
    }

    /// The router, to read.
    pub fn router(&self) -> &Router<T> {
        &self.router
    }

    /// Registers a connection from its first line and queues its `welcome` into
    /// `outbox`, or says why not (the caller sends the refusal and closes).
    pub fn hello<'m>(&mut self, first: Input<'m>, outbox: T) -> Result<Joined, Refusal<'m>> {
        self.hello_v2(first, outbox, None)
    }

    /// [`Hub::hello`] for a client that proved a v2 identity (`v2`; protocol v2 §4):
    /// it is listed in the directory's `v2` section, and its `welcome` carries that
    /// section (§2.2). With `None`, exactly [`Hub::hello`].
    pub fn hello_v2<'m>(
        &mut self,
        first: Input<'m>,
        outbox: T,
        v2: Option<router::V2User>,
    ) -> Result<Joined, Refusal<'m>> {
        let joined = self.router.hello(first, outbox)?;
        let is_v2 = v2.is_some();
        if self.router.set_v2(joined.id, v2) {
            // The v2 section may have changed without a new directory version (a
            // reconnect within the grace).
            self.snap = None;
        }
        let welcome = if is_v2 {
            self.start_view(joined.id);
            v2_directory_line(&self.router, DirectoryKind::Welcome, 0)
        } else {
            directory_line(&self.router, true)
        };
        if let Some(t) = self.router.tag(joined.id) {
            t.send(Outgoing::Welcome(welcome));
        }
        Ok(joined)
    }

    /// Routes a line from connection `conn` and queues what it produces. Returns the
    /// reason if `conn` itself is to be closed now (its last lines are queued).
    pub fn handle(&mut self, conn: ConnId, p: Prepared<'_>) -> Option<Close> {
        // A v2 connection's heartbeat is answered here; from a v1 connection it is an
        // unknown message, as before.
        if let Some(beat) = p.beat
            && self.router.is_v2(conn)
        {
            if let (Some(id), Some(t)) = (beat, self.router.tag(conn)) {
                t.send(Outgoing::Text(pong_line(id)));
            }
            return None;
        }
        let mut close_me = None;
        // A v1 client's `relay` is never acknowledged: the reference knows no `ack`.
        let ack = p.ack.filter(|_| self.router.is_v2(conn));
        let relay_to = match p.input {
            Input::Message(Message::Relay(r)) => Some(r.to),
            _ => None,
        };
        let list = matches!(p.input, Input::Message(Message::List));
        for d in self.router.handle(conn, p.input) {
            let to = d.target();
            let item = match d {
                Delivery::Welcome { .. } if self.router.is_v2(to) => {
                    self.start_view(to);
                    Outgoing::Welcome(v2_directory_line(&self.router, DirectoryKind::Welcome, 0))
                }
                // A v2 client is sent the deltas since its last directory, or on `list`
                // the whole directory with its current `seq` (protocol v2 §10).
                Delivery::Directory { .. } if !list && self.views.contains_key(&to) => {
                    self.send_deltas(to, &mut None);
                    continue;
                }
                Delivery::Welcome { .. } => Outgoing::Welcome(directory_line(&self.router, true)),
                Delivery::Directory { version, .. } => Outgoing::Directory {
                    version,
                    line: self.users_line_for(to, version),
                },
                Delivery::Relay { .. } => {
                    let Some(line) = p.relay.clone() else {
                        continue;
                    };
                    let Some(t) = self.router.tag(to) else {
                        continue;
                    };
                    if t.offer(Outgoing::Relay(line)).is_err() {
                        // The recipient does not read: refuse, and say who.
                        let name = relay_to.unwrap_or_default();
                        debug!(to = %name, "relay refused: recipient's queue full");
                        if let Some(me) = self.router.tag(conn) {
                            me.send(Outgoing::Text(error_line(&format!(
                                "not delivered to {name}: {name} is not reading \
                                 (its queue is full); send it again later"
                            ))));
                            if let Some(id) = ack {
                                me.send(Outgoing::Text(ack_line(id, false)));
                            }
                        }
                        continue;
                    }
                    if let (Some(id), Some(me)) = (ack, self.router.tag(conn)) {
                        me.send(Outgoing::Text(ack_line(id, true)));
                    }
                    if let (Some(from), Some(to)) = (self.router.name(conn), relay_to) {
                        debug!(from = %from, to = %to, "relayed");
                    }
                    continue;
                }
                // Not forwarded because nobody by that name is connected: a v2 client
                // that asked for an `ack` gets one instead of v1's error line.
                Delivery::Error {
                    error:
                        super::router::ErrorText::UserNotConnected(_)
                        | super::router::ErrorText::Reconnecting(_),
                    ..
                } if ack.is_some() => Outgoing::Text(ack_line(ack.unwrap_or_default(), false)),
                Delivery::Error { error, .. } => Outgoing::Text(error_line(&error.to_string())),
                Delivery::Server { text, .. } => Outgoing::Text(line_of(&Message::Server {
                    text: &text.to_string(),
                })),
                Delivery::Close { conn: c, reason } => {
                    if c == conn {
                        close_me = Some(reason);
                    } else if let Some(t) = self.router.tag(c) {
                        t.close(reason);
                    }
                    continue;
                }
            };
            if let Some(t) = self.router.tag(to) {
                t.send(item);
            }
        }
        close_me
    }

    /// Queues a `relay2` line from connection `conn` for `to` (protocol v2 §7.2), after
    /// the directory if the recipient has not been sent one listing the sender. True if
    /// it was queued; false if `to` is not a connected v2 user or its queue is full.
    pub fn relay2(&mut self, conn: ConnId, to: &str, line: Line) -> bool {
        let Some((id, first)) = self.router.route_relay2(conn, to) else {
            return false;
        };
        if let Some(version) = first {
            let users = self.users_line_for(id, version);
            if let Some(t) = self.router.tag(id) {
                t.send(Outgoing::Directory {
                    version,
                    line: users,
                });
            }
        }
        self.router
            .tag(id)
            .is_some_and(|t| t.offer(Outgoing::Relay(line)).is_ok())
    }

    /// Forgets connection `conn`, giving its outbox back; `None` if it was not
    /// registered (see [`Router::disconnect`] for `lost` and the reconnect grace).
    pub fn disconnect(&mut self, conn: ConnId, lost: Option<Instant>) -> Option<T> {
        self.views.remove(&conn);
        self.router.disconnect(conn, lost)
    }

    /// Removes the names whose reconnect grace ended by `now` and returns them (if any,
    /// the directory changed: a push is due).
    pub fn expire(&mut self, now: Instant) -> Vec<Arc<str>> {
        self.router.expire(now)
    }

    /// Queues the current directory for every connection that has not been sent it.
    /// Returns the bytes queued in all (recipients × line length), for pacing.
    pub fn push(&mut self) -> u64 {
        let mut targets = std::mem::take(&mut self.targets);
        let version = self.router.push(&mut targets);
        let mut bytes = 0u64;
        if !targets.is_empty() {
            let mut cache = None;
            for id in &targets {
                if self.views.contains_key(id) {
                    bytes = bytes.saturating_add(self.send_deltas(*id, &mut cache));
                    continue;
                }
                let line = self.users_line_for(*id, version);
                if let Some(t) = self.router.tag(*id) {
                    t.send(Outgoing::Directory {
                        version,
                        line: line.clone(),
                    });
                    bytes = bytes.saturating_add(line.len() as u64);
                }
            }
        }
        targets.clear();
        self.targets = targets;
        bytes
    }

    /// The `users` line of the current directory (`version`) for connection `to`:
    /// for a v2 client, with the `v2` section and its current `seq` (it has now seen
    /// this directory).
    fn users_line_for(&mut self, to: ConnId, version: u64) -> Line {
        if !self.views.contains_key(&to) {
            return self.users_line(version);
        }
        let snap = self.snapshot();
        let Some(view) = self.views.get_mut(&to) else {
            return self.users_line(version);
        };
        view.snap = snap;
        v2_directory_line(&self.router, DirectoryKind::Users, view.seq)
    }

    /// Connection `id` was just sent the whole directory with `seq` 0.
    fn start_view(&mut self, id: ConnId) {
        let snap = self.snapshot();
        self.views.insert(id, View { seq: 0, snap });
    }

    /// The current directory with its v2 entries.
    fn snapshot(&mut self) -> Arc<Snapshot> {
        let version = self.router.version();
        if let Some((v, s)) = &self.snap
            && *v == version
        {
            return s.clone();
        }
        let mut v2 = self.router.v2_users().peekable();
        let snap: Snapshot = self
            .router
            .directory()
            .map(|(name, x)| {
                while v2.peek().is_some_and(|(n, _)| *n < name) {
                    v2.next();
                }
                let entry = v2
                    .peek()
                    .filter(|(n, _)| *n == name)
                    .map(|(_, u)| Arc::new((*u).clone()));
                (Arc::<str>::from(name), *x, entry)
            })
            .collect();
        let snap = Arc::new(snap);
        self.snap = Some((version, snap.clone()));
        snap
    }

    /// Queues for v2 connection `id` the `dir` deltas from what it last saw to the
    /// current directory; returns the bytes queued. `cache` keeps the last diff
    /// (connections that saw the same directory share it).
    fn send_deltas(
        &mut self,
        id: ConnId,
        cache: &mut Option<(Arc<Snapshot>, Vec<Vec<u8>>)>,
    ) -> u64 {
        let cur = self.snapshot();
        let Some(view) = self.views.get_mut(&id) else {
            return 0;
        };
        if Arc::ptr_eq(&view.snap, &cur) {
            return 0;
        }
        let fresh = match cache {
            Some((from, _)) if Arc::ptr_eq(from, &view.snap) => None,
            _ => Some(diff(&view.snap, &cur)),
        };
        if let Some(tails) = fresh {
            *cache = Some((view.snap.clone(), tails));
        }
        let tails = cache.as_ref().map(|(_, t)| t.as_slice()).unwrap_or(&[]);
        view.snap = cur;
        let Some(t) = self.router.tag(id) else {
            return 0;
        };
        let mut bytes = 0u64;
        for tail in tails {
            let Some(seq) = view.seq.checked_add(1) else {
                // 2^32 deltas on one connection: start over with the whole directory.
                view.seq = 0;
                let line = v2_directory_line(&self.router, DirectoryKind::Users, 0);
                bytes = bytes.saturating_add(line.len() as u64);
                t.send(Outgoing::Directory {
                    version: self.router.version(),
                    line,
                });
                return bytes;
            };
            view.seq = seq;
            let line = delta_line(seq, tail);
            bytes = bytes.saturating_add(line.len() as u64);
            t.send(Outgoing::Text(line));
        }
        bytes
    }

    /// The `users` line of the current directory, which is `version`.
    fn users_line(&mut self, version: u64) -> Line {
        match &self.users {
            Some((v, line)) if *v == version => line.clone(),
            _ => {
                let line = directory_line(&self.router, false);
                self.users = Some((version, line.clone()));
                line
            }
        }
    }
}

/// A v2 client's `welcome` or `users`: the v1 directory and the `v2` section listing
/// every v2 user (protocol v2 §2.2), with deltas continuing from `seq` + 1 (§10).
fn v2_directory_line<T>(router: &Router<T>, kind: DirectoryKind, seq: u32) -> Line {
    use seguro_core::v2::json::{self as v2json, DirectoryV2, HelloV2, V2UserList};
    let size: usize = router
        .directory()
        .map(|(n, _)| msg::packed_entry_len(n))
        .sum();
    let mut buf = vec![0u8; size];
    let users = UserList::pack(router.directory(), &mut buf).unwrap_or(UserList::EMPTY);
    let entries: Vec<(&str, HelloV2<'_>)> = router
        .v2_users()
        .map(|(n, v)| {
            (
                n,
                HelloV2 {
                    caps: &v.caps,
                    ed: v.ed,
                    bind: v.bind,
                },
            )
        })
        .collect();
    let v2_size: usize = entries
        .iter()
        .map(|(n, v)| v2json::packed_v2_entry_len(n, v.caps))
        .sum();
    let mut v2_buf = vec![0u8; v2_size];
    let v2_users = V2UserList::pack(entries.iter().map(|(n, v)| (*n, v)), &mut v2_buf)
        .unwrap_or(V2UserList::EMPTY);
    let dir = DirectoryV2 {
        seq,
        users: v2_users,
    };
    let mut out = vec![0u8; 256];
    loop {
        match v2json::emit_directory_line(kind, &users, &dir, &mut out) {
            Ok(n) => {
                out.truncate(n);
                return out.into();
            }
            Err(e) if e.needed > out.len() => out.resize(e.needed, 0),
            Err(_) => return directory_line(router, kind == DirectoryKind::Welcome),
        }
    }
}

/// A directory with the v2 entries, in name order: what a v2 connection last saw.
type Snapshot = Vec<SnapEntry>;

/// One user of a [`Snapshot`]: name, X25519 key, v2 entry.
type SnapEntry = (Arc<str>, [u8; KEY_LEN], Option<Arc<router::V2User>>);

/// A v2 connection's directory state (protocol v2 §10).
#[derive(Debug)]
struct View {
    /// The last delta's number on this connection.
    seq: u32,
    /// The directory it has after the deltas sent.
    snap: Arc<Snapshot>,
}

/// How every `dir` line starts (then the `seq` value and the tail).
const DIR_PREFIX: &[u8] = b"{\"type\":\"dir\",\"seq\":\"";

/// The deltas that turn `old` into `new`, each as the tail of its `dir` line: what
/// follows the `seq` value (`\"` included, `\n` at the end).
fn diff(old: &Snapshot, new: &Snapshot) -> Vec<Vec<u8>> {
    use seguro_core::v2::json::{DirDelta, DirEntry, HelloV2, V2Message};
    use std::cmp::Ordering;
    let mut out = Vec::new();
    let mut push = |delta: DirDelta<'_>| {
        let m = V2Message::Dir { seq: 0, delta };
        let mut v = vec![0u8; m.line_len()];
        if let Ok(n) = m.emit_line(&mut v)
            && let Some(tail) = v.get(..n).and_then(|l| l.strip_prefix(DIR_PREFIX))
            && let Some(tail) = tail.strip_prefix(b"0")
        {
            out.push(tail.to_vec());
        }
    };
    let present = |e: &SnapEntry, key: bool, push: &mut dyn FnMut(DirDelta<'_>)| {
        let de = DirEntry {
            user: &e.0,
            x: e.1,
            v2: e.2.as_deref().map(|u| HelloV2 {
                caps: &u.caps,
                ed: u.ed,
                bind: u.bind,
            }),
        };
        push(if key {
            DirDelta::Key(de)
        } else {
            DirDelta::Join(de)
        });
    };
    let (mut i, mut j) = (0, 0);
    loop {
        match (old.get(i), new.get(j)) {
            (None, None) => break,
            (Some(o), None) => {
                push(DirDelta::Leave { user: &o.0 });
                i += 1;
            }
            (None, Some(n)) => {
                present(n, false, &mut push);
                j += 1;
            }
            (Some(o), Some(n)) => match o.0.cmp(&n.0) {
                Ordering::Less => {
                    push(DirDelta::Leave { user: &o.0 });
                    i += 1;
                }
                Ordering::Greater => {
                    present(n, false, &mut push);
                    j += 1;
                }
                Ordering::Equal => {
                    if o.1 != n.1 || o.2 != n.2 {
                        present(n, true, &mut push);
                    }
                    i += 1;
                    j += 1;
                }
            },
        }
    }
    out
}

/// A `dir` line numbered `seq` with `tail` (from [`diff`]).
fn delta_line(seq: u32, tail: &[u8]) -> Line {
    let seq = seq.to_string();
    let mut v = Vec::with_capacity(DIR_PREFIX.len() + seq.len() + tail.len());
    v.extend_from_slice(DIR_PREFIX);
    v.extend_from_slice(seq.as_bytes());
    v.extend_from_slice(tail);
    v.into()
}

/// The router's directory as a `welcome` or `users` line.
fn directory_line<T>(router: &Router<T>, welcome: bool) -> Line {
    let size: usize = router
        .directory()
        .map(|(n, _)| msg::packed_entry_len(n))
        .sum();
    let mut buf = vec![0u8; size];
    let users = UserList::pack(router.directory(), &mut buf).unwrap_or(UserList::EMPTY);
    if welcome {
        line_of(&Message::Welcome { users })
    } else {
        line_of(&Message::Users { users })
    }
}
