//! Real core clients against the server's real router, in process: every byte goes
//! through the server's own line reader, router, outboxes and writer's coalescing (only
//! sockets, TLS and tasks are left out), fed in 1-byte and random chunks both ways.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use seguro::server::hub::{self, Hub, Outbox, Outgoing};
use seguro::server::push;
use seguro::server::reader::{Got, LineReader};
use seguro::server::router::{Close, Config, Joined};
use seguro_core::chat::{Action, Chat, RecentKeys};
use seguro_core::client::Client;
use seguro_core::e2ee::KeyPair;
use seguro_core::fingerprint;
use seguro_core::frame::LineAccumulator;

// ---- The client side: core's chat session, exactly as every host runs it. ----

type PeerChat = Chat<RecentKeys<8>, 8, 256, 2>;

/// A chat session and the rendered text of every line it showed.
struct Peer {
    chat: PeerChat,
    acc: LineAccumulator<[u8; 1024]>,
    seen: Vec<String>,
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

    /// Shows every pending line; appends whatever the session has to transmit to `out`.
    fn transmit(&mut self, out: &mut Vec<u8>) {
        while let Some(line) = self.chat.poll_line() {
            self.seen.push(line.to_string());
        }
        let mut buf = [0u8; 1024];
        while let Some(n) = self.chat.poll_transmit(&mut buf).unwrap() {
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// A line the user typed: what the session did, and the bytes it queued.
    fn typed(&mut self, line: &str, rng: &mut ChaCha20Rng) -> (Action, Vec<u8>) {
        let action = self.chat.input(line, rng);
        let mut out = Vec::new();
        self.transmit(&mut out);
        (action, out)
    }

    /// Bytes from the server (one chunk); the replies go to `out`.
    fn receive(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut scratch = [0u8; 1024];
        let mut w = chunk;
        while !w.is_empty() {
            w = self.chat.receive(&mut self.acc, w, &mut scratch, 0);
            self.transmit(out);
        }
    }
}

// ---- The server side: the server's own pieces. ----

/// A connection's outbox: what the hub queued for it, and whether it closed it.
#[derive(Clone, Default)]
struct Queue(Rc<RefCell<(Vec<Outgoing>, Option<Close>)>>);

impl Outbox for Queue {
    fn send(&self, item: Outgoing) {
        self.0.borrow_mut().0.push(item);
    }
    fn close(&self, reason: Close) {
        self.0.borrow_mut().1 = Some(reason);
    }
}

impl Queue {
    /// What the connection's writer would write now: the queued lines, coalesced.
    fn take_bytes(&self) -> Vec<u8> {
        let mut batch = VecDeque::from(std::mem::take(&mut self.0.borrow_mut().0));
        push::coalesce(&mut batch);
        batch.iter().flat_map(|o| o.bytes().to_vec()).collect()
    }
}

/// The server's end of one connection.
struct ServerConn {
    reader: LineReader,
    queue: Queue,
    joined: Option<Joined>,
    /// The router refused or closed it: why.
    closed: Option<String>,
}

/// Feeds bytes a client sent (one chunk) through the server's reader into the hub.
fn server_receive(hub: &mut Hub<Queue>, conn: &mut ServerConn, mut chunk: &[u8]) {
    while !chunk.is_empty() && conn.closed.is_none() {
        assert!(smol::block_on(conn.reader.fill(&mut chunk)).unwrap());
        while let Some(got) = conn.reader.next_line() {
            if conn.closed.is_some() {
                break;
            }
            let (line, scratch) = match got {
                Got::Line { line, scratch } => (line, scratch),
                Got::Overlong => panic!("overlong line from a client"),
            };
            match &conn.joined {
                None => match hub.hello(hub::parse(line, scratch), conn.queue.clone()) {
                    Ok(j) => conn.joined = Some(j),
                    Err(refusal) => {
                        let text = refusal.to_string();
                        conn.queue.send(Outgoing::Text(hub::error_line(&text)));
                        conn.closed = Some(text);
                    }
                },
                Some(j) => {
                    let p = hub::prepare(line, scratch, &j.name);
                    if let Some(reason) = hub.handle(j.id, p) {
                        conn.closed = Some(reason.to_string());
                    }
                }
            }
        }
    }
}

// ---- The world: clients, connections, and the pump between them. ----

struct World {
    rng: ChaCha20Rng,
    hub: Hub<Queue>,
    peers: BTreeMap<String, (Peer, ServerConn)>,
    chunk: fn(&mut ChaCha20Rng) -> usize,
}

impl World {
    fn new(chunk: fn(&mut ChaCha20Rng) -> usize, seed: u64) -> Self {
        Self {
            rng: ChaCha20Rng::seed_from_u64(seed),
            hub: Hub::new(Config {
                max_line: seguro_core::limits::SERVER_MAX_LINE,
                max_errors: 20,
                grace: std::time::Duration::ZERO,
            }),
            peers: BTreeMap::new(),
            chunk,
        }
    }

    /// Sends `bytes` from `name` to the server, in chunks.
    fn send_to_server(&mut self, name: &str, bytes: &[u8]) {
        let (_, conn) = self.peers.get_mut(name).unwrap();
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = (self.chunk)(&mut self.rng).clamp(1, rest.len());
            let (chunk, tail) = rest.split_at(n);
            server_receive(&mut self.hub, conn, chunk);
            rest = tail;
        }
    }

    /// A new client connects and says hello (the old connection of that name, if any,
    /// stays until `leave`).
    fn connect(&mut self, name: &str) {
        let peer = Peer::new(name, &mut self.rng);
        self.attach(name, peer);
    }

    fn attach(&mut self, name: &str, mut peer: Peer) {
        let conn = ServerConn {
            reader: LineReader::new(seguro_core::limits::SERVER_MAX_LINE),
            queue: Queue::default(),
            joined: None,
            closed: None,
        };
        let mut hello = Vec::new();
        peer.transmit(&mut hello);
        if let Some((_, old)) = self.peers.insert(name.into(), (peer, conn)) {
            // Still registered, as a connection the test has not closed yet.
            if let Some(j) = old.joined {
                self.hub.disconnect(j.id, None);
            }
        }
        self.send_to_server(name, &hello);
        self.settle();
    }

    /// The connection of `name` ends; the broadcaster's push follows.
    fn leave(&mut self, name: &str) {
        let (_, conn) = self.peers.remove(name).unwrap();
        if let Some(j) = conn.joined {
            assert!(self.hub.disconnect(j.id, None).is_some());
        }
        self.settle();
    }

    fn type_line(&mut self, name: &str, line: &str) -> Action {
        let (peer, _) = self.peers.get_mut(name).unwrap();
        let (action, bytes) = peer.typed(line, &mut self.rng);
        self.send_to_server(name, &bytes);
        self.settle();
        action
    }

    fn fp(&self, name: &str) -> String {
        self.peers[name].0.fp()
    }

    /// Runs the directory push, then moves bytes server → clients → server until quiet.
    fn settle(&mut self) {
        for _ in 0..100 {
            self.hub.push();
            let mut moved = false;
            let names: Vec<String> = self.peers.keys().cloned().collect();
            for name in names {
                let (peer, conn) = self.peers.get_mut(&name).unwrap();
                let bytes = conn.queue.take_bytes();
                if bytes.is_empty() {
                    continue;
                }
                moved = true;
                let mut replies = Vec::new();
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    let n = (self.chunk)(&mut self.rng).clamp(1, rest.len());
                    let (chunk, tail) = rest.split_at(n);
                    peer.receive(chunk, &mut replies);
                    rest = tail;
                }
                self.send_to_server(&name, &replies);
            }
            if !moved {
                return;
            }
        }
        panic!("world did not settle");
    }

    fn seen(&mut self, name: &str) -> Vec<String> {
        std::mem::take(&mut self.peers.get_mut(name).unwrap().0.seen)
    }

    fn closed(&self, name: &str) -> Option<String> {
        self.peers[name].1.closed.clone()
    }
}

fn one_byte(_: &mut ChaCha20Rng) -> usize {
    1
}

fn random_chunks(r: &mut ChaCha20Rng) -> usize {
    r.gen_range(1..200)
}

fn conversation(chunk: fn(&mut ChaCha20Rng) -> usize, seed: u64) {
    let mut w = World::new(chunk, seed);
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
            format!("[SYS] new contact alice, fp {a}; to check it is really alice: /verify alice"),
        ]
    );
    assert_eq!(
        w.seen("alice"),
        [
            format!("[SYS] bob joined, fp {b}"),
            format!("[SYS] new contact bob, fp {b}; to check it is really bob: /verify bob"),
        ]
    );

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

    // Unknown recipient: refused locally (a directory refresh goes out, silently).
    assert_eq!(w.type_line("alice", "/to nobody hi"), Action::Shown);
    assert_eq!(
        w.seen("alice"),
        ["[ERROR] unknown user: nobody (try /list)"]
    );

    // Too long: refused locally, nothing reaches bob.
    let long = format!("/to bob {}", "x".repeat(300));
    assert_eq!(w.type_line("alice", &long), Action::Shown);
    assert_eq!(
        w.seen("alice"),
        ["[ERROR] message too long (at most 240 bytes)"]
    );
    assert!(w.seen("bob").is_empty());

    // bob leaves and comes back with a new key: the server's push tells alice, and
    // alice's session remembers bob's old key across the leave.
    w.leave("bob");
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
    w.seen("bob");

    // bob reconnects with another key before the server's push: alice's directory goes
    // straight from the old key to the new one, a key change too.
    let new_bob = Peer::new("bob", &mut w.rng);
    let b3 = new_bob.fp();
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
    assert_eq!(w.closed("alice"), None);
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
fn a_first_message_beats_the_directory_push() {
    // carol joins and writes at once: the router sends alice the directory listing
    // carol before carol's message, though no push has run yet.
    let mut w = World::new(random_chunks, 5);
    w.connect("alice");
    w.seen("alice");
    let carol = Peer::new("carol", &mut w.rng);
    let conn = ServerConn {
        reader: LineReader::new(1024),
        queue: Queue::default(),
        joined: None,
        closed: None,
    };
    w.peers.insert("carol".into(), (carol, conn));
    let (carol, conn) = w.peers.get_mut("carol").unwrap();
    let mut hello = Vec::new();
    carol.transmit(&mut hello);
    server_receive(&mut w.hub, conn, &hello);
    // carol's welcome, straight to her client (no push, no settle).
    let welcome = conn.queue.take_bytes();
    let mut replies = Vec::new();
    carol.receive(&welcome, &mut replies);
    assert!(replies.is_empty());
    let (action, relay) = carol.typed("/to alice hi from carol", &mut w.rng);
    assert_eq!(action, Action::Sent);
    server_receive(&mut w.hub, conn, &relay);
    let (alice, aconn) = w.peers.get_mut("alice").unwrap();
    let bytes = aconn.queue.take_bytes();
    alice.receive(&bytes, &mut replies);
    assert!(replies.is_empty(), "alice had to ask for the directory");
    let carol_fp = w.fp("carol");
    assert_eq!(
        w.seen("alice"),
        [
            format!("[SYS] carol joined, fp {carol_fp}"),
            format!(
                "[SYS] new contact carol, fp {carol_fp}; to check it is really carol: /verify carol"
            ),
            "[carol] hi from carol".into()
        ]
    );
}

#[test]
fn tampered_message_is_reported_not_shown() {
    let mut w = World::new(random_chunks, 9);
    w.connect("alice");
    w.connect("bob");
    w.seen("alice");
    w.seen("bob");
    let (alice, _) = w.peers.get_mut("alice").unwrap();
    let line = String::from_utf8(alice.typed("/to bob secret", &mut w.rng).1).unwrap();
    // Flip one character of the cipher text's base64.
    let i = line.find("\"cipher\":\"").unwrap() + 12;
    let mut bytes = line.into_bytes();
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    w.send_to_server("alice", &bytes);
    w.settle();
    let seen = w.seen("bob");
    assert_eq!(
        seen,
        ["[ERROR] could not decrypt message from alice (authentication failed)"]
    );
    assert!(!seen.iter().any(|s| s.contains("secret")));
}

#[test]
fn a_forged_sender_is_rewritten() {
    let mut w = World::new(one_byte, 10);
    w.connect("alice");
    w.connect("bob");
    w.connect("mallory");
    w.seen("bob");
    // mallory encrypts to bob and claims to be alice: bob sees mallory's name, and the
    // message does not decrypt under alice's key either way.
    let (m, _) = w.peers.get_mut("mallory").unwrap();
    let line = String::from_utf8(m.typed("/to bob it is me, alice", &mut w.rng).1).unwrap();
    let forged = line.replacen("\"from\":\"mallory\"", "\"from\":\"alice\"", 1);
    assert_ne!(forged, line);
    w.send_to_server("mallory", forged.as_bytes());
    w.settle();
    assert_eq!(w.seen("bob"), ["[mallory] it is me, alice"]);
}

#[test]
fn the_server_refuses_a_taken_name_and_closes_a_garbage_sender() {
    let mut w = World::new(random_chunks, 11);
    w.connect("alice");
    w.seen("alice");
    // A second "alice" while the first is connected: refused, the first keeps chatting.
    let (first, first_conn) = w.peers.remove("alice").unwrap();
    w.peers.insert("alice-first".into(), (first, first_conn));
    w.connect("alice");
    assert_eq!(
        w.closed("alice").as_deref(),
        Some("name \"alice\" is already connected")
    );
    assert_eq!(
        w.seen("alice"),
        ["[ERROR] name \"alice\" is already connected"]
    );
    w.connect("bob");
    assert_eq!(
        w.type_line("bob", "/to alice still the first"),
        Action::Sent
    );
    assert_eq!(
        w.seen("alice-first").last().unwrap(),
        "[bob] still the first"
    );
    // 20 bad lines in a row: the error for each, then the router closes the connection.
    w.seen("bob");
    w.send_to_server("bob", &b"garbage\n".repeat(25));
    w.settle();
    assert_eq!(
        w.closed("bob").as_deref(),
        Some("too many consecutive bad messages")
    );
    let errors = w.seen("bob");
    assert_eq!(errors.len(), 20, "{errors:?}");
    assert!(
        errors.iter().all(|e| e.starts_with("[ERROR] bad message:")),
        "{errors:?}"
    );
}

#[test]
fn a_reconnect_with_the_same_key_is_no_key_change() {
    // bob's identity is stable (a state directory): the same key across connections.
    let mut w = World::new(random_chunks, 12);
    w.connect("alice");
    let first = Peer::new("bob", &mut ChaCha20Rng::seed_from_u64(77));
    let b = first.fp();
    w.attach("bob", first);
    w.seen("alice");
    // After a leave the server has pushed: a leave and a join, no warning.
    w.leave("bob");
    let again = Peer::new("bob", &mut ChaCha20Rng::seed_from_u64(77));
    w.attach("bob", again);
    assert_eq!(
        w.seen("alice"),
        [
            "[SYS] bob left".to_string(),
            format!("[SYS] bob joined, fp {b}")
        ]
    );
    // Replaced before the push (the old connection dropped, the new one registered):
    // alice's directory does not change at all, so she sees nothing.
    let third = Peer::new("bob", &mut ChaCha20Rng::seed_from_u64(77));
    w.attach("bob", third);
    assert!(w.seen("alice").is_empty());
    assert_eq!(w.type_line("bob", "/to alice same bob"), Action::Sent);
    assert_eq!(w.seen("alice"), ["[bob] same bob"]);
}
