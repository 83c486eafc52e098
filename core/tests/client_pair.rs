//! Client state machines driven against each other through a tiny in-test router that
//! speaks protocol v1 with core's own message code, fed in 1-byte and random chunks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use seguro_core::client::{Client, Event, Undecryptable, Undeliverable};
use seguro_core::command::{Command, parse_command};
use seguro_core::e2ee::KeyPair;
use seguro_core::frame::{FeedResult, LineAccumulator};
use seguro_core::msg::{self, Message, Relay, UserList};

/// What a client saw, rendered as text for easy assertions.
type Seen = Vec<String>;

struct Peer {
    client: Client<8, 256, 2>,
    acc: LineAccumulator<[u8; 1024]>,
    seen: Seen,
}

impl Peer {
    fn new(name: &str, rng: &mut ChaCha20Rng) -> Self {
        Self {
            client: Client::new(name, KeyPair::generate(rng)).unwrap(),
            acc: LineAccumulator::new([0; 1024]),
            seen: Vec::new(),
        }
    }

    /// Feeds bytes from the server in chunks of the given sizes.
    fn receive(&mut self, bytes: &[u8], chunking: &mut dyn FnMut() -> usize, out: &mut Vec<u8>) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = chunking().clamp(1, rest.len());
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let mut w = chunk;
            loop {
                match self.acc.feed(w) {
                    FeedResult::Consumed => break,
                    FeedResult::Overlong { remaining } => {
                        self.seen.push("overlong".into());
                        w = remaining;
                    }
                    FeedResult::Line { line, remaining } => {
                        let mut scratch = vec![0u8; line.len()];
                        match self.client.handle_line(line, &mut scratch) {
                            Ok(()) => {}
                            Err(e) => self.seen.push(format!("client error: {e}")),
                        }
                        while let Some(ev) = self.client.poll_event() {
                            self.seen.push(render(&ev));
                        }
                        let mut buf = [0u8; 1024];
                        while let Some(n) = self.client.poll_transmit(&mut buf).unwrap() {
                            out.extend_from_slice(&buf[..n]);
                        }
                        w = remaining;
                    }
                }
            }
        }
    }
}

fn render(ev: &Event<'_>) -> String {
    match ev {
        Event::Registered { users } => format!("registered {users}"),
        Event::Joined { name, .. } => format!("joined {name}"),
        Event::Left { name } => format!("left {name}"),
        Event::KeyChanged { name, .. } => format!("key changed {name}"),
        Event::DirectoryTruncated(d) => format!("truncated {d:?}"),
        Event::Directory => "directory".into(),
        Event::Message { from, text } => format!("[{from}] {text}"),
        Event::Undecryptable { from, reason } => format!("undecryptable {from}: {reason:?}"),
        Event::Undeliverable { from, reason } => format!("undeliverable {from}: {reason:?}"),
        Event::ServerText { text } => format!("[SERVER] {text}"),
        Event::ServerError { text } => format!("[ERROR] {text}"),
    }
}

/// A minimal v1 server: registers users, pushes the directory (when `push` is set),
/// forwards relays with `from` rewritten, answers `list` and `chat`.
struct Router {
    users: BTreeMap<String, [u8; 32]>,
    outbox: BTreeMap<String, Vec<u8>>,
    push: bool,
}

impl Router {
    fn new(push: bool) -> Self {
        Self {
            users: BTreeMap::new(),
            outbox: BTreeMap::new(),
            push,
        }
    }

    fn emit(&mut self, to: &str, m: &Message<'_>) {
        let mut buf = vec![0u8; m.line_len()];
        m.emit_line(&mut buf).unwrap();
        self.outbox
            .entry(to.into())
            .or_default()
            .extend_from_slice(&buf);
    }

    fn users_msg(&self, welcome: bool, f: impl FnOnce(Message<'_>)) {
        let mut buf = vec![0u8; 4096];
        let list =
            UserList::pack(self.users.iter().map(|(n, k)| (n.as_str(), k)), &mut buf).unwrap();
        f(if welcome {
            Message::Welcome { users: list }
        } else {
            Message::Users { users: list }
        })
    }

    fn leave(&mut self, name: &str) {
        self.users.remove(name);
        self.outbox.remove(name);
        if self.push {
            self.broadcast_users();
        }
    }

    fn broadcast_users(&mut self) {
        let names: Vec<String> = self.users.keys().cloned().collect();
        for n in names {
            let mut line = Vec::new();
            self.users_msg(false, |m| {
                line = vec![0u8; m.line_len()];
                m.emit_line(&mut line).unwrap();
            });
            self.outbox.entry(n).or_default().extend_from_slice(&line);
        }
    }

    /// Handles bytes a client wrote (`who` is None before its hello).
    fn handle(&mut self, who: &mut Option<String>, bytes: &[u8]) {
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let mut scratch = vec![0u8; line.len()];
            let m = msg::parse(line, &mut scratch).unwrap();
            match (m, who.clone()) {
                (Message::Hello { user, key }, None) => {
                    self.users.insert(user.into(), key);
                    *who = Some(user.into());
                    let mut l = Vec::new();
                    self.users_msg(true, |m| {
                        l = vec![0u8; m.line_len()];
                        m.emit_line(&mut l).unwrap();
                    });
                    self.outbox
                        .entry(user.into())
                        .or_default()
                        .extend_from_slice(&l);
                    if self.push {
                        let others: Vec<String> =
                            self.users.keys().filter(|n| *n != user).cloned().collect();
                        for o in others {
                            let mut l = Vec::new();
                            self.users_msg(false, |m| {
                                l = vec![0u8; m.line_len()];
                                m.emit_line(&mut l).unwrap();
                            });
                            self.outbox.entry(o).or_default().extend_from_slice(&l);
                        }
                    }
                }
                (Message::List, Some(me)) => {
                    let mut l = Vec::new();
                    self.users_msg(false, |m| {
                        l = vec![0u8; m.line_len()];
                        m.emit_line(&mut l).unwrap();
                    });
                    self.outbox.entry(me).or_default().extend_from_slice(&l);
                }
                (Message::Chat { text }, Some(me)) => {
                    let echo = format!("echo: {text}");
                    self.emit(&me, &Message::Server { text: &echo });
                }
                (Message::Relay(r), Some(me)) => {
                    if self.users.contains_key(r.to) {
                        let fwd = Message::Relay(Relay {
                            from: Some(&me),
                            ..r
                        });
                        let to = r.to.to_string();
                        self.emit(&to, &fwd);
                    } else {
                        self.emit(
                            &me,
                            &Message::Error {
                                text: "destino no conectado",
                            },
                        );
                    }
                }
                (m, w) => panic!("router: unexpected {m:?} from {w:?}"),
            }
        }
    }
}

/// Drives clients and router until nothing moves.
struct World {
    rng: ChaCha20Rng,
    router: Router,
    peers: BTreeMap<String, (Peer, Option<String>)>,
    chunk: fn(&mut ChaCha20Rng) -> usize,
}

impl World {
    fn new(push: bool, chunk: fn(&mut ChaCha20Rng) -> usize, seed: u64) -> Self {
        Self {
            rng: ChaCha20Rng::seed_from_u64(seed),
            router: Router::new(push),
            peers: BTreeMap::new(),
            chunk,
        }
    }

    fn connect(&mut self, name: &str) {
        let mut peer = Peer::new(name, &mut self.rng);
        let mut buf = [0u8; 512];
        let n = peer.client.poll_transmit(&mut buf).unwrap().unwrap();
        let mut who = None;
        self.router.handle(&mut who, &buf[..n]);
        self.peers.insert(name.into(), (peer, who));
        self.settle();
    }

    fn type_line(&mut self, name: &str, line: &str) -> Result<(), String> {
        let cmd = parse_command(line).map_err(|e| e.to_string())?;
        let (peer, who) = self.peers.get_mut(name).unwrap();
        let mut out = [0u8; 1024];
        let n = peer
            .client
            .send(&cmd, &mut self.rng, &mut out)
            .map_err(|e| e.to_string())?;
        self.router.handle(who, &out[..n]);
        self.settle();
        Ok(())
    }

    /// Delivers router output to clients (and client output back) until quiet.
    fn settle(&mut self) {
        for _ in 0..100 {
            let pending: Vec<(String, Vec<u8>)> = std::mem::take(&mut self.router.outbox)
                .into_iter()
                .filter(|(_, b)| !b.is_empty())
                .collect();
            if pending.is_empty() {
                return;
            }
            for (name, bytes) in pending {
                let Some((peer, who)) = self.peers.get_mut(&name) else {
                    continue;
                };
                let mut replies = Vec::new();
                let rng = &mut self.rng;
                let chunk = self.chunk;
                peer.receive(&bytes, &mut || chunk(rng), &mut replies);
                if !replies.is_empty() {
                    self.router.handle(who, &replies);
                }
            }
        }
        panic!("world did not settle");
    }

    fn seen(&mut self, name: &str) -> Seen {
        std::mem::take(&mut self.peers.get_mut(name).unwrap().0.seen)
    }
}

fn one_byte(_: &mut ChaCha20Rng) -> usize {
    1
}

fn random_chunks(r: &mut ChaCha20Rng) -> usize {
    r.gen_range(1..200)
}

fn conversation(chunk: fn(&mut ChaCha20Rng) -> usize, seed: u64) {
    let mut w = World::new(true, chunk, seed);
    w.connect("alice");
    assert_eq!(w.seen("alice"), ["registered 1", "joined alice"]);
    w.connect("bob");
    assert_eq!(
        w.seen("bob"),
        ["registered 2", "joined alice", "joined bob"]
    );
    assert_eq!(w.seen("alice"), ["joined bob"]);

    w.type_line("alice", "/to bob hola juan").unwrap();
    assert_eq!(w.seen("bob"), ["[alice] hola juan"]);
    w.type_line("bob", "/to alice ¿Qué tal? ñandú 🚀 \"q\" \\")
        .unwrap();
    assert_eq!(w.seen("alice"), ["[bob] ¿Qué tal? ñandú 🚀 \"q\" \\"]);
    w.type_line("alice", "/server hola server").unwrap();
    assert_eq!(w.seen("alice"), ["[SERVER] echo: hola server"]);
    w.type_line("alice", "/list").unwrap();
    assert_eq!(w.seen("alice"), ["directory"]);

    // Unknown recipient: refused locally, with a directory refresh.
    let err = w.type_line("alice", "/to nobody hi").unwrap_err();
    assert!(err.contains("unknown user"), "{err}");

    // Too long.
    let long = format!("/to bob {}", "x".repeat(300));
    assert!(
        w.type_line("alice", &long)
            .unwrap_err()
            .contains("too long")
    );

    // bob leaves and comes back with a new key: alice is warned.
    w.peers.remove("bob");
    w.router.leave("bob");
    w.settle();
    assert_eq!(w.seen("alice"), ["left bob"]);
    w.connect("bob");
    assert_eq!(w.seen("alice"), ["joined bob"]);
    // A reconnect of the SAME client with a new key while alice's directory still
    // lists the old one is a key change.
    let mut new_bob = Peer::new("bob", &mut w.rng);
    let mut buf = [0u8; 512];
    let n = new_bob.client.poll_transmit(&mut buf).unwrap().unwrap();
    w.router.users.remove("bob");
    let mut who = None;
    w.router.handle(&mut who, &buf[..n]);
    w.peers.insert("bob".into(), (new_bob, who));
    w.settle();
    assert_eq!(w.seen("alice"), ["key changed bob"]);
    w.type_line("bob", "/to alice still me").unwrap();
    assert_eq!(w.seen("alice"), ["[bob] still me"]);
}

#[test]
fn conversation_fed_one_byte_at_a_time() {
    conversation(one_byte, 1);
}

#[test]
fn conversation_fed_in_random_chunks() {
    for seed in 0..20 {
        conversation(random_chunks, seed);
    }
}

#[test]
fn relay_from_unknown_sender_is_held_until_the_directory_arrives() {
    // This router never pushes directories: alice learns of carol only by asking.
    let mut w = World::new(false, random_chunks, 7);
    w.connect("alice");
    w.connect("carol");
    assert_eq!(w.seen("alice"), ["registered 1", "joined alice"]);
    w.type_line("carol", "/to alice hi from carol").unwrap();
    // alice held the message, asked for the list, and then decrypted it.
    assert_eq!(w.seen("alice"), ["joined carol", "[carol] hi from carol"]);
}

#[test]
fn relay_from_a_sender_who_left_is_reported() {
    let mut w = World::new(false, random_chunks, 8);
    w.connect("alice");
    w.connect("carol");
    w.seen("alice");
    // carol sends, then leaves before alice's list request is answered.
    let (carol, who) = w.peers.get_mut("carol").unwrap();
    let mut out = [0u8; 512];
    let cmd = Command::To {
        user: "alice",
        text: "bye",
    };
    // carol knows alice from her welcome.
    let n = carol.client.send(&cmd, &mut w.rng, &mut out).unwrap();
    w.router.handle(who, &out[..n]);
    w.router.users.remove("carol");
    w.settle();
    assert_eq!(w.seen("alice"), ["undeliverable carol: UnknownSender"]);
}

#[test]
fn tampered_message_is_reported_not_shown() {
    let mut w = World::new(true, random_chunks, 9);
    w.connect("alice");
    w.connect("bob");
    w.seen("alice");
    w.seen("bob");
    let (alice, _) = w.peers.get_mut("alice").unwrap();
    let mut out = [0u8; 512];
    let n = alice
        .client
        .send(
            &Command::To {
                user: "bob",
                text: "secret",
            },
            &mut w.rng,
            &mut out,
        )
        .unwrap();
    let line = std::str::from_utf8(&out[..n]).unwrap().to_string();
    // Flip one character of the cipher text's base64.
    let i = line.find("\"cipher\":\"").unwrap() + 12;
    let mut bytes = line.into_bytes();
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let mut who = Some("alice".to_string());
    w.router.handle(&mut who, &bytes);
    w.settle();
    let seen = w.seen("bob");
    assert_eq!(
        seen,
        [format!("undecryptable alice: {:?}", Undecryptable::BadTag)]
    );
    assert!(!seen.iter().any(|s| s.contains("secret")));
    let _ = Undeliverable::TooLong;
}

#[test]
fn hostile_server_lines_are_errors_not_panics() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut c: Client<4, 64, 1> = Client::new("alice", KeyPair::generate(&mut rng)).unwrap();
    let mut scratch = [0u8; 512];
    for line in [
        &b"not json"[..],
        b"{\"type\":\"relay\"}",
        b"{\"type\":\"hello\",\"user\":\"x\",\"pub\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"}",
        b"{\"type\":\"users\",\"users\":{\"a\":\"short\"}}",
        b"{\"type\":\"users\",\"users\":[]}",
    ] {
        assert!(c.handle_line(line, &mut scratch).is_err(), "{line:?}");
        assert!(c.poll_event().is_none());
    }
    // A relay whose cipher is far larger than the client's buffer.
    let big = format!(
        "{{\"type\":\"relay\",\"to\":\"alice\",\"from\":\"bob\",\"nonce\":\"AAAAAAAAAAAAAAAA\",\"cipher\":\"{}\"}}",
        "A".repeat(400)
    );
    c.handle_line(big.as_bytes(), &mut scratch).unwrap();
    assert_eq!(
        c.poll_event(),
        Some(Event::Undeliverable {
            from: "bob",
            reason: Undeliverable::TooLong
        })
    );
}
