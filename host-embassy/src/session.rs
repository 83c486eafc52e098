//! The board-facing client: connect over embassy-net, open pinned TLS, run core's chat
//! session, reconnect with backoff. Commands come in and lines for the user go out
//! through embassy-sync channels that the board wires to a serial console, a display
//! or an LED.
//!
//! ```text
//!  board ── Input ──> [commands channel] ──> Session ──> [events channel] ── Output ──> board
//!                                              │
//!                        TcpSocket ─ embedded-tls ─ seguro-core Chat (Client, wording, keys)
//! ```
//!
//! [`Session`] owns the network side (socket, TLS, timeouts, backoff); [`Console`] is
//! the part between the connection and the board's console, without network: it feeds
//! core's [`Chat`] and sends the lines it renders, so a test can drive it with a
//! script. Every line's wording is core's; this module only words its connection
//! errors. Everything is in caller memory: [`Buffers`] (or [`Storage`], the same as
//! arrays), the [`Chat`] and the two channels. Nothing allocates.

use core::cell::{Cell, RefCell};
use core::fmt;

use embassy_futures::select::{Either, select};
use embassy_net::tcp::{ConnectError, TcpSocket};
use embassy_net::{IpEndpoint, Stack};
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::channel::Channel;
use embassy_time::{Duration, Timer, with_timeout};
use embedded_io_async::{Read, Write};
use heapless::String;
use rand_core::{CryptoRng, RngCore};
use seguro_core::chat::{Action, Chat, KeyMemory, Line};
use seguro_core::client::TransmitError;
use seguro_core::frame::LineAccumulator;

use crate::output::Output;
use crate::pin::Pin;
use crate::tls::{self, Tls, TlsOpenError, TlsOptions};
use crate::transport::Shared;

/// The longest command line a board can send, in bytes.
pub const INPUT_MAX: usize = seguro_core::limits::CLIENT_MAX_TEXT + 160;

/// One typed command line (`/to bob hi`, `/list`, ...), without its line end.
pub type Input = String<INPUT_MAX>;

/// Commands from the board to the client.
pub type Commands<M, const N: usize> = Channel<M, Input, N>;

/// Lines from the client to the board.
pub type Events<M, const N: usize> = Channel<M, Output, N>;

/// Timeouts; every network wait has one.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// The TLS handshake.
    pub handshake: Duration,
    /// TCP: how long unacknowledged data may wait before the connection is dropped.
    pub idle: Duration,
    /// TCP keep-alive interval (detects a silently vanished server or tunnel).
    pub keep_alive: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            handshake: Duration::from_secs(20),
            idle: Duration::from_secs(120),
            keep_alive: Duration::from_secs(30),
        }
    }
}

/// Reconnect delays: `initial`, doubled after every failed attempt up to `max`, with
/// up to a quarter of random jitter; back to `initial` after a session that registered.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

/// Where and how to connect.
#[derive(Debug, Clone, Copy)]
pub struct Config<'a> {
    /// The server (or the tunnel in front of it).
    pub server: IpEndpoint,
    /// The server certificate (P-256), checked by [`Pin::new`].
    pub pin: Pin<'a>,
    /// TLS options.
    pub tls: TlsOptions,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Reconnect delays.
    pub backoff: Backoff,
}

impl<'a> Config<'a> {
    /// Defaults for everything but the server and the pin.
    pub fn new(server: IpEndpoint, pin: Pin<'a>) -> Self {
        Self {
            server,
            pin,
            tls: TlsOptions::default(),
            timeouts: Timeouts::default(),
            backoff: Backoff::default(),
        }
    }
}

/// The client's buffers, all from the board. Sizes (see the crate docs):
///
/// - `tls_read`: the largest TLS record the server sends: 16 640 bytes for a server
///   that does not cap its fragment size, fragment + 256 otherwise;
/// - `tls_write`: at least 512; `out.len() + 128` writes every line in one record;
/// - `tcp_rx`, `tcp_tx`: smoltcp windows, 1–4 KiB each is plenty;
/// - `line`: the longest line accepted from the server (`CLIENT_MAX_LINE`, 4 KiB);
///   `scratch` at least as long as `line`;
/// - `out`: the longest line this client writes: a relay of `MSG` bytes of cipher
///   text takes about `MSG * 4 / 3 + 2 * MAX_NAME_BYTES + 100`.
pub struct Buffers<'a> {
    /// smoltcp receive window.
    pub tcp_rx: &'a mut [u8],
    /// smoltcp send window.
    pub tcp_tx: &'a mut [u8],
    /// embedded-tls record read buffer.
    pub tls_read: &'a mut [u8],
    /// embedded-tls record write buffer.
    pub tls_write: &'a mut [u8],
    /// Line framing.
    pub line: &'a mut [u8],
    /// Decoded strings of the current line.
    pub scratch: &'a mut [u8],
    /// The line being written.
    pub out: &'a mut [u8],
}

/// [`Buffers`] as arrays, for a `static` or a task's state. The defaults suit a server
/// that does not cap its TLS fragments and the default core `Client`.
pub struct Storage<
    const TLS_READ: usize = 16_640,
    const TLS_WRITE: usize = 2_176,
    const TCP: usize = 2_048,
    const LINE: usize = 4_096,
    const OUT: usize = 2_048,
> {
    tcp_rx: [u8; TCP],
    tcp_tx: [u8; TCP],
    tls_read: [u8; TLS_READ],
    tls_write: [u8; TLS_WRITE],
    line: [u8; LINE],
    scratch: [u8; LINE],
    out: [u8; OUT],
}

impl<
    const TLS_READ: usize,
    const TLS_WRITE: usize,
    const TCP: usize,
    const LINE: usize,
    const OUT: usize,
> Storage<TLS_READ, TLS_WRITE, TCP, LINE, OUT>
{
    /// Zeroed buffers (`const`, so it can initialise a `static`).
    pub const fn new() -> Self {
        Self {
            tcp_rx: [0; TCP],
            tcp_tx: [0; TCP],
            tls_read: [0; TLS_READ],
            tls_write: [0; TLS_WRITE],
            line: [0; LINE],
            scratch: [0; LINE],
            out: [0; OUT],
        }
    }

    /// Borrows them as [`Buffers`].
    pub fn buffers(&mut self) -> Buffers<'_> {
        Buffers {
            tcp_rx: &mut self.tcp_rx,
            tcp_tx: &mut self.tcp_tx,
            tls_read: &mut self.tls_read,
            tls_write: &mut self.tls_write,
            line: &mut self.line,
            scratch: &mut self.scratch,
            out: &mut self.out,
        }
    }
}

impl<
    const TLS_READ: usize,
    const TLS_WRITE: usize,
    const TCP: usize,
    const LINE: usize,
    const OUT: usize,
> Default for Storage<TLS_READ, TLS_WRITE, TCP, LINE, OUT>
{
    fn default() -> Self {
        Self::new()
    }
}

/// How one connection ended.
enum End {
    /// The user typed `/quit`.
    Quit,
    /// The connection failed or dropped.
    Lost {
        why: Why,
        /// The server had welcomed us: the next attempt starts from the initial delay.
        registered: bool,
    },
}

/// Why a connection failed or dropped.
#[derive(Debug, Clone, Copy)]
enum Why {
    Connect(ConnectError),
    ConnectTimeout,
    HandshakeTimeout,
    Tls(TlsOpenError),
    Io(embedded_tls::TlsError),
    Closed,
    Protocol(TransmitError),
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(ConnectError::ConnectionReset) => {
                f.write_str("connection refused or timed out")
            }
            Self::Connect(e) => write!(f, "connect failed: {e:?}"),
            Self::ConnectTimeout => f.write_str("connect timed out"),
            Self::HandshakeTimeout => f.write_str("TLS handshake timed out"),
            Self::Tls(e) => write!(f, "{e}"),
            Self::Io(e) => write!(f, "TLS error: {e:?}"),
            Self::Closed => f.write_str("closed by the server"),
            Self::Protocol(e) => write!(f, "{e}"),
        }
    }
}

impl From<TransmitError> for Why {
    fn from(e: TransmitError) -> Self {
        Self::Protocol(e)
    }
}

impl Why {
    /// Refusals that retrying cannot fix are errors; the rest are warnings.
    fn is_refusal(&self) -> bool {
        matches!(self, Self::Tls(TlsOpenError::Pin(_)))
    }
}

/// Where [`Console::transmit`] writes the lines for the server: the TLS connection on
/// a board, a buffer in a test.
// The executors boards use are single-threaded: no `Send` bound is needed on the
// futures, which is what the lint warns about.
#[allow(async_fn_in_trait)]
pub trait Wire {
    /// Why a write failed.
    type Error: From<TransmitError>;
    /// Writes one whole line, `\n` included, and flushes it.
    async fn send(&mut self, line: &[u8]) -> Result<(), Self::Error>;
}

/// The TLS connection as a [`Wire`].
struct TlsWire<'t, 'b, T: Read + Write>(&'t mut Tls<'b, T>);

impl<T: Read + Write> Wire for TlsWire<'_, '_, T> {
    type Error = Why;

    async fn send(&mut self, line: &[u8]) -> Result<(), Why> {
        let mut rest = line;
        while !rest.is_empty() {
            let n = self.0.write(rest).await.map_err(Why::Io)?;
            if n == 0 {
                // A record buffer too small for even one byte past its overhead.
                return Err(Why::Io(embedded_tls::TlsError::InsufficientSpace));
            }
            rest = rest.get(n..).unwrap_or(&[]);
        }
        self.0.flush().await.map_err(Why::Io)
    }
}

/// The part of the client between the connection and the board's console, without
/// network: server bytes and typed commands go into core's [`Chat`], the lines it
/// renders go out on the events channel, and its transmissions to a [`Wire`].
pub struct Console<
    'a,
    M: RawMutex,
    R,
    K,
    const NC: usize,
    const NE: usize,
    const U: usize,
    const G: usize,
    const P: usize,
> {
    chat: &'a mut Chat<K, U, G, P>,
    rng: &'a mut R,
    commands: &'a Commands<M, NC>,
    events: &'a Events<M, NE>,
    scratch: &'a mut [u8],
    out: &'a mut [u8],
}

impl<
    'a,
    M: RawMutex,
    R: RngCore + CryptoRng,
    K: KeyMemory,
    const NC: usize,
    const NE: usize,
    const U: usize,
    const G: usize,
    const P: usize,
> Console<'a, M, R, K, NC, NE, U, G, P>
{
    /// A console for `chat`: `scratch` as long as the longest line accepted from the
    /// server, `out` as long as the longest line written (see [`Buffers`]).
    pub fn new(
        chat: &'a mut Chat<K, U, G, P>,
        rng: &'a mut R,
        (commands, events): (&'a Commands<M, NC>, &'a Events<M, NE>),
        scratch: &'a mut [u8],
        out: &'a mut [u8],
    ) -> Self {
        Self {
            chat,
            rng,
            commands,
            events,
            scratch,
            out,
        }
    }

    /// The chat session.
    pub fn chat(&self) -> &Chat<K, U, G, P> {
        self.chat
    }

    /// A connection is up (the `hello` is queued), or one ended.
    pub fn reset(&mut self) {
        self.chat.reset();
    }

    /// Sends one line to the board.
    pub async fn show(&self, line: &Line<'_>) {
        self.events.send(Output::from_line(line)).await;
    }

    /// Shows the lines the chat has ready.
    async fn show_pending(&mut self) {
        while let Some(line) = self.chat.poll_line() {
            let output = Output::from_line(&line);
            self.events.send(output).await;
        }
    }

    /// Bytes from the server (`acc` frames them across calls): the lines they cause
    /// are shown; what they make the chat send waits for [`Console::transmit`].
    pub async fn received<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        acc: &mut LineAccumulator<B>,
        data: &[u8],
    ) {
        let now = embassy_time::Instant::now().as_secs();
        let mut rest = data;
        while !rest.is_empty() {
            rest = self.chat.receive(acc, rest, self.scratch, now);
            self.show_pending().await;
        }
    }

    /// A line the user typed: its lines are shown (a message typed while not connected
    /// is reported as not sent); what it sends waits for [`Console::transmit`].
    pub async fn typed(&mut self, input: &str) -> Action {
        let action = self.chat.input(input, self.rng);
        match action {
            Action::Quit => {}
            Action::Offline => self.show(&Line::NotSent).await,
            _ => self.show_pending().await,
        }
        action
    }

    /// Writes every line the chat has queued for the server.
    pub async fn transmit<W: Wire>(&mut self, wire: &mut W) -> Result<(), W::Error> {
        while let Some(n) = self.chat.poll_transmit(self.out)? {
            wire.send(self.out.get(..n).unwrap_or(&[])).await?;
        }
        Ok(())
    }

    /// Waits `wait` while offline, answering commands; true if the user quit.
    async fn wait_offline(&mut self, wait: Duration) -> bool {
        let deadline = embassy_time::Instant::now()
            .checked_add(wait)
            .unwrap_or(embassy_time::Instant::MAX);
        loop {
            match select(Timer::at(deadline), self.commands.receive()).await {
                Either::First(()) => return false,
                Either::Second(input) => {
                    if self.typed(&input).await == Action::Quit {
                        return true;
                    }
                }
            }
        }
    }
}

/// The client: a console `C` (a [`Console`]) plus the network (socket, pinned TLS,
/// timeouts, reconnects with backoff).
pub struct Session<'a, C> {
    config: &'a Config<'a>,
    tcp_rx: &'a mut [u8],
    tcp_tx: &'a mut [u8],
    tls_read: &'a mut [u8],
    tls_write: &'a mut [u8],
    line: &'a mut [u8],
    console: C,
}

impl<
    'a,
    M: RawMutex,
    R: RngCore + CryptoRng,
    K: KeyMemory,
    const NC: usize,
    const NE: usize,
    const U: usize,
    const G: usize,
    const P: usize,
> Session<'a, Console<'a, M, R, K, NC, NE, U, G, P>>
{
    /// A client for `chat` that connects as `config` says, in `buffers`, taking typed
    /// lines from `commands` and sending lines for the user into `events`.
    pub fn new(
        config: &'a Config<'a>,
        buffers: Buffers<'a>,
        chat: &'a mut Chat<K, U, G, P>,
        rng: &'a mut R,
        channels: (&'a Commands<M, NC>, &'a Events<M, NE>),
    ) -> Self {
        chat.set_server(&config.server);
        let Buffers {
            tcp_rx,
            tcp_tx,
            tls_read,
            tls_write,
            line,
            scratch,
            out,
        } = buffers;
        Self {
            config,
            tcp_rx,
            tcp_tx,
            tls_read,
            tls_write,
            line,
            console: Console::new(chat, rng, channels, scratch, out),
        }
    }

    /// Runs the client until the user sends `/quit`: connects, registers, relays
    /// commands and lines, and reconnects with backoff whenever the connection drops.
    /// A pinning refusal is reported as `[ERROR] ...` and retried like any failure (the
    /// server may be fixed, or the network may have routed us somewhere else for a
    /// while).
    ///
    /// Lines are sent into the events channel with backpressure: a board that stops
    /// draining it pauses the client (and a server whose queue for it fills up drops
    /// it). The chat keeps its key pair, directory and key memory across reconnects.
    pub async fn run(&mut self, stack: Stack<'_>) {
        let mut delay = self.config.backoff.initial;
        loop {
            let server = self.config.server;
            self.console
                .show(&Line::HostInfo(&format_args!(
                    "connecting to {server} as {}",
                    self.console.chat.user()
                )))
                .await;
            let end = self.connect_once(stack).await;
            self.console.reset();
            let (why, registered) = match end {
                End::Quit => return,
                End::Lost { why, registered } => (why, registered),
            };
            if registered {
                delay = self.config.backoff.initial;
            }
            let jitter = self.console.rng.next_u64() % (delay.as_millis() / 4 + 1);
            let wait = delay
                .checked_add(Duration::from_millis(jitter))
                .unwrap_or(delay);
            let after_ms = wait.as_millis();
            let line = if why.is_refusal() {
                Line::Retrying {
                    why: &why,
                    after_ms,
                }
            } else {
                Line::Reconnecting {
                    why: &why,
                    after_ms,
                }
            };
            self.console.show(&line).await;
            if self.console.wait_offline(wait).await {
                return;
            }
            delay = delay
                .checked_mul(2)
                .unwrap_or(self.config.backoff.max)
                .min(self.config.backoff.max);
        }
    }

    async fn connect_once(&mut self, stack: Stack<'_>) -> End {
        let lost = |why| End::Lost {
            why,
            registered: false,
        };
        let config = self.config;
        let t = &config.timeouts;
        let mut socket = TcpSocket::new(stack, &mut *self.tcp_rx, &mut *self.tcp_tx);
        socket.set_timeout(Some(t.connect));
        match with_timeout(t.connect, socket.connect(config.server)).await {
            Err(_) => return lost(Why::ConnectTimeout),
            Ok(Err(e)) => return lost(Why::Connect(e)),
            Ok(Ok(())) => {}
        }
        socket.set_timeout(Some(t.idle));
        socket.set_keep_alive(Some(t.keep_alive));
        let cell = RefCell::new(socket);
        let idle_at_boundary = Cell::new(false);
        let console = &mut self.console;
        let opened = with_timeout(
            t.handshake,
            tls::open(
                Shared::new(&cell, &idle_at_boundary),
                &mut *self.tls_read,
                &mut *self.tls_write,
                config.pin,
                &mut *console.rng,
                config.tls,
            ),
        )
        .await;
        let mut tls = match opened {
            Err(_) => return lost(Why::HandshakeTimeout),
            Ok(Err(e)) => return lost(Why::Tls(e)),
            Ok(Ok(tls)) => tls,
        };
        console
            .show(&Line::HostInfo(&format_args!(
                "TLS 1.3 session with {} ({} verified)",
                config.server,
                config.pin.what()
            )))
            .await;
        idle_at_boundary.set(true);
        console.reset();
        let mut acc = LineAccumulator::new(&mut *self.line);

        let why = loop {
            // 1. Whatever the chat wants to send: the hello, messages, list requests.
            if let Err(why) = console.transmit(&mut TlsWire(&mut tls)).await {
                break why;
            }

            // 2. Wait for the server or (once registered) the user, whichever comes
            // first. `wait_read_ready` only wakes for data; a FIN or RST without data
            // is noticed by checking `may_recv` at least once a second.
            #[allow(clippy::await_holding_refcell_ref)] // see `Shared`: TLS is idle here
            let readable = async {
                while let Ok(socket) = cell.try_borrow() {
                    if socket.can_recv() || !socket.may_recv() {
                        break;
                    }
                    let _ = with_timeout(Duration::from_secs(1), socket.wait_read_ready()).await;
                }
            };
            let registered = console.chat.is_registered();
            let commands = console.commands;
            let typed = async {
                if registered {
                    commands.receive().await
                } else {
                    core::future::pending().await
                }
            };
            match select(readable, typed).await {
                Either::First(()) => {
                    let mut data = match tls.read_buffered().await {
                        Ok(data) => data,
                        // Only records without application data (session tickets) were
                        // waiting.
                        Err(embedded_tls::TlsError::Io(
                            embedded_io_async::ErrorKind::Interrupted,
                        )) => {
                            continue;
                        }
                        Err(embedded_tls::TlsError::ConnectionClosed) => break Why::Closed,
                        Err(embedded_tls::TlsError::IoError) => break Why::Closed,
                        Err(e) => break Why::Io(e),
                    };
                    console.received(&mut acc, data.pop_all()).await;
                }
                Either::Second(input) => {
                    if console.typed(&input).await == Action::Quit {
                        // Best effort: tell the server we are leaving.
                        let _ = with_timeout(Duration::from_secs(2), tls.close()).await;
                        return End::Quit;
                    }
                }
            }
        };
        End::Lost {
            why,
            registered: console.chat.is_registered(),
        }
    }
}
