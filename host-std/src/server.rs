//! The relay server: TLS accept loop, one task per connection, the user directory and routing.
//!
//! Every connection gets a bounded outbound queue and its own writer; nobody ever waits
//! for another connection's socket. A connection whose queue overflows (a slow or dead
//! reader) is disconnected. Directory pushes (`users`) after joins and leaves are
//! coalesced by one broadcaster task: a burst of joins sends one directory per user.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_rustls::TlsAcceptor;
use futures_rustls::server::TlsStream;
use smol::channel::{self, Receiver, Sender};
use smol::future::FutureExt as _;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use smol::{Executor, Timer};
use tracing::{debug, info, warn};

use seguro_core::limits::KEY_LEN;
use seguro_core::msg::{self, Message, ParseError, Relay, UserList};

/// One serialized line (JSON plus `\n`), shared between the queues it is sent to.
pub type Line = Arc<[u8]>;

/// Everything the server needs to run.
#[derive(Clone)]
pub struct Config {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// TLS configuration (see [`crate::tls::server_config`]).
    pub tls: Arc<rustls::ServerConfig>,
    /// Deadline from TCP accept to a registered `hello` (TLS handshake included).
    pub hello_timeout: Duration,
    /// Longest accepted line, in bytes; a longer one gets an `error` and is skipped.
    pub max_line: usize,
    /// Most simultaneous connections; more are closed at once.
    pub max_connections: usize,
    /// Messages per second a connection may send on average (0: unlimited).
    pub rate: u32,
    /// Messages a connection may send in a burst above `rate`.
    pub burst: u32,
    /// Lines a connection's outbound queue holds before the connection is dropped as too slow.
    pub queue: usize,
    /// Consecutive bad messages after which a connection is dropped.
    pub max_errors: u32,
    /// TCP keepalive idle time (probes follow at the same interval).
    pub keepalive: Duration,
    /// Deadline for writing one batch of lines to a peer.
    pub write_timeout: Duration,
    /// Pause before pushing a changed directory, so bursts of joins coalesce.
    pub users_debounce: Duration,
    /// Bytes per second that directory pushes may average (0: no spacing): after a
    /// push of B bytes in all (users × directory line), the next waits B ÷ this.
    pub users_push_rate: u64,
    /// Worker threads (0: one per CPU).
    pub threads: usize,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("hello_timeout", &self.hello_timeout)
            .field("max_line", &self.max_line)
            .field("max_connections", &self.max_connections)
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("queue", &self.queue)
            .field("max_errors", &self.max_errors)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The documented defaults, with `tls` and `bind` from the caller.
    pub fn new(bind: SocketAddr, tls: Arc<rustls::ServerConfig>) -> Self {
        Self {
            bind,
            tls,
            hello_timeout: Duration::from_secs(10),
            max_line: seguro_core::limits::SERVER_MAX_LINE,
            max_connections: 1024,
            rate: 50,
            burst: 100,
            queue: 256,
            max_errors: 20,
            keepalive: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            users_debounce: Duration::from_millis(5),
            users_push_rate: 10_000_000,
            threads: 0,
        }
    }
}

/// A registered user as the router sees it.
struct Peer {
    id: u64,
    key: [u8; KEY_LEN],
    tx: Sender<Line>,
    kill: Sender<()>,
    /// Directory version this peer has last been sent.
    seen: u64,
}

#[derive(Default)]
struct Directory {
    peers: HashMap<String, Peer>,
    version: u64,
}

struct State {
    cfg: Config,
    dir: Mutex<Directory>,
    active: AtomicUsize,
    next_id: AtomicU64,
    dirty: Sender<()>,
    cutoff_log: Mutex<LogBudget>,
}

/// Info-level lines about connections cut off before `hello` (failed handshakes, missed
/// deadlines) may average this many per second: a flood of them cannot fill the disk.
const CUTOFF_LOG_RATE: f64 = 2.0;
/// ... in bursts of this many.
const CUTOFF_LOG_BURST: f64 = 50.0;

/// Token bucket for [`State::log_cutoff`].
struct LogBudget {
    tokens: f64,
    last: Instant,
    /// Lines demoted to debug level since the last info-level one.
    demoted: u64,
}

impl LogBudget {
    fn new() -> Self {
        Self {
            tokens: CUTOFF_LOG_BURST,
            last: Instant::now(),
            demoted: 0,
        }
    }

    /// `Some(demoted since the last one)` if a line may go out at info level now.
    fn take(&mut self, now: Instant) -> Option<u64> {
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * CUTOFF_LOG_RATE).min(CUTOFF_LOG_BURST);
        if self.tokens < 1.0 {
            self.demoted += 1;
            return None;
        }
        self.tokens -= 1.0;
        Some(std::mem::take(&mut self.demoted))
    }
}

impl State {
    fn dir(&self) -> MutexGuard<'_, Directory> {
        // A panic while holding the lock cannot leave the map inconsistent in a way that
        // matters more than losing the server, so recover the guard.
        self.dir.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mark_dirty(&self) {
        let _ = self.dirty.try_send(());
    }

    /// Logs why a connection was cut off before registering: at info level within the
    /// budget, at debug level beyond it (and the next info line says how many).
    fn log_cutoff(&self, addr: SocketAddr, what: fmt::Arguments<'_>) {
        let allowed = self
            .cutoff_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(Instant::now());
        match allowed {
            Some(0) => info!(%addr, "{what}"),
            Some(n) => info!(
                %addr,
                "{what} ({n} earlier line(s) like this one logged at debug level only)"
            ),
            None => debug!(%addr, "{what}"),
        }
    }
}

/// Serializes a message into a fresh line.
pub fn line_of(m: &Message<'_>) -> Line {
    let mut v = vec![0u8; m.line_len()];
    match m.emit_line(&mut v) {
        Ok(n) => v.truncate(n),
        Err(e) => {
            // line_len is exact; fall back to the size the emitter asked for.
            v.resize(e.needed, 0);
            let n = m.emit_line(&mut v).unwrap_or(0);
            v.truncate(n);
        }
    }
    v.into()
}

fn error_line(text: &str) -> Line {
    line_of(&Message::Error { text })
}

/// The directory as a `users` (or `welcome`) line.
fn directory_line(dir: &Directory, welcome: bool) -> Line {
    let mut entries: Vec<(&str, &[u8; KEY_LEN])> = dir
        .peers
        .iter()
        .map(|(n, p)| (n.as_str(), &p.key))
        .collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let size: usize = entries.iter().map(|(n, _)| msg::packed_entry_len(n)).sum();
    let mut buf = vec![0u8; size];
    let users = match UserList::pack(entries.iter().copied(), &mut buf) {
        Ok(u) => u,
        Err(_) => UserList::EMPTY,
    };
    if welcome {
        line_of(&Message::Welcome { users })
    } else {
        line_of(&Message::Users { users })
    }
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    cfg: Config,
}

impl Server {
    /// Binds the listening socket.
    pub async fn bind(cfg: Config) -> io::Result<Self> {
        let listener = TcpListener::bind(cfg.bind).await?;
        Ok(Self { listener, cfg })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then closes every connection (sending TLS
    /// close_notify where the peer still reads) and returns.
    pub async fn run(self, ex: Arc<Executor<'static>>, shutdown: impl Future<Output = ()>) {
        let (dirty_tx, dirty_rx) = channel::bounded(1);
        let state = Arc::new(State {
            cfg: self.cfg,
            dir: Mutex::new(Directory::default()),
            active: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            dirty: dirty_tx,
            cutoff_log: Mutex::new(LogBudget::new()),
        });
        let broadcaster = ex.spawn(broadcaster(state.clone(), dirty_rx));
        let acceptor = TlsAcceptor::from(state.cfg.tls.clone());
        let accept_loop = async {
            let mut last_full_warning: Option<Instant> = None;
            loop {
                let (tcp, addr) = match self.listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn!("accept failed: {e}");
                        Timer::after(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if state.active.load(Ordering::Relaxed) >= state.cfg.max_connections {
                    if last_full_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        warn!(
                            "connection limit ({}) reached, refusing {addr}",
                            state.cfg.max_connections
                        );
                        last_full_warning = Some(Instant::now());
                    }
                    drop(tcp);
                    continue;
                }
                let guard = ActiveGuard::new(&state);
                let st = state.clone();
                let acc = acceptor.clone();
                ex.spawn(async move {
                    let _guard = guard;
                    connection(st, acc, tcp, addr).await;
                })
                .detach();
            }
        };
        accept_loop.or(shutdown).await;
        info!(
            "shutting down: closing {} connection(s)",
            state.active.load(Ordering::Relaxed)
        );
        drop(self.listener);
        broadcaster.cancel().await;
        // Let writers flush and send close_notify, then give up on them.
        {
            let d = state.dir();
            for p in d.peers.values() {
                let _ = p.tx.try_send(error_line("server shutting down"));
                p.tx.close();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while state.active.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            Timer::after(Duration::from_millis(20)).await;
        }
    }
}

struct ActiveGuard(Arc<State>);

impl ActiveGuard {
    fn new(state: &Arc<State>) -> Self {
        state.active.fetch_add(1, Ordering::Relaxed);
        Self(state.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs a server on its own executor with `cfg.threads` worker threads until `shutdown`.
///
/// `on_bound` is called with the bound address before the first accept.
pub fn run(
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_bound: impl FnOnce(SocketAddr),
) -> io::Result<()> {
    let threads = match cfg.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let ex = Arc::new(Executor::new());
    let (stop_tx, stop_rx) = channel::bounded::<()>(1);
    let mut workers = Vec::new();
    for i in 1..threads {
        let ex = ex.clone();
        let stop = stop_rx.clone();
        workers.push(
            std::thread::Builder::new()
                .name(format!("seguro-worker-{i}"))
                .spawn(move || smol::block_on(ex.run(stop.recv())))?,
        );
    }
    let result = smol::block_on(ex.run(async {
        let server = Server::bind(cfg).await?;
        on_bound(server.local_addr()?);
        server.run(ex.clone(), shutdown).await;
        Ok(())
    }));
    drop(stop_tx);
    for w in workers {
        let _ = w.join();
    }
    result
}

async fn broadcaster(state: Arc<State>, dirty: Receiver<()>) {
    let mut next_push: Option<Instant> = None;
    while dirty.recv().await.is_ok() {
        if !state.cfg.users_debounce.is_zero() {
            Timer::after(state.cfg.users_debounce).await;
        }
        // Each push costs (users × directory size) bytes, and the directory grows with
        // the users: the pause after a push is what it cost divided by a byte budget, so
        // however fast users join, pushes average at most `users_push_rate` bytes per
        // second and the total for N joins stays O(N²). Nobody waits for it to chat: a
        // recipient always gets the sender's key before the sender's first message.
        if let Some(t) = next_push {
            Timer::at(t).await;
        }
        // Swallow notifications that arrived during the pause: this push covers them.
        while dirty.try_recv().is_ok() {}
        let mut targets = Vec::new();
        let line = {
            let mut d = state.dir();
            let version = d.version;
            let line = directory_line(&d, false);
            for p in d.peers.values_mut() {
                if p.seen < version {
                    p.seen = version;
                    targets.push((p.tx.clone(), p.kill.clone()));
                }
            }
            line
        };
        let bytes = (targets.len() as u64).saturating_mul(line.len() as u64);
        next_push = push_gap(bytes, state.cfg.users_push_rate).map(|gap| Instant::now() + gap);
        for (tx, kill) in targets {
            deliver(&tx, &kill, state.cfg.queue, line.clone());
        }
    }
}

/// The pause after a directory push of `bytes` in all, at `rate` bytes per second.
fn push_gap(bytes: u64, rate: u64) -> Option<Duration> {
    if rate == 0 || bytes == 0 {
        return None;
    }
    // Whole microseconds, no floating point; at most about 5.8e5 years.
    let micros = u128::from(bytes) * 1_000_000 / u128::from(rate);
    Some(Duration::from_micros(
        u64::try_from(micros).unwrap_or(u64::MAX),
    ))
}

/// True for a `users` directory push (as serialized by [`line_of`]).
fn is_users_line(line: &[u8]) -> bool {
    line.starts_with(b"{\"type\":\"users\"")
}

/// True for a forwarded `relay` message.
fn is_relay_line(line: &[u8]) -> bool {
    line.starts_with(b"{\"type\":\"relay\"")
}

/// Drops `users` lines made stale by a newer one queued after them, unless a `relay`
/// line lies between the two (its sender's key must arrive before it, and the newer
/// directory may no longer list a sender who has since left).
fn drop_stale_directories(batch: &mut Vec<Line>) {
    let mut newer_ahead = false;
    // Decided from the back; `keep` is in reverse order.
    let mut keep = Vec::with_capacity(batch.len());
    for line in batch.iter().rev() {
        let users = is_users_line(line);
        keep.push(!(users && newer_ahead));
        if users {
            newer_ahead = true;
        } else if is_relay_line(line) {
            newer_ahead = false;
        }
    }
    let mut flags = keep.into_iter().rev();
    batch.retain(|_| flags.next().unwrap_or(true));
}

/// Queues `line` for a peer; a full queue (`queue` lines waiting) means the peer does
/// not read: drop it.
///
/// The queue itself is unbounded so that an idle connection does not hold `queue`
/// preallocated slots; the bound is enforced here from its length.
fn deliver(tx: &Sender<Line>, kill: &Sender<()>, queue: usize, line: Line) -> bool {
    if tx.len() >= queue.max(2) {
        kill.close();
        return false;
    }
    tx.try_send(line).is_ok()
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    Eof,
    Io(io::Error),
    HelloTimeout,
    BadHello(String),
    TooManyErrors,
    SlowReader,
    WriteTimeout,
    Shutdown,
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Eof => f.write_str("peer closed the connection"),
            Self::Io(e) => write!(f, "I/O error: {e}"),
            Self::HelloTimeout => f.write_str("no TLS handshake and hello before the deadline"),
            Self::BadHello(why) => write!(f, "refused hello: {why}"),
            Self::TooManyErrors => f.write_str("too many consecutive bad messages"),
            Self::SlowReader => f.write_str("outbound queue full (peer does not read)"),
            Self::WriteTimeout => f.write_str("write timed out"),
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

type Tls = TlsStream<TcpStream>;

/// Bytes read from TLS at a time (one buffer per connection, allocated up front).
const READ_BUF: usize = 4096;

/// Line and scratch buffers that grew above this are freed after use, so a connection
/// that once sent a long line does not keep `max_line` bytes while idle.
const KEEP_BUF: usize = 4096;

/// Reads TLS application data and splits it into lines.
///
/// Complete lines are parsed straight from the read buffer; only a line split across
/// reads is copied, into a buffer that grows on demand (up to `max_line`). A line longer
/// than `max_line` is reported once and the rest of it, up to its `\n`, is skipped.
struct LineReader {
    rd: smol::io::ReadHalf<Tls>,
    max_line: usize,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// The start of a line whose `\n` has not arrived yet.
    partial: Vec<u8>,
    /// Discarding the rest of an overlong line.
    skipping: bool,
    /// Scratch for the parser (escaped strings), sized to the line being parsed.
    scratch: Vec<u8>,
}

enum Got<'a> {
    /// A complete line (without `\n` or `\r\n`, never empty) and a scratch buffer
    /// at least as long as it.
    Line(&'a [u8], &'a mut [u8]),
    Overlong,
    Eof,
}

/// Frees a buffer that grew large; keeps a small one for reuse.
fn trim_buf(v: &mut Vec<u8>) {
    v.clear();
    if v.capacity() > KEEP_BUF {
        *v = Vec::new();
    }
}

impl LineReader {
    fn new(rd: smol::io::ReadHalf<Tls>, max_line: usize) -> Self {
        Self {
            rd,
            max_line,
            buf: vec![0u8; READ_BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            partial: Vec::new(),
            skipping: false,
            scratch: Vec::new(),
        }
    }

    /// Waits for the next line (or overlong line, or end of stream) and hands it to `f`.
    async fn next_with<R>(&mut self, f: impl FnOnce(Got<'_>) -> R) -> io::Result<R> {
        loop {
            if self.start < self.end {
                let input = self.buf.get(self.start..self.end).unwrap_or(&[]);
                let newline = input.iter().position(|&b| b == b'\n');
                if self.skipping {
                    match newline {
                        None => self.start = self.end,
                        Some(i) => {
                            self.skipping = false;
                            self.start += i + 1;
                        }
                    }
                    continue;
                }
                let Some(i) = newline else {
                    if self.partial.len() + input.len() > self.max_line {
                        trim_buf(&mut self.partial);
                        self.skipping = true;
                        self.start = self.end;
                        return Ok(f(Got::Overlong));
                    }
                    self.partial.extend_from_slice(input);
                    self.start = self.end;
                    continue;
                };
                let head = input.get(..i).unwrap_or(&[]);
                self.start += i + 1;
                if self.partial.len() + head.len() > self.max_line {
                    trim_buf(&mut self.partial);
                    return Ok(f(Got::Overlong));
                }
                let line: &[u8] = if self.partial.is_empty() {
                    head
                } else {
                    self.partial.extend_from_slice(head);
                    &self.partial
                };
                let line = match line {
                    [rest @ .., b'\r'] => rest,
                    l => l,
                };
                if line.is_empty() {
                    trim_buf(&mut self.partial);
                    continue;
                }
                self.scratch.clear();
                self.scratch.resize(line.len(), 0);
                let r = f(Got::Line(line, &mut self.scratch));
                trim_buf(&mut self.partial);
                trim_buf(&mut self.scratch);
                return Ok(r);
            }
            let n = self.rd.read(&mut self.buf).await?;
            if n == 0 {
                return Ok(f(Got::Eof));
            }
            self.start = 0;
            self.end = n;
        }
    }
}

async fn connection(state: Arc<State>, acceptor: TlsAcceptor, tcp: TcpStream, addr: SocketAddr) {
    let cfg = &state.cfg;
    set_keepalive(&tcp, cfg.keepalive);
    let deadline = Instant::now() + cfg.hello_timeout;
    let handshake = async { Some(acceptor.accept(tcp).await) };
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
    let (rd, mut wr) = smol::io::split(tls);
    let mut reader = LineReader::new(rd, cfg.max_line);

    // Registration: the first line must be a valid hello, before the deadline.
    let first = async { Some(read_hello(&state, &mut reader).await) }
        .or(async {
            Timer::at(deadline).await;
            None
        })
        .await;
    let hello = match first {
        None => {
            state.log_cutoff(addr, format_args!("{}", End::HelloTimeout));
            return;
        }
        Some(Err(end)) => {
            debug!(%addr, "{end}");
            return;
        }
        Some(Ok(Err(refusal))) => {
            info!(%addr, "{}", End::BadHello(refusal.clone()));
            let line = error_line(&refusal);
            let _ = async {
                let _ = wr.write_all(&line).await;
                let _ = wr.flush().await;
                let _ = wr.close().await;
            }
            .or(async {
                Timer::after(Duration::from_secs(2)).await;
            })
            .await;
            return;
        }
        Some(Ok(Ok(h))) => h,
    };

    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = channel::unbounded::<Line>();
    let (kill, killed) = channel::bounded::<()>(1);
    let name = hello.name;
    let registered = {
        let mut d = state.dir();
        if d.peers.contains_key(&name) {
            None
        } else {
            d.version += 1;
            let version = d.version;
            d.peers.insert(
                name.clone(),
                Peer {
                    id,
                    key: hello.key,
                    tx: tx.clone(),
                    kill: kill.clone(),
                    seen: version,
                },
            );
            let welcome = directory_line(&d, true);
            let _ = tx.try_send(welcome);
            Some(version)
        }
    };
    let Some(joined) = registered else {
        info!(%addr, user = %name, "refused hello: name already connected");
        let line = error_line(&format!("name \"{name}\" is already connected"));
        let _ = async {
            let _ = wr.write_all(&line).await;
            let _ = wr.flush().await;
            let _ = wr.close().await;
        }
        .or(async {
            Timer::after(Duration::from_secs(2)).await;
        })
        .await;
        return;
    };
    state.mark_dirty();
    info!(%addr, user = %name, "joined");

    let me = Me {
        name: name.clone(),
        joined,
        tx: tx.clone(),
        kill: kill.clone(),
        queue: cfg.queue,
    };
    drop(tx);
    drop(kill);
    let reading = session(&state, &me, &mut reader);
    let writing = writer(rx, &mut wr, cfg.write_timeout);
    let end = reading
        .or(writing)
        .or(async {
            let _ = killed.recv().await;
            End::SlowReader
        })
        .await;
    {
        let mut d = state.dir();
        if d.peers.get(&name).is_some_and(|p| p.id == id) {
            d.peers.remove(&name);
            d.version += 1;
        }
    }
    state.mark_dirty();
    info!(%addr, user = %name, "left: {end}");
}

struct Hello {
    name: String,
    key: [u8; KEY_LEN],
}

/// Reads the first line. Outer error: the connection died; inner error: the refusal text.
async fn read_hello(state: &State, reader: &mut LineReader) -> Result<Result<Hello, String>, End> {
    let max_line = state.cfg.max_line;
    reader
        .next_with(|got| match got {
            Got::Eof => Err(End::Eof),
            Got::Overlong => Ok(Err(format!(
                "first message must be hello (line longer than {max_line} bytes)"
            ))),
            Got::Line(line, scratch) => Ok(check_hello(line, scratch)),
        })
        .await
        .map_err(End::Io)?
}

fn check_hello(line: &[u8], scratch: &mut [u8]) -> Result<Hello, String> {
    match msg::parse(line, scratch) {
        Ok(Message::Hello { user, key }) => {
            if let Err(e) = msg::validate_name(user) {
                return Err(format!("invalid user name: {e}"));
            }
            if !crate::keycheck::is_contributory(&key) {
                return Err("invalid public key: low-order point".into());
            }
            Ok(Hello {
                name: user.to_owned(),
                key,
            })
        }
        Ok(_) => Err("first message must be hello".into()),
        Err(e) => Err(format!("first message must be a valid hello: {e}")),
    }
}

struct Me {
    name: String,
    /// Directory version that first listed this user.
    joined: u64,
    tx: Sender<Line>,
    kill: Sender<()>,
    /// Lines the outbound queue may hold.
    queue: usize,
}

impl Me {
    fn send(&self, line: Line) -> bool {
        deliver(&self.tx, &self.kill, self.queue, line)
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

async fn session(state: &State, me: &Me, reader: &mut LineReader) -> End {
    let cfg = &state.cfg;
    let mut errors = 0u32;
    let mut bucket = Bucket {
        tokens: f64::from(cfg.burst.max(1)),
        last: Instant::now(),
    };
    let mut last_rate_error: Option<Instant> = None;
    loop {
        enum Step {
            Line,
            Overlong,
            Eof,
        }
        // Rate-limit first, then parse and route inside the reader's callback (the line
        // is borrowed from the reader's buffer).
        let step = reader.next_with(|got| match got {
            Got::Eof => (Step::Eof, None),
            Got::Overlong => (Step::Overlong, None),
            Got::Line(line, scratch) => {
                if !take_token(cfg, &mut bucket) {
                    return (Step::Line, Some(Outcome::RateLimited));
                }
                (Step::Line, Some(handle(state, me, line, scratch)))
            }
        });
        let (step, outcome) = match step.await {
            Ok(x) => x,
            // A peer that just closes the TCP connection without TLS close_notify.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return End::Eof,
            Err(e) => return End::Io(e),
        };
        match step {
            Step::Eof => return End::Eof,
            Step::Overlong => {
                errors += 1;
                me.send(error_line(&format!(
                    "line too long (maximum {} bytes): skipped",
                    cfg.max_line
                )));
                if errors >= cfg.max_errors {
                    return End::TooManyErrors;
                }
                continue;
            }
            Step::Line => {}
        }
        match outcome {
            Some(Outcome::Ok) | None => errors = 0,
            Some(Outcome::RateLimited) => {
                errors += 1;
                if last_rate_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    last_rate_error = Some(Instant::now());
                    me.send(error_line("rate limit exceeded: message dropped"));
                }
                if errors >= cfg.max_errors {
                    return End::TooManyErrors;
                }
            }
            Some(Outcome::Error(text)) => {
                errors += 1;
                me.send(error_line(&text));
                if errors >= cfg.max_errors {
                    return End::TooManyErrors;
                }
            }
        }
    }
}

fn take_token(cfg: &Config, bucket: &mut Bucket) -> bool {
    if cfg.rate == 0 {
        return true;
    }
    let now = Instant::now();
    let dt = now.duration_since(bucket.last).as_secs_f64();
    bucket.last = now;
    let cap = f64::from(cfg.burst.max(1));
    bucket.tokens = (bucket.tokens + dt * f64::from(cfg.rate)).min(cap);
    if bucket.tokens < 1.0 {
        return false;
    }
    bucket.tokens -= 1.0;
    true
}

enum Outcome {
    Ok,
    RateLimited,
    Error(String),
}

fn parse_error_text(e: ParseError) -> String {
    match e {
        ParseError::UnknownType => "unknown message type".into(),
        e => format!("bad message: {e}"),
    }
}

fn handle(state: &State, me: &Me, line: &[u8], scratch: &mut [u8]) -> Outcome {
    let m = match msg::parse(line, scratch) {
        Ok(m) => m,
        Err(e) => return Outcome::Error(parse_error_text(e)),
    };
    match m {
        Message::List => {
            let l = directory_line(&state.dir(), false);
            me.send(l);
            Outcome::Ok
        }
        Message::Chat { text } => {
            let reply = format!("echo: {text}");
            me.send(line_of(&Message::Server { text: &reply }));
            Outcome::Ok
        }
        Message::Relay(r) => {
            let fwd = line_of(&Message::Relay(Relay {
                from: Some(&me.name),
                ..r
            }));
            let delivered = {
                let mut d = state.dir();
                let version = d.version;
                let needs_directory = d.peers.get(r.to).map(|p| p.seen < me.joined);
                match needs_directory {
                    None => false,
                    Some(needs) => {
                        // The recipient has not yet been sent a directory with the
                        // sender's key (the coalesced push may be pending): send it
                        // first, so the message can be decrypted on arrival.
                        let dir_line = needs.then(|| directory_line(&d, false));
                        if let Some(p) = d.peers.get_mut(r.to) {
                            if let Some(l) = dir_line {
                                p.seen = version;
                                deliver(&p.tx, &p.kill, state.cfg.queue, l);
                            }
                            deliver(&p.tx, &p.kill, state.cfg.queue, fwd);
                        }
                        true
                    }
                }
            };
            if delivered {
                debug!(from = %me.name, to = %r.to, "relayed");
            } else {
                // A mistake, not garbage: does not count towards max_errors.
                me.send(error_line(&format!("user not connected: {}", r.to)));
            }
            Outcome::Ok
        }
        Message::Hello { .. } => Outcome::Error("already registered".into()),
        Message::Welcome { .. }
        | Message::Users { .. }
        | Message::Server { .. }
        | Message::Error { .. } => Outcome::Error("unexpected message type from a client".into()),
    }
}

async fn writer(rx: Receiver<Line>, wr: &mut smol::io::WriteHalf<Tls>, timeout: Duration) -> End {
    loop {
        let Ok(first) = rx.recv().await else {
            // Queue closed: the server is shutting down.
            let _ = wr.close().await;
            return End::Shutdown;
        };
        // Write whatever else is queued before flushing once; of several directory
        // pushes queued for a reader that is behind, only the newest is written.
        let mut lines = vec![first];
        while let Ok(more) = rx.try_recv() {
            lines.push(more);
        }
        if lines.len() > 1 {
            drop_stale_directories(&mut lines);
        }
        let batch = async {
            for l in &lines {
                wr.write_all(l).await?;
            }
            wr.flush().await?;
            Ok::<_, io::Error>(None)
        };
        let res = batch
            .or(async {
                Timer::after(timeout).await;
                Ok(Some(End::WriteTimeout))
            })
            .await;
        match res {
            Ok(None) => {}
            Ok(Some(end)) => return end,
            Err(e) => return End::Io(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(n: usize) -> Line {
        let name = format!("u{n}");
        let key = [9u8; KEY_LEN];
        let mut buf = vec![0u8; msg::packed_entry_len(&name)];
        let list = UserList::pack([(name.as_str(), &key)], &mut buf).unwrap_or(UserList::EMPTY);
        line_of(&Message::Users { users: list })
    }

    fn relay(from: &str) -> Line {
        line_of(&Message::Relay(Relay {
            to: "bob",
            from: Some(from),
            alg: None,
            nonce: "AAAA",
            cipher: "AAAA",
        }))
    }

    #[test]
    fn only_the_newest_of_adjacent_directories_is_kept() {
        let err = error_line("x");
        let mut batch = vec![users(1), err.clone(), users(2), users(3)];
        drop_stale_directories(&mut batch);
        assert_eq!(batch, vec![err, users(3)]);
    }

    #[test]
    fn a_relay_keeps_the_directory_before_it() {
        let r = relay("carol");
        let mut batch = vec![users(1), users(2), r.clone(), users(3), users(4)];
        drop_stale_directories(&mut batch);
        assert_eq!(batch, vec![users(2), r, users(4)]);
    }

    #[test]
    fn line_kinds_are_recognized() {
        assert!(is_users_line(&users(1)));
        assert!(!is_users_line(&relay("a")));
        assert!(is_relay_line(&relay("a")));
        assert!(!is_users_line(&directory_line(&Directory::default(), true)));
    }

    #[test]
    fn push_gap_follows_the_byte_budget() {
        assert_eq!(
            push_gap(10_000_000, 10_000_000),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            push_gap(5_000, 10_000_000),
            Some(Duration::from_micros(500))
        );
        assert_eq!(push_gap(0, 10_000_000), None);
        assert_eq!(push_gap(1_000, 0), None);
        assert!(push_gap(u64::MAX, 1).is_some());
    }
}

#[cfg(test)]
mod log_budget_tests {
    use super::*;

    #[test]
    fn a_flood_is_demoted_and_counted() {
        let mut b = LogBudget::new();
        let t0 = b.last;
        let burst = CUTOFF_LOG_BURST as usize;
        // The burst at one instant, then demotions, counted.
        let allowed = (0..burst + 30).filter(|_| b.take(t0).is_some()).count();
        assert_eq!(allowed, burst);
        assert_eq!(b.demoted, 30);
        // A second later tokens are back; the next info line reports the demotions.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.take(t1), Some(30));
        assert_eq!(b.take(t1), Some(0));
        assert_eq!(b.take(t1), None);
    }
}
