//! The board-facing client: connect over embassy-net, open pinned TLS, run the
//! `seguro-core` client, reconnect with backoff. Commands come in and lines for the
//! user go out through embassy-sync channels that the board wires to a serial console,
//! a display or an LED.
//!
//! ```text
//!  board ── Input ──> [commands channel] ──> run() ──> [events channel] ── Output ──> board
//!                                              │
//!                               TcpSocket ─ embedded-tls ─ seguro-core Client
//! ```
//!
//! Everything is in caller memory: [`Buffers`] (or [`Storage`], the same as arrays),
//! the [`Client`] and the two channels. Nothing allocates.

use core::cell::{Cell, RefCell};
use core::fmt;

use embassy_futures::select::{Either, select};
use embassy_net::tcp::{ConnectError, TcpSocket};
use embassy_net::{IpEndpoint, Stack};
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::channel::Channel;
use embassy_time::{Duration, Timer, with_timeout};
use embedded_io_async::{ErrorType, Read, Write};
use heapless::String;
use rand_core::{CryptoRng, RngCore};
use seguro_core::client::{Client, ClientError, Event};
use seguro_core::command::{self, Command};
use seguro_core::fingerprint;
use seguro_core::frame::{FeedResult, LineAccumulator};

use crate::output::{self, Output};
use crate::pin::Pin;
use crate::tls::{self, Tls, TlsOpenError, TlsOptions};

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
    Protocol(ClientError),
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

impl Why {
    /// Refusals that retrying cannot fix are errors; the rest are warnings.
    fn is_refusal(&self) -> bool {
        matches!(self, Self::Tls(TlsOpenError::Pin(_)))
    }
}

/// The TCP socket shared between embedded-tls (which owns this handle) and the loop
/// that waits for it to become readable.
///
/// embedded-tls reads a record header and body with several reads and is not
/// cancel-safe, so the loop never races a TLS read against a command: it waits for
/// readability (which consumes nothing) and only then reads. The two borrows of the
/// cell are therefore never alive at the same time; if they were, the TLS side would
/// get an I/O error rather than a panic.
///
/// embedded-tls's `read_buffered` also keeps reading after a record that carries no
/// application data (a NewSessionTicket right after the handshake), which would block
/// the loop until the server's next line. To avoid that, this transport follows the
/// record framing of what it hands over, and once `idle_at_boundary` is set it answers
/// a read that would start a new record with [`TransportError::NoRecord`] when no byte
/// is waiting. The record reader has consumed nothing at that point, so the
/// connection stays usable and the loop simply waits again.
struct Shared<'c, 's> {
    socket: &'c RefCell<TcpSocket<'s>>,
    idle_at_boundary: &'c Cell<bool>,
    framing: RecordFraming,
}

impl<'c, 's> Shared<'c, 's> {
    fn new(socket: &'c RefCell<TcpSocket<'s>>, idle_at_boundary: &'c Cell<bool>) -> Self {
        Self {
            socket,
            idle_at_boundary,
            framing: RecordFraming::default(),
        }
    }
}

/// Follows TLS record boundaries (5-byte header with a 16-bit length, then the body)
/// over a byte stream delivered in arbitrary pieces.
#[derive(Debug, Default)]
struct RecordFraming {
    /// The current record header so far.
    header: [u8; 5],
    header_len: usize,
    /// Bytes of the current record body still to come.
    body_left: usize,
}

impl RecordFraming {
    /// True between two records.
    fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.body_left == 0
    }

    /// Accounts for `data`, the next bytes of the stream.
    fn track(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(data.len());
                self.body_left -= n;
                data = data.get(n..).unwrap_or(&[]);
            } else if let (Some(&b), Some(slot)) =
                (data.first(), self.header.get_mut(self.header_len))
            {
                *slot = b;
                self.header_len += 1;
                data = data.get(1..).unwrap_or(&[]);
                if self.header_len == self.header.len() {
                    self.header_len = 0;
                    self.body_left =
                        usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                }
            } else {
                self.header_len = 0;
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum TransportError {
    Tcp(embassy_net::tcp::Error),
    /// No record has started arriving (see [`Shared`]).
    NoRecord,
    /// The socket is borrowed elsewhere (never happens by construction).
    Busy,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(e) => write!(f, "{e:?}"),
            Self::NoRecord => f.write_str("no record waiting"),
            Self::Busy => f.write_str("socket busy"),
        }
    }
}

impl core::error::Error for TransportError {}

impl embedded_io_async::Error for TransportError {
    fn kind(&self) -> embedded_io_async::ErrorKind {
        match self {
            Self::Tcp(e) => e.kind(),
            Self::NoRecord => embedded_io_async::ErrorKind::Interrupted,
            Self::Busy => embedded_io_async::ErrorKind::Other,
        }
    }
}

impl ErrorType for Shared<'_, '_> {
    type Error = TransportError;
}

impl Read for Shared<'_, '_> {
    #[allow(clippy::await_holding_refcell_ref)]
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = {
            let mut socket = self
                .socket
                .try_borrow_mut()
                .map_err(|_| TransportError::Busy)?;
            if self.idle_at_boundary.get()
                && self.framing.at_boundary()
                && !socket.can_recv()
                && socket.may_recv()
            {
                return Err(TransportError::NoRecord);
            }
            socket.read(buf).await.map_err(TransportError::Tcp)?
        };
        self.framing.track(buf.get(..n).unwrap_or(&[]));
        Ok(n)
    }
}

impl Write for Shared<'_, '_> {
    #[allow(clippy::await_holding_refcell_ref)]
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        let mut socket = self
            .socket
            .try_borrow_mut()
            .map_err(|_| TransportError::Busy)?;
        socket.write(buf).await.map_err(TransportError::Tcp)
    }

    #[allow(clippy::await_holding_refcell_ref)]
    async fn flush(&mut self) -> Result<(), Self::Error> {
        let mut socket = self
            .socket
            .try_borrow_mut()
            .map_err(|_| TransportError::Busy)?;
        socket.flush().await.map_err(TransportError::Tcp)
    }
}

/// Runs the client until the user sends `/quit`: connects, registers, relays commands
/// and events, and reconnects with backoff whenever the connection drops. A pinning
/// refusal is reported as `[ERROR] ...` and retried like any failure (the server may
/// be fixed, or the network may have routed us somewhere else for a while).
///
/// Lines are sent into `events` with backpressure: a board that stops draining it
/// pauses the client (and a server whose queue for it fills up drops it). The client
/// keeps its key pair and directory across reconnects, so peers see no key change.
pub async fn run<
    M,
    R,
    const NC: usize,
    const NE: usize,
    const U: usize,
    const G: usize,
    const P: usize,
>(
    stack: Stack<'_>,
    config: &Config<'_>,
    mut buffers: Buffers<'_>,
    client: &mut Client<U, G, P>,
    rng: &mut R,
    commands: &Commands<M, NC>,
    events: &Events<M, NE>,
) where
    M: RawMutex,
    R: RngCore + CryptoRng,
{
    let mut delay = config.backoff.initial;
    let mut ever_registered = false;
    loop {
        events
            .send(Output::sys(format_args!(
                "connecting to {} as {}",
                config.server,
                client.user()
            )))
            .await;
        let end = connect_once(
            stack,
            config,
            &mut buffers,
            client,
            rng,
            (commands, events),
            &mut ever_registered,
        )
        .await;
        let (why, registered) = match end {
            End::Quit => return,
            End::Lost { why, registered } => (why, registered),
        };
        if registered {
            delay = config.backoff.initial;
        }
        let jitter = rng.next_u64() % (delay.as_millis() / 4 + 1);
        let wait = delay
            .checked_add(Duration::from_millis(jitter))
            .unwrap_or(delay);
        let secs = wait.as_millis() / 1000;
        let tenths = wait.as_millis() % 1000 / 100;
        let line = if why.is_refusal() {
            Output::error(format_args!("{why}; retrying in {secs}.{tenths} s"))
        } else {
            Output::warn(format_args!(
                "connection lost ({why}); reconnecting in {secs}.{tenths} s"
            ))
        };
        events.send(line).await;
        if wait_offline(wait, client, commands, events).await {
            return;
        }
        delay = delay
            .checked_mul(2)
            .unwrap_or(config.backoff.max)
            .min(config.backoff.max);
    }
}

/// Waits `wait` while offline, answering commands; true if the user quit.
async fn wait_offline<
    M: RawMutex,
    const NC: usize,
    const NE: usize,
    const U: usize,
    const G: usize,
    const P: usize,
>(
    wait: Duration,
    client: &Client<U, G, P>,
    commands: &Commands<M, NC>,
    events: &Events<M, NE>,
) -> bool {
    let deadline = embassy_time::Instant::now()
        .checked_add(wait)
        .unwrap_or(embassy_time::Instant::MAX);
    loop {
        match select(Timer::at(deadline), commands.receive()).await {
            Either::First(()) => return false,
            Either::Second(input) => match command::parse_command(&input) {
                Ok(Command::Quit) => return true,
                Ok(cmd @ (Command::Help | Command::Fingerprint { .. })) => {
                    local_command(&cmd, client, events).await;
                }
                Ok(_) => {
                    events
                        .send(Output::error(format_args!(
                            "not connected to the server yet"
                        )))
                        .await;
                }
                Err(e) => events.send(Output::error(format_args!("{e}"))).await,
            },
        }
    }
}

/// `/help` and `/fp`, answered without the server.
async fn local_command<
    M: RawMutex,
    const NE: usize,
    const U: usize,
    const G: usize,
    const P: usize,
>(
    cmd: &Command<'_>,
    client: &Client<U, G, P>,
    events: &Events<M, NE>,
) {
    match *cmd {
        Command::Help => {
            events.send(Output::sys(format_args!("commands:"))).await;
            for line in command::HELP.lines() {
                events.send(Output::sys(format_args!("  {line}"))).await;
            }
        }
        Command::Fingerprint { user } => {
            let key = if user == client.user() {
                Some(client.public_key())
            } else {
                client.key_of(user).copied()
            };
            match key {
                Some(key) => {
                    events
                        .send(Output::sys(format_args!(
                            "fp {user}: {}",
                            fingerprint::short(&key)
                        )))
                        .await;
                    events
                        .send(Output::sys(format_args!(
                            "safety code {user}: {}",
                            fingerprint::safety_code(&key)
                        )))
                        .await;
                }
                None => {
                    events
                        .send(Output::error(format_args!(
                            "unknown user: {user} (try /list)"
                        )))
                        .await;
                }
            }
        }
        _ => {}
    }
}

/// Shows the events of one received line, the way `seguro chat` does: on the first
/// registration the directory is listed whole instead of as a burst of joins.
async fn send_events<
    M: RawMutex,
    const NE: usize,
    const U: usize,
    const G: usize,
    const P: usize,
>(
    client: &mut Client<U, G, P>,
    events: &Events<M, NE>,
    server: IpEndpoint,
    ever_registered: &mut bool,
) {
    let mut me: String<{ seguro_core::limits::MAX_NAME_BYTES }> = String::new();
    let _ = me.push_str(client.user());
    let first_registration = !*ever_registered;
    let mut registered = false;
    let mut show_dir = false;
    loop {
        let line = match client.poll_event() {
            None => break,
            Some(Event::Registered { .. }) => {
                registered = true;
                show_dir = true;
                None
            }
            Some(Event::Directory) => {
                show_dir = true;
                None
            }
            Some(Event::Joined { name, .. })
                if (registered && first_registration) || name == me.as_str() =>
            {
                None
            }
            Some(event) => output::event_line(&event),
        };
        if let Some(line) = line {
            events.send(line).await;
        }
    }
    if registered {
        *ever_registered = true;
        events.send(output::connected(&server, &me)).await;
    }
    if show_dir {
        show_directory(client, events).await;
    }
}

async fn show_directory<
    M: RawMutex,
    const NE: usize,
    const U: usize,
    const G: usize,
    const P: usize,
>(
    client: &Client<U, G, P>,
    events: &Events<M, NE>,
) {
    let dir = client.directory();
    events.send(output::directory_header(dir.len())).await;
    for entry in dir.iter() {
        let me = entry.name() == client.user();
        events
            .send(output::directory_entry(entry.name(), entry.key(), me))
            .await;
    }
}

async fn write_line<T: Read + Write>(tls: &mut Tls<'_, T>, line: &[u8]) -> Result<(), Why> {
    let mut rest = line;
    while !rest.is_empty() {
        let n = tls.write(rest).await.map_err(Why::Io)?;
        if n == 0 {
            // A record buffer too small for even one byte past its overhead.
            return Err(Why::Io(embedded_tls::TlsError::InsufficientSpace));
        }
        rest = rest.get(n..).unwrap_or(&[]);
    }
    tls.flush().await.map_err(Why::Io)
}

async fn connect_once<
    M,
    R,
    const NC: usize,
    const NE: usize,
    const U: usize,
    const G: usize,
    const P: usize,
>(
    stack: Stack<'_>,
    config: &Config<'_>,
    buffers: &mut Buffers<'_>,
    client: &mut Client<U, G, P>,
    rng: &mut R,
    (commands, events): (&Commands<M, NC>, &Events<M, NE>),
    ever_registered: &mut bool,
) -> End
where
    M: RawMutex,
    R: RngCore + CryptoRng,
{
    let lost = |why| End::Lost {
        why,
        registered: false,
    };
    let t = &config.timeouts;
    let mut socket = TcpSocket::new(stack, &mut *buffers.tcp_rx, &mut *buffers.tcp_tx);
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
    let opened = with_timeout(
        t.handshake,
        tls::open(
            Shared::new(&cell, &idle_at_boundary),
            &mut *buffers.tls_read,
            &mut *buffers.tls_write,
            config.pin,
            rng,
            config.tls,
        ),
    )
    .await;
    let mut tls = match opened {
        Err(_) => return lost(Why::HandshakeTimeout),
        Ok(Err(e)) => return lost(Why::Tls(e)),
        Ok(Ok(tls)) => tls,
    };
    events
        .send(Output::sys(format_args!(
            "TLS 1.3 session with {} (pinned certificate verified)",
            config.server
        )))
        .await;
    idle_at_boundary.set(true);
    client.reset();
    let mut acc = LineAccumulator::new(&mut *buffers.line);
    let scratch = &mut *buffers.scratch;
    let out = &mut *buffers.out;

    let why = loop {
        // 1. Whatever the client wants to send: the hello, automatic list requests.
        let mut failed = None;
        loop {
            match client.poll_transmit(out) {
                Ok(Some(n)) => {
                    if let Err(e) = write_line(&mut tls, out.get(..n).unwrap_or(&[])).await {
                        failed = Some(e);
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failed = Some(Why::Protocol(e));
                    break;
                }
            }
        }
        if let Some(why) = failed {
            break why;
        }

        // 2. Wait for the server or the user, whichever comes first.
        // `wait_read_ready` only wakes for data; a FIN or RST without data is noticed
        // by checking `may_recv` at least once a second.
        #[allow(clippy::await_holding_refcell_ref)] // see `Shared`: TLS is idle here
        let readable = async {
            while let Ok(socket) = cell.try_borrow() {
                if socket.can_recv() || !socket.may_recv() {
                    break;
                }
                let _ = with_timeout(Duration::from_secs(1), socket.wait_read_ready()).await;
            }
        };
        match select(readable, commands.receive()).await {
            Either::First(()) => {
                let mut data = match tls.read_buffered().await {
                    Ok(data) => data,
                    // Only records without application data (session tickets) were waiting.
                    Err(embedded_tls::TlsError::Io(embedded_io_async::ErrorKind::Interrupted)) => {
                        continue;
                    }
                    Err(embedded_tls::TlsError::ConnectionClosed) => break Why::Closed,
                    Err(embedded_tls::TlsError::IoError) => break Why::Closed,
                    Err(e) => break Why::Io(e),
                };
                let mut input = data.pop_all();
                loop {
                    match acc.feed(input) {
                        FeedResult::Consumed => break,
                        FeedResult::Line { line, remaining } => {
                            input = remaining;
                            if let Err(e) = client.handle_line(line, scratch) {
                                events.send(Output::error(format_args!("{e}"))).await;
                            }
                            send_events(client, events, config.server, ever_registered).await;
                        }
                        FeedResult::Overlong { remaining } => {
                            input = remaining;
                            events
                                .send(Output::error(format_args!(
                                    "the server sent a line longer than {} bytes; skipped",
                                    acc.capacity()
                                )))
                                .await;
                        }
                    }
                }
            }
            Either::Second(input) => {
                let cmd = match command::parse_command(&input) {
                    Ok(cmd) => cmd,
                    Err(e) => {
                        events.send(Output::error(format_args!("{e}"))).await;
                        continue;
                    }
                };
                match cmd {
                    Command::Quit => {
                        // Best effort: tell the server we are leaving.
                        let _ = with_timeout(Duration::from_secs(2), tls.close()).await;
                        return End::Quit;
                    }
                    Command::Help | Command::Fingerprint { .. } => {
                        local_command(&cmd, client, events).await;
                    }
                    _ => match client.send(&cmd, rng, out) {
                        Ok(n) => {
                            if let Err(why) =
                                write_line(&mut tls, out.get(..n).unwrap_or(&[])).await
                            {
                                break why;
                            }
                        }
                        Err(ClientError::UnknownUser) => {
                            let user = match cmd {
                                Command::To { user, .. } => user,
                                _ => "",
                            };
                            events
                                .send(Output::error(format_args!(
                                    "unknown user: {user} (try /list)"
                                )))
                                .await;
                        }
                        Err(e) => events.send(Output::error(format_args!("{e}"))).await,
                    },
                }
            }
        }
    };
    End::Lost {
        why,
        registered: client.is_registered(),
    }
}

#[cfg(test)]
mod tests {
    use super::RecordFraming;

    fn record(len: u16) -> std::vec::Vec<u8> {
        let mut r = std::vec![23, 3, 3];
        r.extend_from_slice(&len.to_be_bytes());
        r.extend(core::iter::repeat_n(0xaa, usize::from(len)));
        r
    }

    extern crate std;

    #[test]
    fn boundaries_in_any_split() {
        let mut stream = record(3);
        stream.extend(record(0));
        stream.extend(record(300));
        // Offsets at which a record ends (a boundary), the stream start included.
        let boundaries = [0, 8, 13, stream.len()];
        for chunk in 1..=stream.len() {
            let mut f = RecordFraming::default();
            let mut at = 0;
            for piece in stream.chunks(chunk) {
                f.track(piece);
                at += piece.len();
                assert_eq!(
                    f.at_boundary(),
                    boundaries.contains(&at),
                    "chunk {chunk}, at {at}"
                );
            }
            assert!(f.at_boundary());
        }
    }

    #[test]
    fn partial_header_is_not_a_boundary() {
        let mut f = RecordFraming::default();
        f.track(&[23, 3]);
        assert!(!f.at_boundary());
        f.track(&[3, 0, 1]);
        assert!(!f.at_boundary());
        f.track(&[9]);
        assert!(f.at_boundary());
    }
}
