//! Relay load with protocol v2 clients: the same P pairs, window W, S plaintext bytes
//! and D seconds as [`crate::relay`], but every client is a real v2 client
//! (`docs/protocol-v2.md` §2, §4, §5.5, §7.2, §11):
//!
//! 1. it connects over TLS pinning the server's certificate, sends a v2 `hello` and
//!    answers the server's `challenge` with the proof of possession (core's
//!    [`Client`] state machine does the `hello`, the `proof` and reads the `welcome`);
//! 2. it publishes its signed prekey and one-time prekeys (`prekeys`, [`OwnPrekeys`])
//!    and waits for the `ack` (`stored`);
//! 3. each sender waits until the directory lists its receiver as a v2 user whose
//!    binding verifies, fetches its bundle (`bundle_req` → `bundle`), checks that the
//!    bundle's keys are the directory's and sets up the X3DH session
//!    ([`Sessions::start`]);
//! 4. one first message goes each way before the measurement: a text from the sender
//!    (with the X3DH prelude) and a receipt back from the receiver, so the measured
//!    texts are ordinary Double Ratchet messages without the prelude (the steady state
//!    of a conversation);
//! 5. a `ping` on every connection, answered by a `pong` after everything queued before
//!    it (the directory deltas of the joins), so the measurement starts with empty
//!    queues.
//!
//! Then, for D seconds, each sender seals texts with [`Sessions::seal_text`] and sends
//! them as `relay2` lines with an `id`; the server forwards them and answers every one
//! with an `ack` to the sender; the receiver opens each with its [`Sessions`] (a failure
//! counts as `bad`) and checks the sequence number and send time in the plaintext
//! ([`crate::relay::plaintext`]) as the v1 load does. The window counts messages not yet
//! **delivered** (opened by the receiver), as in the v1 load; every `ack` must say
//! `forwarded` and there must be one per message sent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64ct::{Base64, Encoding as _};
use rand_core::{OsRng, RngCore as _};
use smol::Executor;
use smol::channel::{self, Sender};
use smol::future::FutureExt as _;
use smol::io::{AsyncWriteExt, ReadHalf, WriteHalf};

use seguro_core::chat::sessions::{OwnPrekeys, Received, Sessions};
use seguro_core::client::{Client, Event};
use seguro_core::identity::{Identity, PublicIdentity};
use seguro_core::msg::{self, Message};
use seguro_core::v2::json::{self as v2json, AckStatus, DirDelta, V2Message};
use seguro_core::v2::wire::{MAX_BODY, MAX_INNER};
use seguro_core::v2::x3dh::PeerIdentity;

use crate::net::{self, Got, Lines, Result, Target, Tls, now_ns};
use crate::relay::{self, Opts, PairStats, Report, parse_plaintext, plaintext};

/// Sessions per client: a sender talks to its receiver only, and back.
type Table = Sessions<1>;

/// How long one setup step may take.
const STEP: Duration = Duration::from_secs(20);

/// A v2 peer as the directory lists it (its binding verified).
#[derive(Clone, Copy)]
struct Listed {
    keys: PublicIdentity,
    bind: [u8; 64],
}

/// The v2 users of the directory, kept from `welcome`/`users` lines and `dir` deltas
/// (§2.2, §10), as a desktop client keeps them to open first messages.
#[derive(Default)]
struct Directory(HashMap<String, Listed>);

impl Directory {
    fn identity<'a>(&self, name: &'a str) -> Option<PeerIdentity<'a>> {
        self.0.get(name).map(|l| PeerIdentity {
            name,
            keys: l.keys,
            bind: l.bind,
        })
    }

    /// Applies `line` if it is a directory or a delta; true if it was one.
    fn observe(&mut self, line: &[u8]) -> bool {
        // Cheap first: a relay2's body is base64, so it holds neither word in quotes.
        if contains(line, b"\"users\"") {
            return self.directory(line);
        }
        if !contains(line, b"\"dir\"") {
            return false;
        }
        let mut scratch = vec![0u8; line.len()];
        let Ok(V2Message::Dir { delta, .. }) = v2json::parse(line, &mut scratch) else {
            return false;
        };
        match delta {
            DirDelta::Join(e) | DirDelta::Key(e) => {
                match (e.peer(), e.v2) {
                    (Some(p), Some(v)) if v.has_cap("v2") && p.verify().is_ok() => {
                        self.0.insert(
                            e.user.to_owned(),
                            Listed {
                                keys: p.keys,
                                bind: p.bind,
                            },
                        );
                    }
                    _ => {
                        self.0.remove(e.user);
                    }
                };
            }
            DirDelta::Leave { user } => {
                self.0.remove(user);
            }
        }
        true
    }

    /// A `welcome` or `users` line with its v2 section replaces the v2 users.
    fn directory(&mut self, line: &[u8]) -> bool {
        let mut s1 = vec![0u8; line.len()];
        let mut s2 = vec![0u8; line.len()];
        let Ok(Some(d)) = v2json::parse_directory_v2(line, &mut s1) else {
            return false;
        };
        let users = match msg::parse(line, &mut s2) {
            Ok(Message::Welcome { users } | Message::Users { users }) => users,
            _ => return false,
        };
        self.0.clear();
        for (name, v) in d.users.iter() {
            let Some(p) = d.peer(&users, name) else {
                continue;
            };
            if v.has_cap("v2") && p.verify().is_ok() {
                self.0.insert(
                    name.to_owned(),
                    Listed {
                        keys: p.keys,
                        bind: p.bind,
                    },
                );
            }
        }
        true
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A registered v2 client with its prekeys published.
struct Conn {
    name: String,
    me: Identity,
    sessions: Box<Table>,
    dir: Directory,
    lines: Lines<ReadHalf<Tls>>,
    wr: WriteHalf<Tls>,
    next_id: u32,
}

/// The error text of a server `error` line (v1's, or v2's with a `code`), if it is one.
fn error_text(line: &[u8]) -> Option<String> {
    if !contains(line, b"\"error\"") {
        return None;
    }
    let mut scratch = vec![0u8; line.len()];
    match msg::parse(line, &mut scratch) {
        Ok(Message::Error { text }) => Some(text.to_owned()),
        _ => None,
    }
}

/// A v2 message as a line.
fn line_of(m: &V2Message<'_>) -> Result<Vec<u8>> {
    let mut out = vec![0u8; m.line_len()];
    let n = m.emit_line(&mut out).map_err(|e| e.to_string())?;
    out.truncate(n);
    Ok(out)
}

impl Conn {
    /// Connects, says a v2 `hello`, answers the challenge and waits for the `welcome`,
    /// then publishes fresh prekeys and waits for their `ack`.
    async fn join(t: &Target, name: &str, max_line: usize) -> Result<Self> {
        let me = Identity::generate(&mut OsRng, 0);
        let (x, ed) = me.secrets();
        let mut client: Box<Client> = Box::new(
            Client::new(name, me.v1_key_pair()).map_err(|e| format!("user name {name}: {e}"))?,
        );
        client.enable_v2(Identity::from_secrets(&x, &ed, 0), t.spki)?;
        let (tls, _) = net::connect_tls_local(t, Arc::new(AtomicU64::new(0))).await?;
        let (rd, wr) = smol::io::split(tls);
        let own = OwnPrekeys::generate(&mut OsRng, OsRng.next_u32() >> 2, OsRng.next_u32() >> 2);
        let mut c = Self {
            name: name.to_owned(),
            me,
            sessions: Box::new(Sessions::new(own)),
            dir: Directory::default(),
            lines: Lines::new(rd, max_line),
            wr,
            next_id: 1,
        };
        let mut out = vec![0u8; 4096];
        let mut scratch = vec![0u8; max_line];
        loop {
            while let Some(n) = client.poll_transmit(&mut out)? {
                c.wr.write_all(out.get(..n).unwrap_or(&[])).await?;
            }
            c.wr.flush().await?;
            if client.is_registered() {
                break;
            }
            let line = c.raw_line("v2 welcome").await?;
            c.dir.observe(&line);
            client
                .handle_line(&line, &mut scratch)
                .map_err(|e| format!("{name}: the server sent something wrong: {e}"))?;
            while let Some(ev) = client.poll_event() {
                match ev {
                    Event::ServerError { text } => {
                        return Err(format!("{name} refused: {text}").into());
                    }
                    Event::ServerV1Only => {
                        return Err(format!(
                            "{name}: the server welcomed a v2 hello without a challenge: it \
                             speaks protocol v1 only"
                        )
                        .into());
                    }
                    _ => {}
                }
            }
        }
        if client.server_v2() != Some(true) {
            return Err(format!("{name}: not registered as a protocol v2 client").into());
        }
        // §5.5: the signed prekey and the one-time prekeys, acknowledged as stored.
        let id = c.id();
        let n = c
            .sessions
            .own()
            .emit_prekeys(id, &c.me, &mut out)
            .map_err(|e| e.to_string())?;
        c.wr.write_all(out.get(..n).unwrap_or(&[])).await?;
        c.wr.flush().await?;
        match c.ack(id, "prekeys ack").await? {
            AckStatus::Stored => Ok(c),
            s => Err(format!(
                "{name}: the server answered our prekeys with {}",
                s.as_str()
            )
            .into()),
        }
    }

    fn id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// The next line from the server (within [`STEP`]).
    async fn raw_line(&mut self, what: &str) -> Result<Vec<u8>> {
        let name = self.name.clone();
        let lines = &mut self.lines;
        net::timeout(STEP, &format!("{name}: {what}"), async {
            loop {
                let got = lines
                    .next_with(|g| match g {
                        Got::Line(l) => Some(Ok(l.to_vec())),
                        Got::Overlong => None,
                        Got::Eof => Some(Err(())),
                    })
                    .await?;
                match got {
                    Some(Ok(l)) => return Ok(l),
                    Some(Err(())) => {
                        return Err(format!("{name}: connection closed waiting for {what}").into());
                    }
                    None => {}
                }
            }
        })
        .await
    }

    /// The next line that is neither a directory nor a delta (those update the
    /// directory); a server `error` fails the step.
    async fn line(&mut self, what: &str) -> Result<Vec<u8>> {
        loop {
            let l = self.raw_line(what).await?;
            if self.dir.observe(&l) {
                continue;
            }
            if let Some(text) = error_text(&l) {
                return Err(
                    format!("{} waiting for {what}: the server said: {text}", self.name).into(),
                );
            }
            return Ok(l);
        }
    }

    /// Waits for the `ack` of `id`.
    async fn ack(&mut self, id: u32, what: &str) -> Result<AckStatus> {
        loop {
            let l = self.line(what).await?;
            let mut scratch = vec![0u8; l.len()];
            if let Ok(V2Message::Ack { id: i, status }) = v2json::parse(&l, &mut scratch)
                && i == id
            {
                return Ok(status);
            }
        }
    }

    async fn send(&mut self, line: &[u8]) -> Result<()> {
        self.wr.write_all(line).await?;
        self.wr.flush().await?;
        Ok(())
    }

    /// Sets up the session with `peer` as the initiator: waits for the directory to
    /// list it, fetches its bundle, checks it against the directory and starts.
    async fn start(&mut self, peer: &str) -> Result<()> {
        // The join's `dir` delta normally comes within milliseconds; if it has not after
        // 2 s, ask for the whole directory (`list`), as a user can, and say so.
        let what = format!("the directory listing {peer} as a v2 user");
        let t = Instant::now();
        let mut listed = false;
        while self.dir.identity(peer).is_none() {
            if !listed && t.elapsed() > Duration::from_secs(2) {
                eprintln!(
                    "note: {} was sent no directory listing {peer} within 2 s of its join: \
                     asking for it with `list`",
                    self.name
                );
                self.send(b"{\"type\":\"list\"}\n").await?;
                listed = true;
            }
            let _ = net::timeout(Duration::from_millis(200), &what, self.line(&what)).await;
            if t.elapsed() > STEP {
                return Err(format!("{}: timed out after {STEP:?}: {what}", self.name).into());
            }
        }
        self.send(&line_of(&V2Message::BundleReq { user: peer })?)
            .await?;
        loop {
            let l = self.line(&format!("the bundle of {peer}")).await?;
            let mut scratch = vec![0u8; l.len()];
            let Ok(V2Message::Bundle(b)) = v2json::parse(&l, &mut scratch) else {
                continue;
            };
            if b.peer.name != peer {
                continue;
            }
            let listed = self.dir.identity(peer).map(|p| p.keys);
            if listed != Some(b.peer.keys) {
                return Err(
                    format!("the bundle of {peer} has other keys than the directory").into(),
                );
            }
            self.sessions
                .start(&mut OsRng, &self.me, &self.name, &b)
                .map_err(|e| format!("{}: session with {peer}: {e}", self.name))?;
            return Ok(());
        }
    }

    /// Waits for a `relay2` from `peer` and opens it; what it carried.
    async fn receive(&mut self, peer: &str) -> Result<Opened> {
        loop {
            let l = self.line(&format!("a relay2 from {peer}")).await?;
            let mut scratch = vec![0u8; l.len()];
            let mut body = Vec::new();
            let mut out = vec![0u8; MAX_INNER];
            let o = open(
                &mut self.sessions,
                &self.me,
                &self.name,
                &self.dir,
                &l,
                &mut scratch,
                &mut body,
                &mut out,
            );
            match o {
                Err(Refused::NotRelay2) => {}
                Err(Refused::Other(why)) => {
                    return Err(
                        format!("{}: a relay2 from {peer} was refused: {why}", self.name).into(),
                    );
                }
                Ok(o) => return Ok(o),
            }
        }
    }
}

/// What an opened `relay2` carried.
#[derive(Debug, PartialEq, Eq)]
enum Opened {
    /// A text with its id and its (seq, send time), if it was one of ours.
    Text(u32, Option<(u64, u64)>),
    /// A receipt.
    Receipt,
    /// Anything else.
    Other,
}

/// Why [`open`] returned nothing.
enum Refused {
    /// The line is not a `relay2` with a sender.
    NotRelay2,
    /// It is one and could not be opened.
    Other(&'static str),
}

/// Opens the `relay2` line `line` with `sessions` (the sender's identity from `dir`).
#[allow(clippy::too_many_arguments)]
fn open(
    sessions: &mut Table,
    me: &Identity,
    my_name: &str,
    dir: &Directory,
    line: &[u8],
    scratch: &mut Vec<u8>,
    body: &mut Vec<u8>,
    out: &mut [u8],
) -> std::result::Result<Opened, Refused> {
    if scratch.len() < line.len() {
        scratch.resize(line.len(), 0);
    }
    let Ok(V2Message::Relay2 {
        from: Some(from),
        body: b64,
        ..
    }) = v2json::parse(line, scratch)
    else {
        return Err(Refused::NotRelay2);
    };
    body.resize(b64.len() / 4 * 3 + 3, 0);
    let body = Base64::decode(b64, body).map_err(|_| Refused::Other("the body is not base64"))?;
    let peer = dir
        .identity(from)
        .ok_or(Refused::Other("the sender is not listed as a v2 user"))?;
    let o = sessions
        .open(me, my_name, &peer, body, out)
        .map_err(|_| Refused::Other("it does not open"))?;
    Ok(match o.content {
        Received::Text { id, text } => Opened::Text(id, parse_plaintext(text.as_bytes())),
        Received::Receipt(_) => Opened::Receipt,
        Received::Control(_) => Opened::Other,
    })
}

/// Seals `text` for `to` and writes the `relay2` line with `id` into `line`.
fn relay2_line(
    sessions: &mut Table,
    to: &str,
    id: u32,
    text: &[u8],
    body: &mut Vec<u8>,
    b64: &mut Vec<u8>,
    line: &mut Vec<u8>,
) -> Result<()> {
    let text = std::str::from_utf8(text)?;
    body.resize(MAX_BODY, 0);
    let n = sessions
        .seal_text(&mut OsRng, to, text, body)
        .map_err(|e| format!("seal: {e}"))?;
    let sealed = body.get(..n).ok_or("seal length")?;
    b64.resize(Base64::encoded_len(sealed), 0);
    let b = Base64::encode(sealed, b64).map_err(|e| format!("base64: {e}"))?;
    let m = V2Message::Relay2 {
        to: Some(to),
        from: None,
        id: Some(id),
        body: b,
    };
    line.resize(m.line_len(), 0);
    let n = m.emit_line(line).map_err(|e| e.to_string())?;
    line.truncate(n);
    Ok(())
}

/// A pair set up: sender, receiver, their names.
struct Pair {
    s: Conn,
    r: Conn,
}

/// Sets up pair `i` (both registered, prekeys published, sessions both ways, the first
/// message and its receipt through).
async fn setup_pair(t: &Target, i: usize, tag: &str, max_line: usize) -> Result<Pair> {
    let (sn, rn) = (format!("s{i}-{tag}"), format!("r{i}-{tag}"));
    let mut s = Conn::join(t, &sn, max_line).await?;
    let mut r = Conn::join(t, &rn, max_line).await?;
    s.start(&rn).await?;
    // The first message (with the X3DH prelude), acknowledged as forwarded.
    let (mut body, mut b64, mut line) = (Vec::new(), Vec::new(), Vec::new());
    let id = s.id();
    relay2_line(
        &mut s.sessions,
        &rn,
        id,
        b"hello",
        &mut body,
        &mut b64,
        &mut line,
    )?;
    s.send(&line).await?;
    let st = s.ack(id, "the ack of the first message").await?;
    if st != AckStatus::Forwarded {
        return Err(format!(
            "the first message of {sn} was not forwarded: {}",
            st.as_str()
        )
        .into());
    }
    let text_id = match r.receive(&sn).await? {
        Opened::Text(id, _) => id,
        o => return Err(format!("{rn}: expected the first text, opened {o:?}").into()),
    };
    // The receipt back: the sender's session has heard from the receiver, so its later
    // messages carry no prelude.
    let mut rbody = vec![0u8; MAX_BODY];
    let n = r
        .sessions
        .seal_receipt(&mut OsRng, &sn, &[text_id], &mut rbody)
        .map_err(|e| format!("receipt: {e}"))?;
    let b = Base64::encode_string(rbody.get(..n).unwrap_or(&[]));
    let rid = r.id();
    r.send(&line_of(&V2Message::Relay2 {
        to: Some(&sn),
        from: None,
        id: Some(rid),
        body: &b,
    })?)
    .await?;
    let st = r.ack(rid, "the ack of the receipt").await?;
    if st != AckStatus::Forwarded {
        return Err(format!("the receipt of {rn} was not forwarded: {}", st.as_str()).into());
    }
    match s.receive(&rn).await? {
        Opened::Receipt => {}
        o => return Err(format!("{sn}: expected a receipt, opened {o:?}").into()),
    }
    if s.sessions
        .session(&rn)
        .and_then(|x| x.pending_prelude())
        .is_some()
    {
        return Err(format!("{sn}: the session still sends the prelude").into());
    }
    Ok(Pair { s, r })
}

/// A `ping` and everything up to its `pong`: what the server queued before is read.
async fn sync(c: &mut Conn) -> Result<()> {
    let id = c.id();
    c.send(&line_of(&V2Message::Ping { id })?).await?;
    loop {
        let l = c.line("the pong").await?;
        let mut scratch = vec![0u8; l.len()];
        if let Ok(V2Message::Pong { id: i }) = v2json::parse(&l, &mut scratch)
            && i == id
        {
            return Ok(());
        }
    }
}

/// Sets up the pairs (one after the other), runs the load and reports. `tag` makes the
/// user names unique.
pub async fn run(ex: Arc<Executor<'static>>, target: &Target, opts: &Opts) -> Result<Report> {
    if opts.size > seguro_core::v2::MAX_TEXT {
        return Err(format!(
            "protocol v2 texts hold at most {} bytes (--size {})",
            seguro_core::v2::MAX_TEXT,
            opts.size
        )
        .into());
    }
    let tag = format!("{:08x}", OsRng.next_u32());
    let mut pairs = Vec::new();
    for i in 0..opts.pairs {
        pairs.push(setup_pair(target, i, &tag, opts.max_line).await?);
    }
    smol::Timer::after(Duration::from_millis(300)).await;
    for p in &mut pairs {
        sync(&mut p.s).await?;
        sync(&mut p.r).await?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let server_errors = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let not_acked = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    let mut readers = Vec::new();
    let mut stats = Vec::new();
    let mut sent_counters = Vec::new();
    let cpu0 = opts.cpu_pid.and_then(net::proc_cpu_s);
    let me0 = net::proc_cpu_s(std::process::id());
    let t0 = now_ns();
    for Pair { s, r } in pairs {
        let (credit_tx, credit_rx) = channel::bounded::<()>(opts.window.max(1));
        let st = Arc::new(Mutex::new(PairStats::default()));
        stats.push(st.clone());
        // Receiver: open, check order, record latency, return credit.
        let Conn {
            name: rname,
            me,
            mut sessions,
            dir,
            mut lines,
            wr,
            ..
        } = r;
        let max_line = opts.max_line;
        let errs = server_errors.clone();
        let rn = rname.clone();
        readers.push(ex.spawn(async move {
            let _keep = wr;
            let mut dir = dir;
            let mut scratch = vec![0u8; max_line];
            let mut body = Vec::with_capacity(MAX_BODY);
            let mut out = vec![0u8; MAX_INNER];
            loop {
                let r = lines
                    .next_with(|g| match g {
                        Got::Line(l) => {
                            let o = open(
                                &mut sessions,
                                &me,
                                &rname,
                                &dir,
                                l,
                                &mut scratch,
                                &mut body,
                                &mut out,
                            );
                            let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
                            match o {
                                Ok(Opened::Text(_, Some((seq, ts)))) => {
                                    s.delivered(seq, ts);
                                    let _ = credit_rx.try_recv();
                                }
                                Ok(_) => s.bad += 1,
                                Err(Refused::Other(_)) => s.bad += 1,
                                Err(Refused::NotRelay2) => {
                                    drop(s);
                                    if !dir.observe(l) && error_text(l).is_some() {
                                        errs.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                            }
                            false
                        }
                        Got::Overlong => false,
                        Got::Eof => true,
                    })
                    .await;
                if !matches!(r, Ok(false)) {
                    return;
                }
            }
        }));
        // Sender's incoming lines: acks, errors.
        let Conn {
            mut sessions,
            mut lines,
            mut wr,
            mut next_id,
            ..
        } = s;
        let (errs, ok, nok) = (server_errors.clone(), acked.clone(), not_acked.clone());
        readers.push(ex.spawn(async move {
            let mut scratch = vec![0u8; 1024];
            loop {
                let r = lines
                    .next_with(|g| match g {
                        Got::Line(l) => {
                            if contains(l, b"\"ack\"") {
                                if scratch.len() < l.len() {
                                    scratch.resize(l.len(), 0);
                                }
                                match v2json::parse(l, &mut scratch) {
                                    Ok(V2Message::Ack {
                                        status: AckStatus::Forwarded,
                                        ..
                                    }) => ok.fetch_add(1, Ordering::Relaxed),
                                    Ok(V2Message::Ack { .. }) => {
                                        nok.fetch_add(1, Ordering::Relaxed)
                                    }
                                    _ => 0,
                                };
                            } else if error_text(l).is_some() {
                                errs.fetch_add(1, Ordering::Relaxed);
                            }
                            false
                        }
                        Got::Overlong => false,
                        Got::Eof => true,
                    })
                    .await;
                if !matches!(r, Ok(false)) {
                    return;
                }
            }
        }));
        let stop = stop.clone();
        let size = opts.size;
        let sent_ctr = Arc::new(AtomicU64::new(0));
        sent_counters.push(sent_ctr.clone());
        senders.push(ex.spawn(async move {
            let mut seq = 0u64;
            let mut plain = Vec::with_capacity(size + 64);
            let (mut body, mut b64) = (Vec::new(), Vec::new());
            let mut line = Vec::with_capacity(size * 2 + 256);
            let mut send_one = |seq: u64, line: &mut Vec<u8>| -> Result<()> {
                plaintext(seq, now_ns(), size, &mut plain);
                let id = next_id;
                next_id = next_id.wrapping_add(1);
                relay2_line(&mut sessions, &rn, id, &plain, &mut body, &mut b64, line)
            };
            let credit: &Sender<()> = &credit_tx;
            while !stop.load(Ordering::Relaxed) {
                if credit.send(()).await.is_err() {
                    break;
                }
                send_one(seq, &mut line)?;
                seq += 1;
                wr.write_all(&line).await?;
                sent_ctr.store(seq, Ordering::Relaxed);
                while !stop.load(Ordering::Relaxed) && credit.try_send(()).is_ok() {
                    send_one(seq, &mut line)?;
                    seq += 1;
                    wr.write_all(&line).await?;
                    sent_ctr.store(seq, Ordering::Relaxed);
                }
                wr.flush().await?;
            }
            Ok::<WriteHalf<Tls>, net::Error>(wr)
        }));
    }
    smol::Timer::after(Duration::from_secs_f64(opts.secs)).await;
    stop.store(true, Ordering::Relaxed);
    // A sender still waiting for credit after 10 s has lost messages: stop it anyway.
    let mut writers = Vec::new();
    let stop_deadline = Instant::now() + Duration::from_secs(10);
    let mut failed_senders = 0;
    for s in senders {
        let left = stop_deadline.saturating_duration_since(Instant::now());
        let r = s
            .or(async {
                smol::Timer::after(left).await;
                Err("sender stuck".into())
            })
            .await;
        match r {
            Ok(w) => writers.push(w),
            Err(_) => failed_senders += 1,
        }
    }
    let sent: Vec<u64> = sent_counters
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    let total: u64 = sent.iter().sum();
    // Wait (up to 10 s) for everything sent to arrive and be acknowledged.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let delivered = stats
            .iter()
            .zip(&sent)
            .all(|(st, n)| st.lock().unwrap_or_else(|e| e.into_inner()).received >= *n);
        let acks = acked.load(Ordering::Relaxed) + not_acked.load(Ordering::Relaxed);
        if (delivered && acks >= total) || Instant::now() > deadline {
            break;
        }
        smol::Timer::after(Duration::from_millis(5)).await;
    }
    let cpu1 = opts.cpu_pid.and_then(net::proc_cpu_s);
    let me1 = net::proc_cpu_s(std::process::id());
    let mut rep = Report {
        sent: total,
        server_errors: server_errors.load(Ordering::Relaxed),
        server_cpu_s: cpu0.zip(cpu1).map(|(a, b)| b - a),
        tool_cpu_s: me0.zip(me1).map(|(a, b)| b - a),
        acked: Some(acked.load(Ordering::Relaxed)),
        not_acked: not_acked.load(Ordering::Relaxed),
        failed_senders,
        ..Report::default()
    };
    relay::fill_report(&mut rep, &stats, t0);
    for mut w in writers {
        let _ = net::timeout(Duration::from_secs(2), "close", async {
            w.close().await?;
            Ok(())
        })
        .await;
    }
    for r in readers {
        r.cancel().await;
    }
    Ok(rep)
}
