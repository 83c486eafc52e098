//! Prekeys for protocol v2 (`docs/protocol-v2.md` §5.5): what a v2 client publishes
//! (its signed prekey and up to [`MAX_OPKS`] one-time prekeys) and what the server hands
//! out as a `bundle`, connected or not, so that a session can be set up with a peer who
//! is offline.
//!
//! [`PrekeyStore`] is the pure part (decisions and text form); [`PrekeyFile`] keeps it
//! in a file beside the name registry, with the registry's discipline: versioned text,
//! atomic owner-only writes, and a file that cannot be read or parsed is an error when
//! the server starts (never silently replaced: a one-time prekey handed out twice
//! would let a replayed first message open a second session).
//!
//! The text form (one record a line, fields separated by one space; keys in base64):
//!
//! ```text
//! seguro-prekeys 1
//! user NAME X25519 ED25519 BIND SPK-ID SPK SPK-SIG OPKS
//! ```
//!
//! `OPKS` is `-` (none) or `ID:KEY` words joined by commas.
//!
//! [`v2_line`] is the driver's side for a v2 connection's own lines: `prekeys` and
//! `bundle_req` answered into its outbox (the file saved off the async threads), and
//! `relay2` forwarded and acknowledged (§7.2, §11).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use base64ct::{Base64, Encoding};
use seguro_core::identity::PublicIdentity;
use seguro_core::limits::KEY_LEN;
use seguro_core::v2::identity::verify_prekey;
use seguro_core::v2::json::{self as v2json, AckStatus, ErrorCode, MAX_OPKS, V2Message};
use seguro_core::v2::wire::MAX_BODY;
use seguro_core::v2::x3dh::{Bundle, PeerIdentity};
use tracing::{debug, warn};

use super::admission::{pct_decode, pct_encode};
use super::hub::{Hub, Outbox, Outgoing, contains};
use super::registry::{self, RegistryFile};
use super::router::ConnId;

/// The first line of a prekey file.
pub const HEADER: &str = "seguro-prekeys 1";
/// The prekey file's name, beside the name registry.
pub const FILE: &str = "prekeys";
/// Below this many one-time prekeys left, the owner is told (`prekeys_low`).
pub const LOW: usize = 4;
/// The most users whose prekeys are kept (as many as the registry reserves names):
/// about 1.3 KB each in the file at most.
pub const MAX_USERS: usize = registry::MAX_NAMES;
/// Largest prekey file read, in bytes.
const MAX_FILE: u64 = 64 << 20;

const SIG_LEN: usize = 64;
/// Base64 length of the longest `relay2` body.
const MAX_BODY_B64: usize = MAX_BODY.div_ceil(3) * 4;

/// One user's published prekeys, and the identity that published them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The publisher's X25519 identity key.
    pub x: [u8; KEY_LEN],
    /// The publisher's Ed25519 identity key (it signed `spk`).
    pub ed: [u8; KEY_LEN],
    /// The publisher's binding signature (handed out in the bundle).
    pub bind: [u8; SIG_LEN],
    /// The signed prekey's id.
    pub spk_id: u32,
    /// The signed prekey.
    pub spk: [u8; KEY_LEN],
    /// Its signature by `ed`.
    pub spk_sig: [u8; SIG_LEN],
    /// One-time prekeys not handed out yet, oldest first.
    pub opks: Vec<(u32, [u8; KEY_LEN])>,
}

/// Who publishes: the proven identity of a v2 connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publisher<'a> {
    /// The registered name.
    pub name: &'a str,
    /// Its X25519 key.
    pub x: [u8; KEY_LEN],
    /// Its Ed25519 key.
    pub ed: [u8; KEY_LEN],
    /// Its binding signature.
    pub bind: [u8; SIG_LEN],
}

/// What [`PrekeyStore::publish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// The signed prekey replaced the old one and every one-time prekey was added;
    /// `left` one-time prekeys are now held.
    Stored {
        /// One-time prekeys held.
        left: usize,
    },
    /// As `Stored`, but some one-time prekeys did not fit ([`MAX_OPKS`] held): those
    /// were not stored.
    Full {
        /// One-time prekeys held.
        left: usize,
    },
    /// `spk_sig` is not the publisher's signature of the signed prekey: nothing stored.
    BadSignature,
    /// The store holds [`MAX_USERS`] other users: nothing stored.
    NoRoom,
}

impl Publish {
    /// The `ack` status.
    pub fn status(&self) -> AckStatus {
        match self {
            Self::Stored { .. } => AckStatus::Stored,
            Self::Full { .. } => AckStatus::Full,
            Self::BadSignature | Self::NoRoom => AckStatus::Refused,
        }
    }
}

/// A bundle taken from the store (its one-time prekey, if any, is gone from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The publisher's prekeys as they were (without the one-time prekeys).
    pub published: Published,
    /// The one-time prekey handed out.
    pub opk: Option<(u32, [u8; KEY_LEN])>,
    /// One-time prekeys left after this one.
    pub left: usize,
}

/// Why a prekey file's text is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// The first line is not [`HEADER`].
    Header(String),
    /// Line `.0` (1-based) is not a valid record.
    Record(usize, &'static str),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header(h) if h.starts_with("seguro-prekeys ") => write!(
                f,
                "format {h:?} is not the one this version reads ({HEADER:?}): a newer Seguro wrote it"
            ),
            Self::Header(h) => write!(f, "first line {h:?} is not {HEADER:?}"),
            Self::Record(line, why) => write!(f, "line {line}: {why}"),
        }
    }
}

/// Everyone's published prekeys, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrekeyStore {
    users: BTreeMap<String, Published>,
    max_users: usize,
}

impl Default for PrekeyStore {
    fn default() -> Self {
        Self::new()
    }
}

impl PrekeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            users: BTreeMap::new(),
            max_users: MAX_USERS,
        }
    }

    /// The same with another limit on users (for tests).
    pub fn with_max_users(mut self, max: usize) -> Self {
        self.max_users = max;
        self
    }

    /// Users with prekeys.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True if nobody published.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// What `name` published.
    pub fn get(&self, name: &str) -> Option<&Published> {
        self.users.get(name)
    }

    /// The names with prekeys, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.users.keys().map(String::as_str)
    }

    /// Stores what `who` published: the signed prekey (checked against `who.ed`)
    /// replaces the old one, the one-time prekeys are added up to [`MAX_OPKS`] (an id
    /// already held is not added twice). Prekeys published before under other keys
    /// (the name changed hands) are dropped.
    pub fn publish(
        &mut self,
        who: &Publisher<'_>,
        spk_id: u32,
        spk: &[u8; KEY_LEN],
        spk_sig: &[u8; SIG_LEN],
        opks: impl IntoIterator<Item = (u32, [u8; KEY_LEN])>,
    ) -> Publish {
        if verify_prekey(&who.ed, spk_id, spk, spk_sig).is_err() {
            return Publish::BadSignature;
        }
        if !self.users.contains_key(who.name) && self.users.len() >= self.max_users {
            return Publish::NoRoom;
        }
        let e = self
            .users
            .entry(who.name.to_owned())
            .or_insert_with(|| Published {
                x: who.x,
                ed: who.ed,
                bind: who.bind,
                spk_id,
                spk: *spk,
                spk_sig: *spk_sig,
                opks: Vec::new(),
            });
        if e.x != who.x || e.ed != who.ed {
            e.opks.clear();
        }
        e.x = who.x;
        e.ed = who.ed;
        e.bind = who.bind;
        e.spk_id = spk_id;
        e.spk = *spk;
        e.spk_sig = *spk_sig;
        let mut refused = false;
        for (id, key) in opks {
            if e.opks.iter().any(|(i, _)| *i == id) {
                continue;
            }
            if e.opks.len() >= MAX_OPKS {
                refused = true;
                continue;
            }
            e.opks.push((id, key));
        }
        let left = e.opks.len();
        if refused {
            Publish::Full { left }
        } else {
            Publish::Stored { left }
        }
    }

    /// The bundle of `name` if it published under keys `valid` accepts (its current
    /// owner's), handing out and deleting its oldest one-time prekey. Prekeys of keys
    /// `valid` refuses are dropped (the name changed hands or was released).
    pub fn take(
        &mut self,
        name: &str,
        valid: impl Fn(&[u8; KEY_LEN], &[u8; KEY_LEN]) -> bool,
    ) -> Option<Taken> {
        let e = self.users.get_mut(name)?;
        if !valid(&e.x, &e.ed) {
            self.users.remove(name);
            return None;
        }
        let opk = (!e.opks.is_empty()).then(|| e.opks.remove(0));
        let left = e.opks.len();
        let published = Published {
            opks: Vec::new(),
            ..e.clone()
        };
        Some(Taken {
            published,
            opk,
            left,
        })
    }

    /// The text form.
    pub fn to_text(&self) -> String {
        let mut out = String::from(HEADER);
        out.push('\n');
        for (name, p) in &self.users {
            let opks = if p.opks.is_empty() {
                "-".to_owned()
            } else {
                p.opks
                    .iter()
                    .map(|(id, k)| format!("{id}:{}", Base64::encode_string(k)))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            out.push_str(&format!(
                "user {} {} {} {} {} {} {} {}\n",
                pct_encode(name),
                Base64::encode_string(&p.x),
                Base64::encode_string(&p.ed),
                Base64::encode_string(&p.bind),
                p.spk_id,
                Base64::encode_string(&p.spk),
                Base64::encode_string(&p.spk_sig),
                opks
            ));
        }
        out
    }

    /// Reads the text form; every error names its line.
    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let mut lines = text.lines();
        let header = lines.next().unwrap_or("");
        if header != HEADER {
            return Err(FormatError::Header(header.chars().take(40).collect()));
        }
        let mut store = Self::new();
        for (i, line) in lines.enumerate() {
            let n = i + 2;
            if line.is_empty() {
                continue;
            }
            let bad = |why| FormatError::Record(n, why);
            let f: Vec<&str> = line.split(' ').collect();
            let [kind, name, x, ed, bind, spk_id, spk, spk_sig, opks] = f[..] else {
                return Err(bad("expected 9 fields"));
            };
            if kind != "user" {
                return Err(bad("unknown record type"));
            }
            let name = pct_decode(name)
                .filter(|s| seguro_core::msg::validate_name(s).is_ok())
                .ok_or(bad("bad name"))?;
            let x = decode::<KEY_LEN>(x).ok_or(bad("bad X25519 key"))?;
            let ed = decode::<KEY_LEN>(ed).ok_or(bad("bad Ed25519 key"))?;
            let bind = decode::<SIG_LEN>(bind).ok_or(bad("bad binding signature"))?;
            let spk_id = parse_id(spk_id).ok_or(bad("bad signed prekey id"))?;
            let spk = decode::<KEY_LEN>(spk).ok_or(bad("bad signed prekey"))?;
            let spk_sig = decode::<SIG_LEN>(spk_sig).ok_or(bad("bad signed prekey signature"))?;
            let mut list = Vec::new();
            if opks != "-" {
                for w in opks.split(',') {
                    let (id, key) = w.split_once(':').ok_or(bad("bad one-time prekey"))?;
                    let id = parse_id(id).ok_or(bad("bad one-time prekey id"))?;
                    let key = decode::<KEY_LEN>(key).ok_or(bad("bad one-time prekey"))?;
                    if list.iter().any(|(i, _)| *i == id) {
                        return Err(bad("one-time prekey id listed twice"));
                    }
                    list.push((id, key));
                }
            }
            if list.len() > MAX_OPKS {
                return Err(bad("more one-time prekeys than a user may hold"));
            }
            if verify_prekey(&ed, spk_id, &spk, &spk_sig).is_err() {
                return Err(bad("the signed prekey's signature does not verify"));
            }
            let p = Published {
                x,
                ed,
                bind,
                spk_id,
                spk,
                spk_sig,
                opks: list,
            };
            if store.users.insert(name, p).is_some() {
                return Err(bad("user listed twice"));
            }
            if store.users.len() > MAX_USERS {
                return Err(bad("more users than the server keeps"));
            }
        }
        Ok(store)
    }
}

fn decode<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut k = [0u8; N];
    match Base64::decode(s, &mut k) {
        Ok(d) if d.len() == N => Some(k),
        _ => None,
    }
}

fn parse_id(s: &str) -> Option<u32> {
    s.parse::<u32>().ok().filter(|_| !s.starts_with('+'))
}

/// A [`PrekeyStore`] kept in a file.
#[derive(Debug)]
pub struct PrekeyFile {
    path: PathBuf,
    store: Mutex<PrekeyStore>,
    /// Held while the file is written: two writers would share the temporary file.
    writing: Mutex<()>,
}

impl PrekeyFile {
    /// The prekey file beside the name registry at `registry` ([`FILE`] in its
    /// directory).
    pub fn path_beside(registry: &Path) -> PathBuf {
        match registry.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.join(FILE),
            _ => Path::new(".").join(FILE),
        }
    }

    /// Reads the store at `path` (none yet: empty). An unreadable or corrupt file is an
    /// error saying which file and what is wrong.
    pub fn open(path: &Path) -> Result<Self, String> {
        let moved = "move it away to start with no published prekeys (v2 clients publish \
                     theirs again when they connect)";
        let store = match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => PrekeyStore::new(),
            Err(e) => {
                return Err(format!(
                    "cannot read the prekey file {}: {e}",
                    path.display()
                ));
            }
            Ok(m) if m.len() > MAX_FILE => {
                return Err(format!(
                    "the prekey file {} is larger than {} MiB: not a prekey file; {moved}",
                    path.display(),
                    MAX_FILE >> 20
                ));
            }
            Ok(_) => {
                let data = std::fs::read(path)
                    .map_err(|e| format!("cannot read the prekey file {}: {e}", path.display()))?;
                let text = std::str::from_utf8(&data).map_err(|_| {
                    format!(
                        "the prekey file {} is corrupt (not text); {moved}",
                        path.display()
                    )
                })?;
                PrekeyStore::parse(text).map_err(|e| {
                    format!(
                        "the prekey file {} is corrupt ({e}); {moved}",
                        path.display()
                    )
                })?
            }
        };
        Ok(Self {
            path: path.to_owned(),
            store: Mutex::new(store),
            writing: Mutex::new(()),
        })
    }

    /// Where it is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store, locked.
    pub fn lock(&self) -> MutexGuard<'_, PrekeyStore> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes the store's current state (blocking: call it off the async threads).
    pub fn save(&self) -> Result<(), String> {
        let _writing = self
            .writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let text = self.lock().to_text();
        crate::state::write_atomic(&self.path, text.as_bytes())
            .map_err(|e| format!("cannot save the prekey file: {e}"))
    }
}

/// A v2 message as a line.
fn line_of(m: &V2Message<'_>) -> Outgoing {
    Outgoing::Text(super::hub::v2_line_of(m))
}

/// What [`answer`] decided: the lines for the connection, and whether the store
/// changed (a save is due).
#[derive(Debug)]
pub struct Answer {
    /// Lines for the connection, in order.
    pub lines: Vec<Outgoing>,
    /// The store changed.
    pub changed: bool,
    /// A bundle took one of the last one-time prekeys of this user: it is sent
    /// `prekeys_low` with this count if connected.
    pub low: Option<(String, usize)>,
}

/// Answers a `prekeys` or `bundle_req` from `who` (a v2 connection): `None` for any
/// other message. `connected` finds the identity of a connected v2 user (a name the
/// registry does not reserve, with `--name-expiry 0`, is still served while its owner
/// is connected); `registry` says who owns a name at `now` (Unix seconds).
pub fn answer(
    msg: &V2Message<'_>,
    who: &Publisher<'_>,
    store: &mut PrekeyStore,
    registry: &registry::Registry,
    now: u64,
    connected: impl Fn(&str) -> Option<([u8; KEY_LEN], [u8; KEY_LEN])>,
) -> Option<Answer> {
    match *msg {
        V2Message::Prekeys {
            id,
            spk_id,
            spk,
            spk_sig,
            opks,
        } => {
            let done = store.publish(who, spk_id, &spk, &spk_sig, opks.iter());
            debug!(user = %who.name, result = ?done, "prekeys");
            let mut lines = vec![line_of(&V2Message::Ack {
                id,
                status: done.status(),
            })];
            if let Publish::Stored { left } | Publish::Full { left } = done
                && left < LOW
            {
                lines.push(low(left));
            }
            if done == Publish::NoRoom {
                warn!(user = %who.name, "the prekey store is full ({MAX_USERS} users): prekeys refused");
            }
            Some(Answer {
                lines,
                changed: matches!(done, Publish::Stored { .. } | Publish::Full { .. }),
                low: None,
            })
        }
        V2Message::BundleReq { user } => {
            let owner = registry.current(user, now).map(|o| (o.x, o.ed));
            let live = connected(user);
            let valid = |x: &[u8; KEY_LEN], ed: &[u8; KEY_LEN]| {
                owner == Some((*x, *ed)) || live == Some((*x, *ed))
            };
            let had = store.get(user).is_some();
            let taken = store.take(user, valid);
            let changed =
                taken.as_ref().is_some_and(|t| t.opk.is_some()) || (had && taken.is_none());
            let line = match &taken {
                Some(t) => {
                    let p = &t.published;
                    line_of(&V2Message::Bundle(Bundle {
                        peer: PeerIdentity {
                            name: user,
                            keys: PublicIdentity { x: p.x, ed: p.ed },
                            bind: p.bind,
                        },
                        spk_id: p.spk_id,
                        spk: p.spk,
                        spk_sig: p.spk_sig,
                        opk: t.opk,
                    }))
                }
                None if owner.is_some() || live.is_some() => line_of(&V2Message::Error {
                    code: ErrorCode::NoPrekeys,
                    user: Some(user),
                    text: &format!("{user} has published no prekeys"),
                }),
                None => line_of(&V2Message::Error {
                    code: ErrorCode::UnknownUser,
                    user: Some(user),
                    text: &format!("{user} is not a registered v2 user"),
                }),
            };
            debug!(user = %who.name, peer = %user, found = taken.is_some(), "bundle_req");
            let low = taken
                .as_ref()
                .filter(|t| t.opk.is_some() && t.left < LOW)
                .map(|t| (user.to_owned(), t.left));
            Some(Answer {
                lines: vec![line],
                changed,
                low,
            })
        }
        _ => None,
    }
}

/// The `prekeys_low` line.
fn low(left: usize) -> Outgoing {
    line_of(&V2Message::PrekeysLow {
        left: u32::try_from(left).unwrap_or(u32::MAX),
    })
}

/// The driver's side for a line from v2 connection `conn` registered as `who`: a
/// `prekeys` or `bundle_req` is answered into the connection's outbox (and the owner of
/// a bundle running low on one-time prekeys is told, if connected) and `true` is
/// returned; any other line is left to the router (`false`).
pub async fn v2_line<T: Outbox>(
    line: &[u8],
    who: &Publisher<'_>,
    conn: ConnId,
    prekeys: &std::sync::Arc<PrekeyFile>,
    names: &RegistryFile,
    hub: &Mutex<Hub<T>>,
) -> bool {
    // Only lines whose type is one of ours are parsed as v2 (cheap check first).
    if !(contains(line, b"\"prekeys\"")
        || contains(line, b"\"bundle_req\"")
        || contains(line, b"\"relay2\""))
    {
        return false;
    }
    let mut scratch = vec![0u8; line.len()];
    let msg = match v2json::parse(line, &mut scratch) {
        Ok(m) => m,
        Err(e) => {
            // A type v1 does not know either: a malformed v2 message (§12 `bad_message`,
            // the connection stays). Anything else is v1's to answer.
            let mut s1 = vec![0u8; line.len()];
            if seguro_core::msg::parse(line, &mut s1)
                != Err(seguro_core::msg::ParseError::UnknownType)
            {
                return false;
            }
            send(
                hub,
                conn,
                error(
                    ErrorCode::BadMessage,
                    None,
                    &format!("invalid v2 message: {e}"),
                ),
            );
            return true;
        }
    };
    if let V2Message::Relay2 { to, id, body, .. } = msg {
        relay2(hub, conn, who.name, to, id, body);
        return true;
    }
    let answer = {
        let h = lock(hub);
        let connected = |name: &str| h.router().v2_identity(name);
        let reg = names.lock();
        let mut store = prekeys.lock();
        let Some(a) = answer(
            &msg,
            who,
            &mut store,
            &reg,
            crate::admission::now(),
            connected,
        ) else {
            return false;
        };
        a
    };
    // Saved before the answer goes out: a one-time prekey handed out stays gone even
    // if the server dies right after.
    if answer.changed {
        let p = prekeys.clone();
        smol::unblock(move || {
            if let Err(e) = p.save() {
                warn!("{e}");
            }
        })
        .await;
    }
    let h = lock(hub);
    if let Some(t) = h.router().tag(conn) {
        for l in answer.lines {
            t.send(l);
        }
    }
    if let Some((owner, left)) = &answer.low
        && let Some(t) = h.router().tag_of(owner)
    {
        t.send(low(*left));
    }
    true
}

/// A `relay2` from `from` (protocol v2 §7.2): checked (recipient present, body base64
/// of at most [`MAX_BODY`] bytes), forwarded with `from` set by the server, and
/// acknowledged to the sender when it gave an `id` (§11).
fn relay2<T: Outbox>(
    hub: &Mutex<Hub<T>>,
    conn: ConnId,
    from: &str,
    to: Option<&str>,
    id: Option<u32>,
    body: &str,
) {
    let Some(to) = to else {
        send(
            hub,
            conn,
            error(
                ErrorCode::BadMessage,
                None,
                "invalid v2 message: relay2 without \"to\"",
            ),
        );
        return;
    };
    let mut buf = [0u8; MAX_BODY + 3];
    let decoded = if body.len() > MAX_BODY_B64 {
        None
    } else {
        match Base64::decode(body, &mut buf) {
            Ok(d) => Some(d.len()),
            Err(_) => {
                let text = format!("invalid v2 message to {to}: the body is not base64");
                send(hub, conn, error(ErrorCode::BadMessage, Some(to), &text));
                return;
            }
        }
    };
    if decoded.is_none_or(|n| n > MAX_BODY) {
        let text = format!("v2 message to {to} too large: at most {MAX_BODY} bytes");
        send(hub, conn, error(ErrorCode::TooLarge, Some(to), &text));
        return;
    }
    let Outgoing::Text(fwd) = line_of(&V2Message::Relay2 {
        to: None,
        from: Some(from),
        id: None,
        body,
    }) else {
        return;
    };
    let mut h = lock(hub);
    let forwarded = h.relay2(conn, to, fwd);
    debug!(from = %from, to = %to, forwarded, "relay2");
    if let Some(id) = id
        && let Some(t) = h.router().tag(conn)
    {
        t.send(Outgoing::Text(super::hub::ack_line(id, forwarded)));
    }
}

fn error(code: ErrorCode<'_>, user: Option<&str>, text: &str) -> Outgoing {
    line_of(&V2Message::Error { code, user, text })
}

fn send<T: Outbox>(hub: &Mutex<Hub<T>>, conn: ConnId, line: Outgoing) {
    if let Some(t) = lock(hub).router().tag(conn) {
        t.send(line);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use seguro_core::identity::Identity;

    fn identity() -> Identity {
        Identity::generate(&mut rand_core::OsRng, 0)
    }

    fn publisher<'a>(name: &'a str, id: &Identity) -> Publisher<'a> {
        Publisher {
            name,
            x: id.public(),
            ed: id.ed25519_public(),
            bind: id.bind(name).unwrap(),
        }
    }

    fn opks(ids: std::ops::Range<u32>) -> Vec<(u32, [u8; 32])> {
        ids.map(|i| (i, [i as u8; 32])).collect()
    }

    #[test]
    fn a_bad_signature_is_refused_and_opks_are_bounded_and_handed_out_once() {
        let alice = identity();
        let who = publisher("alice", &alice);
        let spk = [7u8; 32];
        let sig = alice.sign_prekey(3, &spk);
        let mut s = PrekeyStore::new();
        // Signed by another key, or for another id: refused, nothing stored.
        let other = identity().sign_prekey(3, &spk);
        assert_eq!(
            s.publish(&who, 3, &spk, &other, opks(0..2)),
            Publish::BadSignature
        );
        assert_eq!(
            s.publish(&who, 4, &spk, &sig, opks(0..2)),
            Publish::BadSignature
        );
        assert!(s.is_empty());
        assert_eq!(Publish::BadSignature.status(), AckStatus::Refused);
        // 10, then 10 more (2 already held): 16 stored, the rest refused as full.
        assert_eq!(
            s.publish(&who, 3, &spk, &sig, opks(0..10)),
            Publish::Stored { left: 10 }
        );
        assert_eq!(
            s.publish(&who, 3, &spk, &sig, opks(8..18)),
            Publish::Full { left: 16 }
        );
        assert_eq!(Publish::Full { left: 16 }.status(), AckStatus::Full);
        let ok = |_: &[u8; 32], _: &[u8; 32]| true;
        let mut seen = Vec::new();
        for i in 0..16 {
            let t = s.take("alice", ok).unwrap();
            assert_eq!(t.left, 15 - i);
            assert_eq!(t.published.spk_id, 3);
            seen.push(t.opk.unwrap().0);
        }
        assert_eq!(seen, (0..16).collect::<Vec<_>>());
        // None left: the bundle comes without one.
        let t = s.take("alice", ok).unwrap();
        assert_eq!((t.opk, t.left), (None, 0));
        assert!(s.take("bob", ok).is_none());
        // Prekeys of keys that no longer own the name are dropped.
        assert!(s.take("alice", |_, _| false).is_none());
        assert!(s.get("alice").is_none());
    }

    #[test]
    fn another_identity_for_the_name_starts_over_and_the_store_is_bounded() {
        let a1 = identity();
        let a2 = identity();
        let mut s = PrekeyStore::new().with_max_users(1);
        let spk = [1u8; 32];
        s.publish(
            &publisher("alice", &a1),
            1,
            &spk,
            &a1.sign_prekey(1, &spk),
            opks(0..5),
        );
        let r = s.publish(
            &publisher("alice", &a2),
            2,
            &spk,
            &a2.sign_prekey(2, &spk),
            opks(9..10),
        );
        assert_eq!(r, Publish::Stored { left: 1 });
        assert_eq!(s.get("alice").unwrap().ed, a2.ed25519_public());
        let b = identity();
        let r = s.publish(
            &publisher("bob", &b),
            1,
            &spk,
            &b.sign_prekey(1, &spk),
            opks(0..1),
        );
        assert_eq!(r, Publish::NoRoom);
        assert_eq!(r.status(), AckStatus::Refused);
    }

    #[test]
    fn text_round_trip_and_corruption_named_by_line() {
        let a = identity();
        let b = identity();
        let mut s = PrekeyStore::new();
        let spk = [5u8; 32];
        s.publish(
            &publisher("alice", &a),
            9,
            &spk,
            &a.sign_prekey(9, &spk),
            opks(1..4),
        );
        s.publish(
            &publisher("böb", &b),
            0,
            &spk,
            &b.sign_prekey(0, &spk),
            opks(0..0),
        );
        let text = s.to_text();
        assert_eq!(PrekeyStore::parse(&text).unwrap(), s);
        assert!(text.contains(" -\n"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        let bad = |t: String| PrekeyStore::parse(&t).unwrap_err().to_string();
        assert!(bad(format!("seguro-prekeys 2\n{}", lines[1])).contains("newer Seguro"));
        assert!(bad("nonsense".into()).contains("first line"));
        // A flipped signed prekey no longer verifies.
        let f: Vec<&str> = lines[1].split(' ').collect();
        let mut g = f.clone();
        let other = Base64::encode_string(&[6u8; 32]);
        g[6] = &other;
        assert_eq!(
            bad(format!("{HEADER}\n{}", g.join(" "))),
            "line 2: the signed prekey's signature does not verify"
        );
        let mut g = f.clone();
        g[8] = "1:AAAA";
        assert_eq!(
            bad(format!("{HEADER}\n{}", g.join(" "))),
            "line 2: bad one-time prekey"
        );
        let dup = format!("{HEADER}\n{}\n{}\n", lines[1], lines[1]);
        assert_eq!(bad(dup), "line 3: user listed twice");
        assert_eq!(
            bad(format!("{HEADER}\nuser x")),
            "line 2: expected 9 fields"
        );
        let many: Vec<String> = (0..17)
            .map(|i| format!("{i}:{}", Base64::encode_string(&[0u8; 32])))
            .collect();
        let mut g = f.clone();
        let joined = many.join(",");
        g[8] = &joined;
        assert_eq!(
            bad(format!("{HEADER}\n{}", g.join(" "))),
            "line 2: more one-time prekeys than a user may hold"
        );
    }

    #[test]
    fn the_file_is_owner_only_survives_a_reopen_and_a_corrupt_one_is_an_error() {
        let dir = std::env::temp_dir().join(format!("seguro-prekeys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(FILE);
        let _ = std::fs::remove_file(&path);
        let f = PrekeyFile::open(&path).unwrap();
        assert!(f.lock().is_empty());
        let a = identity();
        let spk = [5u8; 32];
        f.lock().publish(
            &publisher("alice", &a),
            9,
            &spk,
            &a.sign_prekey(9, &spk),
            opks(1..4),
        );
        f.save().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let g = PrekeyFile::open(&path).unwrap();
        assert_eq!(*g.lock(), *f.lock());
        std::fs::write(&path, "seguro-prekeys 1\nuser alice x\n").unwrap();
        let e = PrekeyFile::open(&path).unwrap_err();
        assert!(
            e.contains("is corrupt (line 2: expected 9 fields)") && e.contains("move it away"),
            "{e}"
        );
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(PrekeyFile::open(&path).unwrap_err().contains("not text"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
