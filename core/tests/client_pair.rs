//! Chat sessions (core's `Chat` around its `Client`) driven against each other through a
//! tiny in-test router that speaks protocol v1 with core's own message code, fed in
//! 1-byte and random chunks. What each user sees is the rendered text of every line.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use seguro_core::chat::{Action, Chat, RecentKeys};
use seguro_core::client::{Client, Event, Undecryptable, Undeliverable};
use seguro_core::e2ee::KeyPair;
use seguro_core::fingerprint;
use seguro_core::frame::LineAccumulator;
use seguro_core::msg::{self, Message, Relay, UserList};

/// What a user saw: the rendered lines.
type Seen = Vec<String>;

type PeerChat = Chat<RecentKeys<8>, 8, 256, 2>;

struct Peer {
    chat: PeerChat,
    acc: LineAccumulator<[u8; 1024]>,
    seen: Seen,
}

impl Peer {
    fn new(name: &str, rng: &mut ChaCha20Rng) -> Self {
        let client = Client::new(name, KeyPair::generate(rng)).unwrap();
        let mut chat = Chat::new(client, RecentKeys::new());
        chat.set_server(&"router");
        Self {
            chat,
            acc: LineAccumulator::new([0; 1024]),
            seen: Vec::new(),
        }
    }

    fn fp(&self) -> String {
        fingerprint::short(&self.chat.client().public_key())
            .as_str()
            .to_owned()
    }

    /// Shows every pending line and appends every pending transmission to `out`.
    fn drain(&mut self, out: &mut Vec<u8>) {
        while let Some(line) = self.chat.poll_line() {
            self.seen.push(line.to_string());
        }
        let mut buf = [0u8; 1024];
        while let Some(n) = self.chat.poll_transmit(&mut buf).unwrap() {
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// Feeds bytes from the server in chunks of the given sizes.
    fn receive(&mut self, bytes: &[u8], chunking: &mut dyn FnMut() -> usize, out: &mut Vec<u8>) {
        let mut rest = bytes;
        let mut scratch = [0u8; 1024];
        while !rest.is_empty() {
            let n = chunking().clamp(1, rest.len());
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let mut w = chunk;
            while !w.is_empty() {
                w = self.chat.receive(&mut self.acc, w, &mut scratch, 0);
                self.drain(out);
            }
        }
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
        let peer = Peer::new(name, &mut self.rng);
        self.attach(name, peer);
    }

    /// Registers `peer` (new, or reset after a disconnect) with the router.
    fn attach(&mut self, name: &str, mut peer: Peer) {
        let mut hello = Vec::new();
        peer.drain(&mut hello);
        let mut who = None;
        self.router.handle(&mut who, &hello);
        self.peers.insert(name.into(), (peer, who));
        self.settle();
    }

    /// `name` drops its connection (the router sees it leave) and connects again with
    /// the same key pair.
    fn reconnect(&mut self, name: &str) {
        let (mut peer, _) = self.peers.remove(name).unwrap();
        self.router.leave(name);
        self.settle();
        peer.chat.reset();
        self.attach(name, peer);
    }

    fn fp(&self, name: &str) -> String {
        self.peers[name].0.fp()
    }

    /// `name` types `line`; the lines it causes are in `seen`.
    fn type_line(&mut self, name: &str, line: &str) -> Action {
        let (peer, who) = self.peers.get_mut(name).unwrap();
        let action = peer.chat.input(line, &mut self.rng);
        let mut out = Vec::new();
        peer.drain(&mut out);
        self.router.handle(who, &out);
        self.settle();
        action
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
    let a = w.fp("alice");
    assert_eq!(
        w.seen("alice"),
        [
            "[SYS] connected to router as alice".to_string(),
            "[SYS] users online (1):".into(),
            format!("[SYS]   alice  fp {a} (you)"),
        ]
    );
    w.connect("bob");
    let b = w.fp("bob");
    assert_eq!(
        w.seen("bob"),
        [
            "[SYS] connected to router as bob".to_string(),
            "[SYS] users online (2):".into(),
            format!("[SYS]   alice  fp {a}"),
            format!("[SYS]   bob  fp {b} (you)"),
        ]
    );
    assert_eq!(w.seen("alice"), [format!("[SYS] bob joined, fp {b}")]);

    assert_eq!(w.type_line("alice", "/to bob hola juan"), Action::Sent);
    assert_eq!(w.seen("bob"), ["[alice] hola juan"]);
    assert_eq!(
        w.type_line("bob", "/to alice ¿Qué tal? ñandú 🚀 \"q\" \\"),
        Action::Sent
    );
    assert_eq!(w.seen("alice"), ["[bob] ¿Qué tal? ñandú 🚀 \"q\" \\"]);
    assert_eq!(w.type_line("alice", "/server hola server"), Action::Sent);
    assert_eq!(w.seen("alice"), ["[SERVER] echo: hola server"]);
    assert_eq!(w.type_line("alice", "/list"), Action::Sent);
    assert_eq!(
        w.seen("alice"),
        [
            "[SYS] users online (2):".to_string(),
            format!("[SYS]   alice  fp {a} (you)"),
            format!("[SYS]   bob  fp {b}"),
        ]
    );
    assert_eq!(w.type_line("alice", "/fp bob"), Action::Shown);
    let seen = w.seen("alice");
    assert_eq!(seen[0], format!("[SYS] fp bob: {b}"));
    assert!(seen[1].starts_with("[SYS] safety code bob: "), "{seen:?}");

    // Unknown recipient: refused locally (a directory refresh goes out, silently).
    assert_eq!(w.type_line("alice", "/to nobody hi"), Action::Shown);
    assert_eq!(
        w.seen("alice"),
        ["[ERROR] unknown user: nobody (try /list)"]
    );

    // Too long.
    let long = format!("/to bob {}", "x".repeat(300));
    assert_eq!(w.type_line("alice", &long), Action::Shown);
    assert_eq!(
        w.seen("alice"),
        ["[ERROR] message too long (at most 240 bytes)"]
    );
    assert!(w.seen("bob").is_empty());

    // bob leaves and comes back with a new key: alice is warned.
    w.peers.remove("bob");
    w.router.leave("bob");
    w.settle();
    assert_eq!(w.seen("alice"), ["[SYS] bob left"]);
    w.connect("bob");
    let b2 = w.fp("bob");
    assert_ne!(b, b2);
    let seen = w.seen("alice");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], format!("[SYS] bob joined, fp {b2}"));
    assert!(
        seen[1].starts_with(&format!(
            "[WARN] KEY CHANGED for bob: fp was {b}, now {b2}. Either bob restarted"
        )),
        "{seen:?}"
    );

    // A new key under the same name while alice's directory still lists the old one
    // (no leave in between) is a key change too.
    let new_bob = Peer::new("bob", &mut w.rng);
    let b3 = new_bob.fp();
    w.router.users.remove("bob");
    w.peers.remove("bob");
    w.attach("bob", new_bob);
    let seen = w.seen("alice");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].starts_with(&format!(
            "[WARN] KEY CHANGED for bob: fp was {b2}, now {b3}."
        )),
        "{seen:?}"
    );
    assert_eq!(w.type_line("bob", "/to alice still me"), Action::Sent);
    assert_eq!(w.seen("alice"), ["[bob] still me"]);

    // The same bob reconnecting with the same key: a leave and a join, no warning;
    // bob sees his listing again (not a burst of joins).
    w.seen("bob");
    w.reconnect("bob");
    assert_eq!(
        w.seen("alice"),
        [
            "[SYS] bob left".to_string(),
            format!("[SYS] bob joined, fp {b3}")
        ]
    );
    assert_eq!(
        w.seen("bob"),
        [
            "[SYS] connected to router as bob".to_string(),
            "[SYS] users online (2):".into(),
            format!("[SYS]   alice  fp {a}"),
            format!("[SYS]   bob  fp {b3} (you)"),
        ]
    );
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
    assert_eq!(w.seen("alice").len(), 3);
    let c = w.fp("carol");
    assert_eq!(
        w.type_line("carol", "/to alice hi from carol"),
        Action::Sent
    );
    // alice held the message, asked for the list, and then decrypted it.
    assert_eq!(
        w.seen("alice"),
        [
            format!("[SYS] carol joined, fp {c}"),
            "[carol] hi from carol".into()
        ]
    );
}

#[test]
fn relay_from_a_sender_who_left_is_reported() {
    let mut w = World::new(false, random_chunks, 8);
    w.connect("alice");
    w.connect("carol");
    w.seen("alice");
    // carol sends, then leaves before alice's list request is answered.
    let (carol, who) = w.peers.get_mut("carol").unwrap();
    // carol knows alice from her welcome.
    assert_eq!(
        carol.chat.send_text("alice", "bye", &mut w.rng),
        Action::Sent
    );
    let mut out = Vec::new();
    carol.drain(&mut out);
    w.router.handle(who, &out);
    w.router.users.remove("carol");
    w.settle();
    assert_eq!(
        w.seen("alice"),
        ["[ERROR] message from carol dropped: the sender is not in the directory"]
    );
}

#[test]
fn tampered_message_is_reported_not_shown() {
    let mut w = World::new(true, random_chunks, 9);
    w.connect("alice");
    w.connect("bob");
    w.seen("alice");
    w.seen("bob");
    let (alice, _) = w.peers.get_mut("alice").unwrap();
    assert_eq!(
        alice.chat.send_text("bob", "secret", &mut w.rng),
        Action::Sent
    );
    let mut out = Vec::new();
    alice.drain(&mut out);
    let line = String::from_utf8(out).unwrap();
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
        [format!(
            "[ERROR] could not decrypt message from alice ({})",
            Undecryptable::BadTag
        )]
    );
    assert!(!seen.iter().any(|s| s.contains("secret")));
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
    assert_eq!(c.poll_event(), None);
}
