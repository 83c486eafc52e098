//! The client against servers that are not Seguro's: the reference server's lines
//! (it forwards relays as they come and never pushes directories), and a hostile
//! server's. The pair tests against Seguro's own router are in host-std/tests/pair.rs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::client_common;

use client_common::{C, directory, drain_transmit};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use seguro_core::client::{Client, Event, Undeliverable};
use seguro_core::directory::Change;
use seguro_core::e2ee::KeyPair;

fn feed(c: &mut C, line: &[u8]) -> Vec<String> {
    let mut scratch = vec![0u8; line.len()];
    c.handle_line(line, &mut scratch).unwrap();
    let mut seen = Vec::new();
    while let Some(ev) = c.poll_event() {
        seen.push(match ev {
            Event::Change(Change::Joined { name, .. }) => format!("joined {name}"),
            Event::Message { from, text } => format!("[{from}] {text}"),
            Event::Undeliverable { from, reason } => format!("undeliverable {from}: {reason:?}"),
            other => format!("{other:?}"),
        });
    }
    seen
}

/// alice and carol registered with a reference server; carol's relay to alice, as the
/// reference forwards it, while alice's directory does not list carol yet.
fn carol_writes_to_alice_unknown() -> (C, ChaCha20Rng, [u8; 32], Vec<u8>) {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut alice: C = Client::new("alice", KeyPair::generate(&mut rng)).unwrap();
    let mut carol: C = Client::new("carol", KeyPair::generate(&mut rng)).unwrap();
    let (ka, kc) = (alice.public_key(), carol.public_key());
    drain_transmit(&mut alice);
    drain_transmit(&mut carol);
    feed(&mut alice, &directory(true, &[("alice", ka)]));
    feed(
        &mut carol,
        &directory(true, &[("alice", ka), ("carol", kc)]),
    );
    carol.send_to("alice", "hi from carol", &mut rng).unwrap();
    let mut relay = drain_transmit(&mut carol);
    assert_eq!(relay.pop(), Some(b'\n'));
    (alice, rng, kc, relay)
}

#[test]
fn relay_from_unknown_sender_is_held_until_the_directory_arrives() {
    let (mut alice, _, kc, relay) = carol_writes_to_alice_unknown();
    let ka = alice.public_key();
    assert!(
        feed(&mut alice, &relay).is_empty(),
        "shown before decrypting"
    );
    // alice held the message and asks for the directory.
    assert_eq!(drain_transmit(&mut alice), b"{\"type\":\"list\"}\n");
    let seen = feed(
        &mut alice,
        &directory(false, &[("alice", ka), ("carol", kc)]),
    );
    assert_eq!(seen, ["joined carol", "[carol] hi from carol"]);
}

#[test]
fn relay_from_a_sender_who_left_is_reported() {
    let (mut alice, _, _, relay) = carol_writes_to_alice_unknown();
    let ka = alice.public_key();
    feed(&mut alice, &relay);
    assert_eq!(drain_transmit(&mut alice), b"{\"type\":\"list\"}\n");
    // carol left before the list was answered.
    let seen = feed(&mut alice, &directory(false, &[("alice", ka)]));
    assert_eq!(
        seen,
        [format!(
            "undeliverable carol: {:?}",
            Undeliverable::UnknownSender
        )]
    );
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
