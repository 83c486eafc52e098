//! The desktop client's outbox through `Driver` (no I/O): what is typed while not
//! connected waits, local commands answer, and after the next welcome the messages go
//! out in order, each encrypted to the recipient's key of that moment (decrypted here
//! by real peers); a recipient whose key changed meanwhile holds the messages until
//! the user decides.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use seguro::client::{DesktopChat, Driver, Printer, Typed};
use seguro_core::chat::{Action, Line};
use seguro_core::client::{Client, Event};
use seguro_core::e2ee::KeyPair;
use seguro_core::msg::{Message, UserList};

const ALICE: [u8; 32] = [0x11; 32];

fn emit(m: &Message<'_>) -> Vec<u8> {
    let mut out = vec![0u8; m.line_len()];
    let n = m.emit_line(&mut out).unwrap();
    out.truncate(n);
    out
}

fn welcome(list: &[(&str, [u8; 32])]) -> Vec<u8> {
    let mut buf = vec![0u8; 8192];
    let packed = UserList::pack(list.iter().map(|(n, k)| (*n, k)), &mut buf).unwrap();
    emit(&Message::Welcome { users: packed })
}

/// A peer that decrypts what alice sends it.
struct Peer {
    client: Client<8, 1040, 1>,
}

impl Peer {
    fn new(name: &str, seed: u8) -> Self {
        let mut client = Client::new(name, KeyPair::from_secret([seed; 32])).unwrap();
        let mut out = [0u8; 512];
        client.poll_transmit(&mut out).unwrap();
        let alice = KeyPair::from_secret(ALICE).public();
        let w = welcome(&[("alice", alice), (name, client.public_key())]);
        client
            .handle_line(&w[..w.len() - 1], &mut [0u8; 512])
            .unwrap();
        while client.poll_event().is_some() {}
        Self { client }
    }

    fn key(&self) -> [u8; 32] {
        self.client.public_key()
    }

    /// Decrypts a relay line alice sent (as the server forwards it, with `from`).
    fn open(&mut self, line: &str) -> Option<String> {
        let mut v: serde_json::Value = serde_json::from_str(line).ok()?;
        v["from"] = "alice".into();
        let fwd = v.to_string();
        self.client
            .handle_line(fwd.as_bytes(), &mut [0u8; 4096])
            .ok()?;
        let mut got = None;
        while let Some(e) = self.client.poll_event() {
            if let Event::Message { text, .. } = e {
                got = Some(text.to_owned());
            }
        }
        got
    }
}

/// Collects the lines as `seguro chat` prints them without a terminal.
#[derive(Default)]
struct Screen(Vec<String>);

impl Printer for Screen {
    fn print(&mut self, line: &Line<'_>) {
        self.0.push(line.to_string());
    }
}

struct Alice {
    driver: Driver,
    screen: Screen,
    rng: ChaCha20Rng,
    wire: Vec<u8>,
    shown_upto: usize,
}

impl Alice {
    fn new() -> Self {
        let client = Client::new("alice", KeyPair::from_secret(ALICE)).unwrap();
        let mut chat = Box::new(DesktopChat::new(
            client,
            seguro::trust::DesktopMemory::in_memory(),
        ));
        chat.set_server(&"10.0.0.1:7000");
        let mut driver = Driver::new(chat, 8192);
        driver.keep_offline(true);
        Self {
            driver,
            screen: Screen::default(),
            rng: ChaCha20Rng::seed_from_u64(7),
            wire: Vec::new(),
            shown_upto: 0,
        }
    }
    fn connect(&mut self, list: &[(&str, [u8; 32])]) {
        self.driver.connected(&mut self.screen, &mut self.wire);
        let hello = String::from_utf8(std::mem::take(&mut self.wire)).unwrap();
        assert!(hello.contains("\"hello\""), "{hello}");
        self.driver
            .received(&welcome(list), &mut self.screen, &mut self.wire);
    }
    fn server(&mut self, data: &[u8]) {
        self.driver.received(data, &mut self.screen, &mut self.wire);
    }
    fn typed(&mut self, conversation: Option<&str>, l: &str) -> Typed {
        self.driver.typed_in(
            conversation,
            l,
            &mut self.rng,
            &mut self.screen,
            &mut self.wire,
        )
    }
    /// Lines shown since the last call.
    fn shown(&mut self) -> Vec<String> {
        let new = self.screen.0[self.shown_upto..].to_vec();
        self.shown_upto = self.screen.0.len();
        new
    }
    /// The relay lines sent since the last call, with their recipient.
    fn relays(&mut self) -> Vec<(String, String)> {
        let w = String::from_utf8(std::mem::take(&mut self.wire)).unwrap();
        w.lines()
            .filter(|l| l.contains("\"relay\""))
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["to"].as_str().unwrap().to_owned(), l.to_owned())
            })
            .collect()
    }
}

fn has(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

#[test]
fn typed_offline_waits_and_goes_out_in_order_after_reconnecting() {
    let mut bob = Peer::new("bob", 2);
    let mut carol = Peer::new("carol", 3);
    let alice_key = KeyPair::from_secret(ALICE).public();
    let mut a = Alice::new();
    let list = [
        ("alice", alice_key),
        ("bob", bob.key()),
        ("carol", carol.key()),
    ];
    a.connect(&list);
    assert!(has(&a.shown(), "[SYS] connected to 10.0.0.1:7000 as alice"));
    assert_eq!(a.typed(None, "/to bob online"), Typed::Chat(Action::Sent));
    let sent = a.relays();
    assert_eq!(sent.len(), 1);
    assert_eq!(bob.open(&sent[0].1).as_deref(), Some("online"));

    a.driver.disconnected();
    assert_eq!(a.typed(None, "/to bob one"), Typed::Queued);
    assert_eq!(
        a.typed(Some("bob"), "two, in bob's conversation"),
        Typed::Queued
    );
    assert_eq!(a.typed(None, "/to carol three"), Typed::Queued);
    assert_eq!(a.typed(None, "/server four"), Typed::Queued);
    let shown = a.shown();
    assert!(
        has(
            &shown,
            "[SYS] not connected: kept in the outbox (4 waiting)"
        ),
        "{shown:?}"
    );
    assert!(!has(&shown, "dropped"), "{shown:?}");
    // Local commands answer offline.
    assert_eq!(a.typed(None, "/fp bob"), Typed::Chat(Action::Shown));
    assert_eq!(a.typed(None, "/help"), Typed::Chat(Action::Shown));
    assert_eq!(a.typed(None, "/outbox"), Typed::Chat(Action::Shown));
    let shown = a.shown();
    assert!(has(&shown, "[SYS] fp bob: "), "{shown:?}");
    assert!(has(&shown, "[SYS] commands:"), "{shown:?}");
    // The client's own commands follow core's; protocol v2's only where it is on.
    assert!(
        has(
            &shown,
            "[SYS]   /outbox [send|drop]   what waits to be sent"
        ),
        "{shown:?}"
    );
    assert!(has(&shown, "[SYS]   /reconnect "), "{shown:?}");
    assert!(!has(&shown, "/sas"), "{shown:?}");
    assert!(has(&shown, "[SYS] outbox (4 waiting):"), "{shown:?}");
    assert!(has(&shown, "[SYS]   to bob: /to bob one"), "{shown:?}");
    assert!(a.wire.is_empty(), "nothing reaches the wire offline");
    assert_eq!(a.typed(None, "/reconnect"), Typed::Reconnect);

    a.connect(&list);
    let wire = String::from_utf8(a.wire.clone()).unwrap();
    let chat_at = wire.find("\"four\"").expect("the /server text went out");
    let sent = a.relays();
    let to: Vec<&str> = sent.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(to, ["bob", "bob", "carol"]);
    assert_eq!(bob.open(&sent[0].1).as_deref(), Some("one"));
    assert_eq!(
        bob.open(&sent[1].1).as_deref(),
        Some("two, in bob's conversation")
    );
    assert_eq!(carol.open(&sent[2].1).as_deref(), Some("three"));
    assert!(
        wire.find("\"relay\"").unwrap() < chat_at,
        "in the order typed"
    );
    assert!(has(&a.shown(), "[SYS] sent 4 message(s) from the outbox"));
    assert_eq!(a.driver.outbox().len(), 0);
}

#[test]
fn a_recipient_not_back_yet_gets_the_messages_when_they_join() {
    let mut bob = Peer::new("bob", 2);
    let alice_key = KeyPair::from_secret(ALICE).public();
    let mut a = Alice::new();
    a.connect(&[("alice", alice_key), ("bob", bob.key())]);
    a.driver.disconnected();
    assert_eq!(a.typed(None, "/to bob first"), Typed::Queued);
    // The server came back before bob did.
    a.connect(&[("alice", alice_key)]);
    assert!(a.relays().is_empty());
    assert!(has(
        &a.shown(),
        "wait in the outbox until they are online: bob"
    ));
    // A later message to bob queues behind the first.
    assert_eq!(a.typed(Some("bob"), "second"), Typed::Queued);
    let mut buf = vec![0u8; 8192];
    let packed = UserList::pack([("alice", &alice_key), ("bob", &bob.key())], &mut buf).unwrap();
    a.server(&emit(&Message::Users { users: packed }));
    let sent = a.relays();
    assert_eq!(sent.len(), 2);
    assert_eq!(bob.open(&sent[0].1).as_deref(), Some("first"));
    assert_eq!(bob.open(&sent[1].1).as_deref(), Some("second"));
}

#[test]
fn a_key_changed_while_waiting_asks_first() {
    let bob = Peer::new("bob", 2);
    let mut bob2 = Peer::new("bob", 4);
    let mut carol = Peer::new("carol", 3);
    let alice_key = KeyPair::from_secret(ALICE).public();
    let mut a = Alice::new();
    a.connect(&[
        ("alice", alice_key),
        ("bob", bob.key()),
        ("carol", carol.key()),
    ]);
    a.driver.disconnected();
    assert_eq!(a.typed(None, "/to bob secret"), Typed::Queued);
    assert_eq!(a.typed(None, "/to carol hi"), Typed::Queued);
    a.connect(&[
        ("alice", alice_key),
        ("bob", bob2.key()),
        ("carol", carol.key()),
    ]);
    let sent = a.relays();
    assert_eq!(sent.len(), 1, "only carol's goes: bob's key changed");
    assert_eq!(carol.open(&sent[0].1).as_deref(), Some("hi"));
    let shown = a.shown();
    assert!(has(&shown, "KEY CHANGED for bob"), "{shown:?}");
    assert!(
        has(
            &shown,
            "[WARN] the key of bob changed while your message(s) waited"
        ),
        "{shown:?}"
    );
    // Typed later to bob: held behind the first, not sent to the new key unasked.
    assert_eq!(a.typed(None, "/to bob more"), Typed::Queued);
    assert!(a.relays().is_empty());
    assert_eq!(a.typed(None, "/outbox send"), Typed::Chat(Action::Shown));
    let sent = a.relays();
    assert_eq!(sent.len(), 2);
    assert_eq!(bob2.open(&sent[0].1).as_deref(), Some("secret"));
    assert_eq!(bob2.open(&sent[1].1).as_deref(), Some("more"));

    // And /outbox drop discards what is held.
    a.driver.disconnected();
    assert_eq!(a.typed(None, "/to bob gone"), Typed::Queued);
    a.connect(&[("alice", alice_key), ("bob", bob.key())]);
    assert!(a.relays().is_empty());
    assert_eq!(a.typed(None, "/outbox drop"), Typed::Chat(Action::Shown));
    assert!(has(&a.shown(), "[SYS] dropped 1 held message(s)"));
    assert_eq!(a.driver.outbox().len(), 0);
}

#[test]
fn without_the_outbox_a_line_typed_offline_is_reported() {
    let alice_key = KeyPair::from_secret(ALICE).public();
    let mut a = Alice::new();
    a.driver.keep_offline(false);
    a.connect(&[("alice", alice_key)]);
    a.driver.disconnected();
    assert_eq!(a.typed(None, "/to bob x"), Typed::Chat(Action::Offline));
    assert!(has(&a.shown(), "[ERROR] not connected: line dropped"));
}

#[test]
fn reconnect_delays_are_capped_and_jittered() {
    use seguro::client::reconnect_delay;
    use std::time::Duration;
    // Equal jitter: between half the step and the step.
    assert_eq!(reconnect_delay(0, true, 0), Duration::from_millis(250));
    assert_eq!(reconnect_delay(0, true, 250), Duration::from_millis(500));
    assert_eq!(reconnect_delay(1, true, 0), Duration::from_millis(500));
    for attempt in [3, 4, 10, 1000] {
        for r in [0, 1, 1999, 2000, u64::MAX] {
            let d = reconnect_delay(attempt, true, r);
            assert!(d <= Duration::from_secs(4), "{attempt} {r} {d:?}");
            assert!(d >= Duration::from_secs(2), "{attempt} {r} {d:?}");
        }
    }
    assert_eq!(reconnect_delay(1000, false, 0), Duration::from_secs(15));
    assert_eq!(
        reconnect_delay(1000, false, 15_000),
        Duration::from_secs(30)
    );
    let spread: std::collections::BTreeSet<_> = (0..50u64)
        .map(|r| reconnect_delay(5, true, r * 7919))
        .collect();
    assert!(spread.len() > 10, "jitter spreads the attempts");
}

#[test]
fn the_key_state_of_a_contact_for_the_status_bar() {
    use seguro::client::KeyState;
    let mut a = Alice::new();
    let bob = Peer::new("bob", 0x22);
    assert_eq!(a.driver.key_state("bob"), KeyState::Unknown);
    a.connect(&[
        ("alice", KeyPair::from_secret(ALICE).public()),
        ("bob", bob.key()),
    ]);
    assert_eq!(a.driver.key_state("bob"), KeyState::Unverified);
    assert_eq!(a.driver.key_state("carol"), KeyState::Unknown);
    // /verify shows the code; "yes" marks the key verified.
    a.typed(None, "/verify bob");
    assert_eq!(a.driver.key_state("bob"), KeyState::Unverified);
    a.typed(None, "/verify bob yes");
    assert_eq!(
        a.driver.key_state("bob"),
        KeyState::Verified,
        "{:?}",
        a.shown()
    );
    // bob comes back with another key: changed, until the user decides.
    let impostor = Peer::new("bob", 0x33);
    a.driver.disconnected();
    a.connect(&[
        ("alice", KeyPair::from_secret(ALICE).public()),
        ("bob", impostor.key()),
    ]);
    assert_eq!(
        a.driver.key_state("bob"),
        KeyState::Changed,
        "{:?}",
        a.shown()
    );
    a.typed(None, "/accept bob");
    assert_eq!(
        a.driver.key_state("bob"),
        KeyState::Unverified,
        "{:?}",
        a.shown()
    );
}

/// Connected again before a contact is: what is typed to them waits for them (it is
/// not refused as an unknown user and lost), and goes out when they join.
#[test]
fn a_message_to_a_known_contact_not_back_yet_waits_for_them() {
    let mut a = Alice::new();
    let mut bob = Peer::new("bob", 0x22);
    let me = ("alice", KeyPair::from_secret(ALICE).public());
    a.connect(&[me, ("bob", bob.key())]);
    a.driver.disconnected();
    // The server restarted: alice is back, bob not yet.
    a.connect(&[me]);
    a.shown();
    assert_eq!(a.typed(Some("bob"), "are you back?"), Typed::Queued);
    let shown = a.shown();
    assert!(
        has(&shown, "bob is not online: kept in the outbox"),
        "{shown:?}"
    );
    assert!(!has(&shown, "unknown user"), "{shown:?}");
    assert!(a.relays().is_empty());
    // Someone never seen is still an unknown user.
    a.typed(Some("carol"), "hello?");
    assert!(has(&a.shown(), "unknown user"));
    assert_eq!(a.driver.outbox().len(), 1);
    // bob joins: the message goes out, to his key.
    let mut buf = vec![0u8; 8192];
    let bob_key = bob.key();
    let packed = UserList::pack([(me.0, &me.1), ("bob", &bob_key)], &mut buf).unwrap();
    a.server(&emit(&Message::Users { users: packed }));
    let r = a.relays();
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(bob.open(&r[0].1).as_deref(), Some("are you back?"));
    assert_eq!(a.driver.outbox().len(), 0);
}
