//! One scripted session (lines the user types, lines the server sends, a dropped
//! connection and a reconnect) through both clients' own paths from bytes to screen:
//!
//! - the desktop client: `seguro::client::Driver` (what `seguro chat` runs between the
//!   socket and the screen) printing through `PlainPrinter` (what it prints to a
//!   standard output that is not a terminal);
//! - the board client: `seguro_embassy::session::Console` (what `Session` runs between
//!   TLS and the console) sending `Output`s into an events channel, printed as the
//!   Linux runner prints them (`text` and a newline).
//!
//! The screens must be byte-identical, and so must the bytes each sends to the server.
//! Each host has its own capacities (the desktop holds 256 users and 4 KiB texts, a
//! board 32 users and 1 KiB texts), so the script stays within both; both accept lines
//! of 4 KiB here, as a board does. The script covers every kind of line (directory,
//! joins, leaves, key changes, messages, errors, hostile names and texts, local
//! commands online and offline) and the test checks that they were shown, so two
//! hosts that both showed nothing, or both dropped a kind, would not pass.

use std::io::Write as _;

use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use seguro::client::{DesktopChat, Driver, PlainPrinter};
use seguro_core::chat::{Action, Chat, RecentKeys};
use seguro_core::client::{Client, TransmitError};
use seguro_core::e2ee::KeyPair;
use seguro_core::fingerprint;
use seguro_core::frame::LineAccumulator;
use seguro_core::msg::{Message, UserList};
use seguro_embassy::session::{Commands, Console, Events, Wire};

const ALICE: [u8; 32] = [0x11; 32];
const LINE: usize = 4096;

enum Step {
    /// A new connection: the `hello` goes out.
    Connect,
    /// Bytes from the server, as one read.
    Server(Vec<u8>),
    /// A line the user typed.
    Typed(&'static str),
    /// The connection dropped.
    Drop,
}

fn emit(m: &Message<'_>) -> Vec<u8> {
    let mut out = vec![0u8; m.line_len()];
    let n = m.emit_line(&mut out).unwrap();
    out.truncate(n);
    out
}

fn users(welcome: bool, list: &[(&str, [u8; 32])]) -> Vec<u8> {
    let mut buf = vec![0u8; 8192];
    let packed = UserList::pack(list.iter().map(|(n, k)| (*n, k)), &mut buf).unwrap();
    emit(&if welcome {
        Message::Welcome { users: packed }
    } else {
        Message::Users { users: packed }
    })
}

/// Another user, to make real relays to alice.
struct Peer {
    client: Client<8, 1040, 1>,
    rng: ChaCha20Rng,
}

impl Peer {
    fn new(name: &str, seed: u8) -> Self {
        let mut client = Client::new(name, KeyPair::from_secret([seed; 32])).unwrap();
        let mut out = [0u8; 512];
        client.poll_transmit(&mut out).unwrap();
        let alice = KeyPair::from_secret(ALICE).public();
        let w = users(true, &[("alice", alice), (name, client.public_key())]);
        client
            .handle_line(&w[..w.len() - 1], &mut [0u8; 512])
            .unwrap();
        while client.poll_event().is_some() {}
        Self {
            client,
            rng: ChaCha20Rng::seed_from_u64(u64::from(seed)),
        }
    }

    fn key(&self) -> [u8; 32] {
        self.client.public_key()
    }

    /// A relay of `text` to alice, as the server forwards it.
    fn relay(&mut self, text: &str) -> Vec<u8> {
        self.client.send_to("alice", text, &mut self.rng).unwrap();
        let mut out = vec![0u8; 4096];
        let n = self.client.poll_transmit(&mut out).unwrap().unwrap();
        out.truncate(n);
        out
    }
}

fn script() -> Vec<Step> {
    use Step::*;
    let alice = KeyPair::from_secret(ALICE).public();
    let mut bob = Peer::new("bob", 2);
    let (eve, sys, carol, carol2) = ([5; 32], [6; 32], [7; 32], [8; 32]);
    let bob2 = Peer::new("bob", 3).key();
    let mut zed = Peer::new("zed", 4);
    let evil = "eve\u{202e}live";
    let mut tampered = bob.relay("secret");
    let i = tampered
        .windows(10)
        .position(|w| w == b"\"cipher\":\"")
        .unwrap()
        + 12;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let mut two_lines = users(
        false,
        &[("alice", alice), ("bob", bob.key()), ("carol", carol)],
    );
    two_lines.extend(users(false, &[("alice", alice), ("carol", carol)]));
    let rejoin = users(false, &[("alice", alice), ("carol", carol), ("bob", bob2)]);
    let (head, tail) = rejoin.split_at(30);
    let mut overlong = vec![b'x'; LINE + 100];
    overlong.push(b'\n');
    overlong.extend(emit(&Message::Server { text: "after" }));
    vec![
        Connect,
        Server(users(
            true,
            &[
                ("alice", alice),
                ("bob", bob.key()),
                (evil, eve),
                ("SYS", sys),
            ],
        )),
        Typed("/help"),
        Typed("/fp bob"),
        Typed("/fp alice"),
        Typed("/fp nobody"),
        Typed("/to bob hola bob, ¿qué tal? 🚀"),
        Server(bob.relay("hi alice\n[SYS] forged \u{1b}[31m\u{2067}")),
        Server(emit(&Message::Server { text: "echo: ping" })),
        Server(emit(&Message::Error {
            text: "destino no conectado",
        })),
        Typed("/lsit"),
        Typed("hello"),
        Typed("/to bob"),
        Typed("/list now"),
        Typed("/to nobody hi"),
        Server(two_lines),
        Server(head.to_vec()),
        Server(tail.to_vec()),
        Server(users(
            false,
            &[("alice", alice), ("carol", carol2), ("bob", bob2)],
        )),
        Typed("/list"),
        Server(users(
            false,
            &[("alice", alice), ("carol", carol2), ("bob", bob2)],
        )),
        Server(b"not json\n".to_vec()),
        Server(overlong),
        Server(tampered),
        Server(zed.relay("who am I")),
        Server(users(
            false,
            &[("alice", alice), ("carol", carol2), ("bob", bob2)],
        )),
        Typed("/server hi"),
        Server(users(false, &[("alice", [9; 32]), ("bob", bob2)])),
        Drop,
        Typed("/to bob are you there"),
        Typed("/list"),
        Typed("/fp carol"),
        Connect,
        Server(users(true, &[("alice", alice), ("bob", bob2)])),
        Typed("/to bob back"),
        Typed("/quit"),
    ]
}

/// The desktop client's screen and wire.
fn desktop(steps: &[Step]) -> (Vec<u8>, Vec<u8>, Vec<Action>) {
    let client = Client::new("alice", KeyPair::from_secret(ALICE)).unwrap();
    let mut chat = Box::new(DesktopChat::new(
        client,
        seguro::trust::DesktopMemory::in_memory(),
    ));
    chat.set_server(&"10.0.0.1:7000");
    let mut driver = Driver::new(chat, LINE);
    let mut printer = PlainPrinter::new(Vec::new(), false);
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let mut wire = Vec::new();
    let mut actions = Vec::new();
    for step in steps {
        match step {
            Step::Connect => driver.connected(&mut printer, &mut wire),
            Step::Server(data) => {
                driver.received(data, &mut printer, &mut wire);
            }
            Step::Typed(l) => actions.push(driver.typed(l, &mut rng, &mut printer, &mut wire)),
            Step::Drop => driver.disconnected(),
        }
    }
    (printer.into_inner(), wire, actions)
}

struct VecWire(Vec<u8>);

impl Wire for VecWire {
    type Error = TransmitError;

    async fn send(&mut self, line: &[u8]) -> Result<(), TransmitError> {
        self.0.extend_from_slice(line);
        Ok(())
    }
}

/// The board client's screen and wire.
fn board(steps: &[Step]) -> (Vec<u8>, Vec<u8>, Vec<Action>) {
    use embassy_futures::block_on;
    let client = Client::new("alice", KeyPair::from_secret(ALICE)).unwrap();
    let mut chat: Chat<RecentKeys> = Chat::new(client, RecentKeys::new());
    chat.set_server(&"10.0.0.1:7000");
    let commands = Commands::<NoopRawMutex, 1>::new();
    let events = Box::new(Events::<NoopRawMutex, 64>::new());
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let (mut scratch, mut out) = (vec![0u8; LINE], vec![0u8; 2048]);
    let mut console = Console::new(
        &mut chat,
        &mut rng,
        (&commands, &events),
        &mut scratch,
        &mut out,
    );
    let mut acc = LineAccumulator::new(vec![0u8; LINE]);
    let mut wire = VecWire(Vec::new());
    let mut screen = Vec::new();
    let mut actions = Vec::new();
    let mut online = false;
    for step in steps {
        match step {
            Step::Connect => {
                acc = LineAccumulator::new(vec![0u8; LINE]);
                console.reset();
                online = true;
            }
            Step::Server(data) => block_on(console.received(&mut acc, data)),
            Step::Typed(l) => actions.push(block_on(console.typed(l))),
            Step::Drop => {
                console.reset();
                online = false;
            }
        }
        // `Session` writes what is queued after every step while connected.
        if online {
            block_on(console.transmit(&mut wire)).unwrap();
        }
        // The Linux runner's printer.
        while let Ok(line) = events.try_receive() {
            writeln!(screen, "{}", line.text).unwrap();
        }
    }
    (screen, wire.0, actions)
}

#[test]
fn one_script_renders_byte_identical_on_desktop_and_board() {
    let steps = script();
    let (d_screen, d_wire, d_actions) = desktop(&steps);
    let (b_screen, b_wire, b_actions) = board(&steps);
    let d = String::from_utf8(d_screen).unwrap();
    let b = String::from_utf8(b_screen).unwrap();
    println!("{d}");
    for (i, (dl, bl)) in d.lines().zip(b.lines()).enumerate() {
        assert_eq!(dl, bl, "line {i} differs");
    }
    assert_eq!(d, b, "the screens differ in length");
    assert_eq!(d_actions, b_actions);
    assert_eq!(
        String::from_utf8_lossy(&d_wire),
        String::from_utf8_lossy(&b_wire)
    );

    // What the script must have shown (on both, since they are identical).
    let alice = KeyPair::from_secret(ALICE).public();
    let bob = Peer::new("bob", 2).key();
    let bob2 = Peer::new("bob", 3).key();
    let fp = |k: &[u8; 32]| fingerprint::short(k).as_str().to_owned();
    let want = [
        "[SYS] connected to 10.0.0.1:7000 as alice".to_string(),
        "[SYS] users online (4):".into(),
        format!("[SYS]   alice  fp {} (you)", fp(&alice)),
        format!("[SYS]   eve\\u{{202e}}live  fp {}", fp(&[5; 32])),
        format!("[SYS]   \\u{{53}}YS  fp {}", fp(&[6; 32])),
        "[SYS] commands:".into(),
        "[SYS]   /quit                 leave".into(),
        format!("[SYS] fp bob: {}", fp(&bob)),
        format!("[SYS] fp alice: {}", fp(&alice)),
        "[ERROR] unknown user: nobody (try /list)".into(),
        "[bob] hi alice\\u{a}[SYS] forged \\u{1b}[31m\\u{2067}".into(),
        "[SERVER] echo: ping".into(),
        "[ERROR] destino no conectado".into(),
        "[ERROR] unknown command; did you mean /list? /help lists the commands".into(),
        "[ERROR] commands start with '/': use /to <user> <text> to send a message, /help for more"
            .into(),
        "[ERROR] usage: /to <user> <text>".into(),
        "[ERROR] usage: /list (it takes no arguments)".into(),
        format!("[SYS] carol joined, fp {}", fp(&[7; 32])),
        "[SYS] bob left".into(),
        format!("[SYS] bob joined, fp {}", fp(&bob2)),
        format!(
            "[WARN] KEY CHANGED for bob: fp was {}, now {}. Either bob restarted their \
             client or someone (the server?) is substituting keys: verify the new \
             fingerprint with bob over another channel before trusting messages \
             (/verify bob).",
            fp(&bob),
            fp(&bob2)
        ),
        format!(
            "[WARN] KEY CHANGED for carol: fp was {}, now {}.",
            fp(&[7; 32]),
            fp(&[8; 32])
        ),
        "[SYS] users online (3):".into(),
        "[ERROR] bad line from the server: invalid JSON at byte 0: expected an object".into(),
        format!("[ERROR] the server sent a line longer than {LINE} bytes; skipped"),
        "[SERVER] after".into(),
        "[ERROR] could not decrypt message from bob (authentication failed)".into(),
        "[ERROR] message from zed dropped: the sender is not in the directory".into(),
        "[WARN] the server lists you (alice) with a key that is not yours".into(),
        "[SYS] carol left".into(),
        "[ERROR] not connected: line dropped".into(),
        "[SYS] not connected; users online when last connected (2):".into(),
        format!("[SYS] fp carol: {}", fp(&[8; 32])),
    ];
    let lines: Vec<&str> = d.lines().collect();
    let mut at = 0;
    for w in &want {
        let found = lines[at..].iter().position(|l| l.starts_with(w.as_str()));
        let Some(i) = found else {
            panic!("not shown (in order): {w:?}\n{d}");
        };
        at += i + 1;
    }
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("[SYS] connected to"))
            .count(),
        2
    );
    // Sent: two hellos, the messages, the server text and the list requests; the
    // message typed offline is not.
    let wire = String::from_utf8(d_wire).unwrap();
    assert_eq!(wire.matches("\"type\":\"hello\"").count(), 2);
    assert_eq!(wire.matches("\"type\":\"relay\"").count(), 2);
    assert_eq!(wire.matches("\"type\":\"chat\"").count(), 1);
    assert!(wire.matches("\"type\":\"list\"").count() >= 2);
    assert_eq!(d_actions.last(), Some(&Action::Quit));
    assert!(d_actions.contains(&Action::Offline));
}
