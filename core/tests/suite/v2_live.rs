//! The client's heartbeats with a v2 server (`docs/protocol-v2.md` §11): a `ping` after
//! the interval without sending, a stall when nothing arrives within the allowance,
//! any line (a `pong` included) clearing it, server pings answered with `pong`, and no
//! pings at all with a v1 server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use seguro_core::client::{Client, LineError};
use seguro_core::identity::Identity;
use seguro_core::msg::{Message, UserList};
use seguro_core::v2::identity::Challenge;
use seguro_core::v2::json::{self as v2json, DirectoryKind, DirectoryV2, V2Message, V2UserList};

type C = Client<8, 256, 2>;

fn client(rng: &mut ChaCha20Rng) -> C {
    let id = Identity::generate(rng, 0);
    let mut c = C::new("ana", seguro_core::e2ee::KeyPair::generate(rng)).unwrap();
    c.enable_v2(id, [7; 32]).unwrap();
    c
}

fn transmit(c: &mut C) -> Option<Vec<u8>> {
    let mut buf = [0u8; 1024];
    c.poll_transmit(&mut buf)
        .unwrap()
        .map(|n| buf[..n].to_vec())
}

fn feed(c: &mut C, line: &[u8]) -> Result<(), LineError> {
    let mut scratch = vec![0u8; line.len()];
    c.handle_line(line, &mut scratch)
}

fn emit(m: &V2Message<'_>) -> Vec<u8> {
    let mut out = vec![0u8; m.line_len()];
    let n = m.emit_line(&mut out).unwrap();
    out.truncate(n - 1);
    out
}

fn welcome(v2: bool) -> Vec<u8> {
    let mut b1 = [0u8; 8];
    let users = UserList::pack(core::iter::empty(), &mut b1).unwrap();
    let mut out = vec![0u8; 512];
    let n = if v2 {
        let mut b2 = [0u8; 8];
        let v2users = V2UserList::pack(core::iter::empty(), &mut b2).unwrap();
        v2json::emit_directory_line(
            DirectoryKind::Welcome,
            &users,
            &DirectoryV2 {
                seq: 0,
                users: v2users,
            },
            &mut out,
        )
        .unwrap()
    } else {
        Message::Welcome { users }.emit_line(&mut out).unwrap()
    };
    out.truncate(n - 1);
    out
}

/// A client registered with a v2 server at `now` ms.
fn on_v2_server(rng: &mut ChaCha20Rng, now: u64) -> C {
    let mut c = client(rng);
    c.handle_timeout(now);
    assert!(transmit(&mut c).is_some(), "hello");
    let ch = Challenge::generate(rng);
    feed(
        &mut c,
        &emit(&V2Message::Challenge {
            nonce: *ch.nonce(),
            eph: *ch.eph_public(),
            caps: "v2 ping",
        }),
    )
    .unwrap();
    assert!(transmit(&mut c).is_some(), "proof");
    assert_eq!(c.poll_timeout(), None, "no heartbeats before the welcome");
    feed(&mut c, &welcome(true)).unwrap();
    assert!(c.is_registered());
    assert_eq!(c.server_v2(), Some(true));
    c
}

fn parsed(line: &[u8]) -> String {
    let line = &line[..line.len() - 1];
    let mut s = vec![0u8; line.len()];
    format!("{:?}", v2json::parse(line, &mut s).unwrap())
}

#[test]
fn a_ping_after_twenty_seconds_of_silence_and_a_stall_ten_seconds_later() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut c = on_v2_server(&mut rng, 5_000);
    assert_eq!(c.poll_timeout(), Some(25_000));
    c.handle_timeout(24_999);
    assert_eq!(transmit(&mut c), None);
    c.handle_timeout(25_000);
    assert_eq!(
        transmit(&mut c).unwrap(),
        b"{\"type\":\"ping\",\"id\":\"1\"}\n"
    );
    assert_eq!(transmit(&mut c), None);
    assert_eq!(c.poll_timeout(), Some(35_000));
    c.handle_timeout(34_999);
    assert!(!c.is_stalled());
    c.handle_timeout(35_000);
    assert!(c.is_stalled());
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(transmit(&mut c), None);
    // Reconnecting clears it; heartbeats start again with the next v2 welcome.
    c.reset();
    assert!(!c.is_stalled());
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn any_line_after_a_ping_clears_it() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let mut c = on_v2_server(&mut rng, 0);
    c.handle_timeout(20_000);
    assert!(parsed(&transmit(&mut c).unwrap()).contains("Ping"));
    c.handle_timeout(29_000);
    feed(&mut c, &emit(&V2Message::Pong { id: 1 })).unwrap();
    assert!(c.poll_event().is_none(), "a pong shows nothing");
    c.handle_timeout(39_999);
    assert!(!c.is_stalled());
    assert_eq!(transmit(&mut c), None);
    c.handle_timeout(40_000);
    assert_eq!(
        transmit(&mut c).unwrap(),
        b"{\"type\":\"ping\",\"id\":\"2\"}\n"
    );
    // Another line (a `server` text) also answers a ping.
    c.handle_timeout(45_000);
    feed(&mut c, br#"{"type":"server","text":"hi"}"#).unwrap();
    c.handle_timeout(55_000);
    assert!(!c.is_stalled());
}

#[test]
fn sending_postpones_the_ping() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut c = on_v2_server(&mut rng, 0);
    c.handle_timeout(15_000);
    c.send_server("hello").unwrap();
    assert!(transmit(&mut c).is_some());
    assert_eq!(c.poll_timeout(), Some(35_000));
    c.handle_timeout(34_000);
    assert_eq!(transmit(&mut c), None);
}

#[test]
fn a_server_ping_is_answered_with_a_pong_at_once() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let mut c = on_v2_server(&mut rng, 0);
    c.handle_timeout(1_000);
    feed(&mut c, &emit(&V2Message::Ping { id: 41 })).unwrap();
    assert!(c.poll_event().is_none());
    assert_eq!(
        transmit(&mut c).unwrap(),
        b"{\"type\":\"pong\",\"id\":\"41\"}\n"
    );
    assert_eq!(transmit(&mut c), None);
    // The pong counts as sent.
    assert_eq!(c.poll_timeout(), Some(21_000));
    // Garbage that calls itself a ping is still a bad line.
    assert!(feed(&mut c, br#"{"type":"ping","id":5}"#).is_err());
    assert_eq!(transmit(&mut c), None);
}

#[test]
fn shorter_timings_for_the_host() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut c = client(&mut rng);
    c.set_ping_timings(1_000, 500);
    let mut c2 = on_v2_server(&mut rng, 0);
    c2.set_ping_timings(1_000, 500);
    assert_eq!(c2.poll_timeout(), Some(1_000));
    c2.handle_timeout(1_000);
    assert!(transmit(&mut c2).is_some());
    assert_eq!(c2.poll_timeout(), Some(1_500));
    c2.handle_timeout(1_500);
    assert!(c2.is_stalled());
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn a_v1_server_gets_no_pings_and_a_ping_from_it_is_a_bad_line() {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let mut c = client(&mut rng);
    c.handle_timeout(0);
    assert!(transmit(&mut c).is_some());
    feed(&mut c, &welcome(false)).unwrap();
    assert!(c.is_registered());
    assert_eq!(c.server_v2(), Some(false));
    assert_eq!(c.poll_timeout(), None);
    c.handle_timeout(u64::MAX / 2);
    assert_eq!(transmit(&mut c), None);
    assert!(!c.is_stalled());
    assert!(feed(&mut c, &emit(&V2Message::Ping { id: 1 })).is_err());
    assert_eq!(transmit(&mut c), None);

    // A client without v2 (a board) never pings either.
    let kp = seguro_core::e2ee::KeyPair::generate(&mut rng);
    let mut b = C::new("bo", kp).unwrap();
    b.handle_timeout(0);
    assert!(transmit(&mut b).is_some());
    feed(&mut b, &welcome(false)).unwrap();
    b.handle_timeout(1_000_000);
    assert_eq!(b.poll_timeout(), None);
    assert_eq!(transmit(&mut b), None);
}

fn dir(seq: u32, delta: v2json::DirDelta<'_>) -> Vec<u8> {
    emit(&V2Message::Dir { seq, delta })
}

fn join<'a>(user: &'a str, x: [u8; 32], v2: Option<v2json::HelloV2<'a>>) -> v2json::DirDelta<'a> {
    v2json::DirDelta::Join(v2json::DirEntry { user, x, v2 })
}

fn key<'a>(user: &'a str, x: [u8; 32], v2: Option<v2json::HelloV2<'a>>) -> v2json::DirDelta<'a> {
    v2json::DirDelta::Key(v2json::DirEntry { user, x, v2 })
}

fn names(c: &C) -> Vec<(String, [u8; 32])> {
    c.directory()
        .iter()
        .map(|e| (e.name().to_owned(), *e.key()))
        .collect()
}

fn changes(c: &mut C) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(e) = c.poll_event() {
        out.push(match e {
            seguro_core::client::Event::Change(ch) => format!("{ch:?}"),
            seguro_core::client::Event::BadBinding { user, more } => {
                format!("bad binding {user} {more}")
            }
            other => format!("{other:?}"),
        });
    }
    out
}

#[test]
fn deltas_join_change_and_leave_in_name_order() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut c = on_v2_server(&mut rng, 0);
    let _ = changes(&mut c);
    let bo = Identity::generate(&mut rng, 0);
    let bind = bo.bind("bo").unwrap();
    let v2 = v2json::HelloV2 {
        caps: "v2",
        ed: bo.ed25519_public(),
        bind,
    };
    feed(&mut c, &dir(1, join("zed", [3; 32], None))).unwrap();
    assert_eq!(changes(&mut c).len(), 1);
    feed(&mut c, &dir(2, join("bo", bo.public(), Some(v2)))).unwrap();
    let ev = changes(&mut c);
    assert!(
        ev.iter().any(|e| e.contains("Joined") && e.contains("bo")),
        "{ev:?}"
    );
    assert_eq!(
        names(&c),
        [("bo".to_owned(), bo.public()), ("zed".to_owned(), [3; 32])]
    );
    assert!(c.peer_v2("bo"));
    assert!(!c.peer_v2("zed"));
    assert!(!c.peer_takes_receipts("bo"), "bo announced v2 only");
    // bo again with receipts (a key delta with the same key), then without v2.
    let with_receipts = v2json::HelloV2 {
        caps: "v2 receipts",
        ..v2
    };
    feed(&mut c, &dir(3, key("bo", bo.public(), Some(with_receipts)))).unwrap();
    assert!(c.peer_takes_receipts("bo"));
    let receipts_only = v2json::HelloV2 {
        caps: "receipts",
        ..v2
    };
    feed(&mut c, &dir(4, key("bo", bo.public(), Some(receipts_only)))).unwrap();
    assert!(!c.peer_v2("bo") && !c.peer_takes_receipts("bo"));
    feed(&mut c, &dir(5, key("bo", bo.public(), Some(v2)))).unwrap();
    let _ = changes(&mut c);
    // Another key for zed.
    feed(
        &mut c,
        &dir(
            6,
            v2json::DirDelta::Key(v2json::DirEntry {
                user: "zed",
                x: [4; 32],
                v2: None,
            }),
        ),
    )
    .unwrap();
    let ev = changes(&mut c);
    assert!(ev.iter().any(|e| e.contains("KeyChanged")), "{ev:?}");
    assert_eq!(c.key_of("zed"), Some(&[4; 32]));
    // An old or repeated delta is ignored.
    feed(&mut c, &dir(6, v2json::DirDelta::Leave { user: "zed" })).unwrap();
    assert_eq!(c.key_of("zed"), Some(&[4; 32]));
    feed(&mut c, &dir(7, v2json::DirDelta::Leave { user: "bo" })).unwrap();
    let ev = changes(&mut c);
    assert!(ev.iter().any(|e| e.contains("Left")), "{ev:?}");
    assert!(!c.peer_v2("bo"));
    assert_eq!(names(&c), [("zed".to_owned(), [4; 32])]);
    assert_eq!(transmit(&mut c), None, "no list without a gap");
}

#[test]
fn a_bad_binding_in_a_delta_is_reported_and_the_user_is_v1() {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let mut c = on_v2_server(&mut rng, 0);
    let _ = changes(&mut c);
    let bo = Identity::generate(&mut rng, 0);
    let v2 = v2json::HelloV2 {
        caps: "v2",
        ed: bo.ed25519_public(),
        // Bound to another name.
        bind: bo.bind("mallory").unwrap(),
    };
    feed(&mut c, &dir(1, join("bo", bo.public(), Some(v2)))).unwrap();
    let ev = changes(&mut c);
    assert!(ev.iter().any(|e| e == "bad binding bo 0"), "{ev:?}");
    assert!(!c.peer_v2("bo"));
    assert_eq!(c.key_of("bo"), Some(&bo.public()));
}

#[test]
fn a_gap_asks_for_the_list_and_its_seq_resets_the_count() {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let mut c = on_v2_server(&mut rng, 0);
    feed(&mut c, &dir(1, join("a", [1; 32], None))).unwrap();
    assert!(transmit(&mut c).is_none());
    feed(&mut c, &dir(3, join("c", [3; 32], None))).unwrap();
    assert_eq!(transmit(&mut c).unwrap(), b"{\"type\":\"list\"}\n");
    assert_eq!(c.key_of("c"), None, "a delta after a gap is not applied");
    // Deltas that arrive before the answer wait for it.
    feed(&mut c, &dir(2, join("b", [2; 32], None))).unwrap();
    assert_eq!(c.key_of("b"), None);
    assert!(transmit(&mut c).is_none(), "one list");
    // The answer: the whole directory, deltas continue after seq 5.
    let mut b1 = vec![0u8; 512];
    let users =
        UserList::pack([("a", &[1; 32]), ("b", &[2; 32]), ("c", &[3; 32])], &mut b1).unwrap();
    let mut b2 = [0u8; 8];
    let v2users = V2UserList::pack(core::iter::empty(), &mut b2).unwrap();
    let mut out = vec![0u8; 1024];
    let n = v2json::emit_directory_line(
        DirectoryKind::Users,
        &users,
        &DirectoryV2 {
            seq: 5,
            users: v2users,
        },
        &mut out,
    )
    .unwrap();
    feed(&mut c, &out[..n - 1]).unwrap();
    assert_eq!(names(&c).len(), 3);
    feed(&mut c, &dir(5, v2json::DirDelta::Leave { user: "a" })).unwrap();
    assert!(c.key_of("a").is_some(), "seq 5 is in the list already");
    feed(&mut c, &dir(6, v2json::DirDelta::Leave { user: "a" })).unwrap();
    assert!(c.key_of("a").is_none());
    // A reconnect starts the count over with the next welcome.
    c.reset();
    assert!(transmit(&mut c).is_some());
    feed(&mut c, &dir(1, join("x", [9; 32], None))).unwrap_err();
}

#[test]
fn a_v1_server_cannot_send_deltas() {
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let mut c = client(&mut rng);
    assert!(transmit(&mut c).is_some());
    feed(&mut c, &welcome(false)).unwrap();
    assert!(feed(&mut c, &dir(1, join("x", [9; 32], None))).is_err());
    assert_eq!(c.key_of("x"), None);
}

/// The chat layer passes the host's clock to the heartbeat machine: a ping leaves
/// through `Chat` after the interval, as it does through the bare client.
#[test]
fn the_chat_layer_drives_the_heartbeats() {
    use seguro_core::chat::{Chat, RecentKeys};
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let mut chat = Chat::new(client(&mut rng), RecentKeys::<8>::new());
    let tx = |chat: &mut Chat<RecentKeys<8>, 8, 256, 2>| {
        let mut buf = [0u8; 1024];
        chat.poll_transmit(&mut buf)
            .unwrap()
            .map(|n| buf[..n].to_vec())
    };
    chat.handle_timeout(1_000);
    assert!(tx(&mut chat).is_some(), "hello");
    let ch = Challenge::generate(&mut rng);
    let line = emit(&V2Message::Challenge {
        nonce: *ch.nonce(),
        eph: *ch.eph_public(),
        caps: "v2 ping",
    });
    let mut scratch = vec![0u8; 1024];
    chat.handle_line(&line, &mut scratch, 1_000);
    while chat.poll_line().is_some() {}
    assert!(tx(&mut chat).is_some(), "proof");
    chat.handle_line(&welcome(true), &mut scratch, 1_000);
    while chat.poll_line().is_some() {}
    assert!(chat.is_registered());
    while tx(&mut chat).is_some() {}
    chat.handle_timeout(1_000);
    assert_eq!(chat.client().poll_timeout(), Some(21_000));
    chat.handle_timeout(20_999);
    assert_eq!(tx(&mut chat), None);
    chat.handle_timeout(21_000);
    let ping = tx(&mut chat).expect("a ping after 20 s of silence");
    assert!(parsed(&ping).starts_with("Ping"), "{}", parsed(&ping));
    chat.handle_timeout(31_000);
    assert!(chat.client().is_stalled());
}

#[test]
fn a_message_held_for_an_unknown_sender_opens_at_the_delta_that_lists_it() {
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    let mut ana = on_v2_server(&mut rng, 0);
    let _ = changes(&mut ana);
    while transmit(&mut ana).is_some() {}
    // carol (a v1 client) knows ana's key; ana's directory does not list carol yet.
    let mut carol = C::new("carol", seguro_core::e2ee::KeyPair::generate(&mut rng)).unwrap();
    while transmit(&mut carol).is_some() {}
    let mut b = [0u8; 128];
    let ka = ana.public_key();
    let users = UserList::pack([("ana", &ka)], &mut b).unwrap();
    let line = emit_v1(&Message::Welcome { users });
    let mut scratch = vec![0u8; line.len()];
    carol.handle_line(&line, &mut scratch).unwrap();
    carol.send_to("ana", "hola desde carol", &mut rng).unwrap();
    let mut relay = transmit(&mut carol).unwrap();
    assert_eq!(relay.pop(), Some(b'\n'));
    feed(&mut ana, &relay).unwrap();
    assert_eq!(changes(&mut ana), Vec::<String>::new(), "held, not shown");
    // The delta that lists carol opens it.
    feed(&mut ana, &dir(1, join("carol", carol.public_key(), None))).unwrap();
    let ev = changes(&mut ana);
    assert!(ev.iter().any(|e| e.contains("hola desde carol")), "{ev:?}");
}

fn emit_v1(m: &Message<'_>) -> Vec<u8> {
    let mut out = vec![0u8; m.line_len()];
    let n = m.emit_line(&mut out).unwrap();
    out.truncate(n - 1);
    out
}

#[test]
fn the_chat_layer_passes_shorter_heartbeat_timings_on() {
    use seguro_core::chat::{Chat, RecentKeys};
    let mut rng = ChaCha20Rng::seed_from_u64(17);
    let mut chat = Chat::new(on_v2_server(&mut rng, 1_000), RecentKeys::<8>::new());
    while chat.poll_line().is_some() {}
    let mut buf = [0u8; 1024];
    while chat.poll_transmit(&mut buf).unwrap().is_some() {}
    chat.set_ping_timings(5_000, 2_000);
    chat.handle_timeout(1_000);
    assert_eq!(chat.client().poll_timeout(), Some(6_000));
}
