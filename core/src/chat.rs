//! The chat session every host shares: typed lines in, lines for the user out, with one
//! wording, the commands, escaping of everything others supply, and the memory of the
//! keys seen per user.
//!
//! [`Chat`] owns a [`Client`] (the protocol) and a [`KeyMemory`] (the keys seen per
//! name; [`RecentKeys`] by default, a persistent trust store later). A host's loop:
//!
//! 1. bytes from the server: `rest = chat.receive(&mut acc, rest, scratch, now)` until
//!    `rest` is empty, draining after each call;
//! 2. a line the user typed: [`Chat::input`] (or [`Chat::input_in`] with the current
//!    conversation, or [`Chat::send_text`]), then act on the [`Action`] and drain;
//! 3. a connection that ends (and before a new one): [`Chat::reset`];
//! 4. to drain: show every [`Chat::poll_line`] (render it with `Display`, colour it by
//!    [`Line::kind`]) and write every [`Chat::poll_transmit`] to the server.
//!
//! Lines borrow the session, so each is shown before the next is polled; `receive`,
//! `handle_line` and `input` discard lines a host left undrained. Everything is
//! bounded, nothing allocates, and no input panics.
//!
//! What the user sees:
//! - the first directory after connecting is listed whole (`users online (n):`), not
//!   as a burst of joins; later ones as joins and leaves;
//! - a name seen for the first time gets a quiet `[SYS] new contact …` with its
//!   fingerprint; a key that is unchanged, nothing;
//! - a user whose key differs from the one last seen for that name, within a
//!   directory or after leaving and coming back, gets a loud `[WARN] KEY CHANGED` with
//!   both fingerprints and what to do; a verified contact's, a louder one
//!   ([`Kind::Alert`]);
//! - `/verify <user>` shows the pair's 60-digit safety code (the same on both sides),
//!   `/verify <user> yes` marks the key the code was shown for verified, `/trust` lists
//!   the contacts, `/accept <user>` takes a verified contact's new key unverified
//!   (these need a [`KeyMemory`] that keeps contacts, such as [`Contacts`]);
//! - in strict mode ([`Chat::set_strict`]) a message to a verified contact whose key
//!   changed is refused until `/verify` or `/accept`; by default it is sent (warn only);
//! - a message delivered again (its nonce already received from that peer) is not shown
//!   again, with one `[WARN]` per minute at most; one of our own messages handed back
//!   as the peer's is refused with a `[WARN]` (see [`crate::replay`]);
//! - a server that lists us with another key than ours gets one too;
//! - `/help`, `/fp` (our own name included) and `/list` (the directory kept from the
//!   last connection) work while disconnected; a message typed while disconnected is
//!   [`Action::Offline`], for the host to keep or to report with [`Line::NotSent`].

pub mod escape;
mod line;
mod memory;
pub mod sessions;

use core::fmt;

use heapless::String;

pub use line::{Body, Kind, Line, Prefix};
pub use memory::{Contacts, KeyMemory, RecentKeys, Status, Verdict};

use crate::client::{Client, DEFAULT_MSG, Event, LineError, SendError, TransmitError};
use crate::command::{COMMANDS, Command, CommandError, parse_command};
use crate::directory::Change;
use crate::frame::{FeedResult, LineAccumulator};
use crate::limits::{
    CLIENT_MAX_USERS, CLIENT_PENDING, KEY_LEN, MAX_NAME_BYTES, SERVER_LABEL_BYTES,
};
use crate::replay::Seen;
use crate::trust::TrustError;

/// What a typed line asks of the host. After any of them but [`Action::Quit`], drain
/// [`Chat::poll_line`] and [`Chat::poll_transmit`].
#[must_use]
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing (an empty line).
    Nothing,
    /// Lines to show (help, a fingerprint, an error).
    Shown,
    /// A message or request is queued for the server.
    Sent,
    /// The line is a message but we are not connected: nothing was queued. Keep it
    /// for later (an outbox), or show [`Line::NotSent`].
    Offline,
    /// The user wants to leave.
    Quit,
}

/// A line of the session's own (not one client event), shown by [`Chat::poll_line`].
#[derive(Debug, Clone, Copy)]
enum Own {
    Connected,
    Users { connected: bool },
    User(usize),
    KeyChanged,
    NotYourKey,
    HelpHeader,
    Help(usize),
    Fingerprint,
    SafetyCode,
    UnknownUser,
    WeakKey,
    Command(CommandError),
    Send(SendError<'static>),
    BadLine(LineError),
    Overlong { max: usize },
    FirstContact,
    PairCode,
    VerifyHow,
    Verified,
    VerifyStale,
    Accepted,
    Contacts,
    Contact(usize),
    Trust(TrustError),
    StrictRefused,
    Replayed { more: u32 },
    Reflected,
}

/// Seconds between two warnings about replayed messages.
const REPLAY_WARN_EVERY: u64 = 60;

/// What [`Chat::step`] found to show.
enum Next {
    Own,
    Event,
    Done,
}

/// A name and two keys kept for a line shown after the event that caused it.
#[derive(Debug, Default)]
struct Held {
    name: String<MAX_NAME_BYTES>,
    old: [u8; KEY_LEN],
    new: [u8; KEY_LEN],
    verified: bool,
}

impl Held {
    fn name(&mut self, name: &str) {
        self.name.clear();
        for c in name.chars() {
            if self.name.push(c).is_err() {
                break;
            }
        }
    }
}

/// Writes `line` into `out` (cleared first), cut at a character boundary if it does
/// not fit: a bounded host's rendering.
pub fn render_into<const N: usize>(line: &Line<'_>, out: &mut String<N>) {
    out.clear();
    let _ = fmt::Write::write_fmt(&mut Cut(out), format_args!("{line}"));
}

/// Writes into a `heapless::String`, cutting at a character boundary when full.
struct Cut<'a, const N: usize>(&'a mut String<N>);

impl<const N: usize> fmt::Write for Cut<'_, N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.0.push(c).is_err() {
                break;
            }
        }
        Ok(())
    }
}

/// One user's chat session: a [`Client`] plus the commands, the wording and the
/// memory of keys. See the module docs for the host's loop.
pub struct Chat<
    K,
    const USERS: usize = CLIENT_MAX_USERS,
    const MSG: usize = DEFAULT_MSG,
    const PENDING: usize = CLIENT_PENDING,
> {
    client: Client<USERS, MSG, PENDING>,
    memory: K,
    server: String<SERVER_LABEL_BYTES>,
    ever_registered: bool,
    /// Showing the events of the very first welcome: joins are listed, not announced.
    first_burst: bool,
    now: u64,
    next: Option<Own>,
    showing: Own,
    held: Held,
    /// The key `/verify` last showed a code for (name, key).
    offer: Option<Held>,
    strict: bool,
    /// When the last replay warning was shown, and copies since.
    replay_warned: Option<u64>,
    replay_quiet: u32,
}

impl<K: KeyMemory, const USERS: usize, const MSG: usize, const PENDING: usize>
    Chat<K, USERS, MSG, PENDING>
{
    /// A session around `client`, judging keys with `memory`.
    pub fn new(client: Client<USERS, MSG, PENDING>, memory: K) -> Self {
        Self {
            client,
            memory,
            server: String::new(),
            ever_registered: false,
            first_burst: false,
            now: 0,
            next: None,
            showing: Own::HelpHeader,
            held: Held::default(),
            offer: None,
            strict: false,
            replay_warned: None,
            replay_quiet: 0,
        }
    }

    /// Strict mode: refuse to send to a verified contact whose key changed, until the
    /// user verifies the new key or accepts it. Off by default (warn only).
    pub fn set_strict(&mut self, strict: bool) {
        self.strict = strict;
    }

    /// Whether strict mode is on.
    pub fn strict(&self) -> bool {
        self.strict
    }

    /// See [`Client::set_server_spki`].
    pub fn set_server_spki(&mut self, spki: [u8; 32]) {
        self.client.set_server_spki(spki);
    }

    /// The protocol client.
    pub fn client(&self) -> &Client<USERS, MSG, PENDING> {
        &self.client
    }

    /// See [`Client::handle_timeout`] (heartbeats with a v2 server).
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.client.handle_timeout(now_ms);
    }

    /// See [`Client::set_ping_timings`].
    pub fn set_ping_timings(&mut self, interval_ms: u32, allowance_ms: u32) {
        self.client.set_ping_timings(interval_ms, allowance_ms);
    }

    /// The key memory.
    pub fn memory(&self) -> &K {
        &self.memory
    }

    /// The key memory, to change (for example to mark a contact verified).
    pub fn memory_mut(&mut self) -> &mut K {
        &mut self.memory
    }

    /// Our user name.
    pub fn user(&self) -> &str {
        self.client.user()
    }

    /// True while the server has welcomed us on the current connection.
    pub fn is_registered(&self) -> bool {
        self.client.is_registered()
    }

    /// Names the server for `connected to <server> as <user>` (cut at
    /// [`SERVER_LABEL_BYTES`]).
    pub fn set_server(&mut self, server: &dyn fmt::Display) {
        self.server.clear();
        let _ = fmt::Write::write_fmt(&mut Cut(&mut self.server), format_args!("{server}"));
    }

    /// Call when a connection ends, and before a new one (see [`Client::reset`]).
    pub fn reset(&mut self) {
        self.client.reset();
        self.next = None;
    }

    /// Feeds bytes from the server: handles at most one complete line of `input` (or
    /// reports one overlong line) and returns the input not yet looked at. Drain
    /// after every call; call again while the rest is not empty. `acc` frames lines
    /// across calls, `scratch` must be as long as `acc`'s capacity, `now` is the
    /// host's time for the key memory.
    pub fn receive<'i, B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        acc: &mut LineAccumulator<B>,
        input: &'i [u8],
        scratch: &mut [u8],
        now: u64,
    ) -> &'i [u8] {
        match acc.feed(input) {
            FeedResult::Consumed => &[],
            FeedResult::Line { line, remaining } => {
                self.handle_line(line, scratch, now);
                remaining
            }
            FeedResult::Overlong { remaining } => {
                self.next = Some(Own::Overlong {
                    max: acc.capacity(),
                });
                remaining
            }
        }
    }

    /// Handles one complete line from the server (without its `\n`); then drain.
    pub fn handle_line(&mut self, line: &[u8], scratch: &mut [u8], now: u64) {
        self.next = None;
        self.first_burst = false;
        self.now = now;
        if let Err(e) = self.client.handle_line(line, scratch) {
            self.next = Some(Own::BadLine(e));
        }
    }

    /// Handles a line the user typed (without its line end).
    pub fn input(&mut self, line: &str, rng: &mut impl rand_core::CryptoRngCore) -> Action {
        self.input_in(None, line, rng)
    }

    /// Handles a line typed in `conversation`: text that is not a command goes to that
    /// peer. With `None`, it is [`CommandError::NotACommand`] as in [`Chat::input`].
    pub fn input_in(
        &mut self,
        conversation: Option<&str>,
        line: &str,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> Action {
        self.next = None;
        let cmd = match parse_command(line) {
            Ok(cmd) => cmd,
            Err(CommandError::Empty) => return Action::Nothing,
            Err(CommandError::NotACommand) => match conversation {
                Some(peer) => {
                    return self.send_text(peer, line.trim_end_matches(['\r', '\n']), rng);
                }
                None => return self.show(Own::Command(CommandError::NotACommand)),
            },
            Err(e) => return self.show(Own::Command(e)),
        };
        match cmd {
            Command::Quit => Action::Quit,
            Command::Help => self.show(Own::HelpHeader),
            Command::Fingerprint { user } => self.fingerprint(user),
            Command::List => match self.client.request_list() {
                Ok(()) => Action::Sent,
                Err(_) => self.show(Own::Users { connected: false }),
            },
            Command::To { user, text } => self.send_text(user, text, rng),
            Command::Verify { user, confirm } => self.verify(user, confirm),
            Command::Accept { user } => {
                self.held.name(user);
                match self.memory.accept(user) {
                    Ok(key) => {
                        self.held.new = key;
                        self.show(Own::Accepted)
                    }
                    Err(e) => self.show(Own::Trust(e)),
                }
            }
            Command::Trust => {
                if self.memory.slots() == 0 {
                    self.held.name("/trust");
                    self.show(Own::Trust(TrustError::Unsupported))
                } else {
                    self.show(Own::Contacts)
                }
            }
            Command::Server { text } => match self.client.send_server(text) {
                Ok(()) => Action::Sent,
                Err(SendError::NotRegistered) => Action::Offline,
                Err(e) => self.show(Own::Send(e)),
            },
        }
    }

    /// Sends `text` to `to` end to end (what `/to <to> <text>` does).
    pub fn send_text(
        &mut self,
        to: &str,
        text: &str,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> Action {
        self.next = None;
        if self.strict && self.changed_since_verified(to) {
            self.held.name(to);
            return self.show(Own::StrictRefused);
        }
        match self.client.send_to(to, text, rng) {
            Ok(()) => {
                // A message to ourselves comes back by design: not a reflection.
                if let Some(nonce) = self.client.queued_nonce()
                    && to != self.client.user()
                {
                    self.memory.sent_nonce(to, &nonce);
                }
                Action::Sent
            }
            Err(SendError::NotRegistered) => Action::Offline,
            Err(SendError::UnknownUser { user }) => {
                self.held.name(user);
                self.show(Own::UnknownUser)
            }
            Err(SendError::WeakKey { user }) => {
                self.held.name(user);
                self.show(Own::WeakKey)
            }
            Err(SendError::TextTooLong { max }) => {
                self.show(Own::Send(SendError::TextTooLong { max }))
            }
            Err(_) => self.show(Own::Send(SendError::Busy)),
        }
    }

    /// A verified contact whose key changed (pending, or listed otherwise now).
    fn changed_since_verified(&self, user: &str) -> bool {
        self.memory.status(user).is_some_and(|s| {
            s.verified
                && (s.pending.is_some() || self.client.key_of(user).is_some_and(|k| *k != s.key))
        })
    }

    /// The key `user` has now: the directory's, else the memory's newest.
    fn current_key(&self, user: &str) -> Option<[u8; KEY_LEN]> {
        self.client
            .key_of(user)
            .copied()
            .or_else(|| self.memory.status(user).map(|s| s.pending.unwrap_or(s.key)))
    }

    fn verify(&mut self, user: &str, confirm: bool) -> Action {
        self.held.name(user);
        if user == self.client.user() {
            return self.show(Own::Command(CommandError::Usage(
                "/verify <user> [yes] (another user: your own key needs no verifying)",
            )));
        }
        let Some(key) = self.current_key(user) else {
            return self.show(Own::UnknownUser);
        };
        self.held.new = key;
        if !confirm {
            self.held.old = self.client.public_key();
            let mut offer = Held::default();
            offer.name(user);
            offer.new = key;
            self.offer = Some(offer);
            return self.show(Own::PairCode);
        }
        let offered = self
            .offer
            .as_ref()
            .is_some_and(|o| o.name == self.held.name && o.new == key);
        if !offered {
            return self.show(Own::VerifyStale);
        }
        self.offer = None;
        match self.memory.verify(user, &key) {
            Ok(()) => self.show(Own::Verified),
            Err(e) => self.show(Own::Trust(e)),
        }
    }

    fn show(&mut self, own: Own) -> Action {
        self.next = Some(own);
        Action::Shown
    }

    fn fingerprint(&mut self, user: &str) -> Action {
        let key = if user == self.client.user() {
            Some(self.client.public_key())
        } else {
            self.client
                .key_of(user)
                .copied()
                .or_else(|| self.memory.last_key(user))
        };
        self.held.name(user);
        match key {
            Some(key) => {
                self.held.new = key;
                self.show(Own::Fingerprint)
            }
            None => self.show(Own::UnknownUser),
        }
    }

    /// The next line to write to the server, `\n` included (see
    /// [`Client::poll_transmit`]).
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Result<Option<usize>, TransmitError> {
        self.client.poll_transmit(out)
    }

    /// The next line to show, or `None` when all are shown.
    pub fn poll_line(&mut self) -> Option<Line<'_>> {
        match self.step() {
            Next::Done => None,
            Next::Own => self.own_line(),
            Next::Event => self.event_line(),
        }
    }

    /// Moves to the next thing to show.
    fn step(&mut self) -> Next {
        loop {
            if let Some(own) = self.next.take() {
                self.showing = own;
                self.next = self.after(own);
                return Next::Own;
            }
            if !self.client.advance() {
                return Next::Done;
            }
            if self.classify() {
                return Next::Event;
            }
        }
    }

    /// The own line that follows `own`, if any.
    fn after(&self, own: Own) -> Option<Own> {
        let users = self.client.directory().len();
        match own {
            Own::Connected => Some(Own::Users { connected: true }),
            Own::Users { .. } if users > 0 => Some(Own::User(0)),
            Own::User(i) if i.saturating_add(1) < users => Some(Own::User(i + 1)),
            Own::HelpHeader => Some(Own::Help(0)),
            Own::Help(i) if i.saturating_add(1) < COMMANDS.len() => Some(Own::Help(i + 1)),
            Own::Fingerprint => Some(Own::SafetyCode),
            Own::PairCode => Some(Own::VerifyHow),
            Own::Contacts => self.next_contact(0).map(Own::Contact),
            Own::Contact(i) => self.next_contact(i.saturating_add(1)).map(Own::Contact),
            _ => None,
        }
    }

    /// The first occupied contact slot at `from` or after.
    fn next_contact(&self, from: usize) -> Option<usize> {
        (from..self.memory.slots()).find(|i| self.memory.contact(*i).is_some())
    }

    /// Looks at the client's current event: consults the key memory, queues the own
    /// lines it causes, and says whether the event itself is shown as a line.
    fn classify(&mut self) -> bool {
        let Some(event) = self.client.event() else {
            return false;
        };
        let me = self.client.user();
        let mine = self.client.public_key();
        match event {
            Event::Registered { .. } => {
                self.first_burst = !self.ever_registered;
                self.ever_registered = true;
                self.next = Some(Own::Connected);
                false
            }
            Event::Listed => {
                self.next = Some(Own::Users { connected: true });
                false
            }
            Event::Change(
                Change::Joined { name, key } | Change::KeyChanged { name, new: key, .. },
            ) if name == me => {
                if *key != mine {
                    self.held.name(name);
                    self.held.new = *key;
                    self.held.old = mine;
                    self.next = Some(Own::NotYourKey);
                }
                false
            }
            Event::Change(Change::Left { name }) => name != me,
            Event::Change(Change::Joined { name, key }) => {
                let verdict = self.memory.observe(name, key, self.now);
                if let Verdict::Changed { old } | Verdict::ChangedVerified { old } = verdict {
                    self.held.name(name);
                    self.held.old = old;
                    self.held.new = *key;
                    self.held.verified = matches!(verdict, Verdict::ChangedVerified { .. });
                    self.next = Some(Own::KeyChanged);
                } else if verdict == Verdict::FirstContact {
                    self.held.name(name);
                    self.held.new = *key;
                    self.next = Some(Own::FirstContact);
                }
                !self.first_burst
            }
            Event::Change(Change::KeyChanged { name, old, new }) => {
                let verdict = self.memory.observe(name, new, self.now);
                self.held.name(name);
                self.held.new = *new;
                (self.held.old, self.held.verified) = match verdict {
                    Verdict::Changed { old } => (old, false),
                    Verdict::ChangedVerified { old } => (old, true),
                    _ => (*old, false),
                };
                self.next = Some(Own::KeyChanged);
                false
            }
            Event::Message { from, .. } => {
                let Some(nonce) = self.client.message_nonce() else {
                    return true;
                };
                match self.memory.received_nonce(from, &nonce) {
                    Seen::Replayed => {
                        let due = self
                            .replay_warned
                            .is_none_or(|t| self.now >= t.saturating_add(REPLAY_WARN_EVERY));
                        if due {
                            self.held.name(from);
                            self.next = Some(Own::Replayed {
                                more: core::mem::take(&mut self.replay_quiet),
                            });
                            self.replay_warned = Some(self.now);
                        } else {
                            self.replay_quiet = self.replay_quiet.saturating_add(1);
                        }
                        false
                    }
                    Seen::Reflected => {
                        self.held.name(from);
                        self.next = Some(Own::Reflected);
                        false
                    }
                    _ => true,
                }
            }
            _ => true,
        }
    }

    fn own_line(&self) -> Option<Line<'_>> {
        let held = &self.held;
        let name = held.name.as_str();
        Some(match self.showing {
            Own::Connected => Line::Connected {
                server: &self.server,
                user: self.client.user(),
            },
            Own::Users { connected } => Line::Users {
                count: self.client.directory().len(),
                connected,
            },
            Own::User(i) => {
                let e = self.client.directory().iter().nth(i)?;
                Line::User {
                    name: e.name(),
                    key: e.key(),
                    me: e.name() == self.client.user(),
                }
            }
            Own::KeyChanged => Line::KeyChanged {
                name,
                old: &held.old,
                new: &held.new,
                verified: held.verified,
            },
            Own::NotYourKey => Line::NotYourKey {
                user: name,
                listed: &held.new,
                yours: &held.old,
            },
            Own::HelpHeader => Line::HelpHeader,
            Own::Help(i) => Line::Help(COMMANDS.get(i)?),
            Own::Fingerprint => Line::Fingerprint {
                user: name,
                key: &held.new,
            },
            Own::SafetyCode => Line::SafetyCode {
                user: name,
                key: &held.new,
            },
            Own::UnknownUser => Line::UnknownUser { user: name },
            Own::WeakKey => Line::Send(SendError::WeakKey { user: name }),
            Own::Command(e) => Line::Command(e),
            Own::Send(e) => Line::Send(e),
            Own::BadLine(e) => Line::BadLine(e),
            Own::Overlong { max } => Line::Overlong { max },
            Own::FirstContact => Line::FirstContact {
                name,
                key: &held.new,
            },
            Own::PairCode => Line::PairCode {
                user: name,
                mine: &held.old,
                theirs: &held.new,
            },
            Own::VerifyHow => Line::VerifyHow { user: name },
            Own::Verified => Line::Verified {
                user: name,
                key: &held.new,
            },
            Own::VerifyStale => Line::VerifyStale { user: name },
            Own::Accepted => Line::Accepted {
                user: name,
                key: &held.new,
            },
            Own::Contacts => Line::Contacts {
                count: (0..self.memory.slots())
                    .filter(|i| self.memory.contact(*i).is_some())
                    .count(),
            },
            Own::Contact(i) => {
                let (name, status) = self.memory.contact(i)?;
                Line::Contact { name, status }
            }
            Own::Trust(err) => Line::Trust { user: name, err },
            Own::StrictRefused => Line::StrictRefused { user: name },
            Own::Replayed { more } => Line::Replayed { from: name, more },
            Own::Reflected => Line::Reflected { from: name },
        })
    }

    fn event_line(&self) -> Option<Line<'_>> {
        self.client.event().map(Line::Received)
    }
}

impl<K, const USERS: usize, const MSG: usize, const PENDING: usize> fmt::Debug
    for Chat<K, USERS, MSG, PENDING>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chat")
            .field("client", &self.client)
            .field("server", &self.server.as_str())
            .finish_non_exhaustive()
    }
}
