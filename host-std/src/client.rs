//! The desktop chat client: pinned TLS, core's sans-IO client, a terminal or plain I/O.
//!
//! What the user types and what the server sends go through core's chat session
//! ([`seguro_core::chat::Chat`]), which words every line; this module only moves bytes,
//! keeps time and draws randomness ([`Driver`] is the part between the connection and
//! the screen, without I/O, so tests can drive it).
//!
//! On a terminal, a line editor (rustyline) with history reads commands, and incoming
//! lines are printed through its external printer so they never garble the line being
//! typed. Otherwise standard input is read line by line and output lines are plain (see
//! [`crate::output`]); at the end of input everything typed has been sent, replies are
//! awaited for `--linger` seconds, and the program exits with 0.
//!
//! When the connection drops, the client reconnects with exponential backoff, keeping
//! its key pair (peers see the same fingerprint); while it waits, `/help`, `/fp` and
//! `/list` (the directory kept from the connection) still answer.

use std::io::IsTerminal;
use std::time::Duration;

use futures_rustls::TlsConnector;
use futures_rustls::client::TlsStream;
use rand_core::OsRng;
use smol::Timer;
use smol::channel::{self, Receiver, Sender};
use smol::future::FutureExt as _;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;

use seguro_core::chat::{Action, Chat, Line, RecentKeys};
use seguro_core::client::{Client, Event};
use seguro_core::frame::LineAccumulator;

use crate::cli::ChatArgs;
use crate::exit;
use crate::output;
use crate::pin::PinMismatch;
use crate::tls;

/// Directory capacity of the desktop client.
pub const USERS: usize = 256;
/// Longest end-to-end text the desktop client sends or receives, in bytes.
pub const MAX_TEXT: usize = 4096;
/// Message buffer: text plus tag.
const MSG: usize = MAX_TEXT + seguro_core::limits::TAG_LEN;
/// Messages from not-yet-known senders held while the directory is refreshed.
const PENDING: usize = 8;
/// Users whose last key is remembered across leave and rejoin.
pub const KNOWN_KEYS: usize = 1024;
/// Longest line accepted from the server (a directory of `USERS` users fits).
pub const MAX_LINE: usize = 64 * 1024;

/// The desktop client's chat session.
pub type DesktopChat = Chat<RecentKeys<KNOWN_KEYS>, USERS, MSG, PENDING>;

/// Where output lines go.
pub trait Printer: Send {
    /// Prints one line.
    fn print(&mut self, line: &Line<'_>);
}

/// Plain lines (coloured if `color`) on a writer, flushed one by one: standard output
/// when it is not a terminal.
pub struct PlainPrinter<W> {
    out: W,
    color: bool,
    format: Format,
    clock: output::Clock,
}

/// How [`PlainPrinter`] writes lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// The reference client's lines, byte for byte.
    #[default]
    Plain,
    /// The local time (RFC 3339) and a space before each plain line.
    Timestamps,
    /// One JSON object per line ([`output::json`]).
    Json,
}

impl<W: std::io::Write + Send> PlainPrinter<W> {
    /// Prints to `out`.
    pub fn new(out: W, color: bool) -> Self {
        Self {
            out,
            color,
            format: Format::Plain,
            clock: output::Clock::utc(),
        }
    }

    /// Prints in `format`, with times from `clock`.
    pub fn with_format(mut self, format: Format, clock: output::Clock) -> Self {
        self.format = format;
        self.clock = clock;
        self
    }

    /// The writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: std::io::Write + Send> Printer for PlainPrinter<W> {
    fn print(&mut self, line: &Line<'_>) {
        let _ = match self.format {
            Format::Plain => writeln!(self.out, "{}", output::render(line, self.color)),
            Format::Timestamps => writeln!(
                self.out,
                "{} {}",
                output::rfc3339(self.clock.now()),
                output::render(line, self.color)
            ),
            Format::Json => writeln!(self.out, "{}", output::json(line, self.clock.now())),
        };
        let _ = self.out.flush();
    }
}

/// Lines printed above the line being edited.
struct EditorPrinter<P: rustyline::ExternalPrinter + Send> {
    inner: P,
    color: bool,
}

impl<P: rustyline::ExternalPrinter + Send> Printer for EditorPrinter<P> {
    fn print(&mut self, line: &Line<'_>) {
        let text = output::render(line, self.color);
        if let Err(e) = self.inner.print(text) {
            tracing::debug!("the line editor could not print: {e}");
            println!("{}", output::render(line, self.color));
        }
    }
}

/// One item from the input thread.
enum Input {
    Line(String),
    Eof,
}

/// Starts the rustyline editor on its own thread; returns its printer.
fn start_editor(tx: Sender<Input>) -> Option<Box<dyn Printer>> {
    let (ptx, prx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("seguro-input".into())
        .spawn(move || {
            let mut ed = match rustyline::DefaultEditor::new() {
                Ok(e) => e,
                Err(_) => {
                    let _ = ptx.send(None);
                    return;
                }
            };
            let printer = ed.create_external_printer().ok();
            let ok = printer.is_some();
            let color = output::color_allowed(true);
            let _ = ptx.send(
                printer.map(|p| Box::new(EditorPrinter { inner: p, color }) as Box<dyn Printer>),
            );
            if !ok {
                return;
            }
            loop {
                match ed.readline("> ") {
                    Ok(line) => {
                        if !line.trim().is_empty() {
                            let _ = ed.add_history_entry(line.as_str());
                        }
                        if tx.send_blocking(Input::Line(line)).is_err() {
                            return;
                        }
                    }
                    Err(_) => {
                        // Ctrl-D, Ctrl-C or a terminal error: leave.
                        let _ = tx.send_blocking(Input::Eof);
                        return;
                    }
                }
            }
        });
    if spawned.is_err() {
        return None;
    }
    prx.recv().ok().flatten()
}

/// Reads standard input line by line on its own thread.
fn start_plain_input(tx: Sender<Input>) {
    let _ = std::thread::Builder::new()
        .name("seguro-input".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut line = String::new();
            loop {
                line.clear();
                match stdin.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let l = line.trim_end_matches(['\n', '\r']).to_owned();
                        if tx.send_blocking(Input::Line(l)).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = tx.send_blocking(Input::Eof);
        });
}

/// Restores the terminal's mode when dropped: the editor thread may still be inside
/// `readline` (raw mode) when the client exits.
struct TerminalGuard {
    #[cfg(unix)]
    saved: Option<nix::sys::termios::Termios>,
}

impl TerminalGuard {
    fn save() -> Self {
        Self {
            #[cfg(unix)]
            saved: nix::sys::termios::tcgetattr(std::io::stdin()).ok(),
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(t) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
            println!();
        }
    }
}

/// How many of the first bytes a server sends are kept, to name a service that does not
/// speak TLS.
const SNIFF: usize = 64;

/// A TCP stream that keeps the first [`SNIFF`] bytes it reads.
pub struct Sniff {
    tcp: TcpStream,
    first: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl smol::io::AsyncRead for Sniff {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let me = &mut *self;
        let r = std::pin::Pin::new(&mut me.tcp).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &r
            && let Ok(mut first) = me.first.lock()
            && first.len() < SNIFF
        {
            let take = (*n).min(SNIFF - first.len());
            first.extend_from_slice(buf.get(..take).unwrap_or(&[]));
        }
        r
    }
}

impl smol::io::AsyncWrite for Sniff {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.tcp).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_flush(cx)
    }
    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_close(cx)
    }
}

/// Names the service that answered a TLS client hello with `first` (the bytes it
/// sent), if they are not TLS: `None` when they look like TLS records (or nothing
/// came).
pub fn not_tls_service(first: &[u8]) -> Option<String> {
    // A TLS record starts with its content type (20..=24) and version 3.x.
    match first {
        [] => return None,
        [20..=24, 3, ..] | [20..=24] => return None,
        _ => {}
    }
    let text = String::from_utf8_lossy(first);
    let head = text.lines().next().unwrap_or("").trim();
    let shown: String = head
        .chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    Some(if first.starts_with(b"HTTP/") {
        format!("a web (HTTP) server (it answered {shown:?})")
    } else if first.starts_with(b"SSH-") {
        format!("an SSH server (it answered {shown:?})")
    } else if first.starts_with(b"{") {
        "a service speaking JSON without TLS (a Seguro server must use TLS)".to_owned()
    } else if first
        .iter()
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        format!("a plain-text service, not TLS (it answered {shown:?})")
    } else {
        "a service that does not speak TLS".to_owned()
    })
}

/// The desktop client between the connection and the screen, without I/O: bytes from
/// the server and lines the user typed go in; lines go to a [`Printer`] and the bytes
/// to send are appended to a `wire` buffer the caller writes out.
pub struct Driver {
    chat: Box<DesktopChat>,
    acc: LineAccumulator<Vec<u8>>,
    scratch: Vec<u8>,
    out: Vec<u8>,
    /// A connection is up: transmissions go out.
    online: bool,
    /// The server said it is shutting down on this connection.
    shutdown_seen: bool,
}

/// The error text a Seguro server sends to everyone when it stops.
const SHUTTING_DOWN: &str = "server shutting down";

impl Driver {
    /// Drives `chat`, accepting server lines of up to `max_line` bytes.
    pub fn new(chat: Box<DesktopChat>, max_line: usize) -> Self {
        Self {
            chat,
            acc: LineAccumulator::new(vec![0u8; max_line]),
            scratch: vec![0u8; max_line],
            out: vec![0u8; max_line],
            online: false,
            shutdown_seen: false,
        }
    }

    /// The chat session.
    pub fn chat(&self) -> &DesktopChat {
        &self.chat
    }

    /// Names the server in `connected to <server> as <user>`.
    pub fn set_server(&mut self, server: &dyn std::fmt::Display) {
        self.chat.set_server(server);
    }

    /// A connection is up: framing starts afresh and the `hello` goes to `wire`.
    pub fn connected(&mut self, printer: &mut dyn Printer, wire: &mut Vec<u8>) {
        self.chat.reset();
        self.acc.clear();
        self.online = true;
        self.shutdown_seen = false;
        self.drain(printer, wire);
    }

    /// True if the server announced its shutdown on the current (or last) connection.
    pub fn server_shut_down(&self) -> bool {
        self.shutdown_seen
    }

    /// The connection ended: nothing goes to `wire` until the next [`Driver::connected`].
    pub fn disconnected(&mut self) {
        self.chat.reset();
        self.online = false;
    }

    /// Bytes from the server. Returns the text of an error the server sent before it
    /// welcomed us (why it refused us), if any.
    pub fn received(
        &mut self,
        data: &[u8],
        printer: &mut dyn Printer,
        wire: &mut Vec<u8>,
    ) -> Option<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut refusal = None;
        let mut rest = data;
        while !rest.is_empty() {
            rest = self
                .chat
                .receive(&mut self.acc, rest, &mut self.scratch, now);
            if let Some(r) = self.drain(printer, wire) {
                refusal = Some(r);
            }
        }
        refusal
    }

    /// A line the user typed. A message typed while not connected is reported as not
    /// sent.
    pub fn typed(
        &mut self,
        line: &str,
        rng: &mut impl rand_core::CryptoRngCore,
        printer: &mut dyn Printer,
        wire: &mut Vec<u8>,
    ) -> Action {
        let action = self.chat.input(line, rng);
        match action {
            Action::Quit => {}
            Action::Offline => printer.print(&Line::NotSent),
            _ => {
                self.drain(printer, wire);
            }
        }
        action
    }

    /// Prints every pending line and, while online, appends every pending transmission
    /// to `wire`; returns the text of a server error received while not registered.
    fn drain(&mut self, printer: &mut dyn Printer, wire: &mut Vec<u8>) -> Option<String> {
        let registered = self.chat.is_registered();
        let mut refusal = None;
        while let Some(line) = self.chat.poll_line() {
            if let Line::Received(Event::ServerError { text }) = line {
                if !registered {
                    refusal = Some(text.to_owned());
                } else if text == SHUTTING_DOWN {
                    // A normal shutdown is news, not an error.
                    printer.print(&Line::HostInfo(&"the server is shutting down"));
                    self.shutdown_seen = true;
                    continue;
                }
            }
            printer.print(&line);
        }
        while self.online {
            match self.chat.poll_transmit(&mut self.out) {
                Ok(Some(n)) => wire.extend_from_slice(self.out.get(..n).unwrap_or(&[])),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("cannot build a line: {e}");
                    break;
                }
            }
        }
        refusal
    }
}

/// Quotes `s` for a POSIX shell if it needs it.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The `seguro serve` banner lines that tell how to join: a ready-to-copy `seguro chat`
/// command with the real address (the first `--invite-address`, else the listening
/// address, loopback for all interfaces) and, when only this machine can use it, how
/// to reach it from elsewhere with ngrok.
pub fn serve_chat_hint(
    bound: std::net::SocketAddr,
    invite_addresses: &[String],
    cert: &std::path::Path,
) -> Vec<String> {
    let cert = shell_quote(&cert.display().to_string());
    let mut out = vec![format!(
        "clients need {cert} (copy it to them; they check it against this fingerprint) and run:"
    )];
    let split = |a: &str| {
        a.rsplit_once(':').map(|(h, p)| {
            (
                h.trim_start_matches('[').trim_end_matches(']').to_owned(),
                p.to_owned(),
            )
        })
    };
    if let Some((host, port)) = invite_addresses.first().and_then(|a| split(a)) {
        out.push(format!(
            "  seguro chat \"$USER\" {} {port} --cert {cert}",
            shell_quote(&host)
        ));
        return out;
    }
    let local = bound.ip().is_unspecified() || bound.ip().is_loopback();
    let ip = if !bound.ip().is_unspecified() {
        bound.ip()
    } else if bound.is_ipv4() {
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
    } else {
        std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
    };
    let port = bound.port();
    let mine = if local { "   # on this machine" } else { "" };
    out.push(format!(
        "  seguro chat \"$USER\" {ip} {port} --cert {cert}{mine}"
    ));
    if local {
        out.push(format!(
            "from elsewhere: run `ngrok tcp {port}` here and use the host and port it prints \
             (tcp://HOST:PORT), e.g. seguro chat \"$USER\" 0.tcp.eu.ngrok.io 12345 --cert {cert}"
        ));
    }
    out
}

/// Runs `seguro chat`; returns the exit code.
pub fn run(a: ChatArgs) -> i32 {
    // Before any thread starts (see `output::Clock`).
    let clock = output::Clock::local();
    let format = if a.json {
        Format::Json
    } else if a.timestamps {
        Format::Timestamps
    } else {
        Format::Plain
    };
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let _terminal = interactive.then(TerminalGuard::save);
    let (in_tx, in_rx) = channel::unbounded();
    let mut printer: Box<dyn Printer> = if interactive {
        match start_editor(in_tx.clone()) {
            Some(p) => p,
            None => {
                start_plain_input(in_tx.clone());
                Box::new(PlainPrinter::new(
                    std::io::stdout(),
                    output::color_allowed(true),
                ))
            }
        }
    } else {
        start_plain_input(in_tx.clone());
        Box::new(PlainPrinter::new(std::io::stdout(), false).with_format(format, clock))
    };
    drop(in_tx);

    // Where to connect and what to pin: an invite, or host, port and --cert.
    let target = match crate::invite::chat_target(&a) {
        Ok(t) => t,
        Err((message, code)) => {
            printer.print(&Line::HostError(&message));
            return code;
        }
    };
    let keys = match crate::identity::for_chat(&a.user, a.state_dir.as_deref()) {
        Ok((keys, note)) => {
            if let Some(n) = note {
                printer.print(&Line::HostInfo(&n));
            }
            keys
        }
        Err(e) => {
            printer.print(&Line::HostError(&e));
            return e.exit_code();
        }
    };
    let client = match Client::new(&a.user, keys) {
        Ok(c) => c,
        Err(e) => {
            printer.print(&Line::HostError(&format_args!(
                "invalid user name {:?}: {e}",
                a.user
            )));
            return exit::USAGE;
        }
    };
    let chat = Box::new(DesktopChat::new(client, RecentKeys::new()));
    let mut desktop = Desktop {
        args: a,
        tls: TlsConnector::from(target.tls),
        targets: target.addresses,
        at: 0,
        driver: Driver::new(chat, MAX_LINE),
        printer,
        input: in_rx,
        input_done: false,
        ever_registered: false,
    };
    smol::block_on(desktop.run())
}

struct Desktop {
    args: ChatArgs,
    tls: TlsConnector,
    /// The server's addresses (one, or an invite's), tried in order.
    targets: Vec<(String, u16)>,
    /// The address of the current connection.
    at: usize,
    driver: Driver,
    printer: Box<dyn Printer>,
    input: Receiver<Input>,
    input_done: bool,
    ever_registered: bool,
}

/// How one connection ended.
enum End {
    /// The user is done (`/quit`, or end of input plus linger).
    Done,
    /// The connection broke.
    Lost(String),
    /// The server refused us before registration (error text).
    Refused(String),
}

enum ConnectError {
    /// The message, and whether a key (an invite) was pinned.
    Pin(String, bool),
    /// The port answered, but not with TLS.
    NotTls(String),
    Tls(String),
    Net(String),
}

/// Finds a [`PinMismatch`] in an error's source chain.
fn pin_mismatch(e: &std::io::Error) -> Option<PinMismatch> {
    let inner = e.get_ref()?;
    if let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o))) =
        inner.downcast_ref::<rustls::Error>()
    {
        return o.0.downcast_ref::<PinMismatch>().cloned();
    }
    None
}

impl Desktop {
    fn error(&mut self, text: &dyn std::fmt::Display) {
        self.printer.print(&Line::HostError(text));
    }

    /// Connects to the first address that works; when none does, returns the most
    /// telling failure (a pin mismatch before a TLS error before a network error).
    async fn connect(&mut self) -> Result<TlsStream<Sniff>, ConnectError> {
        let mut worst: Option<ConnectError> = None;
        let targets = self.targets.clone();
        for (i, (host, port)) in targets.iter().enumerate() {
            let e = match self.connect_to(host, *port).await {
                Ok(s) => {
                    self.at = i;
                    self.driver.set_server(&format_args!("{host}:{port}"));
                    return Ok(s);
                }
                Err(e) => e,
            };
            if i + 1 < targets.len() {
                let why = match &e {
                    ConnectError::Pin(m, _)
                    | ConnectError::NotTls(m)
                    | ConnectError::Tls(m)
                    | ConnectError::Net(m) => m,
                };
                self.printer.print(&Line::HostWarn(&format_args!(
                    "{why}; trying the next address"
                )));
            }
            let rank = |e: &ConnectError| match e {
                ConnectError::Pin(..) => 3,
                ConnectError::NotTls(_) => 2,
                ConnectError::Tls(_) => 1,
                ConnectError::Net(_) => 0,
            };
            if worst.as_ref().is_none_or(|w| rank(&e) > rank(w)) {
                worst = Some(e);
            }
        }
        Err(worst.unwrap_or_else(|| ConnectError::Net("no server address".into())))
    }

    async fn connect_to(&self, host: &str, port: u16) -> Result<TlsStream<Sniff>, ConnectError> {
        let tcp =
            async {
                Some(TcpStream::connect((host, port)).await.map_err(|e| {
                    ConnectError::Net(format!("cannot connect to {host}:{port}: {e}"))
                }))
            }
            .or(async {
                Timer::after(Duration::from_secs(15)).await;
                None
            })
            .await
            .unwrap_or_else(|| {
                Err(ConnectError::Net(format!(
                    "connecting to {host}:{port} timed out"
                )))
            })?;
        let _ = tcp.set_nodelay(true);
        let ka = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(30))
            .with_interval(Duration::from_secs(10));
        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&ka);
        let first = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let tcp = Sniff {
            tcp,
            first: first.clone(),
        };
        let hs = async { Some(self.tls.connect(tls::server_name(), tcp).await) }
            .or(async {
                Timer::after(Duration::from_secs(15)).await;
                None
            })
            .await;
        match hs {
            None => Err(ConnectError::Net("TLS handshake timed out".into())),
            Some(Ok(s)) => Ok(s),
            Some(Err(e)) => {
                let first = first.lock().map(|f| f.clone()).unwrap_or_default();
                if let Some(what) = not_tls_service(&first) {
                    return Err(ConnectError::NotTls(format!(
                        "{host}:{port} is not a Seguro server: it is {what}. Check the host \
                         and port (with ngrok, the port ngrok prints, not the server's own)"
                    )));
                }
                if first.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof {
                    return Err(ConnectError::Net(format!(
                        "{host}:{port} accepted the connection and closed it without \
                         answering: no Seguro server is behind it (is the server running, and \
                         is the ngrok tunnel pointing at its port?)"
                    )));
                }
                if let Some(m) = pin_mismatch(&e) {
                    return Err(ConnectError::Pin(m.to_string(), m.by_key()));
                }
                if let Some(te) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    let hint = match te {
                        rustls::Error::InvalidCertificate(
                            rustls::CertificateError::BadSignature,
                        ) => {
                            " (the server presented the pinned certificate but could not prove \
                             it holds its private key: this is not your server)"
                        }
                        _ => "",
                    };
                    Err(ConnectError::Tls(format!(
                        "TLS handshake with {host}:{port} failed: {e}{hint}"
                    )))
                } else {
                    Err(ConnectError::Net(format!(
                        "TLS handshake with {host}:{port} failed: {e}"
                    )))
                }
            }
        }
    }

    async fn run(&mut self) -> i32 {
        let mut backoff = Duration::from_millis(500);
        loop {
            let stream = match self.connect().await {
                Ok(s) => s,
                Err(ConnectError::Pin(m, by_key)) => {
                    let what = if by_key {
                        "the invite is not for this server"
                    } else {
                        "you have the wrong server.crt"
                    };
                    self.error(&format_args!(
                        "{m}. Either {what}, or someone is intercepting the connection: do \
                         not continue; check the fingerprint with the server's operator"
                    ));
                    return exit::TLS;
                }
                Err(ConnectError::NotTls(m)) => {
                    self.error(&m);
                    if !self.ever_registered || self.args.no_reconnect {
                        return exit::NOT_SEGURO;
                    }
                    if self.wait_backoff(&m, &mut backoff).await {
                        return exit::OK;
                    }
                    continue;
                }
                Err(ConnectError::Tls(m)) => {
                    self.error(&m);
                    if !self.ever_registered || self.args.no_reconnect {
                        return exit::TLS;
                    }
                    if self.wait_backoff(&m, &mut backoff).await {
                        return exit::OK;
                    }
                    continue;
                }
                Err(ConnectError::Net(m)) => {
                    if !self.ever_registered || self.args.no_reconnect {
                        self.error(&m);
                        return exit::CONNECT;
                    }
                    if self.wait_backoff(&m, &mut backoff).await {
                        return exit::OK;
                    }
                    continue;
                }
            };
            let end = self.session(stream).await;
            self.driver.disconnected();
            match end {
                End::Done => return exit::OK,
                End::Refused(text) => {
                    if !self.ever_registered || self.args.no_reconnect {
                        return exit::CONNECT;
                    }
                    // E.g. our old connection is not gone yet on the server: retry.
                    if self.wait_backoff(&text, &mut backoff).await {
                        return exit::OK;
                    }
                }
                End::Lost(why) => {
                    if self.args.no_reconnect {
                        self.printer.print(&Line::ConnectionLost { why: &why });
                        return exit::CONNECT;
                    }
                    if self.ever_registered {
                        backoff = backoff.min(Duration::from_secs(1));
                    }
                    if self.wait_backoff(&why, &mut backoff).await {
                        return exit::OK;
                    }
                }
            }
        }
    }

    /// Waits before a reconnect, answering what the user types; returns true if the
    /// user quit meanwhile.
    async fn wait_backoff(&mut self, why: &str, backoff: &mut Duration) -> bool {
        let after_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);
        self.printer.print(&Line::Reconnecting {
            why: &why,
            after_ms,
        });
        let deadline = std::time::Instant::now() + *backoff;
        *backoff = (*backoff * 2).min(Duration::from_secs(30));
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            if self.input_done {
                // Nothing left to send: waiting for a reconnect helps nobody.
                return true;
            }
            let got = async { self.input.recv().await.ok() }
                .or(async {
                    Timer::after(left).await;
                    None
                })
                .await;
            match got {
                Some(Input::Eof) => {
                    self.input_done = true;
                    return true;
                }
                Some(Input::Line(l)) => {
                    // Not connected: nothing reaches the wire.
                    let mut wire = Vec::new();
                    let action = self
                        .driver
                        .typed(&l, &mut OsRng, &mut *self.printer, &mut wire);
                    if action == Action::Quit {
                        return true;
                    }
                }
                None => {}
            }
        }
    }

    async fn session(&mut self, stream: TlsStream<Sniff>) -> End {
        let (mut rd, mut wr) = smol::io::split(stream);
        let mut rbuf = vec![0u8; 16 * 1024];
        let mut wire = Vec::new();
        let mut refusal: Option<String> = None;
        let mut linger_until: Option<std::time::Instant> = None;

        self.driver.connected(&mut *self.printer, &mut wire);
        if let Err(e) = write_all(&mut wr, &mut wire).await {
            return End::Lost(e);
        }
        loop {
            enum Ev {
                Read(std::io::Result<usize>),
                Input(Option<Input>),
                Linger,
            }
            let registered = self.driver.chat().is_registered();
            let want_input = registered && !self.input_done;
            let ev = {
                let read = async { Ev::Read(rd.read(&mut rbuf).await) };
                let input = async {
                    if want_input {
                        Ev::Input(self.input.recv().await.ok())
                    } else {
                        std::future::pending().await
                    }
                };
                let linger = async {
                    match linger_until {
                        Some(t) => {
                            Timer::at(t).await;
                            Ev::Linger
                        }
                        None => std::future::pending().await,
                    }
                };
                read.or(input).or(linger).await
            };
            match ev {
                Ev::Linger => {
                    let _ = wr.close().await;
                    return End::Done;
                }
                Ev::Input(None) | Ev::Input(Some(Input::Eof)) => {
                    self.input_done = true;
                    let _ = wr.flush().await;
                    linger_until = Some(
                        std::time::Instant::now()
                            + Duration::from_secs_f64(self.args.linger.clamp(0.0, 3600.0)),
                    );
                }
                Ev::Input(Some(Input::Line(l))) => {
                    let action = self
                        .driver
                        .typed(&l, &mut OsRng, &mut *self.printer, &mut wire);
                    if action == Action::Quit {
                        let _ = write_all(&mut wr, &mut wire).await;
                        let _ = wr.close().await;
                        return End::Done;
                    }
                }
                Ev::Read(Ok(0)) => {
                    return match refusal {
                        Some(r) if !registered => End::Refused(r),
                        _ if self.driver.server_shut_down() => {
                            End::Lost("the server shut down".into())
                        }
                        _ => End::Lost("the server closed the connection".into()),
                    };
                }
                Ev::Read(Err(e)) => {
                    let why = if self.driver.server_shut_down() {
                        "the server shut down".to_owned()
                    } else if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        "the server closed the connection abruptly".to_owned()
                    } else {
                        e.to_string()
                    };
                    return match refusal {
                        Some(r) if !registered => End::Refused(r),
                        _ => End::Lost(why),
                    };
                }
                Ev::Read(Ok(n)) => {
                    let data = rbuf.get(..n).unwrap_or(&[]);
                    if let Some(r) = self.driver.received(data, &mut *self.printer, &mut wire) {
                        refusal = Some(r);
                    }
                    if self.driver.chat().is_registered() {
                        self.ever_registered = true;
                    }
                }
            }
            if let Err(e) = write_all(&mut wr, &mut wire).await {
                return End::Lost(e);
            }
        }
    }
}

/// Writes and flushes `wire` (if not empty), then clears it.
async fn write_all(
    wr: &mut smol::io::WriteHalf<TlsStream<Sniff>>,
    wire: &mut Vec<u8>,
) -> Result<(), String> {
    if wire.is_empty() {
        return Ok(());
    }
    wr.write_all(wire).await.map_err(|e| e.to_string())?;
    wire.clear();
    wr.flush().await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serve_banner_has_a_command_to_copy() {
        let cert = std::path::Path::new("server.crt");
        let all: std::net::SocketAddr = "0.0.0.0:5000".parse().unwrap();
        let l = serve_chat_hint(all, &[], cert);
        assert_eq!(
            l[1],
            "  seguro chat \"$USER\" 127.0.0.1 5000 --cert server.crt   # on this machine"
        );
        assert!(l[2].contains("ngrok tcp 5000"), "{l:?}");
        let lan: std::net::SocketAddr = "192.168.1.20:7000".parse().unwrap();
        let l = serve_chat_hint(lan, &[], std::path::Path::new("my certs/s.crt"));
        assert_eq!(
            l[1],
            "  seguro chat \"$USER\" 192.168.1.20 7000 --cert 'my certs/s.crt'"
        );
        assert_eq!(l.len(), 2);
        let l = serve_chat_hint(all, &["0.tcp.eu.ngrok.io:12345".into()], cert);
        assert_eq!(
            l[1],
            "  seguro chat \"$USER\" 0.tcp.eu.ngrok.io 12345 --cert server.crt"
        );
        assert!(l.iter().all(|l| !l.contains('<')), "{l:?}");
    }

    #[test]
    fn services_that_are_not_tls_are_named() {
        assert_eq!(not_tls_service(b""), None);
        assert_eq!(not_tls_service(&[22, 3, 3, 0, 90]), None);
        assert_eq!(not_tls_service(&[21, 3, 1, 0, 2, 2, 40]), None);
        let http = not_tls_service(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n").unwrap();
        assert!(
            http.contains("HTTP") && http.contains("400 Bad Request"),
            "{http}"
        );
        assert!(
            not_tls_service(b"SSH-2.0-OpenSSH_9.2\r\n")
                .unwrap()
                .contains("SSH")
        );
        assert!(
            not_tls_service(b"{\"type\":\"error\"}\n")
                .unwrap()
                .contains("JSON")
        );
        let esc = not_tls_service(b"220 hi\x1b[2J\n").unwrap();
        assert!(!esc.contains('\u{1b}'), "{esc}");
        assert!(
            not_tls_service(&[0, 1, 2, 200])
                .unwrap()
                .contains("not speak TLS")
        );
    }

    #[test]
    fn sizes_of_the_desktop_session() {
        let chat = std::mem::size_of::<DesktopChat>();
        println!("size_of::<DesktopChat>() = {chat} bytes (on the heap)");
        // 256 users in two directories dominate: about 86 KiB, plus 1,024 remembered keys.
        assert!(chat < 256 * 1024, "{chat}");
    }
}
