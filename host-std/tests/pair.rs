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
use seguro_core::client::{Client, Event, Undecryptable};
use seguro_core::command::parse_command;
use seguro_core::e2ee::KeyPair;
use seguro_core::frame::{FeedResult, LineAccumulator};

// ---- The client side: the only part that knows the client API. ----

/// A core client and what it showed, rendered as text.
struct Peer {
    client: Client<8, 256, 2>,
    acc: LineAccumulator<[u8; 1024]>,
    seen: Vec<String>,
}

impl Peer {
    fn new(name: &str, rng: &mut ChaCha20Rng) -> Self {
        Self {
            client: Client::new(name, KeyPair::generate(rng)).unwrap(),
            acc: LineAccumulator::new([0; 1024]),
            seen: Vec::new(),
        }
    }

    /// Whatever the client has to transmit now.
    fn transmit(&mut self, out: &mut Vec<u8>) {
        let mut buf = [0u8; 1024];
        while let Some(n) = self.client.poll_transmit(&mut buf).unwrap() {
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// A line the user typed: the bytes to send, or the client's refusal.
    fn typed(&mut self, line: &str, rng: &mut ChaCha20Rng) -> Result<Vec<u8>, String> {
        let cmd = parse_command(line).map_err(|e| e.to_string())?;
        let mut out = [0u8; 1024];
        let n = self
            .client
            .send(&cmd, rng, &mut out)
            .map_err(|e| e.to_string())?;
        Ok(out[..n].to_vec())
    }

    /// Bytes from the server (one chunk); the replies go to `out`.
    fn receive(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
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
                    if let Err(e) = self.client.handle_line(line, &mut scratch) {
                        self.seen.push(format!("client error: {e}"));
                    }
                    while let Some(ev) = self.client.poll_event() {
                        self.seen.push(render(&ev));
                    }
                    w = remaining;
                }
            }
        }
        self.transmit(out);
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
                self.hub.disconnect(j.id);
            }
        }
        self.send_to_server(name, &hello);
        self.settle();
    }

    /// The connection of `name` ends; the broadcaster's push follows.
    fn leave(&mut self, name: &str) {
        let (_, conn) = self.peers.remove(name).unwrap();
        if let Some(j) = conn.joined {
            assert!(self.hub.disconnect(j.id).is_some());
        }
        self.settle();
    }

    fn type_line(&mut self, name: &str, line: &str) -> Result<(), String> {
        let (peer, _) = self.peers.get_mut(name).unwrap();
        let bytes = peer.typed(line, &mut self.rng)?;
        self.send_to_server(name, &bytes);
        self.settle();
        Ok(())
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
    assert!(w.seen("alice").is_empty());

    // Too long.
    let long = format!("/to bob {}", "x".repeat(300));
    assert!(
        w.type_line("alice", &long)
            .unwrap_err()
            .contains("too long")
    );

    // bob leaves and comes back with a new key: alice's client sees a leave and a join
    // (remembering keys across a leave is the chat layer's job).
    w.leave("bob");
    assert_eq!(w.seen("alice"), ["left bob"]);
    w.connect("bob");
    assert_eq!(w.seen("alice"), ["joined bob"]);
    w.seen("bob");
    // bob reconnects with a new key before the server's push: alice's directory goes
    // straight from the old key to the new one, a key change.
    let new_bob = Peer::new("bob", &mut w.rng);
    w.attach("bob", new_bob);
    assert_eq!(w.seen("alice"), ["key changed bob"]);
    w.type_line("bob", "/to alice still me").unwrap();
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
    let relay = carol.typed("/to alice hi from carol", &mut w.rng).unwrap();
    server_receive(&mut w.hub, conn, &relay);
    let (alice, aconn) = w.peers.get_mut("alice").unwrap();
    let bytes = aconn.queue.take_bytes();
    alice.receive(&bytes, &mut replies);
    assert!(replies.is_empty(), "alice had to ask for the directory");
    assert_eq!(w.seen("alice"), ["joined carol", "[carol] hi from carol"]);
}

#[test]
fn tampered_message_is_reported_not_shown() {
    let mut w = World::new(random_chunks, 9);
    w.connect("alice");
    w.connect("bob");
    w.seen("alice");
    w.seen("bob");
    let (alice, _) = w.peers.get_mut("alice").unwrap();
    let line = String::from_utf8(alice.typed("/to bob secret", &mut w.rng).unwrap()).unwrap();
    // Flip one character of the cipher text's base64.
    let i = line.find("\"cipher\":\"").unwrap() + 12;
    let mut bytes = line.into_bytes();
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    w.send_to_server("alice", &bytes);
    w.settle();
    let seen = w.seen("bob");
    assert_eq!(
        seen,
        [format!("undecryptable alice: {:?}", Undecryptable::BadTag)]
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
    let line = String::from_utf8(m.typed("/to bob it is me, alice", &mut w.rng).unwrap()).unwrap();
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
    w.type_line("bob", "/to alice still the first").unwrap();
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
