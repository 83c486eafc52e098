//! What hosts read from a client besides its events: whether it is registered, the
//! keys it knows, its buffers' sizes, what `reset` forgets and keeps, and the text of
//! every error it reports (hosts print these to people).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::client_common;

use std::collections::BTreeSet;

use client_common::{C, directory, drain_transmit};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use seguro_core::client::{
    Client, DEFAULT_MSG, Event, SendError, TransmitError, Undecryptable, Undeliverable,
};
use seguro_core::e2ee::KeyPair;
use seguro_core::limits::CLIENT_MAX_TEXT;

fn handle(c: &mut C, line: &[u8]) {
    let mut scratch = vec![0u8; line.len()];
    c.handle_line(line, &mut scratch).unwrap();
}

fn alice() -> (C, ChaCha20Rng) {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let c = Client::new("alice", KeyPair::generate(&mut rng)).unwrap();
    (c, rng)
}

#[test]
fn the_default_buffer_holds_the_longest_text_and_its_tag() {
    assert_eq!(DEFAULT_MSG, CLIENT_MAX_TEXT + 16);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let c: Client<8, DEFAULT_MSG, 2> = Client::new("a", KeyPair::generate(&mut rng)).unwrap();
    assert_eq!(c.max_text(), CLIENT_MAX_TEXT);
}

#[test]
fn registered_only_between_welcome_and_reset_and_keys_known_from_the_directory() {
    let (mut c, mut rng) = alice();
    let ka = c.public_key();
    let kb = [9u8; 32];
    assert!(!c.is_registered());
    assert_eq!(c.key_of("bob"), None);
    assert!(drain_transmit(&mut c).starts_with(b"{\"type\":\"hello\""));
    assert!(!c.is_registered(), "a hello sent is not a welcome");
    handle(&mut c, &directory(true, &[("alice", ka), ("bob", kb)]));
    assert!(c.is_registered());
    assert_eq!(c.key_of("bob"), Some(&kb));
    assert_eq!(c.key_of("alice"), Some(&ka));
    assert_eq!(c.key_of("carol"), None);
    assert!(c.send_to("bob", "hi", &mut rng).is_ok());
    drain_transmit(&mut c);

    c.reset();
    assert!(!c.is_registered());
    // The directory is kept across the reset (key changes across reconnects are seen).
    assert_eq!(c.key_of("bob"), Some(&kb));
    assert!(matches!(
        c.send_to("bob", "hi", &mut rng),
        Err(SendError::NotRegistered)
    ));
    // The next transmission is the hello again.
    assert!(drain_transmit(&mut c).starts_with(b"{\"type\":\"hello\""));
}

#[test]
fn reset_discards_the_events_of_the_connection_that_ended() {
    let (mut c, _) = alice();
    let ka = c.public_key();
    drain_transmit(&mut c);
    handle(&mut c, &directory(true, &[("alice", ka), ("bob", [9; 32])]));
    // Events are pending (registered, bob joined); the connection ends before the host
    // drained them.
    c.reset();
    assert!(c.poll_event().is_none(), "events survived a reset");
    // After the next welcome with the same directory there is nothing new to report but
    // the registration: bob did not join again.
    drain_transmit(&mut c);
    handle(&mut c, &directory(true, &[("alice", ka), ("bob", [9; 32])]));
    let mut seen = Vec::new();
    while let Some(ev) = c.poll_event() {
        seen.push(format!("{ev:?}"));
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].starts_with("Registered"), "{seen:?}");
}

#[test]
fn every_error_has_its_own_words() {
    let undecryptable = [
        Undecryptable::BadTag,
        Undecryptable::BadNonce,
        Undecryptable::BadCipher,
        Undecryptable::UnsupportedAlgorithm,
        Undecryptable::WeakKey,
        Undecryptable::NotUtf8,
    ];
    let undeliverable = [
        Undeliverable::UnknownSender,
        Undeliverable::TooLong,
        Undeliverable::PendingFull,
        Undeliverable::NoSender,
    ];
    let mut texts = BTreeSet::new();
    for t in undecryptable
        .iter()
        .map(ToString::to_string)
        .chain(undeliverable.iter().map(ToString::to_string))
    {
        assert!(t.len() >= 9, "{t:?}");
        assert!(texts.insert(t.clone()), "said twice: {t:?}");
    }
    assert!(
        Undecryptable::BadTag
            .to_string()
            .contains("authentication failed")
    );
    assert!(Undeliverable::NoSender.to_string().contains("no sender"));
    let t = TransmitError::BufferTooSmall { needed: 4711 }.to_string();
    assert!(t.contains("4711") && t.contains("too small"), "{t}");
}

/// alice and bob, both welcomed with a directory listing both.
fn pair() -> (C, C, ChaCha20Rng) {
    let (mut a, mut rng) = alice();
    let mut b: C = Client::new("bob", KeyPair::generate(&mut rng)).unwrap();
    let dir = directory(true, &[("alice", a.public_key()), ("bob", b.public_key())]);
    for c in [&mut a, &mut b] {
        drain_transmit(c);
        handle(c, &dir);
        while c.poll_event().is_some() {}
    }
    (a, b, rng)
}

fn events(c: &mut C) -> Vec<String> {
    let mut seen = Vec::new();
    while let Some(ev) = c.poll_event() {
        seen.push(match ev {
            Event::Message { from, text } => format!("[{from}] {text}"),
            other => format!("{other:?}"),
        });
    }
    seen
}

/// `from`'s relay line as the server forwards it (without `\n`).
fn relay_of(from: &mut C) -> String {
    let mut line = drain_transmit(from);
    assert_eq!(line.pop(), Some(b'\n'));
    let line = String::from_utf8(line).unwrap();
    assert!(line.contains("\"type\":\"relay\""), "{line}");
    line
}

#[test]
fn only_the_answers_to_list_requests_are_listings() {
    let (mut a, _, _) = pair();
    let dir = directory(false, &[("alice", a.public_key())]);
    a.request_list().unwrap();
    a.request_list().unwrap();
    assert_eq!(drain_transmit(&mut a), b"{\"type\":\"list\"}\n");
    handle(&mut a, &dir);
    assert!(events(&mut a).contains(&"Listed".to_string()));
    // A directory the server pushes on its own is not an answer.
    handle(&mut a, &dir);
    assert!(!events(&mut a).contains(&"Listed".to_string()));
    handle(&mut a, &dir);
    assert!(!events(&mut a).contains(&"Listed".to_string()));
}

#[test]
fn a_new_key_for_a_peer_is_used_at_once() {
    let (mut a, mut b, mut rng) = pair();
    a.send_to("bob", "first", &mut rng).unwrap();
    let line = relay_of(&mut a);
    handle(&mut b, line.as_bytes());
    assert_eq!(events(&mut b), ["[alice] first"]);
    // bob comes back with another key; alice's next message must be sealed to it.
    let mut b2: C = Client::new("bob", KeyPair::generate(&mut rng)).unwrap();
    let dir = directory(
        false,
        &[("alice", a.public_key()), ("bob", b2.public_key())],
    );
    handle(&mut a, &dir);
    events(&mut a);
    drain_transmit(&mut b2);
    let dir2 = directory(true, &[("alice", a.public_key()), ("bob", b2.public_key())]);
    handle(&mut b2, &dir2);
    events(&mut b2);
    a.send_to("bob", "second", &mut rng).unwrap();
    let line = relay_of(&mut a);
    handle(&mut b2, line.as_bytes());
    assert_eq!(events(&mut b2), ["[alice] second"]);
}

/// Replaces the value of `"field":"…"` in a JSON line.
fn with_field(line: &str, field: &str, value: &str) -> String {
    let key = format!("\"{field}\":\"");
    let start = line.find(&key).unwrap() + key.len();
    let end = start + line[start..].find('"').unwrap();
    format!("{}{value}{}", &line[..start], &line[end..])
}

#[test]
fn a_nonce_of_another_length_is_refused_not_a_panic() {
    let (mut a, mut b, mut rng) = pair();
    for nonce in [
        "AAAAAAAAAAA=",
        "AAAAAAAAAAAAAAAAAAAAAA==",
        "",
        "AAAAAAAAAAAAAAAAAAAA",
    ] {
        a.send_to("bob", "x", &mut rng).unwrap();
        let line = with_field(&relay_of(&mut a), "nonce", nonce);
        handle(&mut b, line.as_bytes());
        assert_eq!(
            events(&mut b),
            [format!(
                "Undecryptable {{ from: \"alice\", reason: {:?} }}",
                Undecryptable::BadNonce
            )],
            "nonce {nonce:?}"
        );
    }
}

#[test]
fn the_longest_message_arrives_and_a_longer_cipher_is_too_long() {
    let (mut a, mut b, mut rng) = pair();
    let longest = "é".repeat(a.max_text() / 2);
    assert_eq!(longest.len(), a.max_text());
    a.send_to("bob", &longest, &mut rng).unwrap();
    let line = relay_of(&mut a);
    handle(&mut b, line.as_bytes());
    assert_eq!(events(&mut b), [format!("[alice] {longest}")]);
    // A cipher text longer than bob's buffer (300 bytes, valid base64): too long for
    // this client, not a broken message.
    use base64ct::{Base64, Encoding};
    let mut enc = [0u8; 400];
    let big = Base64::encode(&[7u8; 300], &mut enc).unwrap().to_owned();
    a.send_to("bob", "x", &mut rng).unwrap();
    let line = with_field(&relay_of(&mut a), "cipher", &big);
    handle(&mut b, line.as_bytes());
    assert_eq!(
        events(&mut b),
        [format!(
            "Undeliverable {{ from: \"alice\", reason: {:?} }}",
            Undeliverable::TooLong
        )]
    );
}

#[test]
fn relays_from_unknown_senders_wait_and_the_oldest_is_reported_when_the_wait_is_full() {
    let (a, mut b, mut rng) = pair();
    // carol joined after bob's last directory: bob holds her relays until he learns her key.
    let mut carol: C = Client::new("carol", KeyPair::generate(&mut rng)).unwrap();
    drain_transmit(&mut carol);
    let all = [
        ("alice", a.public_key()),
        ("bob", b.public_key()),
        ("carol", carol.public_key()),
    ];
    handle(&mut carol, &directory(true, &all));
    events(&mut carol);
    let mut relays = Vec::new();
    for text in ["one", "two", "three"] {
        carol.send_to("bob", text, &mut rng).unwrap();
        relays.push(relay_of(&mut carol));
    }
    handle(&mut b, relays[0].as_bytes());
    assert_eq!(events(&mut b), Vec::<String>::new(), "held, not shown");
    handle(&mut b, relays[1].as_bytes());
    assert_eq!(events(&mut b), Vec::<String>::new(), "room for two");
    assert_eq!(drain_transmit(&mut b), b"{\"type\":\"list\"}\n");
    handle(&mut b, relays[2].as_bytes());
    assert_eq!(
        events(&mut b),
        [format!(
            "Undeliverable {{ from: \"carol\", reason: {:?} }}",
            Undeliverable::PendingFull
        )],
        "the oldest makes room and is reported"
    );
    handle(&mut b, &directory(false, &all));
    let got: Vec<String> = events(&mut b)
        .into_iter()
        .filter(|e| e.starts_with('['))
        .collect();
    assert_eq!(got, ["[carol] two", "[carol] three"]);
}

#[test]
fn an_overlong_sender_name_is_cut_at_a_character_boundary() {
    let (mut a, mut b, mut rng) = pair();
    a.send_to("bob", "x", &mut rng).unwrap();
    // 1 + 70 × 2 bytes: byte 128 falls inside an 'é', so the name is cut to 127 bytes.
    let long = format!("a{}", "é".repeat(70));
    let line = with_field(&relay_of(&mut a), "from", &long);
    let line = with_field(&line, "nonce", "AAAA");
    handle(&mut b, line.as_bytes());
    let want = format!("a{}", "é".repeat(63));
    assert_eq!(want.len(), 127);
    assert_eq!(
        events(&mut b),
        [format!(
            "Undecryptable {{ from: {want:?}, reason: {:?} }}",
            Undecryptable::BadNonce
        )]
    );
}

#[test]
fn a_text_one_byte_too_long_is_refused_before_anything_is_queued() {
    let (mut a, _b, mut rng) = pair();
    let max = a.max_text();
    assert_eq!(
        a.send_to("bob", &"x".repeat(max + 1), &mut rng),
        Err(SendError::TextTooLong { max })
    );
    assert_eq!(drain_transmit(&mut a), b"");
    a.send_to("bob", &"x".repeat(max), &mut rng).unwrap();
    assert!(!drain_transmit(&mut a).is_empty());
}

#[test]
fn messages_to_and_from_several_peers_use_each_peer_s_own_key() {
    let (mut a, mut b, mut rng) = pair();
    let mut carol: C = Client::new("carol", KeyPair::generate(&mut rng)).unwrap();
    let all = [
        ("alice", a.public_key()),
        ("bob", b.public_key()),
        ("carol", carol.public_key()),
    ];
    drain_transmit(&mut carol);
    handle(&mut carol, &directory(true, &all));
    for c in [&mut a, &mut b] {
        handle(c, &directory(false, &all));
        events(c);
    }
    events(&mut carol);
    for round in 0..2 {
        a.send_to("bob", &format!("to bob {round}"), &mut rng)
            .unwrap();
        let to_bob = relay_of(&mut a);
        a.send_to("carol", &format!("to carol {round}"), &mut rng)
            .unwrap();
        let to_carol = relay_of(&mut a);
        handle(&mut b, to_bob.as_bytes());
        assert_eq!(events(&mut b), [format!("[alice] to bob {round}")]);
        handle(&mut carol, to_carol.as_bytes());
        assert_eq!(events(&mut carol), [format!("[alice] to carol {round}")]);
        // And alice reads both of them.
        b.send_to("alice", "from bob", &mut rng).unwrap();
        carol.send_to("alice", "from carol", &mut rng).unwrap();
        let (rb, rc) = (relay_of(&mut b), relay_of(&mut carol));
        handle(&mut a, rc.as_bytes());
        assert_eq!(events(&mut a), ["[carol] from carol"]);
        handle(&mut a, rb.as_bytes());
        assert_eq!(events(&mut a), ["[bob] from bob"]);
    }
}

#[test]
fn debug_output_names_the_user_and_state_and_no_key_material() {
    let (a, _b, _) = pair();
    let shown = format!("{a:?}");
    assert!(shown.starts_with("Client {"), "{shown}");
    assert!(shown.contains("user: \"alice\""), "{shown}");
    assert!(shown.contains("users: 2"), "{shown}");
    assert!(!shown.contains("keys"), "no key material: {shown}");
}
