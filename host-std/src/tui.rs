//! The full-screen interface of `seguro chat` (when standard input and output are a
//! terminal), on ratatui over crossterm.
//!
//! [`Ui`] is the whole state, without I/O: the conversations (a system pane and one per
//! contact, with unread counts), every line with its time, the input line (multi-line
//! pastes, history, Tab completion), the scroll position and the status bar. Lines
//! come in through [`Ui::push`] (the client's [`Printer`](crate::client::Printer)),
//! keys and pastes through [`Ui::event`], which answers with what the client must do
//! ([`Request`]); [`Ui::draw`] draws it on any ratatui backend (tests use
//! `TestBackend`). Nothing is drawn from what was on the screen before: a resize
//! redraws every line from the state, so none is lost.
//!
//! Keys: Enter sends (a multi-line paste is one message per line, in order), Ctrl-C
//! clears the line, Ctrl-D or `/quit` leaves, Up/Down browse the history, Tab
//! completes commands and names, PgUp/PgDn and the mouse wheel scroll, Ctrl-N/Ctrl-P
//! or Alt-Left/Right or Alt-1..9 switch conversations; `/q <user>` opens one (`/q`
//! alone: the system pane), `/close` closes it.

use std::collections::VecDeque;
use std::io::IsTerminal as _;
use std::time::Instant;

use smol::future::FutureExt as _;

use crossterm::event::{
    Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEventKind,
};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line as TextLine, Span};
use ratatui::widgets::Paragraph;
use seguro_core::chat::{Kind, Line};
use seguro_core::client::Event;
use seguro_core::command::{COMMANDS, CommandError, Spec, parse_command, spec};
use seguro_core::directory::Change;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::client::{Conn, KeyState};

/// Lines kept per conversation; older ones are dropped from memory (the count of
/// dropped lines is shown at the top).
pub const KEEP: usize = 5000;
/// Entries kept in the input history.
pub const HISTORY: usize = 500;
/// Most rows the input area grows to (a longer paste scrolls inside it).
const INPUT_ROWS: usize = 6;

/// The interface's own commands (besides core's and the client's `/reconnect`,
/// `/outbox`).
pub const UI_COMMANDS: &[(&str, &str, &str)] = &[
    (
        "/q",
        "/q [<user>]",
        "talk to <user> (plain text goes there); alone: the system pane",
    ),
    ("/query", "/query [<user>]", "same as /q"),
    ("/close", "/close", "close the current conversation"),
];

/// Commands the client handles before core does.
fn client_command(cmd: &str) -> bool {
    crate::client::CLIENT_COMMANDS.iter().any(|s| s.name == cmd)
}

/// One line on the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `HH:MM`.
    pub time: String,
    /// What it is (its colour).
    pub kind: Kind,
    /// `[SYS]`, `[bob]`…
    pub prefix: String,
    /// The rest.
    pub body: String,
    /// A message of ours still in the outbox.
    pub pending: bool,
    /// How far a message of ours got (protocol v2): `✓` forwarded, `✓✓` received.
    pub delivery: Option<crate::client::Delivery>,
}

/// One conversation: the system pane (no peer) or one contact.
#[derive(Debug, Clone)]
pub struct Conversation {
    /// The contact, `None` for the system pane.
    pub peer: Option<String>,
    /// Its lines, oldest first.
    pub lines: VecDeque<Entry>,
    /// Lines dropped from the front (beyond [`KEEP`]).
    pub dropped: usize,
    /// Lines arrived while not shown.
    pub unread: usize,
    /// The contact's key changed during this session.
    pub key_changed: bool,
    /// What the chat's memory says of the contact's key (`None`: not told yet).
    pub key: Option<KeyState>,
    /// Which protocol protects the conversation, and why (`None`: not told yet).
    pub protocol: Option<&'static str>,
}

impl Conversation {
    fn new(peer: Option<String>) -> Self {
        Self {
            peer,
            lines: VecDeque::new(),
            dropped: 0,
            unread: 0,
            key_changed: false,
            key: None,
            protocol: None,
        }
    }

    fn title(&self) -> &str {
        self.peer.as_deref().unwrap_or("*system*")
    }
}

/// What the client must do after [`Ui::event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Nothing beyond a redraw.
    Nothing,
    /// A line to hand to the chat: typed in `conversation` (the peer plain text goes to).
    Send {
        /// The current contact.
        conversation: Option<String>,
        /// The line.
        line: String,
    },
    /// The user leaves.
    Quit,
}

/// The full-screen interface's state.
pub struct Ui {
    user: String,
    color: bool,
    bell: bool,
    convs: Vec<Conversation>,
    current: usize,
    /// Rows scrolled up from the bottom in the current conversation.
    scroll: usize,
    input: String,
    /// Cursor, as a byte offset into `input` (on a character boundary).
    cursor: usize,
    history: Vec<String>,
    /// The history changed since [`Ui::take_history_changed`].
    history_changed: bool,
    /// Browsing the history: the index shown, and the line typed before browsing.
    browsing: Option<(usize, String)>,
    conn: Conn,
    server: String,
    server_fp: String,
    outbox: usize,
    /// A bell is due (a message arrived in a conversation not on screen).
    ring: bool,
    /// Names known (the directory, conversations) for completion.
    names: Vec<String>,
    /// Rows of the message pane at the last draw (PgUp/PgDn move by it).
    page: usize,
    /// Lines are replies to what the user just typed: shown where the user is too.
    replying: bool,
    /// The other lines of a multi-line input, sent after the first.
    queued: VecDeque<String>,
    /// `/help` was typed: the interface's own help follows core's.
    after_help: bool,
    clock: crate::output::Clock,
}

impl Ui {
    /// The interface of `user`; `color` unless `NO_COLOR`; `bell` for messages that
    /// arrive in a conversation not on screen.
    pub fn new(user: &str, color: bool, bell: bool, clock: crate::output::Clock) -> Self {
        Self {
            user: user.to_owned(),
            color,
            bell,
            convs: vec![Conversation::new(None)],
            current: 0,
            scroll: 0,
            input: String::new(),
            cursor: 0,
            history: Vec::new(),
            history_changed: false,
            browsing: None,
            conn: Conn::Connecting,
            server: String::new(),
            server_fp: String::new(),
            outbox: 0,
            ring: false,
            names: Vec::new(),
            page: 10,
            replying: false,
            queued: VecDeque::new(),
            after_help: false,
            clock,
        }
    }

    /// The conversations, the system pane first.
    pub fn conversations(&self) -> &[Conversation] {
        &self.convs
    }

    /// The conversation on screen.
    pub fn current(&self) -> &Conversation {
        &self.convs[self.current.min(self.convs.len() - 1)]
    }

    /// The input line as typed so far.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// The input history, oldest first (Up shows the last).
    pub fn history(&self) -> &[String] {
        &self.history
    }

    /// Starts with `entries` in the history (a saved one; the last [`HISTORY`]).
    pub fn set_history(&mut self, mut entries: Vec<String>) {
        let skip = entries.len().saturating_sub(HISTORY);
        entries.drain(..skip);
        self.history = entries;
        self.browsing = None;
    }

    /// Whether the history changed since the last call (it should be saved).
    pub fn take_history_changed(&mut self) -> bool {
        std::mem::take(&mut self.history_changed)
    }

    /// The connection's state.
    pub fn set_conn(&mut self, conn: Conn) {
        self.conn = conn;
    }

    /// The server (`host:port`) and its certificate's fingerprint.
    pub fn set_server(&mut self, server: &str, fingerprint: &str) {
        self.server = server.to_owned();
        self.server_fp = fingerprint.to_owned();
    }

    /// How many messages wait in the outbox.
    pub fn set_outbox(&mut self, n: usize) {
        self.outbox = n;
    }

    /// What is known of the keys of the contacts of the conversations. A contact
    /// verified now is no longer marked changed (the user checked the new key).
    pub fn set_key_states(&mut self, of: &dyn Fn(&str) -> KeyState) {
        for c in &mut self.convs {
            if let Some(p) = &c.peer {
                let k = of(p);
                if k == KeyState::Verified {
                    c.key_changed = false;
                }
                c.key = Some(k);
            }
        }
    }

    /// Which protocol protects each contact's conversation.
    pub fn set_protocols(&mut self, of: &dyn Fn(&str) -> &'static str) {
        for c in &mut self.convs {
            if let Some(p) = &c.peer {
                c.protocol = Some(of(p));
            }
        }
    }

    /// Whether a bell is due; clears it.
    pub fn take_bell(&mut self) -> bool {
        std::mem::take(&mut self.ring)
    }

    /// Lines printed from now on answer what the user typed (until
    /// [`Ui::end_reply`]): those about no contact show in the current conversation too.
    pub fn begin_reply(&mut self) {
        self.replying = true;
    }

    /// See [`Ui::begin_reply`].
    pub fn end_reply(&mut self) {
        self.replying = false;
    }

    fn conv_index(&mut self, peer: &str) -> usize {
        if let Some(i) = self
            .convs
            .iter()
            .position(|c| c.peer.as_deref() == Some(peer))
        {
            return i;
        }
        self.convs.push(Conversation::new(Some(peer.to_owned())));
        self.convs.len() - 1
    }

    fn remember_name(&mut self, name: &str) {
        if name != self.user && !self.names.iter().any(|n| n == name) {
            self.names.push(name.to_owned());
        }
    }

    fn add(&mut self, i: usize, entry: Entry) {
        let shown = i == self.current;
        let c = &mut self.convs[i];
        if c.lines.len() >= KEEP {
            c.lines.pop_front();
            c.dropped += 1;
        }
        let message = entry.kind == Kind::Message;
        c.lines.push_back(entry);
        if !shown {
            c.unread += 1;
            if message && self.bell {
                self.ring = true;
            }
        } else if self.scroll > 0 {
            // Keep the view where the user scrolled to.
            self.scroll += 1;
        }
    }

    fn entry(&self, kind: Kind, prefix: String, body: String, pending: bool) -> Entry {
        Entry {
            time: crate::output::hhmm(self.clock.now()),
            kind,
            prefix,
            body,
            pending,
            delivery: None,
        }
    }

    /// A line from the chat: shown in the conversation of the peer it concerns (the
    /// system pane for the others, and the current conversation too when it answers
    /// what the user typed).
    pub fn push(&mut self, line: &Line<'_>) {
        let entry = self.entry(
            line.kind(),
            line.prefix().to_string(),
            line.body().to_string(),
            false,
        );
        match line {
            // A listing shows in the system pane; it teaches the names.
            Line::User { name, .. } => {
                let name = (*name).to_owned();
                self.remember_name(&name);
                self.add(0, entry);
                return;
            }
            Line::Received(Event::Change(Change::Joined { name, .. })) => {
                let name = (*name).to_owned();
                self.remember_name(&name);
            }
            _ => {}
        }
        match line.peer() {
            Some(peer) if peer != self.user => {
                let peer = peer.to_owned();
                let joins = matches!(line, Line::Received(Event::Change(_)));
                let exists = self.convs.iter().any(|c| c.peer.as_deref() == Some(&*peer));
                if joins && !exists {
                    // Joins and leaves of someone we do not talk to: the system pane.
                    self.add(0, entry);
                    return;
                }
                let i = self.conv_index(&peer);
                if matches!(
                    line,
                    Line::KeyChanged { .. }
                        | Line::Received(Event::Change(Change::KeyChanged { .. }))
                ) {
                    self.convs[i].key_changed = true;
                }
                if joins {
                    // Joins and leaves: in the system pane and the contact's own
                    // conversation.
                    self.add(0, entry.clone());
                    self.add(i, entry);
                } else {
                    self.add(i, entry);
                }
            }
            _ => {
                let here = self.current;
                self.add(0, entry.clone());
                if self.replying && here != 0 {
                    self.add(here, entry);
                }
            }
        }
    }

    /// A host line about `peer`: in that conversation (and the current one too while
    /// it answers a typed line).
    pub fn push_about(&mut self, peer: &str, line: &Line<'_>) {
        if peer.is_empty() || peer == self.user {
            return self.push(line);
        }
        let entry = self.entry(
            line.kind(),
            line.prefix().to_string(),
            line.body().to_string(),
            false,
        );
        let i = self.conv_index(peer);
        let here = self.current;
        if self.replying && here != i {
            self.add(here, entry.clone());
        }
        self.add(i, entry);
    }

    /// Our own message to `to` (`None`: the server), shown in that conversation;
    /// `pending` while it waits in the outbox.
    pub fn own_message(&mut self, to: Option<&str>, text: &str, pending: bool) {
        let prefix = format!("[{}]", seguro_core::chat::escape::Name(&self.user));
        let body = seguro_core::chat::escape::Text(text).to_string();
        let e = self.entry(Kind::Message, prefix, body, pending);
        let i = match to {
            Some(peer) if !peer.is_empty() => self.conv_index(peer),
            _ => 0,
        };
        let here = self.current;
        if i != here {
            // Typed elsewhere (`/to bob …` in the system pane): shown there too.
            let to = to.map_or_else(
                || "server".to_owned(),
                |t| seguro_core::chat::escape::Name(t).to_string(),
            );
            let mut echo = e.clone();
            echo.prefix = format!("[{} → {to}]", seguro_core::chat::escape::Name(&self.user));
            self.convs[here].lines.push_back(echo);
        }
        let c = &mut self.convs[i];
        if c.lines.len() >= KEEP {
            c.lines.pop_front();
            c.dropped += 1;
        }
        c.lines.push_back(e);
    }

    /// A message that waited in the outbox went out: its line is no longer pending.
    pub fn sent_from_outbox(&mut self, to: Option<&str>, text: &str) {
        let body = seguro_core::chat::escape::Text(text).to_string();
        let i = match to {
            Some(peer) if !peer.is_empty() => self.conv_index(peer),
            _ => 0,
        };
        if let Some(e) = self.convs[i]
            .lines
            .iter_mut()
            .find(|e| e.pending && e.body == body)
        {
            e.pending = false;
        }
        // And its copy where it was typed, if elsewhere.
        for (j, c) in self.convs.iter_mut().enumerate() {
            if j != i
                && let Some(e) = c
                    .lines
                    .iter_mut()
                    .find(|e| e.pending && e.body == body && e.prefix.contains(" → "))
            {
                e.pending = false;
                break;
            }
        }
    }

    /// Our message `text` to `to` got this far: the oldest line of it not marked that
    /// far yet is marked (in its conversation, and its copy where it was typed).
    pub fn delivered(&mut self, to: &str, text: &str, how: crate::client::Delivery) {
        let body = seguro_core::chat::escape::Text(text).to_string();
        let own = format!("[{}]", seguro_core::chat::escape::Name(&self.user));
        let echo = format!(
            "[{} → {}]",
            seguro_core::chat::escape::Name(&self.user),
            seguro_core::chat::escape::Name(to)
        );
        let i = self.conv_index(to);
        for (j, c) in self.convs.iter_mut().enumerate() {
            let prefix = if j == i { &own } else { &echo };
            if let Some(e) = c.lines.iter_mut().find(|e| {
                !e.pending
                    && e.kind == Kind::Message
                    && e.prefix == *prefix
                    && e.body == body
                    && e.delivery.is_none_or(|d| d < how)
            }) {
                e.delivery = Some(how);
            }
        }
    }

    /// A message that waited in the outbox was dropped: its line says so.
    pub fn dropped_from_outbox(&mut self, to: Option<&str>, text: &str) {
        let body = seguro_core::chat::escape::Text(text).to_string();
        for c in &mut self.convs {
            if c.peer.as_deref() != to.filter(|t| !t.is_empty())
                && !c.lines.iter().any(|e| e.prefix.contains(" → "))
            {
                continue;
            }
            if let Some(e) = c.lines.iter_mut().find(|e| e.pending && e.body == body) {
                e.pending = false;
                e.kind = Kind::Error;
                e.body.push_str(" (NOT SENT: dropped from the outbox)");
            }
        }
    }

    fn switch(&mut self, i: usize) {
        if i < self.convs.len() {
            self.current = i;
            self.scroll = 0;
            self.convs[i].unread = 0;
        }
    }

    fn system(&mut self, kind: Kind, text: String) {
        let prefix = kind.prefix().unwrap_or("[SYS]").to_owned();
        let e = self.entry(kind, prefix, text, false);
        let here = self.current;
        self.add(0, e.clone());
        if here != 0 {
            self.add(here, e);
        }
    }

    /// A key, a paste, a resize or the mouse.
    pub fn event(&mut self, ev: &TermEvent) -> Request {
        match ev {
            TermEvent::Key(k) if k.kind != KeyEventKind::Release => self.key(k),
            TermEvent::Paste(text) => {
                let text = text.replace("\r\n", "\n").replace('\r', "\n");
                self.insert(&text);
                Request::Nothing
            }
            TermEvent::Mouse(m) => {
                match m.kind {
                    MouseEventKind::ScrollUp => self.scroll_by(3),
                    MouseEventKind::ScrollDown => self.scroll_by(-3),
                    _ => {}
                }
                Request::Nothing
            }
            _ => Request::Nothing,
        }
    }

    fn scroll_by(&mut self, rows: isize) {
        self.scroll = self.scroll.saturating_add_signed(rows);
    }

    fn insert(&mut self, s: &str) {
        self.browsing = None;
        self.input.insert_str(self.cursor, s);
        self.cursor += s.len();
    }

    fn key(&mut self, k: &KeyEvent) -> Request {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        let alt = k.modifiers.contains(KeyModifiers::ALT);
        match k.code {
            KeyCode::Char('c') if ctrl => {
                if self.input.is_empty() {
                    self.system(Kind::Sys, "Ctrl-D or /quit leaves".into());
                }
                self.input.clear();
                self.cursor = 0;
                self.browsing = None;
            }
            KeyCode::Char('d') if ctrl => return Request::Quit,
            KeyCode::Char('n') if ctrl => self.switch((self.current + 1) % self.convs.len()),
            KeyCode::Char('p') if ctrl => {
                self.switch((self.current + self.convs.len() - 1) % self.convs.len());
            }
            KeyCode::Right if alt => self.switch((self.current + 1) % self.convs.len()),
            KeyCode::Left if alt => {
                self.switch((self.current + self.convs.len() - 1) % self.convs.len());
            }
            KeyCode::Char(c @ '1'..='9') if alt => self.switch(c as usize - '1' as usize),
            KeyCode::Char('a') if ctrl => self.cursor = 0,
            KeyCode::Char('e') if ctrl => self.cursor = self.input.len(),
            KeyCode::Char('u') if ctrl => {
                self.input.replace_range(..self.cursor, "");
                self.cursor = 0;
            }
            KeyCode::Char('w') if ctrl => {
                let before = &self.input[..self.cursor];
                let start = before
                    .trim_end()
                    .rfind(char::is_whitespace)
                    .map_or(0, |i| i + 1);
                self.input.replace_range(start..self.cursor, "");
                self.cursor = start;
            }
            KeyCode::Char('l') if ctrl => {}
            KeyCode::Char(c) if !ctrl => {
                let mut b = [0u8; 4];
                self.insert(c.encode_utf8(&mut b));
            }
            KeyCode::Enter => return self.submit(),
            KeyCode::Backspace => {
                if let Some(c) = self.input[..self.cursor].chars().next_back() {
                    self.cursor -= c.len_utf8();
                    self.input.remove(self.cursor);
                }
            }
            KeyCode::Delete if self.cursor < self.input.len() => {
                self.input.remove(self.cursor);
            }
            KeyCode::Left => {
                if let Some(c) = self.input[..self.cursor].chars().next_back() {
                    self.cursor -= c.len_utf8();
                }
            }
            KeyCode::Right => {
                if let Some(c) = self.input[self.cursor..].chars().next() {
                    self.cursor += c.len_utf8();
                }
            }
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = self.input.len(),
            KeyCode::Up => self.history_move(-1),
            KeyCode::Down => self.history_move(1),
            KeyCode::PageUp => self.scroll_by(self.page.max(2) as isize - 1),
            KeyCode::PageDown => self.scroll_by(-(self.page.max(2) as isize - 1)),
            KeyCode::Tab => self.complete(),
            _ => {}
        }
        Request::Nothing
    }

    fn history_move(&mut self, by: isize) {
        if self.history.is_empty() {
            return;
        }
        let (at, typed) = match self.browsing.take() {
            Some(b) => b,
            None if by < 0 => (self.history.len(), self.input.clone()),
            None => return,
        };
        let next = at.saturating_add_signed(by);
        if next >= self.history.len() {
            self.input = typed;
            self.browsing = None;
        } else {
            self.input = self.history[next].clone();
            self.browsing = Some((next, typed));
        }
        self.cursor = self.input.len();
    }

    /// Every command a line may start with, for completion and suggestions.
    fn all_commands() -> impl Iterator<Item = &'static str> {
        COMMANDS
            .iter()
            .flat_map(|s| std::iter::once(s.name).chain(s.aliases.iter().copied()))
            .chain(UI_COMMANDS.iter().map(|(n, _, _)| *n))
            .chain(crate::client::CLIENT_COMMANDS.iter().map(|s| s.name))
    }

    fn complete(&mut self) {
        let before = &self.input[..self.cursor];
        let start = before.rfind(' ').map_or(0, |i| i + 1);
        let word = &before[start..];
        let first_word = start == 0;
        let candidates: Vec<String> = if first_word && word.starts_with('/') {
            let mut v: Vec<String> = Self::all_commands()
                .filter(|c| c.starts_with(word))
                .map(str::to_owned)
                .collect();
            v.dedup();
            v
        } else {
            let mut names: Vec<String> = self.names.clone();
            for c in &self.convs {
                if let Some(p) = &c.peer
                    && !names.contains(p)
                {
                    names.push(p.clone());
                }
            }
            names.into_iter().filter(|n| n.starts_with(word)).collect()
        };
        match candidates.as_slice() {
            [] => {}
            [one] => {
                let rest = one[word.len()..].to_owned() + " ";
                self.insert(&rest);
            }
            many => {
                let common = common_prefix(many);
                if common.len() > word.len() {
                    let rest = common[word.len()..].to_owned();
                    self.insert(&rest);
                } else {
                    self.system(Kind::Sys, format!("completions: {}", many.join(" ")));
                }
            }
        }
    }

    /// Enter: the input goes to history and out, one line at a time (the client
    /// sends the others after this one: see [`Ui::take_queued`]).
    fn submit(&mut self) -> Request {
        let text = std::mem::take(&mut self.input);
        self.cursor = 0;
        self.browsing = None;
        if text.trim().is_empty() {
            return Request::Nothing;
        }
        if self.history.last() != Some(&text) {
            self.history.push(text.clone());
            if self.history.len() > HISTORY {
                self.history.remove(0);
            }
            self.history_changed = true;
        }
        self.scroll = 0;
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let first = lines.next().unwrap_or("").to_owned();
        self.queued.extend(lines.map(str::to_owned));
        self.line(first)
    }

    /// The next line of a multi-line input, after the first was handled.
    pub fn take_queued(&mut self) -> Option<Request> {
        let l = self.queued.pop_front()?;
        Some(self.line(l))
    }

    /// One line: the interface's own commands here, the rest for the chat.
    fn line(&mut self, line: String) -> Request {
        let trimmed = line.trim();
        let (cmd, rest) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
        let rest = rest.trim();
        match cmd {
            "/q" | "/query" => {
                if rest.is_empty() {
                    self.switch(0);
                } else if rest.contains(' ') || rest.starts_with('/') {
                    self.system(Kind::Error, "usage: /q <user>".into());
                } else {
                    let i = self.conv_index(rest);
                    self.switch(i);
                }
                return Request::Nothing;
            }
            "/close" => {
                if self.current == 0 {
                    self.system(Kind::Error, "the system pane stays open".into());
                } else {
                    self.convs.remove(self.current);
                    self.switch(0);
                }
                return Request::Nothing;
            }
            "/help" => {
                // Core lists its commands; the interface adds its own after them.
                self.after_help = true;
            }
            _ => {}
        }
        if cmd.starts_with('/')
            && !client_command(cmd)
            && let Err(CommandError::Unknown { .. }) = parse_command(trimmed)
            && spec(cmd).is_none()
        {
            let hint = match suggest(cmd) {
                Some(s) => format!("unknown command {cmd}; did you mean {s}? /help lists them"),
                None => format!("unknown command {cmd}; /help lists the commands"),
            };
            self.system(Kind::Error, hint);
            return Request::Nothing;
        }
        if cmd == "/quit" && rest.is_empty() {
            return Request::Quit;
        }
        Request::Send {
            conversation: self.current().peer.clone(),
            line,
        }
    }

    /// After core's `/help`: the interface's own commands and keys.
    pub fn help_done(&mut self) {
        if !std::mem::take(&mut self.after_help) {
            return;
        }
        let client = crate::client::CLIENT_COMMANDS
            .iter()
            .map(|s| (s.usage, s.about));
        let own = UI_COMMANDS.iter().map(|(_, usage, about)| (*usage, *about));
        for (usage, about) in own.chain(client) {
            self.system(Kind::Sys, format!("  {usage:<22}{about}"));
        }
        self.system(
            Kind::Sys,
            "  keys: Enter send, Ctrl-C clear, Ctrl-D quit, Tab complete, PgUp/PgDn scroll, \
             Ctrl-N/Ctrl-P or Alt-1..9 conversations"
                .into(),
        );
    }

    fn style(&self, kind: Kind, pending: bool) -> Style {
        let s = Style::default();
        let s = if pending {
            s.add_modifier(Modifier::DIM | Modifier::ITALIC)
        } else {
            s
        };
        if !self.color {
            return match kind {
                Kind::Error | Kind::Alert => s.add_modifier(Modifier::BOLD),
                _ => s,
            };
        }
        match kind {
            Kind::Sys => s.add_modifier(Modifier::DIM),
            Kind::Server => s.fg(Color::Cyan),
            Kind::Error => s.fg(Color::Red).add_modifier(Modifier::BOLD),
            Kind::Warn => s.fg(Color::Yellow).add_modifier(Modifier::BOLD),
            Kind::Alert => s
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD),
            _ => s,
        }
    }

    /// The status bar's text.
    pub fn status(&self) -> String {
        let conn = match self.conn {
            Conn::Connecting => "connecting…".to_owned(),
            Conn::Connected => "connected".to_owned(),
            Conn::Reconnecting { at } => {
                let left = at.saturating_duration_since(Instant::now());
                format!(
                    "reconnecting in {} s (any key: now)",
                    left.as_secs() + u64::from(left.subsec_millis() > 0)
                )
            }
            Conn::Offline => "offline".to_owned(),
        };
        let mut s = format!(" {}@{} | {conn}", self.user, self.server);
        if self.outbox > 0 {
            s.push_str(&format!(" | outbox {}", self.outbox));
        }
        let c = self.current();
        if let Some(p) = &c.peer {
            let key = match c.key {
                _ if c.key_changed => "KEY CHANGED",
                Some(KeyState::Changed) => "KEY CHANGED",
                Some(KeyState::Verified) => "verified",
                Some(KeyState::Unknown) => "no key yet",
                Some(KeyState::Unverified) | None => "unverified",
            };
            s.push_str(&format!(" | {p}: {key}"));
        }
        // Which protocol protects this conversation; the system pane is none.
        if c.peer.is_some() {
            s.push_str(" | ");
            s.push_str(c.protocol.unwrap_or("v1"));
        }
        if !self.server_fp.is_empty() {
            let short: String = self.server_fp.chars().take(23).collect();
            s.push_str(&format!(" | server {short}…"));
        }
        s
    }

    /// Draws the whole screen.
    pub fn draw(&mut self, f: &mut Frame<'_>) {
        let area = f.area();
        if area.width < 4 || area.height < 3 {
            return;
        }
        let width = usize::from(area.width);
        let input_rows = wrap_input(&self.input, width.saturating_sub(2).max(1))
            .len()
            .clamp(1, INPUT_ROWS);
        let [body, status, input] = Layout::vertical([
            Constraint::Min(1),
            Constraint::Length(1),
            Constraint::Length(u16::try_from(input_rows).unwrap_or(1)),
        ])
        .areas(area);
        let side_w = if area.width >= 50 { 18 } else { 0 };
        let [side, main] =
            Layout::horizontal([Constraint::Length(side_w), Constraint::Min(1)]).areas(body);
        if side_w > 0 {
            self.draw_side(f, side);
        }
        self.draw_messages(f, main);
        let bar = Style::default().add_modifier(Modifier::REVERSED);
        f.render_widget(
            Paragraph::new(fit(&self.status(), width)).style(bar),
            status,
        );
        self.draw_input(f, input);
    }

    fn draw_side(&self, f: &mut Frame<'_>, area: Rect) {
        let w = usize::from(area.width).saturating_sub(1);
        let rows: Vec<TextLine<'_>> = self
            .convs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let unread = if c.unread > 0 {
                    format!(" ({})", c.unread)
                } else {
                    String::new()
                };
                let mark = if i == self.current { ">" } else { " " };
                let alt = if i < 9 {
                    format!("{}", i + 1)
                } else {
                    " ".into()
                };
                let text = fit(&format!("{mark}{alt} {}{unread}", c.title()), w);
                let mut st = Style::default();
                if i == self.current {
                    st = st.add_modifier(Modifier::BOLD | Modifier::REVERSED);
                } else if c.unread > 0 {
                    st = st.add_modifier(Modifier::BOLD);
                }
                TextLine::from(Span::styled(text, st))
            })
            .collect();
        f.render_widget(Paragraph::new(rows), area);
    }

    fn draw_messages(&mut self, f: &mut Frame<'_>, area: Rect) {
        let width = usize::from(area.width).max(1);
        let height = usize::from(area.height);
        self.page = height;
        let c = &self.convs[self.current.min(self.convs.len() - 1)];
        let mut rows: Vec<TextLine<'_>> = Vec::new();
        if c.dropped > 0 {
            rows.push(TextLine::from(Span::styled(
                format!("({} older lines not kept)", c.dropped),
                Style::default().add_modifier(Modifier::DIM),
            )));
        }
        for e in &c.lines {
            let pend = match (e.pending, e.delivery) {
                (true, _) => " (pending)",
                (_, Some(crate::client::Delivery::Forwarded)) => " ✓",
                (_, Some(crate::client::Delivery::Received)) => " ✓✓",
                _ => "",
            };
            let text = format!("{} {} {}{pend}", e.time, e.prefix, e.body);
            let st = self.style(e.kind, e.pending);
            for (j, row) in wrap(&text, width, 6).into_iter().enumerate() {
                let row = if j == 0 { row } else { format!("      {row}") };
                rows.push(TextLine::from(Span::styled(row, st)));
            }
        }
        let max_scroll = rows.len().saturating_sub(height);
        self.scroll = self.scroll.min(max_scroll);
        let end = rows.len() - self.scroll;
        let start = end.saturating_sub(height);
        let mut shown: Vec<TextLine<'_>> = rows.drain(start..end).collect();
        if self.scroll > 0
            && let Some(last) = shown.last_mut()
        {
            *last = TextLine::from(Span::styled(
                fit(
                    &format!("-- {} more rows below (PgDn) --", self.scroll),
                    width,
                ),
                Style::default().add_modifier(Modifier::REVERSED),
            ));
        }
        f.render_widget(Paragraph::new(shown), area);
    }

    fn draw_input(&self, f: &mut Frame<'_>, area: Rect) {
        let prompt = match &self.current().peer {
            Some(p) => format!("{p}> "),
            None => "> ".to_owned(),
        };
        let w = usize::from(area.width).saturating_sub(2).max(1);
        let rows = wrap_input(&self.input, w);
        // Where the cursor is: (row, column) in the wrapped input.
        let (crow, ccol) = cursor_at(&self.input, self.cursor, w);
        let first = (crow + 1).saturating_sub(usize::from(area.height));
        let mut lines: Vec<TextLine<'_>> = Vec::new();
        for (i, r) in rows
            .iter()
            .enumerate()
            .skip(first)
            .take(usize::from(area.height))
        {
            let lead = if i == 0 {
                fit(&prompt, 2.max(prompt.width()))
            } else {
                "  ".to_owned()
            };
            lines.push(TextLine::from(vec![
                Span::styled(lead, Style::default().add_modifier(Modifier::BOLD)),
                Span::raw(r.clone()),
            ]));
        }
        let lead_w = if crow == 0 { prompt.width() } else { 2 };
        f.render_widget(Paragraph::new(lines), area);
        let x = area.x + u16::try_from(lead_w + ccol).unwrap_or(0);
        let y = area.y + u16::try_from(crow - first).unwrap_or(0);
        f.set_cursor_position((x.min(area.right().saturating_sub(1)), y));
    }
}

/// The longest common prefix of `v` (non-empty).
fn common_prefix(v: &[String]) -> String {
    let mut p = v[0].clone();
    for s in &v[1..] {
        while !s.starts_with(&p) {
            p.pop();
        }
    }
    p
}

/// The known command closest to `typed` (at most two edits away).
pub fn suggest(typed: &str) -> Option<&'static str> {
    Ui::all_commands()
        .map(|c| (distance(typed, c), c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance (short strings).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `s` cut to `width` columns.
fn fit(s: &str, width: usize) -> String {
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = c.width().unwrap_or(0);
        if w + cw > width {
            break;
        }
        w += cw;
        out.push(c);
    }
    out
}

/// `text` in rows of at most `width` columns (continuation rows `indent` narrower),
/// broken at spaces where possible. Control characters never reach here (core escapes
/// them).
pub fn wrap(text: &str, width: usize, indent: usize) -> Vec<String> {
    let mut rows = Vec::new();
    let mut row = String::new();
    let mut w = 0;
    let mut limit = width.max(1);
    for c in text.chars() {
        let cw = c.width().unwrap_or(0);
        if w + cw > limit && !row.is_empty() {
            // Break at the last space of the row if there is one.
            let cut = row.rfind(' ').filter(|&i| i > 0);
            let carry = match cut {
                Some(i) => {
                    let rest = row[i + 1..].to_owned();
                    row.truncate(i);
                    rest
                }
                None => String::new(),
            };
            rows.push(std::mem::take(&mut row));
            limit = width.saturating_sub(indent).max(1);
            w = carry.width();
            row = carry;
        }
        row.push(c);
        w += cw;
    }
    rows.push(row);
    rows
}

/// The input in rows of `width` columns: each of its lines, cut (not word-broken, so
/// the cursor maps simply).
fn wrap_input(input: &str, width: usize) -> Vec<String> {
    let mut rows = Vec::new();
    for line in input.split('\n') {
        let mut row = String::new();
        let mut w = 0;
        for c in line.chars() {
            let cw = c.width().unwrap_or(0);
            if w + cw > width {
                rows.push(std::mem::take(&mut row));
                w = 0;
            }
            row.push(c);
            w += cw;
        }
        rows.push(row);
    }
    rows
}

/// The (row, column) of byte offset `cursor` in [`wrap_input`]'s rows.
fn cursor_at(input: &str, cursor: usize, width: usize) -> (usize, usize) {
    let (mut row, mut col) = (0, 0);
    for c in input[..cursor.min(input.len())].chars() {
        if c == '\n' {
            row += 1;
            col = 0;
            continue;
        }
        let cw = c.width().unwrap_or(0);
        if col + cw > width {
            row += 1;
            col = 0;
        }
        col += cw;
    }
    (row, col)
}

/// Most lines kept to print on the normal screen after leaving (see [`Screen::after`]).
pub const AFTER: usize = 200;

/// The interface and its terminal, shared by the client's printer and the event loop
/// (both on the client's one async thread; the signal handler's thread also prints).
pub struct Screen<B: ratatui::backend::Backend> {
    /// The state.
    pub ui: Ui,
    term: ratatui::Terminal<B>,
    /// Lines to print on the normal screen after leaving: everything until the first
    /// connection, then what was printed since the connection was last lost (why the
    /// client stopped, if it stops while offline), and everything once leaving.
    after: VecDeque<String>,
    quitting: bool,
    /// Lines are kept for after leaving (not connected, or leaving).
    keeping: bool,
}

impl<B: ratatui::backend::Backend> Screen<B> {
    /// The interface on `term`.
    pub fn new(ui: Ui, term: ratatui::Terminal<B>) -> Self {
        Self {
            ui,
            term,
            after: VecDeque::new(),
            quitting: false,
            keeping: true,
        }
    }

    /// The lines to print on the normal screen after leaving, oldest first.
    pub fn after(&self) -> impl Iterator<Item = &str> {
        self.after.iter().map(String::as_str)
    }

    /// The connection's state: lines printed while connected are not kept for after
    /// leaving (they were on the screen), those of an outage are.
    pub fn set_conn(&mut self, conn: Conn) {
        if conn == Conn::Connected {
            self.keeping = false;
            if !self.quitting {
                self.after.clear();
            }
        } else {
            self.keeping = true;
        }
        self.ui.set_conn(conn);
    }

    /// One line from the client.
    pub fn print(&mut self, line: &Line<'_>) {
        self.ui.push(line);
        self.keep(line.to_string());
    }

    /// Shows a host line about `peer` in that conversation.
    pub fn print_about(&mut self, peer: &str, line: &Line<'_>) {
        self.ui.push_about(peer, line);
        self.keep(line.to_string());
    }

    /// The client is leaving: every line from now on is kept for after leaving.
    pub fn leaving(&mut self) {
        self.quitting = true;
    }

    fn keep(&mut self, text: String) {
        if self.quitting || self.keeping {
            if self.after.len() >= AFTER {
                self.after.pop_front();
            }
            self.after.push_back(text);
        }
    }

    /// Draws the state; rings the bell if one is due (`bell` writes it).
    pub fn redraw(&mut self, bell: &mut dyn FnMut()) {
        let ui = &mut self.ui;
        let _ = self.term.draw(|f| ui.draw(f));
        if self.ui.take_bell() {
            bell();
        }
    }

    /// The backend (tests read `TestBackend`'s buffer).
    pub fn backend(&self) -> &B {
        self.term.backend()
    }

    /// The terminal (tests resize `TestBackend`).
    pub fn terminal_mut(&mut self) -> &mut ratatui::Terminal<B> {
        &mut self.term
    }
}

/// The terminal: crossterm on standard output.
pub type Term = ratatui::backend::CrosstermBackend<std::io::Stdout>;

/// A [`Screen`] on the real terminal, shared.
pub type Handle = std::sync::Arc<std::sync::Mutex<Screen<Term>>>;

fn ring() {
    use std::io::Write as _;
    let mut out = std::io::stdout();
    let _ = out.write_all(b"\x07");
    let _ = out.flush();
}

/// Puts the terminal back: raw mode off, main screen, no paste or mouse reporting.
pub fn restore() {
    use crossterm::{event, execute, terminal};
    let _ = execute!(
        std::io::stdout(),
        event::DisableBracketedPaste,
        event::DisableMouseCapture,
        terminal::LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = terminal::disable_raw_mode();
}

/// Takes over the terminal (raw mode, alternate screen, bracketed paste, mouse
/// wheel); a panic puts it back before its message. `None` if this terminal cannot.
pub fn start(ui: Ui) -> Option<Handle> {
    use crossterm::{event, execute, terminal};
    terminal::enable_raw_mode().ok()?;
    if execute!(
        std::io::stdout(),
        terminal::EnterAlternateScreen,
        event::EnableBracketedPaste,
        event::EnableMouseCapture
    )
    .is_err()
    {
        restore();
        return None;
    }
    let prev = std::panic::take_hook();
    let main = std::thread::current().id();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        prev(info);
        if std::thread::current().id() != main {
            // The terminal is given back: a client left running would draw and read
            // nothing. The main thread's panic ends the process itself.
            eprintln!("seguro: internal error in a helper thread: leaving");
            std::process::exit(crate::exit::ERROR);
        }
    }));
    let term =
        match ratatui::Terminal::new(ratatui::backend::CrosstermBackend::new(std::io::stdout())) {
            Ok(t) => t,
            Err(_) => {
                restore();
                return None;
            }
        };
    let h = std::sync::Arc::new(std::sync::Mutex::new(Screen::new(ui, term)));
    if let Ok(mut s) = h.lock() {
        let _ = s.term.clear();
        s.redraw(&mut ring);
    }
    Some(h)
}

/// Leaves the full screen and prints what must stay visible.
pub fn stop(h: &Handle) {
    restore();
    let mut s = lock(h);
    for l in std::mem::take(&mut s.after) {
        println!("{l}");
    }
}

/// The screen, even if a thread panicked while drawing (the hook of [`start`] ends the
/// process then anyway).
pub fn lock(h: &Handle) -> std::sync::MutexGuard<'_, Screen<Term>> {
    h.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Prints `line` on the screen from another thread (the signal handler's) and keeps it
/// for after leaving.
pub fn say_leaving(h: &Handle, line: &Line<'_>) {
    let mut s = lock(h);
    s.leaving();
    s.print(line);
    s.redraw(&mut ring);
}

/// The client's printer into the interface.
pub struct TuiPrinter(pub Handle);

impl TuiPrinter {
    fn with(&self, f: impl FnOnce(&mut Screen<Term>)) {
        let mut s = lock(&self.0);
        f(&mut s);
        s.redraw(&mut ring);
    }
}

impl crate::client::Printer for TuiPrinter {
    fn print(&mut self, line: &Line<'_>) {
        self.with(|s| s.print(line));
    }
    fn print_about(&mut self, peer: &str, line: &Line<'_>) {
        self.with(|s| s.print_about(peer, line));
    }
    fn client_help(&mut self, _commands: &mut dyn Iterator<Item = &'static Spec>) {
        // The interface's help lists them with its own (Ui::help_done).
    }
    fn state(&mut self, conn: Conn) {
        self.with(|s| s.set_conn(conn));
    }
    fn server(&mut self, addr: &str, fingerprint: &str) {
        self.with(|s| s.ui.set_server(addr, fingerprint));
    }
    fn reply(&mut self, on: bool) {
        self.with(|s| {
            if on {
                s.ui.begin_reply();
            } else {
                s.ui.end_reply();
                s.ui.help_done();
            }
        });
    }
    fn own_message(&mut self, to: Option<&str>, text: &str, pending: bool) {
        self.with(|s| s.ui.own_message(to, text, pending));
    }
    fn sent_from_outbox(&mut self, to: Option<&str>, text: &str) {
        self.with(|s| s.ui.sent_from_outbox(to, text));
    }
    fn dropped_from_outbox(&mut self, to: Option<&str>, text: &str) {
        self.with(|s| s.ui.dropped_from_outbox(to, text));
    }
    fn outbox(&mut self, n: usize) {
        self.with(|s| s.ui.set_outbox(n));
    }
    fn delivered(&mut self, to: &str, text: &str, how: crate::client::Delivery) {
        self.with(|s| s.ui.delivered(to, text, how));
    }
    fn quitting(&mut self) {
        self.with(Screen::leaving);
    }
    fn key_states(&mut self, of: &dyn Fn(&str) -> KeyState) {
        self.with(|s| s.ui.set_key_states(of));
    }
    fn protocols(&mut self, of: &dyn Fn(&str) -> &'static str) {
        self.with(|s| s.ui.set_protocols(of));
    }
}

/// Reads the terminal's events on the client's async thread and turns them into the
/// client's input; redraws every second (the reconnect countdown). A read error is
/// retried with a new reader; if the terminal cannot be read any more, tells the client
/// to leave (the reason is on the screen and kept for after leaving), and returns if it
/// has not left within 40 s.
pub async fn events(
    h: Handle,
    tx: smol::channel::Sender<crate::client::Input>,
    history: Option<crate::history::HistoryFile>,
) -> i32 {
    use crate::client::Input;
    use smol::stream::StreamExt as _;
    let mut stream = crossterm::event::EventStream::new();
    let mut tick = smol::Timer::interval(std::time::Duration::from_secs(1));
    // Read errors in a row: a terminal that is gone fails every time.
    let mut failures = 0u32;
    // Saving the history failed (said once).
    let mut history_failed = false;
    loop {
        let ev = async { Some(stream.next().await) }
            .or(async {
                tick.next().await;
                None
            })
            .await;
        let mut out = Vec::new();
        match ev {
            None => {}
            Some(Some(Ok(e))) => {
                failures = 0;
                let mut s = lock(&h);
                let waiting = matches!(s.ui.conn, Conn::Reconnecting { .. });
                let key = matches!(e, TermEvent::Key(_) | TermEvent::Paste(_));
                let opened = s.ui.conversations().len();
                let mut req = s.ui.event(&e);
                loop {
                    match req {
                        Request::Nothing => {}
                        Request::Send { conversation, line } => {
                            out.push(Input::Line {
                                conversation,
                                text: line,
                            });
                        }
                        Request::Quit => out.push(Input::Line {
                            conversation: None,
                            text: "/quit".into(),
                        }),
                    }
                    match s.ui.take_queued() {
                        Some(r) => req = r,
                        None => break,
                    }
                }
                // A key while waiting means "reconnect now"; a new conversation needs
                // its contact's key state.
                let new_conv = s.ui.conversations().len() > opened;
                if (waiting && key || new_conv) && out.is_empty() {
                    out.push(Input::Key);
                }
                if s.ui.take_history_changed()
                    && let Some(file) = &history
                {
                    match file.save(s.ui.history()) {
                        Ok(()) => history_failed = false,
                        Err(e) if !history_failed => {
                            history_failed = true;
                            s.print(&Line::HostError(&format_args!(
                                "cannot save the input history (kept for this session; \
                                 --no-history or `history = false` turns it off): {e}"
                            )));
                        }
                        Err(_) => {}
                    }
                }
            }
            Some(other) => {
                failures += 1;
                let why = match other {
                    Some(Err(e)) => e.to_string(),
                    _ => "no more events".to_owned(),
                };
                tracing::warn!("reading the terminal failed ({failures} in a row): {why}");
                if failures >= 5 || !std::io::stdin().is_terminal() {
                    say_leaving(
                        &h,
                        &Line::HostError(&format_args!(
                            "cannot read the terminal any more ({why}): leaving"
                        )),
                    );
                    let _ = tx.try_send(Input::Line {
                        conversation: None,
                        text: "/quit".into(),
                    });
                    // The client leaves at its next step (it lists what was not sent);
                    // a connection attempt takes at most 30 s.
                    smol::Timer::after(std::time::Duration::from_secs(40)).await;
                    return crate::exit::ERROR;
                }
                // A new reader, after a pause (a failing terminal must not spin).
                smol::Timer::after(std::time::Duration::from_millis(200)).await;
                stream = crossterm::event::EventStream::new();
            }
        }
        for i in out {
            let _ = tx.try_send(i);
        }
        lock(&h).redraw(&mut ring);
    }
}
