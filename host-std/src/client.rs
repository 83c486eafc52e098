//! The desktop chat client: pinned TLS, core's sans-IO client, a terminal or plain I/O.
//!
//! On a terminal, a line editor (rustyline) with history reads commands, and incoming
//! lines are printed through its external printer so they never garble the line being
//! typed. Otherwise standard input is read line by line and output lines are plain (see
//! [`crate::output`]); at the end of input everything typed has been sent, replies are
//! awaited for `--linger` seconds, and the program exits with 0.
//!
//! When the connection drops, the client reconnects with exponential backoff, keeping
//! its key pair (peers see the same fingerprint).

use std::io::{IsTerminal, Write as _};
use std::time::Duration;

use futures_rustls::TlsConnector;
use futures_rustls::client::TlsStream;
use rand_core::OsRng;
use smol::Timer;
use smol::channel::{self, Receiver, Sender};
use smol::future::FutureExt as _;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;

use seguro_core::client::{Client, ClientError, Event};
use seguro_core::command::{self, Command, CommandError};
use seguro_core::fingerprint;
use seguro_core::frame::{FeedResult, LineAccumulator};

use crate::cli::ChatArgs;
use crate::exit;
use crate::output::{self, OutLine};
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
/// Longest line accepted from the server (a directory of `USERS` users fits).
pub const MAX_LINE: usize = 64 * 1024;

type ChatClient = Client<USERS, MSG, PENDING>;

/// Where output lines go.
pub trait Printer: Send {
    /// Prints one line.
    fn print(&mut self, line: &OutLine);
}

/// Plain lines on standard output, flushed one by one.
struct PlainPrinter {
    color: bool,
}

impl Printer for PlainPrinter {
    fn print(&mut self, line: &OutLine) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", line.render(self.color));
        let _ = out.flush();
    }
}

/// Lines printed above the line being edited.
struct EditorPrinter<P: rustyline::ExternalPrinter + Send> {
    inner: P,
    color: bool,
}

impl<P: rustyline::ExternalPrinter + Send> Printer for EditorPrinter<P> {
    fn print(&mut self, line: &OutLine) {
        if self.inner.print(line.render(self.color)).is_err() {
            println!("{}", line.render(self.color));
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

/// Runs `seguro chat`; returns the exit code.
pub fn run(a: ChatArgs) -> i32 {
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let _terminal = interactive.then(TerminalGuard::save);
    let (in_tx, in_rx) = channel::unbounded();
    let mut printer: Box<dyn Printer> = if interactive {
        match start_editor(in_tx.clone()) {
            Some(p) => p,
            None => {
                start_plain_input(in_tx.clone());
                Box::new(PlainPrinter {
                    color: output::color_allowed(true),
                })
            }
        }
    } else {
        start_plain_input(in_tx.clone());
        Box::new(PlainPrinter { color: false })
    };
    drop(in_tx);

    // Where to connect and what to pin: an invite, or host, port and --cert.
    let target = match crate::invite::chat_target(&a) {
        Ok(t) => t,
        Err((message, code)) => {
            printer.print(&output::error(&message));
            return code;
        }
    };
    let keys = match crate::identity::for_chat(&a.user, a.state_dir.as_deref()) {
        Ok((keys, note)) => {
            note.inspect(|n| printer.print(&output::sys(n)));
            keys
        }
        Err(e) => {
            printer.print(&output::error(&e.to_string()));
            return e.exit_code();
        }
    };
    let client = match ChatClient::new(&a.user, keys) {
        Ok(c) => Box::new(c),
        Err(e) => {
            printer.print(&output::error(&format!(
                "invalid user name {:?}: {e}",
                a.user
            )));
            return exit::USAGE;
        }
    };
    let mut chat = Chat {
        args: a,
        tls: TlsConnector::from(target.tls),
        targets: target.addresses,
        at: 0,
        client,
        printer,
        input: in_rx,
        input_done: false,
        ever_registered: false,
        known: std::collections::HashMap::new(),
    };
    smol::block_on(chat.run())
}

struct Chat {
    args: ChatArgs,
    tls: TlsConnector,
    /// The server's addresses (one, or an invite's), tried in order.
    targets: Vec<(String, u16)>,
    /// The address of the current connection.
    at: usize,
    client: Box<ChatClient>,
    printer: Box<dyn Printer>,
    input: Receiver<Input>,
    input_done: bool,
    ever_registered: bool,
    /// The last key seen for every user this session: a user who leaves and comes back
    /// with another key is reported like a key change within one directory.
    known: std::collections::HashMap<String, [u8; 32]>,
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

impl Chat {
    fn print(&mut self, line: OutLine) {
        self.printer.print(&line);
    }

    /// Connects to the first address that works; when none does, returns the most
    /// telling failure (a pin mismatch before a TLS error before a network error).
    async fn connect(&mut self) -> Result<TlsStream<TcpStream>, ConnectError> {
        let mut worst: Option<ConnectError> = None;
        let targets = self.targets.clone();
        for (i, (host, port)) in targets.iter().enumerate() {
            let e = match self.connect_to(host, *port).await {
                Ok(s) => {
                    self.at = i;
                    return Ok(s);
                }
                Err(e) => e,
            };
            if i + 1 < targets.len() {
                let why = match &e {
                    ConnectError::Pin(m, _) | ConnectError::Tls(m) | ConnectError::Net(m) => m,
                };
                self.print(output::warn(&format!("{why}; trying the next address")));
            }
            let rank = |e: &ConnectError| match e {
                ConnectError::Pin(..) => 2,
                ConnectError::Tls(_) => 1,
                ConnectError::Net(_) => 0,
            };
            if worst.as_ref().is_none_or(|w| rank(&e) > rank(w)) {
                worst = Some(e);
            }
        }
        Err(worst.unwrap_or_else(|| ConnectError::Net("no server address".into())))
    }

    async fn connect_to(
        &self,
        host: &str,
        port: u16,
    ) -> Result<TlsStream<TcpStream>, ConnectError> {
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
                    self.print(output::error(&format!(
                        "{m}. Either {what}, or someone is intercepting the connection: do \
                         not continue; check the fingerprint with the server's operator"
                    )));
                    return exit::TLS;
                }
                Err(ConnectError::Tls(m)) => {
                    self.print(output::error(&m));
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
                        self.print(output::error(&m));
                        return exit::CONNECT;
                    }
                    if self.wait_backoff(&m, &mut backoff).await {
                        return exit::OK;
                    }
                    continue;
                }
            };
            self.client.reset();
            match self.session(stream).await {
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
                        self.print(output::connection_lost(&why));
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

    /// Waits before a reconnect; returns true if the user quit meanwhile.
    async fn wait_backoff(&mut self, why: &str, backoff: &mut Duration) -> bool {
        self.print(output::reconnecting(why, backoff.as_secs_f64()));
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
                    if matches!(command::parse_command(&l), Ok(Command::Quit)) {
                        return true;
                    }
                    self.print(output::error("not connected: line dropped"));
                }
                None => {}
            }
        }
    }

    async fn session(&mut self, stream: TlsStream<TcpStream>) -> End {
        let (mut rd, mut wr) = smol::io::split(stream);
        let mut acc = LineAccumulator::new(vec![0u8; MAX_LINE]);
        let mut scratch = vec![0u8; MAX_LINE];
        let mut rbuf = vec![0u8; 16 * 1024];
        let mut out = vec![0u8; MAX_LINE];
        let mut registered = false;
        let mut refusal: Option<String> = None;
        let mut linger_until: Option<std::time::Instant> = None;

        if let Err(e) = self.transmit(&mut wr, &mut out).await {
            return End::Lost(e);
        }
        loop {
            enum Ev {
                Read(std::io::Result<usize>),
                Input(Option<Input>),
                Linger,
            }
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
                Ev::Input(Some(Input::Line(l))) => match self.command(&l, &mut out) {
                    Cmd::None => {}
                    Cmd::Quit => {
                        let _ = wr.flush().await;
                        let _ = wr.close().await;
                        return End::Done;
                    }
                    Cmd::Send(n) => {
                        let sent = async {
                            wr.write_all(out.get(..n).unwrap_or(&[])).await?;
                            wr.flush().await
                        };
                        if let Err(e) = sent.await {
                            return End::Lost(e.to_string());
                        }
                        // A /to for an unknown user may have scheduled a directory refresh.
                        if let Err(e) = self.transmit(&mut wr, &mut out).await {
                            return End::Lost(e);
                        }
                    }
                },
                Ev::Read(Ok(0)) => {
                    return match refusal {
                        Some(r) if !registered => End::Refused(r),
                        _ => End::Lost("the server closed the connection".into()),
                    };
                }
                Ev::Read(Err(e)) => {
                    let why = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        "the server closed the connection without TLS close_notify".to_owned()
                    } else {
                        e.to_string()
                    };
                    return match refusal {
                        Some(r) if !registered => End::Refused(r),
                        _ => End::Lost(why),
                    };
                }
                Ev::Read(Ok(n)) => {
                    let mut pos = 0;
                    while pos < n {
                        let input = rbuf.get(pos..n).unwrap_or(&[]);
                        match acc.feed(input) {
                            FeedResult::Consumed => break,
                            FeedResult::Overlong { remaining } => {
                                pos = n - remaining.len();
                                self.print(output::error(&format!(
                                    "the server sent a line longer than {MAX_LINE} bytes: skipped"
                                )));
                            }
                            FeedResult::Line { line, remaining } => {
                                pos = n - remaining.len();
                                match self.client.handle_line(line, &mut scratch) {
                                    Ok(()) => {}
                                    Err(e) => {
                                        tracing::warn!("ignored a line from the server: {e}");
                                    }
                                }
                                let r = self.drain_events();
                                if r.registered {
                                    registered = true;
                                }
                                if let Some(t) = r.error
                                    && !registered
                                {
                                    refusal = Some(t);
                                }
                            }
                        }
                    }
                    if let Err(e) = self.transmit(&mut wr, &mut out).await {
                        return End::Lost(e);
                    }
                }
            }
        }
    }

    /// Writes every line core wants sent (hello, directory refreshes).
    async fn transmit(
        &mut self,
        wr: &mut smol::io::WriteHalf<TlsStream<TcpStream>>,
        out: &mut [u8],
    ) -> Result<(), String> {
        let mut wrote = false;
        loop {
            match self.client.poll_transmit(out) {
                Ok(Some(n)) => {
                    wr.write_all(out.get(..n).unwrap_or(&[]))
                        .await
                        .map_err(|e| e.to_string())?;
                    wrote = true;
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("cannot build a line: {e}");
                    break;
                }
            }
        }
        if wrote {
            wr.flush().await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn print_directory(&mut self) {
        let me = self.client.user().to_owned();
        let entries: Vec<(String, [u8; 32])> = self
            .client
            .directory()
            .iter()
            .map(|e| (e.name().to_owned(), *e.key()))
            .collect();
        self.print(output::directory_header(entries.len()));
        for (name, key) in entries {
            let fp = fingerprint::short(&key);
            self.print(output::directory_entry(&name, fp.as_str(), name == me));
        }
    }

    fn drain_events(&mut self) -> Drained {
        let mut r = Drained::default();
        let mut lines = Vec::new();
        let mut show_directory = false;
        let first_registration = !self.ever_registered;
        let me = self.client.user().to_owned();
        while let Some(ev) = self.client.poll_event() {
            match ev {
                Event::Registered { .. } => {
                    r.registered = true;
                    show_directory = true;
                }
                Event::Joined { name, key } => {
                    // The first directory is listed whole, not as a burst of joins.
                    if !(r.registered && first_registration) && name != me {
                        lines.push(output::joined(name, fingerprint::short(key).as_str()));
                    }
                    if let Some(old) = self.known.insert(name.to_owned(), *key)
                        && old != *key
                        && name != me
                    {
                        lines.push(output::key_changed(
                            name,
                            fingerprint::short(&old).as_str(),
                            fingerprint::short(key).as_str(),
                        ));
                    }
                }
                Event::Left { name } => lines.push(output::left(name)),
                Event::KeyChanged { name, old, new } => {
                    self.known.insert(name.to_owned(), *new);
                    lines.push(output::key_changed(
                        name,
                        fingerprint::short(old).as_str(),
                        fingerprint::short(new).as_str(),
                    ));
                }
                Event::DirectoryTruncated(d) => lines.push(output::warn(&format!(
                    "the directory is larger than this client holds: {} user(s) not shown",
                    d.over_capacity + d.name_too_long
                ))),
                Event::Directory => show_directory = true,
                Event::Message { from, text } => lines.push(output::message(from, text)),
                Event::Undecryptable { from, reason } => {
                    let mut l = output::undecryptable(from);
                    l.text.push_str(&format!(" ({reason})"));
                    lines.push(l);
                }
                Event::Undeliverable { from, reason } => lines.push(output::error(&format!(
                    "message from {} dropped: {reason}",
                    output::clean(if from.is_empty() { "?" } else { from })
                ))),
                Event::ServerText { text } => lines.push(output::server_text(text)),
                Event::ServerError { text } => {
                    r.error = Some(text.to_owned());
                    lines.push(output::server_error(text));
                }
            }
        }
        if r.registered {
            self.ever_registered = true;
            let (host, port) = self.targets.get(self.at).cloned().unwrap_or_default();
            self.print(output::connected(&host, port, &me));
        }
        if show_directory {
            self.print_directory();
        }
        for l in lines {
            self.print(l);
        }
        r
    }

    fn command(&mut self, line: &str, out: &mut [u8]) -> Cmd {
        let cmd = match command::parse_command(line) {
            Ok(c) => c,
            Err(CommandError::Empty) => return Cmd::None,
            Err(e) => {
                self.print(output::error(&e.to_string()));
                return Cmd::None;
            }
        };
        match cmd {
            Command::Quit => Cmd::Quit,
            Command::Help => {
                for l in command::HELP.lines() {
                    self.print(output::sys(l));
                }
                Cmd::None
            }
            Command::Fingerprint { user } => {
                match self.client.key_of(user).copied() {
                    Some(key) => {
                        let short = fingerprint::short(&key);
                        let code = fingerprint::safety_code(&key);
                        for l in output::fingerprint(user, short.as_str(), code.as_str()) {
                            self.print(l);
                        }
                    }
                    None => self.print(output::unknown_user(user)),
                }
                Cmd::None
            }
            ref c => match self.client.send(c, &mut OsRng, out) {
                Ok(n) => Cmd::Send(n),
                Err(ClientError::UnknownUser) => {
                    let user = match c {
                        Command::To { user, .. } => *user,
                        _ => "",
                    };
                    self.print(output::unknown_user(user));
                    Cmd::None
                }
                Err(e) => {
                    self.print(output::error(&e.to_string()));
                    Cmd::None
                }
            },
        }
    }
}

#[derive(Default)]
struct Drained {
    registered: bool,
    error: Option<String>,
}

enum Cmd {
    None,
    Quit,
    Send(usize),
}
