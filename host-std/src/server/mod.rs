//! The relay server: a sans-IO router and the drivers around it.
//!
//! - [`router`]: pure routing (connection ids and parsed messages in, typed deliveries
//!   out); it owns the directory, its version and name ownership.
//! - [`hub`]: the router with its wire side: lines serialized and pushed into each
//!   connection's outbox; what the in-process tests drive.
//! - `conn`: TLS, sockets and one task per connection (reading loop and writer).
//! - [`push`]: the directory broadcaster, its pacing, and the newest-directory rule.
//! - [`queue`]: a connection's outbound queue (counted in lines and bytes).
//! - [`reader`]: core's line framer over storage that grows on demand.
//! - [`bucket`]: the token bucket (message rate, log budget).
//! - [`admission`]: who a private server admits (join tokens, allow list).
//! - [`names`]: the name policy (UTS #39: normalization, refused characters, reserved
//!   names, look-alikes of connected names).
//! - [`proxy`]: the PROXY protocol header (v1, v2) a tunnel sends before TLS.
//! - [`source`]: per-source limits (connections at once, new connections per second).
//!
//! Every connection gets a bounded outbound queue and its own writer; nobody ever waits
//! for another connection's socket. Nothing well-formed is dropped for rate or for a
//! full queue without the sender being told: a connection over its rate is read more
//! slowly; one whose own queue is full is not read until it drains; a relay to a full
//! queue waits for room, and is refused with an error naming the recipient if there is
//! none by the write timeout; a connection whose writer has made no progress for the
//! write timeout (it reads nothing) is disconnected. Directory pushes (`users`) after joins and leaves are
//! coalesced by one broadcaster task: a burst of joins sends one directory per user.

pub mod admission;
pub mod bucket;
mod conn;
pub mod hub;
pub mod names;
pub mod prekeys;
pub mod proxy;
pub mod push;
pub mod queue;
pub mod reader;
pub mod registry;
pub mod router;
pub mod source;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_rustls::TlsAcceptor;
use smol::channel::{self, Sender};
use smol::future::FutureExt as _;
use smol::net::TcpListener;
use smol::{Executor, Timer};
use tracing::{debug, info, warn};

use bucket::TokenBucket;
use conn::Handle;
use hub::Hub;

pub use hub::{Line, line_of};

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
    /// Lines a connection's outbound queue holds (its own reading pauses, relays to it
    /// wait, then are refused, while it is full).
    pub queue: usize,
    /// Bytes a connection's outbound queue holds (queued or being written), same rules.
    pub queue_bytes: usize,
    /// Bytes all outbound queues may hold together, same rules.
    pub memory_budget: usize,
    /// Consecutive bad messages after which a connection is dropped.
    pub max_errors: u32,
    /// How long a user whose connection was lost (not closed cleanly) stays listed,
    /// held for a reconnect with the same key, before the leave (zero: leave at once).
    /// Relays to a held user get an `error` naming them.
    pub reconnect_grace: Duration,
    /// TCP keepalive idle time (probes follow at the same interval).
    pub keepalive: Duration,
    /// Deadline for writing one batch of lines to a peer.
    pub write_timeout: Duration,
    /// Once a line has started, its end must arrive within this (zero: no limit).
    pub line_timeout: Duration,
    /// A registered connection that sends nothing for this long is closed (zero: never).
    pub idle_timeout: Duration,
    /// The same for a v2 connection, which pings when it has nothing to say (protocol
    /// v2 §11: two ping intervals and the allowance; zero: never).
    pub idle_timeout_v2: Duration,
    /// Pause before pushing a changed directory, so bursts of joins coalesce.
    pub users_debounce: Duration,
    /// Bytes per second that directory pushes may average (0: no spacing): after a
    /// push of B bytes in all (users × directory line), the next waits B ÷ this.
    pub users_push_rate: u64,
    /// Worker threads that relay (0: one per CPU); TLS handshakes run on one more.
    pub threads: usize,
    /// A private server's admission check (`None`: everyone is admitted).
    pub admission: Option<Arc<crate::admission::Gate>>,
    /// Every connection starts with a PROXY protocol header (v1 or v2) carrying the
    /// real client address; a connection without a valid one is closed.
    pub proxy_protocol: bool,
    /// Per-source limits, on the real client address. Without `proxy_protocol`,
    /// loopback sources are exempt: behind a tunnel they are the tunnel's agent, which
    /// carries every client.
    pub per_source: source::Limits,
    /// Protocol v2's `hello` proof and name ownership (`None`: the server speaks v1
    /// only, and answers a v2 `hello` as v1, as an old server would).
    pub v2: Option<Arc<V2Config>>,
}

/// What the server needs for protocol v2's `hello` (`docs/protocol-v2.md` §2, §4).
#[derive(Debug)]
pub struct V2Config {
    /// SHA-256 of the DER SubjectPublicKeyInfo of the server's certificate: what
    /// clients pin, and what their proofs sign.
    pub spki: [u8; 32],
    /// Registered names (§4.3).
    pub names: registry::RegistryFile,
    /// Published prekeys (§5.5).
    pub prekeys: Arc<prekeys::PrekeyFile>,
    /// How long a client has to answer the `challenge`.
    pub proof_timeout: Duration,
}

/// The capabilities a `challenge` announces: what this server implements of v2.
pub const V2_CAPS: &str = "v2 prekeys dir ping";

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
            .field("queue_bytes", &self.queue_bytes)
            .field("memory_budget", &self.memory_budget)
            .field("max_errors", &self.max_errors)
            .field("reconnect_grace", &self.reconnect_grace)
            .field("private", &self.admission.is_some())
            .field("proxy_protocol", &self.proxy_protocol)
            .field("per_source", &self.per_source)
            .field("v2", &self.v2.is_some())
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
            queue_bytes: 1 << 20,
            memory_budget: 256 << 20,
            max_errors: 20,
            reconnect_grace: Duration::from_secs(10),
            keepalive: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            line_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(3600),
            idle_timeout_v2: Duration::from_secs(50),
            users_debounce: Duration::from_millis(5),
            users_push_rate: 10_000_000,
            threads: 0,
            admission: None,
            proxy_protocol: false,
            per_source: source::Limits::default(),
            v2: None,
        }
    }
}

struct State {
    cfg: Config,
    hub: Mutex<Hub<Handle>>,
    active: AtomicUsize,
    dirty: Sender<()>,
    cutoff_log: Mutex<LogBudget>,
    budget: Arc<queue::Budget>,
    sources: Arc<source::Sources>,
    /// Runs TLS handshakes on a thread of their own, so that a storm of new connections
    /// (each one a certificate signature and a key exchange) does not delay the
    /// connections already relaying; the established stream comes back to the
    /// connection's task.
    handshakes: Arc<Executor<'static>>,
}

/// Info-level lines about connections cut off before `hello` (failed handshakes, missed
/// deadlines) may average this many per second: a flood of them cannot fill the disk.
const CUTOFF_LOG_RATE: f64 = 2.0;
/// ... in bursts of this many.
const CUTOFF_LOG_BURST: f64 = 50.0;

/// The budget of [`State::log_cutoff`].
struct LogBudget {
    bucket: TokenBucket,
    /// Lines demoted to debug level since the last info-level one.
    demoted: u64,
}

impl LogBudget {
    fn new(now: Instant) -> Self {
        Self {
            bucket: TokenBucket::new(CUTOFF_LOG_RATE, CUTOFF_LOG_BURST, now),
            demoted: 0,
        }
    }

    /// `Some(demoted since the last one)` if a line may go out at info level now.
    fn take(&mut self, now: Instant) -> Option<u64> {
        if !self.bucket.take(now) {
            self.demoted += 1;
            return None;
        }
        Some(std::mem::take(&mut self.demoted))
    }
}

impl State {
    fn hub(&self) -> MutexGuard<'_, Hub<Handle>> {
        // A panic while holding the lock cannot leave the router inconsistent in a way
        // that matters more than losing the server, so recover the guard.
        self.hub.lock().unwrap_or_else(|e| e.into_inner())
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
        let handshakes = Arc::new(Executor::new());
        let (tls_stop, tls_stopped) = channel::bounded::<()>(1);
        let tls_thread = {
            let hs = handshakes.clone();
            std::thread::Builder::new()
                .name("seguro-tls".into())
                // `futures_lite`'s `block_on` only parks: this thread never holds the
                // I/O reactor, so the relay threads (`smol::block_on`) wait on epoll
                // themselves. With both in `smol::block_on`, an idle handshake thread
                // held the reactor and every readiness event for a relay connection
                // went through it and a futex wake of the relay thread.
                .spawn(move || smol::future::block_on(hs.run(tls_stopped.recv())))
        };
        let tls_thread = match tls_thread {
            Ok(t) => Some(t),
            Err(e) => {
                // Handshakes then run on the relay threads (the executor is also
                // driven below, beside the server).
                warn!("cannot start the TLS handshake thread: {e}");
                None
            }
        };
        let hub = Hub::new(router::Config {
            max_line: self.cfg.max_line,
            max_errors: self.cfg.max_errors,
            grace: self.cfg.reconnect_grace,
        });
        let state = Arc::new(State {
            hub: Mutex::new(hub),
            active: AtomicUsize::new(0),
            dirty: dirty_tx,
            cutoff_log: Mutex::new(LogBudget::new(Instant::now())),
            budget: Arc::new(queue::Budget::new(self.cfg.memory_budget)),
            sources: Arc::new(source::Sources::new(self.cfg.per_source)),
            handshakes: handshakes.clone(),
            cfg: self.cfg,
        });
        let broadcaster = ex.spawn(push::broadcaster(state.clone(), dirty_rx));
        let expirer = ex.spawn(expirer(state.clone()));
        let acceptor = TlsAcceptor::from(state.cfg.tls.clone());
        let listener = self.listener;
        let spawner = ex.clone();
        let st = state.clone();
        // A task of its own: polled when the listener is ready, not at every wake of
        // the executor (an `accept4` that finds nothing, each time a relay wakes a task).
        let accept_loop = ex.spawn(async move {
            let state = st;
            let ex = spawner;
            let mut last_full_warning: Option<Instant> = None;
            loop {
                let (tcp, addr) = match listener.accept().await {
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
                    conn::connection(st, acc, tcp, addr).await;
                })
                .detach();
            }
        });
        let tls_alone = async {
            if tls_thread.is_none() {
                handshakes.run(std::future::pending::<()>()).await;
            }
            std::future::pending::<()>().await
        };
        shutdown.or(tls_alone).await;
        // Cancelling the accept loop drops the listener.
        accept_loop.cancel().await;
        info!(
            "shutting down: closing {} connection(s)",
            state.active.load(Ordering::Relaxed)
        );
        broadcaster.cancel().await;
        expirer.cancel().await;
        // Let writers flush and send close_notify, then give up on them.
        for (_, h) in state.hub().router().tags() {
            h.shutdown();
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while state.active.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            Timer::after(Duration::from_millis(20)).await;
        }
        drop(tls_stop);
        if let Some(t) = tls_thread {
            let _ = smol::unblock(move || t.join()).await;
        }
    }
}

/// Ends the reconnect grace of held users on time: each expiry is a leave, pushed.
async fn expirer(state: Arc<State>) {
    let grace = state.cfg.reconnect_grace;
    if grace.is_zero() {
        return std::future::pending().await;
    }
    // A leave is late by at most one tick.
    let tick = (grace / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        Timer::after(tick).await;
        let gone = state.hub().expire(Instant::now());
        for name in &gone {
            info!(user = %name, "left: not back within the reconnect grace");
        }
        if !gone.is_empty() {
            state.mark_dirty();
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

#[cfg(test)]
mod log_budget_tests {
    use super::*;

    #[test]
    fn a_flood_is_demoted_and_counted() {
        let t0 = Instant::now();
        let mut b = LogBudget::new(t0);
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
