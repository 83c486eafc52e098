//! The desktop chat client: pinned TLS, core's sans-IO client, a terminal or plain I/O.
//!
//! What the user types and what the server sends go through core's chat session
//! ([`seguro_core::chat::Chat`]), which words every line; this module only moves bytes,
//! keeps time and draws randomness ([`Driver`] is the part between the connection and
//! the screen, without I/O, so tests can drive it).
//!
//! On a terminal, the full-screen interface ([`crate::tui`]) reads keys and draws every
//! line; if the client stops on its own (an error, a signal), the reason is printed
//! again on the normal screen after it gives the terminal back. Otherwise standard input is read line by line and output lines are plain (see
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

use seguro_core::chat::{Action, Chat, Line};
use seguro_core::client::{Client, Event};
use seguro_core::command::Spec;
use seguro_core::frame::{FeedResult, LineAccumulator};

use crate::cli::ChatArgs;
use crate::exit;
use crate::output;
use crate::pin::PinMismatch;
use crate::tls;
use crate::trust::DesktopMemory;

pub mod v2;

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

/// The desktop client's chat session.
pub type DesktopChat = Chat<DesktopMemory, USERS, MSG, PENDING>;

/// Where output lines go.
/// How far a message of ours got (protocol v2): the server forwarded it (its `ack`),
/// or the peer's client received and showed it (their receipt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Delivery {
    /// The server forwarded it to the peer (`✓`).
    Forwarded,
    /// The peer's client showed it (`✓✓`).
    Received,
}

pub trait Printer: Send {
    /// Prints one line.
    fn print(&mut self, line: &Line<'_>);
    /// Prints a host line about `peer` (a full-screen host shows it in that
    /// conversation; core's own lines name their peer themselves).
    fn print_about(&mut self, _peer: &str, line: &Line<'_>) {
        self.print(line);
    }
    /// The connection's state changed (a status bar shows it; lines say it anyway).
    fn state(&mut self, _conn: Conn) {}
    /// Connected to `addr`, whose certificate has this SHA-256 fingerprint.
    fn server(&mut self, _addr: &str, _fingerprint: &str) {}
    /// Lines printed from `on` until `!on` answer a line the user typed.
    fn reply(&mut self, _on: bool) {}
    /// The user's own message to `to` (`None`: the server) went out, or waits in the
    /// outbox (`pending`).
    fn own_message(&mut self, _to: Option<&str>, _text: &str, _pending: bool) {}
    /// A message that waited in the outbox went out.
    fn sent_from_outbox(&mut self, _to: Option<&str>, _text: &str) {}
    /// A message that waited in the outbox was dropped by the user (`/outbox drop`).
    fn dropped_from_outbox(&mut self, _to: Option<&str>, _text: &str) {}
    /// How many messages wait in the outbox.
    fn outbox(&mut self, _n: usize) {}
    /// Our message `text` to `to` got this far (protocol v2).
    fn delivered(&mut self, _to: &str, _text: &str, _how: Delivery) {}
    /// The client is about to leave.
    fn quitting(&mut self) {}
    /// What is known now of the keys of contacts: `of(name)` (a status bar asks for
    /// the contacts it shows).
    fn key_states(&mut self, _of: &dyn Fn(&str) -> KeyState) {}
    /// Which protocol protects the conversation with each contact, and why:
    /// `of(name)` (a status bar asks for the contacts it shows).
    fn protocols(&mut self, _of: &dyn Fn(&str) -> &'static str) {}
    /// After core's `/help`: the client's own commands that this client handles now
    /// (a full-screen host lists them with its own in [`crate::tui::Ui::help_done`]).
    fn client_help(&mut self, commands: &mut dyn Iterator<Item = &'static Spec>) {
        for spec in commands {
            self.print(&Line::Help(spec));
        }
    }
}

/// The commands the desktop client handles itself, before core sees the line, as
/// `/help` lists them.
pub const CLIENT_COMMANDS: &[Spec] = &[
    Spec {
        name: "/reconnect",
        aliases: &[],
        usage: "/reconnect",
        about: "connect now",
    },
    Spec {
        name: "/outbox",
        aliases: &[],
        usage: "/outbox [send|drop]",
        about: "what waits to be sent; send or drop what is held",
    },
    Spec {
        name: "/sas",
        aliases: &[],
        usage: "/sas <user> [yes|no]",
        about: "verify <user> by short codes on both screens (protocol v2)",
    },
    Spec {
        name: "/accept-v1",
        aliases: &[],
        usage: "/accept-v1 <user>",
        about: "use protocol v1 with <user> again after a downgrade warning",
    },
];

/// The client's own commands that work in a client with (or without) an outbox
/// (`keep_offline`) and protocol v2 (`v2`).
pub fn client_commands(keep_offline: bool, v2: bool) -> impl Iterator<Item = &'static Spec> {
    CLIENT_COMMANDS.iter().filter(move |s| match s.name {
        "/reconnect" | "/outbox" => keep_offline,
        "/sas" | "/accept-v1" => v2,
        _ => true,
    })
}

/// The recipient (`None`: the server) and text of `line` typed in `conversation`, if it
/// is a message.
pub fn message_of(conversation: Option<&str>, line: &str) -> Option<(Option<String>, String)> {
    use seguro_core::command::{Command, CommandError, parse_command};
    match parse_command(line) {
        Ok(Command::To { user, text }) => Some((Some(user.to_owned()), text.to_owned())),
        Ok(Command::Server { text }) => Some((None, text.to_owned())),
        Err(CommandError::NotACommand) => conversation.map(|c| {
            (
                Some(c.to_owned()),
                line.trim_end_matches(['\r', '\n']).to_owned(),
            )
        }),
        _ => None,
    }
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

    /// Plain lines cannot mark a line already printed: a receipt is a line of its own
    /// (the server's forwarding is not: it would double every message).
    fn delivered(&mut self, to: &str, text: &str, how: Delivery) {
        if how == Delivery::Received {
            self.print(&Line::HostInfo(&format_args!(
                "{to} received your message: {text}"
            )));
        }
    }
}

/// One item from the input side (a thread reading standard input, or the full-screen
/// interface).
pub enum Input {
    /// A line typed in `conversation` (plain text goes to that peer).
    Line {
        /// The current conversation's peer.
        conversation: Option<String>,
        /// The line.
        text: String,
    },
    /// A key press that is not a whole line (the full-screen interface): while
    /// waiting to reconnect, it means "now"; connected, it asks for the key states
    /// again (a conversation was opened).
    Key,
    /// No more input.
    Eof,
}

/// What is known of a contact's key, for a status bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyState {
    /// No key is known for that name (never seen).
    #[default]
    Unknown,
    /// Seen, not verified.
    Unverified,
    /// The user verified the key in use (`/verify <user> yes`).
    Verified,
    /// The key in use is not the one remembered, or a verified contact's new key waits
    /// for `/verify` or `/accept`.
    Changed,
}

/// The connection's state, for a status bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conn {
    /// Connecting now.
    Connecting,
    /// Registered with the server.
    Connected,
    /// Waiting until `at` to reconnect.
    Reconnecting {
        /// When the next attempt starts.
        at: std::time::Instant,
    },
    /// Not connected and not retrying.
    Offline,
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
                        let line = Input::Line {
                            conversation: None,
                            text: l,
                        };
                        if tx.send_blocking(line).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = tx.send_blocking(Input::Eof);
        });
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
    let html = first
        .get(..5)
        .is_some_and(|h| h.eq_ignore_ascii_case(b"<!doc") || h.eq_ignore_ascii_case(b"<html"));
    Some(if first.starts_with(b"HTTP/") || html {
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
    /// What was typed while not connected, in order.
    outbox: std::collections::VecDeque<Pending>,
    /// The user was told which recipients are not online yet (once per connection).
    absent_told: bool,
    /// Offline messages wait in the outbox (else: core's "not sent").
    keep_offline: bool,
    /// Only the first message queued is announced (a screen shows the others pending).
    quiet_outbox: bool,
    /// The origin of the heartbeats' clock (protocol v2 §11).
    epoch: std::time::Instant,
    /// Protocol v2 conversations (sessions, prekeys), if on.
    v2: Option<v2::V2>,
    /// The recipient and text of the message just given to core's v1 path: its relay
    /// carries an id for the server's acknowledgement (protocol v2 §11).
    v1_text: Option<(String, String)>,
}

/// Most lines the outbox keeps; beyond, typed lines are refused (and said so).
pub const OUTBOX: usize = 1000;

/// A line typed while not connected, sent after reconnecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The conversation it was typed in (plain text goes to that peer).
    pub conversation: Option<String>,
    /// The line as typed.
    pub line: String,
    /// The recipient of an end-to-end message (`None` for `/server`).
    pub to: Option<String>,
    /// The recipient's key when the line was typed, if known: a different key at
    /// sending time holds the line until the user decides (`/outbox send` or `drop`).
    pub key: Option<[u8; seguro_core::limits::KEY_LEN]>,
    /// Held: the recipient's key changed since; sent only on `/outbox send`.
    pub held: bool,
}

/// What [`Driver::typed_in`] did with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Typed {
    /// Core's action (a message queued, lines shown, nothing).
    Chat(Action),
    /// Not connected: the line waits in the outbox.
    Queued,
    /// `/reconnect`: the host should (re)connect now.
    Reconnect,
    /// The user wants to leave.
    Quit,
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
            outbox: std::collections::VecDeque::new(),
            absent_told: false,
            keep_offline: false,
            quiet_outbox: false,
            epoch: std::time::Instant::now(),
            v2: None,
            v1_text: None,
        }
    }

    /// Turns protocol v2 conversations on (with a v2 server and v2 peers, §2.3).
    pub fn set_v2(&mut self, v2: v2::V2) {
        self.v2 = Some(v2);
    }

    /// The protocol v2 state, if on.
    pub fn v2(&self) -> Option<&v2::V2> {
        self.v2.as_ref()
    }

    /// Leaving: what still waits for a v2 session is said to be NOT sent.
    pub fn abandon_v2(&mut self, printer: &mut dyn Printer) {
        if let Some(v2) = &mut self.v2 {
            v2.abandon(printer);
        }
    }

    /// Time without sending before a ping to a v2 server, and the allowance after it.
    pub fn set_ping_timings(&mut self, interval: Duration, allowance: Duration) {
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        self.chat.set_ping_timings(ms(interval), ms(allowance));
    }

    /// When [`Driver::heartbeat`] is due (only with a v2 server).
    pub fn heartbeat_at(&self) -> Option<std::time::Instant> {
        let beat = self
            .chat
            .client()
            .poll_timeout()
            .map(|ms| self.epoch + Duration::from_millis(ms));
        let retry = self.v2.as_ref().and_then(v2::V2::timer_at);
        match (beat, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Tells core the time: a due ping goes to `wire`. True if the link stalled (the
    /// server answered nothing after a ping): the host reconnects.
    pub fn heartbeat(&mut self, printer: &mut dyn Printer, wire: &mut Vec<u8>) -> bool {
        self.drain(printer, wire);
        if self.online
            && let Some(v2) = &mut self.v2
        {
            v2.on_timer(&self.chat, &mut OsRng, printer, wire);
        }
        self.chat.client().is_stalled()
    }

    fn tick(&mut self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.chat.handle_timeout(ms);
    }

    /// The chat session.
    pub fn chat(&self) -> &DesktopChat {
        &self.chat
    }

    /// What is known of `name`'s key: the memory's judgement (verified, a changed key
    /// waiting) against the key the server lists now.
    pub fn key_state(&self, name: &str) -> KeyState {
        use seguro_core::chat::KeyMemory as _;
        let now = self.chat.client().key_of(name);
        match self.chat.memory().status(name) {
            Some(st) if st.pending.is_some() || now.is_some_and(|k| *k != st.key) => {
                KeyState::Changed
            }
            Some(st) if st.verified => KeyState::Verified,
            Some(_) => KeyState::Unverified,
            None if now.is_some() => KeyState::Unverified,
            None => KeyState::Unknown,
        }
    }

    /// Which protocol protects the conversation with `name` (protocol v2 §2.3), for
    /// the status bar. Messages go as v1 `relay`s in this version, so it is always v1;
    /// the reason says whether v2 would be possible.
    pub fn protocol(&self, name: &str) -> &'static str {
        if let Some(v2) = &self.v2 {
            return v2.protocol(&self.chat, name);
        }
        let client = self.chat.client();
        match client.server_v2() {
            Some(false) => "v1 (server speaks v1 only)",
            Some(true) if client.peer_v2(name) => "v1 (v2 capable)",
            Some(true) if client.key_of(name).is_some() => "v1 (peer speaks v1)",
            _ => "v1",
        }
    }

    /// The SPKI hash of the certificate the server presented on this connection, for
    /// the v2 proof ([`seguro_core::client::Client::set_server_spki`]).
    pub fn set_server_spki(&mut self, spki: [u8; 32]) {
        self.chat.set_server_spki(spki);
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
        self.absent_told = false;
        if let Some(v2) = &mut self.v2 {
            v2.connected();
        }
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

    /// [`Driver::disconnected`], telling `printer` about v2 messages whose delivery
    /// the server did not confirm.
    pub fn disconnected_with(&mut self, printer: &mut dyn Printer) {
        if let Some(v2) = &mut self.v2 {
            v2.disconnected(printer);
        }
        self.disconnected();
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
        self.tick();
        while !rest.is_empty() {
            match self.acc.feed(rest) {
                FeedResult::Consumed => rest = &[],
                FeedResult::Line { line, remaining } => {
                    rest = remaining;
                    let handled = match &mut self.v2 {
                        Some(v2) => v2.handle_line(
                            &self.chat,
                            line,
                            &mut self.scratch,
                            &mut OsRng,
                            printer,
                            wire,
                        ),
                        None => v2::Handled::No,
                    };
                    if handled == v2::Handled::No {
                        self.chat.handle_line(line, &mut self.scratch, now);
                    }
                }
                FeedResult::Overlong { remaining } => {
                    rest = remaining;
                    printer.print(&Line::Overlong {
                        max: self.acc.capacity(),
                    });
                }
            }
            if let Some(r) = self.drain(printer, wire) {
                refusal = Some(r);
            }
            if let Some(v2) = &mut self.v2 {
                v2.after_line(&self.chat, printer, wire);
                // §2.4: remembered in the trust store too (a lost session file does
                // not forget it).
                for (peer, ed) in v2.take_spoke() {
                    self.chat.memory_mut().mark_v2(&peer, &ed);
                }
                for (peer, x) in v2.take_verified() {
                    Self::mark_verified(&mut self.chat, &peer, &x, printer);
                }
            }
        }
        if self.online && self.chat.is_registered() {
            self.flush_outbox(&mut OsRng, printer, wire);
        }
        refusal
    }

    /// Keeps what is typed while not connected in an outbox (see
    /// [`Driver::typed_in`]) instead of reporting it as not sent (core's behaviour,
    /// which boards share).
    pub fn keep_offline(&mut self, on: bool) {
        self.keep_offline = on;
    }

    /// Announces only the first message put in the outbox, not each (for a screen
    /// that shows them as pending).
    pub fn quiet_outbox(&mut self, on: bool) {
        self.quiet_outbox = on;
    }

    /// A line the user typed, outside any conversation, as core's [`Action`] (a line
    /// kept in the outbox is [`Action::Offline`]); see [`Driver::typed_in`].
    pub fn typed(
        &mut self,
        line: &str,
        rng: &mut impl rand_core::CryptoRngCore,
        printer: &mut dyn Printer,
        wire: &mut Vec<u8>,
    ) -> Action {
        match self.typed_in(None, line, rng, printer, wire) {
            Typed::Chat(a) => a,
            Typed::Queued => Action::Offline,
            Typed::Reconnect => Action::Nothing,
            Typed::Quit => Action::Quit,
        }
    }

    /// A line the user typed in `conversation` (plain text goes to that peer). The
    /// host's own commands are handled here: `/reconnect`, `/outbox` (list what
    /// waits), `/outbox send` (send what is held after a key change), `/outbox drop`.
    /// A message typed while not connected waits in the outbox, in order, and goes
    /// out after the next registration ([`Driver::flush_outbox`]).
    pub fn typed_in(
        &mut self,
        conversation: Option<&str>,
        line: &str,
        rng: &mut impl rand_core::CryptoRngCore,
        printer: &mut dyn Printer,
        wire: &mut Vec<u8>,
    ) -> Typed {
        let trimmed = line.trim();
        let (cmd, rest) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
        if cmd == "/sas" {
            let mut words = rest.split_whitespace();
            let answer = match (words.next(), words.next(), words.next()) {
                (Some(user), None, None) => Some((user, None)),
                (Some(user), Some("yes"), None) => Some((user, Some(true))),
                (Some(user), Some("no"), None) => Some((user, Some(false))),
                _ => None,
            };
            match (answer, &mut self.v2) {
                (Some(_), Some(_)) if !self.online || !self.chat.is_registered() => {
                    printer.print(&Line::HostError(&"not connected: /sas needs the server"));
                }
                (Some((user, answer)), Some(v2)) => {
                    v2.sas_command(&self.chat, user, answer, rng, printer, wire);
                    for (peer, x) in v2.take_verified() {
                        Self::mark_verified(&mut self.chat, &peer, &x, printer);
                    }
                }
                (_, None) => {
                    printer.print(&Line::HostError(&"protocol v2 is not on in this client"));
                }
                (None, _) => printer.print(&Line::HostError(
                    &"usage: /sas <user> (start), /sas <user> yes (the codes match), /sas \
                      <user> no (they differ)",
                )),
            }
            return Typed::Chat(Action::Shown);
        }
        if cmd == "/accept-v1" {
            let mut words = rest.split_whitespace();
            match (words.next(), words.next(), words.next(), &mut self.v2) {
                (Some(user), confirm @ (None | Some("yes")), None, Some(v2)) => {
                    v2.accept_v1(&mut self.chat, user, confirm.is_some(), printer);
                }
                (_, _, _, None) => {
                    printer.print(&Line::HostError(&"protocol v2 is not on in this client"));
                }
                _ => printer.print(&Line::HostError(&"usage: /accept-v1 <user> [yes]")),
            }
            return Typed::Chat(Action::Shown);
        }
        match (cmd, rest.trim()) {
            _ if !self.keep_offline => {}
            ("/reconnect", "") => return Typed::Reconnect,
            ("/outbox", "") => {
                self.show_outbox(printer);
                return Typed::Chat(Action::Shown);
            }
            ("/outbox", "drop") => {
                let before = self.outbox.len();
                for p in self.outbox.iter().filter(|p| p.held) {
                    if let Some((to, text)) = message_of(p.conversation.as_deref(), &p.line) {
                        printer.dropped_from_outbox(to.as_deref(), &text);
                    }
                }
                self.outbox.retain(|p| !p.held);
                printer.outbox(self.outbox.len());
                let n = before - self.outbox.len();
                printer.print(&Line::HostInfo(&format_args!(
                    "dropped {n} held message(s); {} still wait(s)",
                    self.outbox.len()
                )));
                return Typed::Chat(Action::Shown);
            }
            ("/outbox", "send") => {
                let mut n = 0;
                for p in self.outbox.iter_mut().filter(|p| p.held) {
                    p.held = false;
                    p.key = None;
                    n += 1;
                }
                printer.print(&Line::HostInfo(&format_args!(
                    "{n} held message(s) will go to the new key"
                )));
                self.flush_outbox(rng, printer, wire);
                return Typed::Chat(Action::Shown);
            }
            ("/outbox", _) => {
                printer.print(&Line::HostError(&"usage: /outbox [send|drop]"));
                return Typed::Chat(Action::Shown);
            }
            _ => {}
        }
        let registered = self.chat.is_registered();
        let to = self.recipient(conversation, line);
        // A message queues behind those waiting for the same recipient, so none
        // overtakes another.
        let behind = to
            .as_ref()
            .is_some_and(|to| self.outbox.iter().any(|p| p.to.as_ref() == Some(to)));
        // A contact we know (a key remembered) who is not online right now, e.g. not
        // back yet after a server restart: the message waits for them.
        let absent = registered && to.as_deref().is_some_and(|u| self.known_but_absent(u));
        let action = if self.keep_offline && to.is_some() && (!registered || behind || absent) {
            Action::Offline
        } else if let Some(t) = self.send_v2(conversation, line, rng, printer, wire) {
            return t;
        } else {
            self.input_v1(conversation, line, rng)
        };
        match action {
            Action::Quit => Typed::Quit,
            Action::Offline if !self.keep_offline => {
                printer.print(&Line::NotSent);
                Typed::Chat(Action::Offline)
            }
            Action::Offline => {
                self.queue(conversation, line, printer);
                Typed::Queued
            }
            a => {
                self.drain(printer, wire);
                if trimmed == "/help" {
                    printer.client_help(&mut client_commands(self.keep_offline, self.v2.is_some()));
                }
                if let ("/trust", Some(v2)) = (trimmed, &self.v2) {
                    let names = v2.v2_contacts(&self.chat);
                    if names.is_empty() {
                        printer.print(&Line::HostInfo(&"protocol v2: not used with anyone yet"));
                    } else {
                        printer.print(&Line::HostInfo(&format_args!(
                            "protocol v2 used with: {} (no fall-back to v1 with them without \
                             /accept-v1 <user>)",
                            names.join(", ")
                        )));
                    }
                }
                Typed::Chat(a)
            }
        }
    }

    /// A message to a peer that protocol v2 protects (§2.3) goes through the v2 layer:
    /// what became of it, or `None` for core's v1 path (after the conversation line).
    fn send_v2(
        &mut self,
        conversation: Option<&str>,
        line: &str,
        rng: &mut impl rand_core::CryptoRngCore,
        printer: &mut dyn Printer,
        wire: &mut Vec<u8>,
    ) -> Option<Typed> {
        if self.v2.is_none() || !self.online || !self.chat.is_registered() {
            return None;
        }
        let (Some(to), text) = message_of(conversation, line)? else {
            return None;
        };
        // Strict mode refuses a changed verified key: core's path says so.
        let strict_refusal = self.chat.strict() && self.key_state(&to) == KeyState::Changed;
        let changed = self.key_state(&to) == KeyState::Changed;
        let v2 = self.v2.as_mut()?;
        if !text.is_empty() && !changed && v2.downgraded(&self.chat, &to) {
            printer.print(&Line::HostWarn(&format_args!(
                "{}: NOT sent: {text}",
                v2::V2::downgrade_warning(&to)
            )));
            return Some(Typed::Chat(Action::Shown));
        }
        if text.is_empty() || strict_refusal || !v2.uses_v2(&self.chat, &to) {
            if self.chat.client().key_of(&to).is_some() && !text.is_empty() {
                v2.tell_protocol(&self.chat, &to, false, printer);
            }
            return None;
        }
        let sent = v2.send(&self.chat, &to, &text, rng, printer, wire);
        Some(if sent {
            Typed::Chat(Action::Sent)
        } else if v2.sessions().has(&to) {
            Typed::Chat(Action::Shown)
        } else {
            Typed::Queued
        })
    }

    /// Core's v1 path for a typed line. With the v2 layer on and a Seguro v2 server, the
    /// relay it makes of a message is sent with an id (see [`Driver::drain`]): the
    /// server's `ack` then marks the message forwarded, or says the recipient was not
    /// connected, as for a v2 message.
    fn input_v1(
        &mut self,
        conversation: Option<&str>,
        line: &str,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> Action {
        self.v1_text = message_of(conversation, line)
            .and_then(|(to, text)| Some((to.filter(|t| !t.is_empty())?, text)));
        let action = self.chat.input_in(conversation, line, rng);
        if action != Action::Sent {
            self.v1_text = None;
        }
        action
    }

    /// `line` (a transmission of core's) again with an id, if it is the v1 relay of the
    /// message in `v1_text` and the server acknowledges such relays (protocol v2 §11):
    /// the id is what its `ack` names.
    fn with_ack_id(&mut self, line: &[u8]) -> Option<Vec<u8>> {
        use base64ct::{Base64, Encoding as _};
        use seguro_core::msg::{self, Message};
        let v2 = self.v2.as_mut()?;
        if self.chat.client().server_v2() != Some(true) {
            return None;
        }
        let (peer, _) = self.v1_text.as_ref()?;
        let mut scratch = vec![0u8; line.len()];
        let Ok(Message::Relay(r)) = msg::parse(line, &mut scratch) else {
            return None;
        };
        if r.to != peer {
            return None;
        }
        let nonce: [u8; seguro_core::limits::NONCE_LEN] =
            Base64::decode_vec(r.nonce).ok()?.try_into().ok()?;
        let cipher = Base64::decode_vec(r.cipher).ok()?;
        let from = r.from.unwrap_or(self.chat.client().user());
        let (peer, text) = self.v1_text.take()?;
        let id = v2.v1_relay_sent(&peer, &text);
        let mut out = vec![0u8; line.len() + 32];
        let n = seguro_core::v2::json::emit_relay_line_with_id(
            r.to, from, &nonce, &cipher, id, &mut out,
        )
        .ok()?;
        out.truncate(n);
        Some(out)
    }

    /// An SAS run verified `peer`'s key `x`: the trust store says so (as `/verify`).
    fn mark_verified(chat: &mut DesktopChat, peer: &str, x: &[u8; 32], printer: &mut dyn Printer) {
        use seguro_core::chat::KeyMemory as _;
        if let Err(e) = chat.memory_mut().verify(peer, x) {
            printer.print(&Line::HostError(&format_args!(
                "{peer} matched the codes but cannot be marked verified: {e}"
            )));
        }
    }

    /// `user` is a contact whose key is remembered but who is not in the directory now.
    fn known_but_absent(&self, user: &str) -> bool {
        use seguro_core::chat::KeyMemory as _;
        !user.is_empty()
            && self.chat.client().key_of(user).is_none()
            && self.chat.memory().last_key(user).is_some()
    }

    /// Where `line` (typed in `conversation`) goes: `Some(peer)` for a message,
    /// `Some("")` for `/server`, `None` for a local command.
    fn recipient(&self, conversation: Option<&str>, line: &str) -> Option<String> {
        use seguro_core::command::{Command, CommandError, parse_command};
        match parse_command(line) {
            Ok(Command::To { user, .. }) => Some(user.to_owned()),
            Ok(Command::Server { .. }) => Some(String::new()),
            Err(CommandError::NotACommand) => conversation.map(str::to_owned),
            _ => None,
        }
    }

    fn queue(&mut self, conversation: Option<&str>, line: &str, printer: &mut dyn Printer) {
        use seguro_core::chat::KeyMemory as _;
        if self.outbox.len() >= OUTBOX {
            printer.print(&Line::HostError(&format_args!(
                "not connected and {OUTBOX} messages already wait: this one is NOT kept \
                 (type it again after reconnecting)"
            )));
            return;
        }
        let to = self.recipient(conversation, line).filter(|t| !t.is_empty());
        let key = to.as_deref().and_then(|u| {
            self.chat
                .client()
                .key_of(u)
                .copied()
                .or_else(|| self.chat.memory().last_key(u))
        });
        self.outbox.push_back(Pending {
            conversation: conversation.map(str::to_owned),
            line: line.trim_end_matches(['\r', '\n']).to_owned(),
            to,
            key,
            held: false,
        });
        let n = self.outbox.len();
        let absent = self.outbox.back().and_then(|p| p.to.clone());
        if let Some(who) = absent.filter(|u| self.chat.is_registered() && self.known_but_absent(u))
        {
            printer.print(&Line::HostInfo(&format_args!(
                "{who} is not online: kept in the outbox ({n} waiting), sent when they are \
                 back (/outbox lists them)"
            )));
        } else if self.chat.is_registered() {
            printer.print(&Line::HostInfo(&format_args!(
                "kept in the outbox behind earlier messages to the same recipient ({n} \
                 waiting; /outbox lists them)"
            )));
        } else if n == 1 || !self.quiet_outbox {
            printer.print(&Line::HostInfo(&format_args!(
                "not connected: kept in the outbox ({n} waiting), sent when the connection \
                 is back"
            )));
        }
    }

    /// The lines waiting to be sent, oldest first.
    pub fn outbox(&self) -> impl ExactSizeIterator<Item = &Pending> {
        self.outbox.iter()
    }

    fn show_outbox(&self, printer: &mut dyn Printer) {
        printer.print(&Line::HostInfo(&format_args!(
            "outbox ({} waiting):",
            self.outbox.len()
        )));
        for p in &self.outbox {
            let state = if p.held { " (held: key changed)" } else { "" };
            let to = p.to.as_deref().unwrap_or("the server");
            printer.print(&Line::HostInfo(&format_args!(
                "  to {to}: {}{state}",
                p.line
            )));
        }
    }

    /// While registered, sends what waits in the outbox, in order: each line is
    /// encrypted to the recipient's key of now. A line whose recipient's key changed
    /// since it was typed is held (with every later line to that recipient) until
    /// `/outbox send` or `/outbox drop`; a line whose recipient is not online yet
    /// waits for them.
    pub fn flush_outbox(
        &mut self,
        rng: &mut impl rand_core::CryptoRngCore,
        printer: &mut dyn Printer,
        wire: &mut Vec<u8>,
    ) {
        if self.outbox.is_empty() {
            return;
        }
        let mut kept = std::collections::VecDeque::new();
        let mut blocked: Vec<String> = Vec::new();
        let mut newly_held = 0usize;
        let mut sent = 0usize;
        while let Some(mut p) = self.outbox.pop_front() {
            if !self.chat.is_registered() {
                kept.push_back(p);
                continue;
            }
            if let Some(to) = &p.to {
                let now = self.chat.client().key_of(to).copied();
                let waiting = blocked.contains(to);
                if p.held || waiting || now.is_none() && p.key.is_some() {
                    if !waiting {
                        blocked.push(to.clone());
                    }
                    kept.push_back(p);
                    continue;
                }
                if let (Some(then), Some(now)) = (p.key, now)
                    && then != now
                {
                    p.held = true;
                    newly_held += 1;
                    blocked.push(to.clone());
                    kept.push_back(p);
                    continue;
                }
            }
            if let Some(t) = self.send_v2(p.conversation.as_deref(), &p.line, rng, printer, wire) {
                sent += 1;
                if t == Typed::Chat(Action::Sent)
                    && let Some((to, text)) = message_of(p.conversation.as_deref(), &p.line)
                {
                    printer.sent_from_outbox(to.as_deref(), &text);
                }
                continue;
            }
            let action = self.input_v1(p.conversation.as_deref(), &p.line, rng);
            if action == Action::Offline {
                kept.push_back(p);
                continue;
            }
            sent += 1;
            self.drain(printer, wire);
            if action == Action::Sent
                && let Some((to, text)) = message_of(p.conversation.as_deref(), &p.line)
            {
                printer.sent_from_outbox(to.as_deref(), &text);
            }
        }
        self.outbox = kept;
        printer.outbox(self.outbox.len());
        if sent > 0 {
            printer.print(&Line::HostInfo(&format_args!(
                "sent {sent} message(s) from the outbox{}",
                if self.outbox.is_empty() {
                    String::new()
                } else {
                    format!("; {} still wait(s)", self.outbox.len())
                }
            )));
        }
        if !self.absent_told && self.chat.is_registered() {
            let absent: Vec<&str> = blocked
                .iter()
                .filter(|to| {
                    self.outbox
                        .iter()
                        .any(|p| !p.held && p.to.as_ref() == Some(*to))
                })
                .map(String::as_str)
                .collect();
            if !absent.is_empty() {
                self.absent_told = true;
                printer.print(&Line::HostInfo(&format_args!(
                    "messages wait in the outbox until they are online: {}",
                    absent.join(", ")
                )));
            }
        }
        if newly_held > 0 {
            for to in &blocked {
                if self
                    .outbox
                    .iter()
                    .any(|p| p.held && p.to.as_ref() == Some(to))
                {
                    printer.print(&Line::HostWarn(&format_args!(
                        "the key of {to} changed while your message(s) waited: they are \
                         held. Check /fp {to}, then /outbox send (to the new key) or \
                         /outbox drop"
                    )));
                }
            }
        }
    }

    /// Prints every pending line and, while online, appends every pending transmission
    /// to `wire`; returns the text of a server error received while not registered.
    fn drain(&mut self, printer: &mut dyn Printer, wire: &mut Vec<u8>) -> Option<String> {
        self.tick();
        let registered = self.chat.is_registered();
        let mut refusal = None;
        while let Some(line) = self.chat.poll_line() {
            // The conversation line (§2.3) comes before a v1 message.
            if self.v2.is_some()
                && let Line::Received(Event::Message { from, text }) = line
            {
                let (from, text) = (from.to_owned(), text.to_owned());
                if let Some(v2) = &mut self.v2 {
                    v2.tell_protocol(&self.chat, &from, true, printer);
                    if v2.v2_seen(&self.chat, &from) {
                        printer.print(&Line::HostWarn(&format_args!(
                            "{from} used protocol v2 before; the message below came with v1 \
                             — the server may be downgrading you. /accept-v1 {from} to use \
                             v1 with them"
                        )));
                    }
                }
                printer.print(&Line::Received(Event::Message {
                    from: &from,
                    text: &text,
                }));
                continue;
            }
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
        for e in self.chat.memory_mut().take_errors() {
            printer.print(&Line::HostError(&e));
        }
        while self.online {
            match self.chat.poll_transmit(&mut self.out) {
                Ok(Some(n)) => {
                    let line = self.out.get(..n).unwrap_or(&[]);
                    if self.v1_text.is_some() {
                        let line = line.to_vec();
                        match self.with_ack_id(&line) {
                            Some(with_id) => wire.extend_from_slice(&with_id),
                            None => wire.extend_from_slice(&line),
                        }
                    } else {
                        wire.extend_from_slice(line);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("cannot build a line: {e}");
                    break;
                }
            }
        }
        // Only the relay of the message just typed carries its id.
        self.v1_text = None;
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

/// Whether `seguro chat` with these arguments runs full screen: standard input and
/// output are a terminal, and not `--plain`.
pub fn full_screen(a: &ChatArgs) -> bool {
    !a.plain && std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
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
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    // Errors before the session (arguments, identity) go to the normal screen.
    let mut early: Box<dyn Printer> = if terminal {
        Box::new(PlainPrinter::new(
            std::io::stdout(),
            output::color_allowed(true),
        ))
    } else {
        Box::new(PlainPrinter::new(std::io::stdout(), false).with_format(format, clock))
    };

    // Where to connect and what to pin: an invite, or host, port and --cert.
    let target = match crate::invite::chat_target(&a) {
        Ok(t) => t,
        Err((message, code)) => {
            early.print(&Line::HostError(&message));
            return code;
        }
    };
    let note;
    let identity = match crate::identity::identity_for_chat(&a.user, a.state_dir.as_deref()) {
        Ok((keys, n)) => {
            note = n;
            keys
        }
        Err(e) => {
            early.print(&Line::HostError(&e));
            return e.exit_code();
        }
    };
    let keys = identity.v1_key_pair();
    // The v2 layer's own copy of the identity (the client's goes into its hello).
    let v2_identity = {
        let (x, ed) = identity.secrets();
        let (x, ed) = (zeroize::Zeroizing::new(x), zeroize::Zeroizing::new(ed));
        seguro_core::identity::Identity::from_secrets(&x, &ed, identity.created())
    };
    let client = match Client::new(&a.user, keys) {
        Ok(mut c) => {
            // Protocol v2's hello (the proof's server key is set at each connection).
            if let Err(e) = c.enable_v2(identity, [0; 32]) {
                early.print(&Line::HostError(&format_args!("protocol v2: {e}")));
                return exit::ERROR;
            }
            // A private server's invite carries a join token: sent in every hello.
            c.set_token(
                target
                    .token
                    .as_deref()
                    .and_then(|t| seguro_core::invite::Token::new(t).ok()),
            );
            c
        }
        Err(e) => {
            early.print(&Line::HostError(&format_args!(
                "invalid user name {:?}: {e}",
                a.user
            )));
            return exit::USAGE;
        }
    };
    let (memory, strict, trust_note) = match crate::trust::for_chat(&a) {
        Ok(m) => m,
        Err((e, code)) => {
            early.print(&Line::HostError(&e));
            return code;
        }
    };

    let (in_tx, in_rx) = channel::unbounded();
    let screen = if full_screen(&a) {
        let ui = crate::tui::Ui::new(&a.user, output::color_allowed(true), !a.no_bell, clock);
        crate::tui::start(ui)
    } else {
        None
    };
    // The input history of the full screen, unless turned off.
    let keep_history = !a.no_history && crate::config::load().is_ok_and(|c| c.history);
    let history = match (&screen, keep_history) {
        (Some(h), true) => crate::state::StateDir::locate(a.state_dir.as_deref())
            .ok()
            .map(|dir| crate::history::HistoryFile::new(dir, &a.user))
            .inspect(|file| match file.load() {
                Ok(v) => crate::tui::lock(h).ui.set_history(v),
                Err(e) => crate::tui::lock(h).print(&Line::HostWarn(&format_args!(
                    "{e}: starting with an empty input history (the next line typed \
                     replaces the file)"
                ))),
            }),
        _ => None,
    };
    let mut printer: Box<dyn Printer> = match &screen {
        Some(h) => Box::new(crate::tui::TuiPrinter(h.clone())),
        None => {
            start_plain_input(in_tx.clone());
            early
        }
    };
    if let Some(n) = note {
        printer.print(&Line::HostInfo(&n));
    }
    if let Some(n) = trust_note {
        printer.print(&Line::HostWarn(&n));
    }
    let mut chat = Box::new(DesktopChat::new(client, memory));
    chat.set_strict(strict);
    let place = crate::state::StateDir::locate(a.state_dir.as_deref())
        .ok()
        .map(|dir| v2::Place::new(dir, &a.user));
    let (mut v2_state, v2_notes) = v2::V2::load(v2_identity, &a.user, place, &mut OsRng);
    for n in &v2_notes {
        printer.print(&Line::HostWarn(n));
    }
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
        attempt: 0,
        told: None,
        last_typed: std::time::Instant::now(),
        give_up_at: None,
    };
    desktop.driver.keep_offline(true);
    if let Some(ms) = desktop.args.sas_timeout_ms {
        v2_state.set_sas_timeout(Duration::from_millis(ms.into()));
    }
    desktop.driver.set_v2(v2_state);
    let (interval, allowance) = match desktop.args.ping_ms {
        Some((i, a)) => (
            Duration::from_millis(i.into()),
            Duration::from_millis(a.into()),
        ),
        None => (
            Duration::from_secs(desktop.args.ping_interval.into()),
            Duration::from_millis(seguro_core::link::ALLOWANCE_MS.into()),
        ),
    };
    desktop.driver.set_ping_timings(interval, allowance);
    desktop.driver.quiet_outbox(screen.is_some());
    let code = match &screen {
        Some(h) => {
            // In raw mode Ctrl-C is a key; SIGTERM and SIGHUP leave like /quit, so the
            // terminal is given back and what never left the outbox is listed.
            let quit = in_tx.clone();
            let shown = h.clone();
            if let Err(e) = ctrlc::set_handler(move || {
                // Said on the screen and again after leaving: not a silent exit.
                crate::tui::say_leaving(
                    &shown,
                    &Line::HostInfo(&"stopped by a signal (SIGTERM, SIGHUP or SIGINT): leaving"),
                );
                let _ = quit.try_send(Input::Line {
                    conversation: None,
                    text: "/quit".into(),
                });
            }) {
                tracing::debug!("no SIGTERM handler: {e}");
            }
            let events = crate::tui::events(h.clone(), in_tx, history);
            smol::block_on(desktop.run().or(events))
        }
        None => {
            drop(in_tx);
            smol::block_on(desktop.run())
        }
    };
    drop(desktop);
    if let Some(h) = &screen {
        crate::tui::stop(h);
    }
    code
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
    /// Reconnect attempts since the last registration.
    attempt: u32,
    /// The reason last said for being offline.
    told: Option<String>,
    /// When the user last typed a line.
    last_typed: std::time::Instant,
    /// After input ended with messages in the outbox: when to stop trying.
    give_up_at: Option<std::time::Instant>,
}

/// How one connection ended.
enum End {
    /// The user is done (`/quit`, or end of input plus linger).
    Done,
    /// The user asked to reconnect (`/reconnect`).
    Again,
    /// The connection broke.
    Lost(String),
    /// The server refused us before registration (error text).
    Refused(String),
}

/// How a wait before reconnecting ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Connect now.
    Retry,
    /// The user left (`/quit`, or the end of input with nothing left to send).
    Quit,
}

/// A user who typed within this long is active: reconnect attempts stay close.
const ACTIVE: Duration = Duration::from_secs(300);
/// Seconds to keep trying to deliver the outbox after input ended.
const GIVE_UP: f64 = 30.0;

/// The wait before reconnect attempt `attempt` (0 first): doubling from 0.5 s, capped
/// at 4 s while the user is `active` (30 s otherwise), with "equal jitter" from
/// `random`: between half the step and the whole step, so clients that lost the same
/// server do not come back at the same instant.
pub fn reconnect_delay(attempt: u32, active: bool, random: u64) -> Duration {
    let cap_ms: u64 = if active { 4_000 } else { 30_000 };
    let step = 500u64.saturating_mul(1 << attempt.min(10)).min(cap_ms);
    let half = step / 2;
    Duration::from_millis(half + random % (half + 1))
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

    /// A line the user typed: to the driver, with the printer told what became of it.
    fn typed(&mut self, conversation: Option<&str>, text: &str, wire: &mut Vec<u8>) -> Typed {
        self.last_typed = std::time::Instant::now();
        self.printer.reply(true);
        let t = self
            .driver
            .typed_in(conversation, text, &mut OsRng, &mut *self.printer, wire);
        self.printer.reply(false);
        if let Some((to, body)) = message_of(conversation, text) {
            match t {
                Typed::Chat(Action::Sent) => self.printer.own_message(to.as_deref(), &body, false),
                Typed::Queued => self.printer.own_message(to.as_deref(), &body, true),
                _ => {}
            }
        }
        if t == Typed::Quit {
            self.printer.quitting();
        }
        self.printer.outbox(self.driver.outbox().len());
        self.printer.key_states(&|n| self.driver.key_state(n));
        self.printer.protocols(&|n| self.driver.protocol(n));
        t
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
        let code = self.run_connections().await;
        self.finish(code)
    }

    /// Reports what never left the outbox; the exit code is not 0 if anything did not.
    fn finish(&mut self, code: i32) -> i32 {
        let n = self.driver.outbox().len();
        if n == 0 {
            return code;
        }
        let lines: Vec<String> = self.driver.outbox().map(|p| p.line.clone()).collect();
        self.printer.print(&Line::HostError(&format_args!(
            "{n} message(s) typed were NOT sent (no connection, or the recipient never came \
             online):"
        )));
        for l in &lines {
            self.printer
                .print(&Line::HostError(&format_args!("  not sent: {l}")));
        }
        if code == exit::OK {
            exit::CONNECT
        } else {
            code
        }
    }

    async fn run_connections(&mut self) -> i32 {
        loop {
            self.printer.state(Conn::Connecting);
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
                    if !self.ever_registered || self.args.no_reconnect {
                        self.error(&m);
                        return exit::NOT_SEGURO;
                    }
                    if self.wait_backoff(&m).await == Wait::Quit {
                        return exit::OK;
                    }
                    continue;
                }
                Err(ConnectError::Tls(m)) => {
                    if !self.ever_registered || self.args.no_reconnect {
                        self.error(&m);
                        return exit::TLS;
                    }
                    if self.wait_backoff(&m).await == Wait::Quit {
                        return exit::OK;
                    }
                    continue;
                }
                Err(ConnectError::Net(m)) => {
                    if !self.ever_registered || self.args.no_reconnect {
                        self.error(&m);
                        return exit::CONNECT;
                    }
                    if self.wait_backoff(&m).await == Wait::Quit {
                        return exit::OK;
                    }
                    continue;
                }
            };
            let end = self.session(stream).await;
            self.driver.disconnected_with(&mut *self.printer);
            match end {
                End::Done => return exit::OK,
                End::Again => {
                    self.printer
                        .print(&Line::HostInfo(&"reconnecting now, as asked"));
                    self.attempt = 0;
                }
                End::Refused(text) => {
                    if !self.ever_registered || self.args.no_reconnect {
                        return exit::CONNECT;
                    }
                    // E.g. our old connection is not gone yet on the server: retry.
                    if self.wait_backoff(&text).await == Wait::Quit {
                        return exit::OK;
                    }
                }
                End::Lost(why) => {
                    if self.args.no_reconnect {
                        self.printer.state(Conn::Offline);
                        self.printer.print(&Line::ConnectionLost { why: &why });
                        return exit::CONNECT;
                    }
                    if self.wait_backoff(&why).await == Wait::Quit {
                        return exit::OK;
                    }
                }
            }
        }
    }

    /// Waits before a reconnect, answering what the user types (a message waits in the
    /// outbox); any line typed, or `/reconnect`, ends the wait at once.
    async fn wait_backoff(&mut self, why: &str) -> Wait {
        let active = self.last_typed.elapsed() < ACTIVE || self.driver.outbox().len() > 0;
        let delay = reconnect_delay(
            self.attempt,
            active,
            rand_core::RngCore::next_u64(&mut OsRng),
        );
        self.attempt = self.attempt.saturating_add(1);
        let after_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let deadline = std::time::Instant::now() + delay;
        // First the state: the screen keeps an outage's lines for after leaving.
        self.printer.state(Conn::Reconnecting { at: deadline });
        // One warning per outage; later attempts speak only when the reason changes.
        if self.attempt == 1 {
            self.printer.print(&Line::Reconnecting {
                why: &why,
                after_ms,
            });
        } else if self.told.as_deref() != Some(why) {
            self.printer.print(&Line::HostInfo(&format_args!(
                "still offline ({why}); next try in {}.{} s",
                after_ms / 1000,
                after_ms % 1000 / 100
            )));
        }
        self.told = Some(why.to_owned());
        loop {
            let mut until = deadline;
            if self.input_done {
                if self.driver.outbox().len() == 0 {
                    // Nothing left to send: waiting for a reconnect helps nobody.
                    return Wait::Quit;
                }
                let give_up = *self.give_up_at.get_or_insert_with(|| {
                    std::time::Instant::now()
                        + Duration::from_secs_f64(GIVE_UP.max(self.args.linger.clamp(0.0, 3600.0)))
                });
                if std::time::Instant::now() >= give_up {
                    return Wait::Quit;
                }
                until = until.min(give_up);
            }
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                if std::time::Instant::now() >= deadline {
                    return Wait::Retry;
                }
                continue;
            }
            let got = async {
                if self.input_done {
                    std::future::pending().await
                } else {
                    self.input.recv().await.ok()
                }
            }
            .or(async {
                Timer::after(left).await;
                None
            })
            .await;
            match got {
                Some(Input::Eof) => {
                    self.input_done = true;
                    if self.driver.outbox().len() > 0 {
                        self.printer.print(&Line::HostWarn(&format_args!(
                            "input ended with {} message(s) in the outbox: trying to \
                             deliver them for {GIVE_UP} s",
                            self.driver.outbox().len()
                        )));
                    }
                }
                Some(Input::Line { conversation, text }) => {
                    // Not connected: nothing reaches the wire.
                    let mut wire = Vec::new();
                    match self.typed(conversation.as_deref(), &text, &mut wire) {
                        Typed::Quit => return Wait::Quit,
                        // The user is here: try now rather than later.
                        _ => return Wait::Retry,
                    }
                }
                Some(Input::Key) => return Wait::Retry,
                None => {}
            }
        }
    }

    async fn session(&mut self, stream: TlsStream<Sniff>) -> End {
        if let Some(cert) = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
        {
            if let Ok(pin) = crate::pin::key_pin_of(cert) {
                self.driver.set_server_spki(pin.sha256);
            }
            let (host, port) = self.targets.get(self.at).cloned().unwrap_or_default();
            self.printer.server(
                &format!("{host}:{port}"),
                &crate::certs::sha256_colon_hex(cert),
            );
        }
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
                Heartbeat,
            }
            let registered = self.driver.chat().is_registered();
            let want_input = registered && !self.input_done;
            if self.input_done && registered && linger_until.is_none() {
                // Input ended (here or while reconnecting): keep receiving for
                // --linger, and longer while messages wait for their recipient.
                let now = std::time::Instant::now();
                let mut until = now + Duration::from_secs_f64(self.args.linger.clamp(0.0, 3600.0));
                if self.driver.outbox().len() > 0 {
                    let give_up = *self
                        .give_up_at
                        .get_or_insert_with(|| now + Duration::from_secs_f64(GIVE_UP));
                    until = until.max(give_up);
                }
                linger_until = Some(until);
            }
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
                let beat_at = self.driver.heartbeat_at();
                let beat = async {
                    match beat_at {
                        Some(t) => {
                            Timer::at(t).await;
                            Ev::Heartbeat
                        }
                        None => std::future::pending().await,
                    }
                };
                read.or(input).or(linger).or(beat).await
            };
            match ev {
                Ev::Heartbeat => {
                    if self.driver.heartbeat(&mut *self.printer, &mut wire) {
                        // No close_notify: a stalled link may not take it either.
                        let allowance = self
                            .args
                            .ping_ms
                            .map_or(f64::from(seguro_core::link::ALLOWANCE_MS), |(_, a)| {
                                f64::from(a)
                            });
                        return End::Lost(format!(
                            "no answer from the server within {} s of a ping",
                            allowance / 1000.0
                        ));
                    }
                }
                Ev::Linger => {
                    // Texts waiting for a v2 session (a bundle on its way): a little
                    // longer, up to the outbox's limit.
                    let now = std::time::Instant::now();
                    if self.driver.v2().is_some_and(|v| v.waiting() > 0) {
                        let give_up = *self
                            .give_up_at
                            .get_or_insert_with(|| now + Duration::from_secs_f64(GIVE_UP));
                        if now < give_up {
                            linger_until = Some((now + Duration::from_millis(200)).min(give_up));
                            continue;
                        }
                    }
                    self.driver.abandon_v2(&mut *self.printer);
                    let _ = wr.close().await;
                    return End::Done;
                }
                Ev::Input(None) | Ev::Input(Some(Input::Eof)) => {
                    // The linger starts at the top of the loop.
                    self.input_done = true;
                    let _ = wr.flush().await;
                }
                Ev::Input(Some(Input::Key)) => {
                    // E.g. a conversation opened: the status bar asks for its key state.
                    self.printer.key_states(&|n| self.driver.key_state(n));
                    self.printer.protocols(&|n| self.driver.protocol(n));
                }
                Ev::Input(Some(Input::Line { conversation, text })) => {
                    match self.typed(conversation.as_deref(), &text, &mut wire) {
                        Typed::Quit => {
                            let _ = write_all(&mut wr, &mut wire).await;
                            let _ = wr.close().await;
                            return End::Done;
                        }
                        Typed::Reconnect => {
                            let _ = write_all(&mut wr, &mut wire).await;
                            let _ = wr.close().await;
                            return End::Again;
                        }
                        _ => {}
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
                    } else if matches!(
                        e.kind(),
                        // A reset is what a killed server sends when our last line
                        // (e.g. the v2 prekeys after the welcome) was still unread.
                        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                    ) {
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
                    self.printer.key_states(&|n| self.driver.key_state(n));
                    self.printer.protocols(&|n| self.driver.protocol(n));
                    if self.driver.chat().is_registered() {
                        if !registered {
                            self.printer.state(Conn::Connected);
                        }
                        self.ever_registered = true;
                        self.attempt = 0;
                        self.told = None;
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
        // An HTTP/0.9 answer (Python's http.server to a TLS hello) is a page alone.
        let page = not_tls_service(b"<!DOCTYPE HTML>\n<html lang=\"en\">").unwrap();
        assert!(page.contains("web (HTTP) server"), "{page}");
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
