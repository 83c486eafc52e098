//! One connection: TLS, the `hello` deadline, the reading loop and the writer.
//!
//! Every connection has its own task, its own writer and a bounded outbound queue
//! ([`Handle`]); nobody ever waits for another connection's socket. Backpressure, not
//! loss: a connection over its rate, or whose own queue is full, is read more slowly
//! (TCP carries that back to the sender); a relay waits for room in its recipient's
//! queue (the hub refuses it, naming the recipient, if there is still none); a
//! connection whose writer makes no progress for the write timeout is disconnected.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use futures_rustls::TlsAcceptor;
use futures_rustls::server::TlsStream;
use smol::Timer;
use smol::future::FutureExt as _;
use smol::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use smol::net::TcpStream;
use tracing::{debug, info, warn};

use seguro_core::identity::PublicIdentity;
use seguro_core::limits::KEY_LEN;
use seguro_core::msg::{Message, validate_name};
use seguro_core::v2::identity::{Challenge, HelloProof, verify_binding};
use seguro_core::v2::json::{self as v2json, ErrorCode, V2Message, parse_hello_v2};

use super::admission::Admitted;
use super::bucket::TokenBucket;
use super::hub::{self, Outbox, Outgoing, Prepared, error_line};
use super::proxy::{self, Source};
use super::push;
use super::queue::{Kill, Next, OutQueue};
use super::reader::{Got, LineReader};
use super::registry::{self, Verdict};
use super::router::V2User;
use super::router::{Close, Input, Joined, Refusal};
use super::{State, V2_CAPS, V2Config};

type Tls = TlsStream<TcpStream>;

/// How long a connection that is being closed may take to send what is queued (the
/// refusal of its `hello`, or the error that closed it).
const LAST_WORDS: Duration = Duration::from_secs(2);

/// A connection's outbound queue, as the hub holds it.
#[derive(Debug, Clone)]
pub(super) struct Handle(Arc<OutQueue>);

impl Outbox for Handle {
    fn send(&self, item: Outgoing) {
        self.0.push(item);
    }

    fn offer(&self, item: Outgoing) -> Result<(), Outgoing> {
        self.0.offer(item)
    }

    fn close(&self, reason: Close) {
        self.0.kill(Kill::Closed(reason));
    }
}

impl Handle {
    /// Queues the shutdown notice and closes the queue: the writer sends what is
    /// queued, then TLS close_notify.
    pub(super) fn shutdown(&self) {
        self.0
            .push(Outgoing::Text(error_line("server shutting down")));
        self.0.close();
    }
}

/// Why a connection ended.
#[derive(Debug)]
pub(super) enum End {
    Eof,
    /// TCP closed without TLS close_notify (a killed process, a cut link).
    AbruptEof,
    Io(io::Error),
    HelloTimeout,
    Closed(Close),
    SlowReader,
    WriteTimeout,
    LineTimeout,
    Idle,
    Shutdown,
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Eof => f.write_str("peer closed the connection"),
            Self::AbruptEof => f.write_str("peer closed the connection abruptly"),
            Self::Io(e) => write!(f, "I/O error: {e}"),
            Self::HelloTimeout => f.write_str("no TLS handshake and hello before the deadline"),
            Self::Closed(reason) => write!(f, "{reason}"),
            Self::SlowReader => f.write_str("outbound queue full (peer does not read)"),
            Self::WriteTimeout => {
                f.write_str("write timed out (the peer read nothing for the write timeout)")
            }
            Self::LineTimeout => {
                f.write_str("a line started but not finished within the line timeout")
            }
            Self::Idle => f.write_str("silent for the idle timeout"),
            Self::Shutdown => f.write_str("server shutting down"),
        }
    }
}

fn set_keepalive(tcp: &TcpStream, idle: Duration) {
    let sock = socket2::SockRef::from(tcp);
    let ka = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(idle);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let ka = ka.with_retries(4);
    if let Err(e) = sock.set_tcp_keepalive(&ka) {
        debug!("cannot set TCP keepalive: {e}");
    }
    let _ = tcp.set_nodelay(true);
}

/// A refused `hello`, owned.
struct Refused {
    text: String,
    /// The name, when it is already taken.
    taken: Option<String>,
    /// Protocol v2's error code (§12), sent as `code` beside `text`.
    code: Option<ErrorCode<'static>>,
}

impl Refused {
    fn v2(code: ErrorCode<'static>, text: String) -> Self {
        Self {
            text,
            taken: None,
            code: Some(code),
        }
    }

    fn line(&self) -> hub::Line {
        let Some(code) = self.code else {
            return error_line(&self.text);
        };
        let m = V2Message::Error {
            code,
            user: None,
            text: &self.text,
        };
        let mut out = vec![0u8; m.line_len()];
        match m.emit_line(&mut out) {
            Ok(n) => {
                out.truncate(n);
                out.into()
            }
            Err(_) => error_line(&self.text),
        }
    }
}

impl From<Refusal<'_>> for Refused {
    fn from(r: Refusal<'_>) -> Self {
        Self {
            text: r.to_string(),
            taken: match r {
                Refusal::NameTaken(name) => Some(name.to_owned()),
                _ => None,
            },
            code: None,
        }
    }
}

/// A registered connection, and the X25519 key its name is registered to if it
/// proved a v2 identity (its `last_seen` is updated when it leaves).
type Registered = (Joined, Option<[u8; KEY_LEN]>);

/// Serves one accepted TCP connection to its end.
pub(super) async fn connection(
    state: Arc<State>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
) {
    let cfg = &state.cfg;
    let mut tcp = tcp;
    let mut addr = addr;
    set_keepalive(&tcp, cfg.keepalive);
    let deadline = Instant::now() + cfg.hello_timeout;
    if cfg.proxy_protocol {
        let header = async { Some(proxy::read_header(&mut tcp).await) }
            .or(async {
                Timer::at(deadline).await;
                None
            })
            .await;
        match header {
            Some(Ok(Source::Client(real))) => {
                debug!(%real, proxy = %addr, "PROXY header");
                addr = real;
            }
            Some(Ok(Source::Local)) => debug!(%addr, "PROXY header without a client address"),
            Some(Err(e)) => {
                state.log_cutoff(addr, format_args!("refused: {e}"));
                return;
            }
            None => {
                state.log_cutoff(
                    addr,
                    format_args!("refused: no PROXY header before the deadline"),
                );
                return;
            }
        }
    }
    // Behind a tunnel without the PROXY protocol every client is the tunnel's agent on
    // loopback: limiting that one source would limit everyone together.
    let _source = if !cfg.proxy_protocol && addr.ip().is_loopback() {
        None
    } else {
        match state.sources.admit(addr.ip(), Instant::now()) {
            Ok(guard) => Some(guard),
            Err(refused) => {
                state.log_cutoff(addr, format_args!("{refused}"));
                return;
            }
        }
    };
    // On the handshake thread; dropping the task (at the deadline) cancels it.
    let handshake = state
        .handshakes
        .spawn(async move { acceptor.accept(tcp).await });
    let handshake = async { Some(handshake.await) };
    let tls = match handshake
        .or(async {
            Timer::at(deadline).await;
            None
        })
        .await
    {
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            state.log_cutoff(addr, format_args!("TLS handshake failed: {e}"));
            return;
        }
        None => {
            state.log_cutoff(addr, format_args!("{}", End::HelloTimeout));
            return;
        }
    };
    {
        let c = tls.get_ref().1;
        debug!(
            %addr,
            version = ?c.protocol_version(),
            resumed = c.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
            "TLS session established"
        );
    }
    let (mut rd, mut wr) = smol::io::split(tls);
    let mut reader = LineReader::new(cfg.max_line);
    let queue = Arc::new(OutQueue::new(
        cfg.queue.max(2),
        cfg.queue_bytes,
        state.budget.clone(),
    ));
    let handle = Handle(queue.clone());

    // Registration: the first line must be a valid hello, before the deadline.
    let first =
        async { Some(read_hello(&state, &mut reader, &mut rd, &mut wr, handle, deadline).await) }
            .or(async {
                Timer::at(deadline).await;
                None
            })
            .await;
    let me = match first {
        None => {
            state.log_cutoff(addr, format_args!("{}", End::HelloTimeout));
            return;
        }
        Some(Err(end)) => {
            debug!(%addr, "{end}");
            return;
        }
        Some(Ok(Err(refused))) => {
            match &refused.taken {
                Some(name) => info!(%addr, user = %name, "refused hello: name already connected"),
                None => info!(%addr, "refused hello: {}", refused.text),
            }
            let line = refused.line();
            let _ = async {
                let _ = wr.write_all(&line).await;
                let _ = wr.flush().await;
                let _ = wr.close().await;
            }
            .or(async {
                Timer::after(LAST_WORDS).await;
            })
            .await;
            return;
        }
        Some(Ok(Ok(registered))) => registered,
    };
    let (me, v2_key) = me;
    if me.resumed {
        // Same name and key within the grace: the directory did not change.
        info!(%addr, user = %me.name, "reconnected");
    } else {
        state.mark_dirty();
        info!(%addr, user = %me.name, "joined");
    }

    let end = {
        let reading = pin!(session(&state, &me, &queue, &mut reader, &mut rd));
        let writing = pin!(writer(&queue, &mut wr, cfg.write_timeout));
        let killed = pin!(async {
            // Also while the writer is stuck on a peer that does not read.
            match queue.killed().await {
                Kill::SlowReader => End::SlowReader,
                Kill::Closed(reason) => End::Closed(reason),
            }
        });
        Race::new([reading, writing, killed]).await
    };
    // A connection lost rather than closed may come back: its name is held for the
    // reconnect grace. A clean close (close_notify), or one the server decided, is a
    // leave now.
    let lost = matches!(end, End::AbruptEof | End::Io(_) | End::WriteTimeout);
    let handle = state.hub().disconnect(me.id, lost.then(Instant::now));
    drop(handle);
    if let (Some(v2), Some(key)) = (state.cfg.v2.clone(), v2_key) {
        let name = me.name.clone();
        smol::unblock(move || {
            let touched = v2.names.lock().touch(&name, &key, crate::admission::now());
            if touched && let Err(e) = v2.names.save() {
                warn!("{e}");
            }
        })
        .await;
    }
    queue.close();
    state.mark_dirty();
    if matches!(end, End::Closed(_)) {
        // Closed by the router: the error that says why is queued.
        let _ = writer(&queue, &mut wr, cfg.write_timeout)
            .or(async {
                Timer::after(LAST_WORDS).await;
                End::WriteTimeout
            })
            .await;
    }
    if lost && !cfg.reconnect_grace.is_zero() {
        info!(
            %addr, user = %me.name,
            "left: {end}; still listed for {}s in case of a reconnect",
            cfg.reconnect_grace.as_secs_f32()
        );
    } else {
        info!(%addr, user = %me.name, "left: {end}");
    }
}

/// Reads the first line and registers it (with protocol v2's proof and name
/// ownership when the server has them). Outer error: the connection died; inner
/// error: the refusal.
async fn read_hello(
    state: &State,
    reader: &mut LineReader,
    rd: &mut ReadHalf<Tls>,
    wr: &mut WriteHalf<Tls>,
    handle: Handle,
    deadline: Instant,
) -> Result<Result<Registered, Refused>, End> {
    loop {
        if let Some(got) = reader.next_line() {
            // A `hello` on a v2 server goes through the registry (and the proof, for a
            // v2 one): its line is copied, since the reader is needed again.
            let copy = match (&state.cfg.v2, &got) {
                (Some(_), Got::Line { line, .. }) if is_usable_hello(line) => Some(line.to_vec()),
                _ => None,
            };
            if let (Some(copy), Some(v2)) = (copy, state.cfg.v2.clone()) {
                return v2_hello(state, &v2, copy, reader, rd, wr, handle, deadline).await;
            }
            let input = match got {
                Got::Line { line, scratch } => hub::parse(line, scratch),
                Got::Overlong => Input::Overlong,
            };
            if let Some(denied) = admit(state, &input).await {
                return Ok(Err(denied));
            }
            return Ok(state
                .hub()
                .hello(input, handle)
                .map(|j| (j, None))
                .map_err(Refused::from));
        }
        match reader.fill(rd).await {
            Ok(true) => {}
            Ok(false) => return Err(End::Eof),
            Err(e) => return Err(End::Io(e)),
        }
    }
}

/// A `hello` whose name and key the router would not refuse outright (those are
/// refused with the router's words, before any v2 step).
fn is_usable_hello(line: &[u8]) -> bool {
    let mut scratch = vec![0u8; line.len()];
    matches!(
        seguro_core::msg::parse(line, &mut scratch),
        Ok(Message::Hello { user, key, .. })
            if validate_name(user).is_ok() && !seguro_core::e2ee::is_low_order(&key)
    )
}

/// A `hello` on a server with v2 (`docs/protocol-v2.md` §2.2, §4): admission, the
/// registry's verdict, then for a v2 `hello` the challenge and its proof, then the
/// router.
#[allow(clippy::too_many_arguments)]
async fn v2_hello(
    state: &State,
    v2: &Arc<V2Config>,
    copy: Vec<u8>,
    reader: &mut LineReader,
    rd: &mut ReadHalf<Tls>,
    wr: &mut WriteHalf<Tls>,
    handle: Handle,
    deadline: Instant,
) -> Result<Result<Registered, Refused>, End> {
    let mut scratch = vec![0u8; copy.len()];
    let input = hub::parse(&copy, &mut scratch);
    let Input::Message(Message::Hello { user, key, .. }) = input else {
        return Ok(state
            .hub()
            .hello(input, handle)
            .map(|j| (j, None))
            .map_err(Refused::from));
    };
    if let Some(denied) = admit(state, &input).await {
        return Ok(Err(denied));
    }
    let hello_v2 = match parse_hello_v2(&copy) {
        // A `v2` field without the `v2` capability: the client does not speak v2.
        Ok(h) => h.filter(|h| h.has_cap("v2")),
        Err(e) => {
            return Ok(Err(Refused::v2(
                ErrorCode::BadHello,
                format!("invalid v2 hello: {e}"),
            )));
        }
    };
    let ids = hello_v2.map(|h| PublicIdentity { x: key, ed: h.ed });
    if let (Some(h), Some(ids)) = (&hello_v2, &ids)
        && let Err(e) = verify_binding(user, ids, &h.bind)
    {
        return Ok(Err(Refused::v2(
            ErrorCode::BadHello,
            format!("invalid v2 hello: the binding of the name to the keys: {e}"),
        )));
    }
    let now = crate::admission::now();
    let verdict = v2
        .names
        .lock()
        .check(user, &key, ids.as_ref().map(|i| &i.ed), now);
    match verdict {
        Verdict::Taken => {
            let days = v2.names.lock().expiry_days();
            return Ok(Err(Refused::v2(
                ErrorCode::NameTaken,
                format!(
                    "the name {user} belongs to another key; it is released after {days} \
                     days unused (if it is yours, move your identity from the other \
                     machine: `seguro id export {user} FILE` there, `seguro id import \
                     FILE` here)"
                ),
            )));
        }
        Verdict::ProofRequired => {
            return Ok(Err(Refused::v2(
                ErrorCode::ProofRequired,
                format!(
                    "the name {user} is registered to a v2 identity: connect with a client \
                     that proves it (a Seguro client)"
                ),
            )));
        }
        Verdict::Free | Verdict::Owner => {}
    }
    let (Some(h), Some(ids)) = (hello_v2, ids) else {
        return Ok(state
            .hub()
            .hello(input, handle)
            .map(|j| (j, None))
            .map_err(Refused::from));
    };

    // The challenge (§4.1): a fresh nonce and X25519 key pair, wiped when dropped.
    let challenge = Challenge::generate(&mut rand_core::OsRng);
    let line = emit(&V2Message::Challenge {
        nonce: *challenge.nonce(),
        eph: *challenge.eph_public(),
        caps: V2_CAPS,
    });
    wr.write_all(&line).await.map_err(End::Io)?;
    wr.flush().await.map_err(End::Io)?;
    // The proof, before the proof timeout (and before the hello deadline, so that the
    // client hears why).
    let until = (Instant::now() + v2.proof_timeout).min(
        deadline
            .checked_sub(Duration::from_millis(200))
            .unwrap_or(deadline),
    );
    let answer = async { Some(read_owned_line(reader, rd).await) }
        .or(async {
            Timer::at(until).await;
            None
        })
        .await;
    let proof = match answer {
        None => {
            return Ok(Err(Refused::v2(
                ErrorCode::ProofTimeout,
                "no proof within the time allowed".into(),
            )));
        }
        Some(Err(end)) => return Err(end),
        Some(Ok(line)) => {
            let mut scratch = vec![0u8; line.as_ref().map_or(0, Vec::len)];
            match line.as_deref().map(|l| v2json::parse(l, &mut scratch)) {
                Some(Ok(V2Message::Proof { sig, mac })) => HelloProof { sig, mac },
                _ => {
                    return Ok(Err(Refused::v2(
                        ErrorCode::BadProof,
                        "expected the proof answering the challenge".into(),
                    )));
                }
            }
        }
    };
    let checked = challenge.verify(user, &ids, &h.bind, &v2.spki, &proof);
    drop(challenge);
    if let Err(e) = checked {
        return Ok(Err(Refused::v2(
            ErrorCode::BadProof,
            format!("the proof does not verify: {e}"),
        )));
    }
    let entry = V2User {
        caps: h.caps.to_owned(),
        ed: h.ed,
        bind: h.bind,
    };
    let name = user.to_owned();
    let joined = state.hub().hello_v2(input, handle, Some(entry));
    let joined = match joined {
        Ok(j) => j,
        Err(r) => return Ok(Err(Refused::from(r))),
    };
    let v2c = v2.clone();
    let ed = h.ed;
    smol::unblock(move || {
        let done = v2c.names.lock().register(&name, &key, &ed, now);
        match done {
            registry::Registered::New | registry::Registered::Refreshed => {
                if let Err(e) = v2c.names.save() {
                    warn!("{e}");
                }
            }
            registry::Registered::Unchanged => {}
            registry::Registered::Full => warn!(
                user = %name,
                "the name registry is full ({} names, none expired): this name is not reserved",
                registry::MAX_NAMES
            ),
        }
    })
    .await;
    debug!(user = %joined.name, "v2 proof accepted");
    Ok(Ok((joined, Some(key))))
}

/// The next line as owned bytes (`None`: overlong).
async fn read_owned_line(
    reader: &mut LineReader,
    rd: &mut ReadHalf<Tls>,
) -> Result<Option<Vec<u8>>, End> {
    loop {
        if let Some(got) = reader.next_line() {
            return Ok(match got {
                Got::Line { line, .. } => Some(line.to_vec()),
                Got::Overlong => None,
            });
        }
        match reader.fill(rd).await {
            Ok(true) => {}
            Ok(false) => return Err(End::Eof),
            Err(e) => return Err(End::Io(e)),
        }
    }
}

/// A v2 message as a line.
fn emit(m: &V2Message<'_>) -> Vec<u8> {
    let mut out = vec![0u8; m.line_len()];
    let n = m.emit_line(&mut out).unwrap_or(0);
    out.truncate(n);
    out
}

/// On a private server, the admission check of a `hello` the router would accept
/// (others go on to be refused by the router, with its words): the refusal, if any.
async fn admit(state: &State, input: &Input<'_>) -> Option<Refused> {
    let gate = state.cfg.admission.clone()?;
    let &Input::Message(Message::Hello { user, key, token }) = input else {
        return None;
    };
    if validate_name(user).is_err() || seguro_core::e2ee::is_low_order(&key) {
        return None;
    }
    let (name, token) = (user.to_owned(), token.map(str::to_owned));
    let verdict =
        smol::unblock(move || gate.check(&key, &name, token.as_deref(), crate::admission::now()))
            .await;
    match verdict {
        Ok(Admitted::Redeemed { id }) => {
            info!(user, "admitted by join token {id} (a use counted)");
            None
        }
        Ok(how) => {
            debug!(user, "admitted: {how:?}");
            None
        }
        Err(denied) => Some(Refused {
            text: denied.to_string(),
            taken: None,
            code: None,
        }),
    }
}

/// Reads and routes lines until the connection ends or the router closes it.
async fn session(
    state: &State,
    me: &Joined,
    queue: &OutQueue,
    reader: &mut LineReader,
    rd: &mut ReadHalf<Tls>,
) -> End {
    let cfg = &state.cfg;
    let mut bucket = (cfg.rate > 0).then(|| {
        TokenBucket::new(
            f64::from(cfg.rate),
            f64::from(cfg.burst.max(1)),
            Instant::now(),
        )
    });
    let mut line_started: Option<Instant> = None;
    let mut last_heard = Instant::now();
    // A v2 connection's identity, for its `prekeys` and `bundle_req` (protocol v2 §5.5).
    let v2_me = cfg.v2.as_ref().and_then(|v| {
        let (x, u) = state.hub().router().v2_of(me.id)?;
        Some((v.clone(), x, u))
    });
    // A v2 client pings when silent (protocol v2 §11): its silence means a dead link.
    let idle_timeout = if state.hub().router().is_v2(me.id) {
        cfg.idle_timeout_v2
    } else {
        cfg.idle_timeout
    };
    loop {
        // Every complete line of what one read delivered, then the next read.
        while let Some(got) = reader.next_line() {
            // Nobody reads a connection's replies faster than it reads them itself.
            queue.room(0).await;
            let p = match got {
                Got::Overlong => Prepared::new(Input::Overlong),
                Got::Line { line, scratch } => {
                    // Over its rate, a connection waits for its next token: reading
                    // pauses, and TCP slows the sender down. Nothing is dropped.
                    if let Some(b) = bucket.as_mut() {
                        while let Some(wait) = b.wait(Instant::now()) {
                            Timer::after(wait).await;
                        }
                    }
                    if let Some((v2, x, u)) = &v2_me {
                        let who = super::prekeys::Publisher {
                            name: &me.name,
                            x: *x,
                            ed: u.ed,
                            bind: u.bind,
                        };
                        if super::prekeys::v2_line(
                            line,
                            &who,
                            me.id,
                            &v2.prekeys,
                            &v2.names,
                            &state.hub,
                        )
                        .await
                        {
                            continue;
                        }
                    }
                    hub::prepare(line, scratch, &me.name)
                }
            };
            if let Some((to, len)) = p.relay_to() {
                // A full recipient slows its senders for up to a third of the write
                // timeout; then the hub refuses the relay, naming the recipient (who
                // is cut off at the write timeout if it reads nothing at all).
                let target = state.hub().router().tag_of(to).cloned();
                if let Some(Handle(q)) = target {
                    let _ = async {
                        q.room(len).await;
                        true
                    }
                    .or(async {
                        Timer::after(cfg.write_timeout / 3).await;
                        false
                    })
                    .await;
                }
            }
            if let Some(reason) = state.hub().handle(me.id, p) {
                return End::Closed(reason);
            }
        }
        // Slow attacks: a line once started must end within the line timeout, and a
        // registered connection may not stay silent past the idle timeout.
        let now = Instant::now();
        if reader.in_line() {
            line_started.get_or_insert(now);
        } else {
            line_started = None;
        }
        let line_deadline = line_started
            .filter(|_| !cfg.line_timeout.is_zero())
            .map(|t| (t + cfg.line_timeout, End::LineTimeout));
        let idle_deadline =
            (!idle_timeout.is_zero()).then(|| (last_heard + idle_timeout, End::Idle));
        let deadline = match (line_deadline, idle_deadline) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        };
        let read = async { Ok(reader.fill(rd).await) };
        let res = match deadline {
            Some((at, why)) => {
                read.or(async {
                    Timer::at(at).await;
                    Err(why)
                })
                .await
            }
            None => read.await,
        };
        match res {
            Err(why) => return why,
            Ok(Ok(true)) => last_heard = Instant::now(),
            Ok(Ok(false)) => return End::Eof,
            // A peer that just closes the TCP connection without TLS close_notify.
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return End::AbruptEof,
            Ok(Err(e)) => return End::Io(e),
        }
    }
}

/// Writes what is queued, in batches (one flush per batch), until the queue closes or
/// the connection is killed.
async fn writer(queue: &OutQueue, wr: &mut WriteHalf<Tls>, timeout: Duration) -> End {
    loop {
        let mut batch = match queue.next().await {
            Next::Batch(b) => b,
            Next::Killed(Kill::SlowReader) => return End::SlowReader,
            Next::Killed(Kill::Closed(reason)) => return End::Closed(reason),
            Next::Closed => {
                // The server is shutting down, or the connection is closing.
                let _ = wr.close().await;
                return End::Shutdown;
            }
        };
        let held: usize = batch.iter().map(Outgoing::len).sum();
        push::coalesce(&mut batch);
        // One TLS write for the whole batch: rustls seals it into as few records as fit
        // (16 KiB each) and sends them in one socket write, where a write per line costs
        // a record and a system call per line. The buffer lives for this batch only, so
        // an idle connection holds none.
        let out = gather(&batch);
        let write = async {
            wr.write_all(&out).await?;
            wr.flush().await?;
            Ok::<_, io::Error>(None)
        };
        let res = write
            .or(async {
                Timer::after(timeout).await;
                Ok(Some(End::WriteTimeout))
            })
            .await;
        queue.written(held);
        match res {
            Ok(None) => {}
            Ok(Some(end)) => return end,
            Err(e) => return End::Io(e),
        }
    }
}

/// A connection's reading, writing and kill watch: the first to end ends all three.
type Branch<'a> = Pin<&'a mut (dyn Future<Output = End> + Send + 'a)>;

/// Runs a connection's branches in its one task, polling each only when its own waker
/// fired. (`or` polls every branch at every wake: each line queued for the connection
/// woke its writer and also re-polled its reader, a `recv` that found nothing and a
/// re-registration with epoll, per wake.)
struct Race<'a, const N: usize> {
    branches: [Branch<'a>; N],
    wakers: [Waker; N],
    shared: Arc<Shared>,
}

/// What the branches' wakers share: which fired, and the task to wake.
struct Shared {
    fired: AtomicUsize,
    task: Mutex<Option<Waker>>,
}

/// The waker of one branch.
struct BranchWaker {
    shared: Arc<Shared>,
    bit: usize,
}

impl Wake for BranchWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.fired.fetch_or(self.bit, Ordering::AcqRel);
        let task = self
            .shared
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(w) = task {
            w.wake();
        }
    }
}

impl<'a, const N: usize> Race<'a, N> {
    fn new(branches: [Branch<'a>; N]) -> Self {
        let shared = Arc::new(Shared {
            // Every branch is polled the first time.
            fired: AtomicUsize::new(usize::MAX),
            task: Mutex::new(None),
        });
        let wakers = std::array::from_fn(|i| {
            Waker::from(Arc::new(BranchWaker {
                shared: shared.clone(),
                bit: 1 << i,
            }))
        });
        Self {
            branches,
            wakers,
            shared,
        }
    }
}

impl<const N: usize> Future for Race<'_, N> {
    type Output = End;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<End> {
        let this = self.get_mut();
        {
            let mut task = this.shared.task.lock().unwrap_or_else(|e| e.into_inner());
            if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        // Taken before polling: a wake during the polls is kept for the next round.
        let fired = this.shared.fired.swap(0, Ordering::AcqRel);
        for (i, (branch, waker)) in this.branches.iter_mut().zip(&this.wakers).enumerate() {
            if fired & (1 << i) != 0
                && let Poll::Ready(end) = branch.as_mut().poll(&mut Context::from_waker(waker))
            {
                return Poll::Ready(end);
            }
        }
        Poll::Pending
    }
}

/// The lines of a batch, end to end (borrowed when the batch is one line).
fn gather(batch: &VecDeque<Outgoing>) -> Cow<'_, [u8]> {
    match batch.len() {
        1 => Cow::Borrowed(batch.front().map_or(&[][..], Outgoing::bytes)),
        _ => {
            let mut out = Vec::with_capacity(batch.iter().map(Outgoing::len).sum());
            for item in batch {
                out.extend_from_slice(item.bytes());
            }
            Cow::Owned(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::hub::Line;

    /// The size of the future an `impl FnOnce` returns, without calling it.
    fn future_size<A, B, C, D, F: Future>(_: impl FnOnce(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// What an idle connection holds inline, beside rustls's heap (BENCHMARKS.md §13):
    /// printed for the memory breakdown, and bounded so that a change that makes a
    /// connection's task much larger is noticed.
    #[test]
    fn per_connection_sizes() {
        use std::mem::size_of;
        let task = future_size(connection);
        let sizes = [
            ("connection task future", task),
            (
                "rustls::ServerConnection",
                size_of::<rustls::ServerConnection>(),
            ),
            ("TlsStream<TcpStream>", size_of::<Tls>()),
            (
                "smol TcpStream (Arc<Async<std TcpStream>>)",
                size_of::<TcpStream>(),
            ),
            (
                "async_io::Async<std::net::TcpStream>",
                size_of::<smol::Async<std::net::TcpStream>>(),
            ),
            ("OutQueue", size_of::<OutQueue>()),
            ("LineReader", size_of::<LineReader>()),
            ("Handle", size_of::<Handle>()),
        ];
        for (what, n) in sizes {
            println!("size_of {what}: {n} bytes");
        }
        assert!(size_of::<Tls>() >= size_of::<rustls::ServerConnection>());
        assert!(task < 8192, "the connection task's future is {task} bytes");
    }

    /// A branch that counts its polls and is ready once `ready` is set and it is woken.
    async fn counted(polls: &AtomicUsize, ready: &std::sync::atomic::AtomicBool, out: End) -> End {
        std::future::poll_fn(|cx| {
            polls.fetch_add(1, Ordering::SeqCst);
            if ready.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                // Park: a wake comes from the test only.
                WAKERS.lock().unwrap().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        out
    }

    static WAKERS: Mutex<Vec<Waker>> = Mutex::new(Vec::new());

    #[test]
    fn race_polls_only_the_branch_that_was_woken_and_ends_with_the_first_ready() {
        use std::sync::atomic::AtomicBool;
        let (pa, pb) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let (ra, rb) = (AtomicBool::new(false), AtomicBool::new(false));
        let a = pin!(counted(&pa, &ra, End::Eof));
        let b = pin!(counted(&pb, &rb, End::Idle));
        let mut race = pin!(Race::new([a as Branch<'_>, b]));
        let task_woken = Arc::new(Flag(AtomicBool::new(false)));
        let task = Waker::from(task_woken.clone());
        let mut cx = Context::from_waker(&task);
        assert!(race.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            (pa.load(Ordering::SeqCst), pb.load(Ordering::SeqCst)),
            (1, 1)
        );
        let wakers: Vec<Waker> = WAKERS.lock().unwrap().drain(..).collect();
        // Polled again without a wake: nobody is polled.
        assert!(race.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            (pa.load(Ordering::SeqCst), pb.load(Ordering::SeqCst)),
            (1, 1)
        );
        // Waking the second branch wakes the task and polls only that branch.
        rb.store(true, Ordering::SeqCst);
        wakers[1].wake_by_ref();
        assert!(task_woken.0.load(Ordering::SeqCst));
        assert!(matches!(
            race.as_mut().poll(&mut cx),
            Poll::Ready(End::Idle)
        ));
        assert_eq!(
            (pa.load(Ordering::SeqCst), pb.load(Ordering::SeqCst)),
            (1, 2)
        );
    }

    struct Flag(std::sync::atomic::AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_batch_is_gathered_in_order_and_one_line_is_not_copied() {
        let a = Outgoing::Relay(Line::from(&b"a\n"[..]));
        let b = Outgoing::Text(Line::from(&b"bc\n"[..]));
        let two = VecDeque::from([a.clone(), b]);
        assert_eq!(&*gather(&two), b"a\nbc\n");
        let one = VecDeque::from([a]);
        assert!(matches!(gather(&one), Cow::Borrowed(b"a\n")));
        assert!(gather(&VecDeque::new()).is_empty());
    }
}
