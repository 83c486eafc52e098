//! The client's half of protocol v2's `hello` (`docs/protocol-v2.md` §2.1, §2.2, §4):
//! the `v2` field, the proof answering a challenge (checked with the server's own
//! verification), the v2 section of the welcome with every binding checked, and the
//! notice of a v1-only server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use seguro_core::client::{Client, Event, LineError, V2_CAPS};
use seguro_core::identity::Identity;
use seguro_core::msg::{self, Message, UserList};
use seguro_core::v2::identity::{Challenge, HelloProof, IdentityError};
use seguro_core::v2::json::{
    self as v2json, DirectoryKind, DirectoryV2, HelloV2, V2Message, V2UserList,
};

type C = Client<8, 256, 2>;

const SPKI: [u8; 32] = [0x5a; 32];

fn ident(rng: &mut ChaCha20Rng) -> Identity {
    Identity::generate(rng, 0)
}

fn v2_client(rng: &mut ChaCha20Rng, user: &str) -> (C, Identity) {
    let id = ident(rng);
    let copy = Identity::from_secrets(&id.secrets().0, &id.secrets().1, 0);
    // Any key pair first: enabling v2 replaces it with the identity's.
    let mut c = C::new(user, seguro_core::e2ee::KeyPair::generate(rng)).unwrap();
    c.enable_v2(copy, SPKI).unwrap();
    assert!(c.v2_enabled());
    assert_eq!(c.public_key(), id.public());
    (c, id)
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

/// Every event of the last line, as text (names of the v2 ones).
fn events(c: &mut C) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(e) = c.poll_event() {
        out.push(match e {
            Event::Registered { .. } => "registered".to_owned(),
            Event::ServerV1Only => "v1 only".to_owned(),
            Event::BadBinding { user, more } => format!("bad binding {user} +{more}"),
            // Joins and leaves are v1's business (tested elsewhere).
            Event::Change(_) => continue,
            other => format!("{other:?}"),
        });
    }
    out
}

fn emit(m: &V2Message<'_>) -> Vec<u8> {
    let mut out = vec![0u8; m.line_len()];
    let n = m.emit_line(&mut out).unwrap();
    out.truncate(n - 1);
    out
}

fn challenge_line(ch: &Challenge) -> Vec<u8> {
    emit(&V2Message::Challenge {
        nonce: *ch.nonce(),
        eph: *ch.eph_public(),
        caps: "v2",
    })
}

fn proof_of(line: &[u8]) -> HelloProof {
    let line = &line[..line.len() - 1];
    let mut scratch = vec![0u8; line.len()];
    match v2json::parse(line, &mut scratch).unwrap() {
        V2Message::Proof { sig, mac } => HelloProof { sig, mac },
        other => panic!("not a proof: {other:?}"),
    }
}

/// A user as a v2 directory lists it.
struct Listed {
    name: &'static str,
    x: [u8; 32],
    v2: Option<(String, [u8; 32], [u8; 64])>,
}

fn listed(name: &'static str, id: &Identity) -> Listed {
    Listed {
        name,
        x: id.public(),
        v2: Some((
            V2_CAPS.to_owned(),
            id.ed25519_public(),
            id.bind(name).unwrap(),
        )),
    }
}

fn directory_line(kind: DirectoryKind, users: &[Listed]) -> Vec<u8> {
    let mut b1 = vec![0u8; 4096];
    let v1 = UserList::pack(users.iter().map(|u| (u.name, &u.x)), &mut b1).unwrap();
    let v2: Vec<(&str, HelloV2<'_>)> = users
        .iter()
        .filter_map(|u| {
            u.v2.as_ref().map(|(caps, ed, bind)| {
                (
                    u.name,
                    HelloV2 {
                        caps,
                        ed: *ed,
                        bind: *bind,
                    },
                )
            })
        })
        .collect();
    let mut b2 = vec![0u8; 4096];
    let v2 = V2UserList::pack(v2.iter().map(|(n, h)| (*n, h)), &mut b2).unwrap();
    let mut out = vec![0u8; 8192];
    let n = v2json::emit_directory_line(kind, &v1, &DirectoryV2 { seq: 0, users: v2 }, &mut out)
        .unwrap();
    out.truncate(n - 1);
    out
}

fn v1_welcome(users: &[Listed]) -> Vec<u8> {
    let mut b1 = vec![0u8; 4096];
    let v1 = UserList::pack(users.iter().map(|u| (u.name, &u.x)), &mut b1).unwrap();
    let m = Message::Welcome { users: v1 };
    let mut out = vec![0u8; m.line_len()];
    let n = m.emit_line(&mut out).unwrap();
    out.truncate(n - 1);
    out
}

#[test]
fn the_hello_carries_the_v2_field_with_a_valid_binding_and_the_v1_fields() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (mut c, id) = v2_client(&mut rng, "ana");
    let hello = transmit(&mut c).unwrap();
    let line = &hello[..hello.len() - 1];
    let mut scratch = vec![0u8; line.len()];
    match msg::parse(line, &mut scratch).unwrap() {
        Message::Hello { user, key, token } => {
            assert_eq!((user, key, token), ("ana", id.public(), None));
        }
        other => panic!("{other:?}"),
    }
    let v2 = v2json::parse_hello_v2(line).unwrap().unwrap();
    assert_eq!(v2.caps, "v2 receipts");
    assert_eq!(v2.ed, id.ed25519_public());
    seguro_core::v2::identity::verify_binding("ana", &id.public_keys(), &v2.bind).unwrap();
    // Nothing more until the server answers.
    assert_eq!(transmit(&mut c), None);

    // A join token still travels beside the v2 field.
    c.set_token(Some(
        seguro_core::invite::Token::new("abcdefghijklmnop").unwrap(),
    ));
    c.reset();
    let hello = transmit(&mut c).unwrap();
    let line = &hello[..hello.len() - 1];
    let mut scratch = vec![0u8; line.len()];
    assert!(matches!(
        msg::parse(line, &mut scratch).unwrap(),
        Message::Hello {
            token: Some("abcdefghijklmnop"),
            ..
        }
    ));
    assert!(v2json::parse_hello_v2(line).unwrap().is_some());
}

#[test]
fn without_v2_the_hello_is_exactly_v1_and_a_challenge_is_a_bad_line() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let kp = seguro_core::e2ee::KeyPair::generate(&mut rng);
    let key = kp.public();
    let mut c = C::new("ana", kp).unwrap();
    assert!(!c.v2_enabled());
    let hello = transmit(&mut c).unwrap();
    let m = Message::Hello {
        user: "ana",
        key,
        token: None,
    };
    let mut want = vec![0u8; m.line_len()];
    let n = m.emit_line(&mut want).unwrap();
    assert_eq!(hello, want[..n]);
    let ch = Challenge::generate(&mut rng);
    assert!(feed(&mut c, &challenge_line(&ch)).is_err());
    assert_eq!(transmit(&mut c), None);
    feed(&mut c, &v1_welcome(&[])).unwrap();
    // No v1-only notice: this client never offered v2.
    assert_eq!(events(&mut c), ["registered"]);
    assert_eq!(c.server_v2(), None);
}

#[test]
fn the_proof_answers_this_challenge_for_this_server_and_a_v2_welcome_is_checked() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let (mut c, ana) = v2_client(&mut rng, "ana");
    transmit(&mut c).unwrap();
    let ch = Challenge::generate(&mut rng);
    feed(&mut c, &challenge_line(&ch)).unwrap();
    assert!(events(&mut c).is_empty());
    let proof = proof_of(&transmit(&mut c).unwrap());
    assert_eq!(transmit(&mut c), None);
    let bind = ana.bind("ana").unwrap();
    ch.verify("ana", &ana.public_keys(), &bind, &SPKI, &proof)
        .unwrap();
    // Tied to this server and this challenge.
    assert_eq!(
        ch.verify("ana", &ana.public_keys(), &bind, &[0; 32], &proof),
        Err(IdentityError::BadSignature)
    );
    let other = Challenge::generate(&mut rng);
    assert!(
        other
            .verify("ana", &ana.public_keys(), &bind, &SPKI, &proof)
            .is_err()
    );
    // A second challenge on the same connection is not answered.
    assert!(feed(&mut c, &challenge_line(&other)).is_err());
    assert_eq!(transmit(&mut c), None);

    let beto = ident(&mut rng);
    let dana = ident(&mut rng);
    let mallory = ident(&mut rng);
    let carla = ident(&mut rng);
    let fede0 = ident(&mut rng);
    let mut bad = listed("dana", &dana);
    // The server lists dana with a binding signed by another key.
    bad.v2.as_mut().unwrap().2 = mallory.bind("dana").unwrap();
    let mut no_cap = listed("eli", &carla);
    no_cap.v2.as_mut().unwrap().0 = "sas receipts".to_owned();
    no_cap.v2.as_mut().unwrap().2 = carla.bind("eli").unwrap();
    let welcome = directory_line(
        DirectoryKind::Welcome,
        &[
            listed("ana", &ana),
            listed("beto", &beto),
            Listed {
                name: "carla",
                x: carla.public(),
                v2: None,
            },
            bad,
            no_cap,
            {
                let mut gus = listed("gus", &fede0);
                gus.v2.as_mut().unwrap().0 = "sas v2".to_owned();
                gus
            },
        ],
    );
    feed(&mut c, &welcome).unwrap();
    let ev = events(&mut c);
    assert_eq!(ev[0], "registered");
    assert!(ev.contains(&"bad binding dana +0".to_owned()), "{ev:?}");
    assert!(!ev.contains(&"v1 only".to_owned()), "{ev:?}");
    assert_eq!(c.server_v2(), Some(true));
    assert!(c.peer_v2("beto"));
    assert!(c.peer_v2("ana"));
    assert_eq!(c.peer_ed25519("beto"), Some(beto.ed25519_public()));
    assert!(!c.peer_v2("carla"), "a v1 user");
    assert!(!c.peer_v2("dana"), "a bad binding");
    assert!(!c.peer_v2("eli"), "no v2 capability");
    assert!(!c.peer_v2("nobody"));
    // Receipts only to v2 peers that announced them.
    assert_eq!(V2_CAPS, "v2 receipts");
    assert!(c.peer_v2("gus") && !c.peer_takes_receipts("gus"));
    assert!(c.peer_takes_receipts("beto"));
    assert!(!c.peer_takes_receipts("eli"), "receipts without v2");
    assert!(!c.peer_takes_receipts("carla") && !c.peer_takes_receipts("nobody"));

    // A `users` push with the v2 section: a newcomer is v2 as well.
    let fede = ident(&mut rng);
    let push = directory_line(
        DirectoryKind::Users,
        &[
            listed("ana", &ana),
            listed("beto", &beto),
            listed("fede", &fede),
        ],
    );
    feed(&mut c, &push).unwrap();
    events(&mut c);
    assert!(c.peer_v2("fede") && c.peer_v2("beto"));

    // A v1 `users` push where beto has another key: beto is no longer v2.
    let mut b1 = vec![0u8; 1024];
    let other_key = ident(&mut rng).public();
    let users = [("ana", ana.public()), ("beto", other_key)];
    let v1 = UserList::pack(users.iter().map(|(n, k)| (*n, k)), &mut b1).unwrap();
    let m = Message::Users { users: v1 };
    let mut line = vec![0u8; m.line_len()];
    let n = m.emit_line(&mut line).unwrap();
    feed(&mut c, &line[..n - 1]).unwrap();
    events(&mut c);
    assert!(!c.peer_v2("beto"));
    assert_eq!(
        c.peer_ed25519("beto"),
        None,
        "the binding was for beto's old key"
    );
    assert!(c.peer_v2("ana"));
}

#[test]
fn a_v2_record_speaks_for_its_own_name_and_key_only() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let (mut c, ana) = v2_client(&mut rng, "ana");
    transmit(&mut c).unwrap();
    let ch = Challenge::generate(&mut rng);
    feed(&mut c, &challenge_line(&ch)).unwrap();
    transmit(&mut c).unwrap();
    let beto = ident(&mut rng);
    // The directory lists carla, a v1 user, with beto's key: beto's v2 record says
    // nothing about her.
    let welcome = directory_line(
        DirectoryKind::Welcome,
        &[
            listed("ana", &ana),
            listed("beto", &beto),
            Listed {
                name: "carla",
                x: beto.public(),
                v2: None,
            },
        ],
    );
    feed(&mut c, &welcome).unwrap();
    events(&mut c);
    assert!(c.peer_v2("beto"));
    assert_eq!(c.peer_ed25519("beto"), Some(beto.ed25519_public()));
    assert!(!c.peer_v2("carla"));
    assert_eq!(c.peer_ed25519("carla"), None);
}

#[test]
fn the_chat_passes_the_presented_servers_spki_to_the_proof() {
    use seguro_core::chat::{Chat, RecentKeys};
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let (c, ana) = v2_client(&mut rng, "ana");
    let mut chat = Chat::new(c, RecentKeys::<4>::new());
    // The host connected to the backup key of an invite: that SPKI is the one proved.
    let backup = [0x33; 32];
    chat.set_server_spki(backup);
    let mut buf = [0u8; 1024];
    chat.poll_transmit(&mut buf).unwrap().unwrap();
    let ch = Challenge::generate(&mut rng);
    let line = challenge_line(&ch);
    let mut scratch = vec![0u8; line.len()];
    chat.handle_line(&line, &mut scratch, 0);
    let n = chat.poll_transmit(&mut buf).unwrap().unwrap();
    let proof = proof_of(&buf[..n]);
    let bind = ana.bind("ana").unwrap();
    ch.verify("ana", &ana.public_keys(), &bind, &backup, &proof)
        .unwrap();
    assert!(
        ch.verify("ana", &ana.public_keys(), &bind, &SPKI, &proof)
            .is_err()
    );
}

#[test]
fn several_bad_bindings_are_counted_in_one_warning() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let (mut c, ana) = v2_client(&mut rng, "ana");
    transmit(&mut c).unwrap();
    feed(&mut c, &challenge_line(&Challenge::generate(&mut rng))).unwrap();
    transmit(&mut c).unwrap();
    let (b, d) = (ident(&mut rng), ident(&mut rng));
    let mut lb = listed("beto", &b);
    lb.v2.as_mut().unwrap().2[0] ^= 1;
    let mut ld = listed("dana", &d);
    ld.v2.as_mut().unwrap().1 = b.ed25519_public();
    feed(
        &mut c,
        &directory_line(DirectoryKind::Welcome, &[listed("ana", &ana), lb, ld]),
    )
    .unwrap();
    let ev = events(&mut c);
    assert!(ev.contains(&"bad binding beto +1".to_owned()), "{ev:?}");
    assert!(!c.peer_v2("beto") && !c.peer_v2("dana"));
}

#[test]
fn a_welcome_without_challenge_means_v1_only_said_once_until_it_changes() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let (mut c, ana) = v2_client(&mut rng, "ana");
    let me = || Listed {
        name: "ana",
        x: ana.public(),
        v2: None,
    };
    transmit(&mut c).unwrap();
    // A v1 server's welcome; even one carrying a v2 section is not trusted without
    // the challenge.
    feed(
        &mut c,
        &directory_line(DirectoryKind::Welcome, &[listed("ana", &ana)]),
    )
    .unwrap();
    assert_eq!(events(&mut c), ["registered", "v1 only"]);
    assert_eq!(c.server_v2(), Some(false));
    assert!(!c.peer_v2("ana"));
    // Reconnecting to the same v1 server: not said again.
    c.reset();
    transmit(&mut c).unwrap();
    feed(&mut c, &v1_welcome(&[me()])).unwrap();
    assert_eq!(events(&mut c), ["registered"]);
    // A v2 server, then a v1 one again: said again.
    c.reset();
    transmit(&mut c).unwrap();
    feed(&mut c, &challenge_line(&Challenge::generate(&mut rng))).unwrap();
    transmit(&mut c).unwrap();
    feed(
        &mut c,
        &directory_line(DirectoryKind::Welcome, &[listed("ana", &ana)]),
    )
    .unwrap();
    assert_eq!(events(&mut c), ["registered"]);
    assert_eq!(c.server_v2(), Some(true));
    assert!(c.peer_v2("ana"));
    c.reset();
    transmit(&mut c).unwrap();
    feed(&mut c, &v1_welcome(&[me()])).unwrap();
    assert_eq!(events(&mut c), ["registered", "v1 only"]);
    assert!(!c.peer_v2("ana"));
}

#[test]
fn a_low_order_challenge_key_is_refused_without_a_proof() {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let (mut c, ana) = v2_client(&mut rng, "ana");
    transmit(&mut c).unwrap();
    let line = emit(&V2Message::Challenge {
        nonce: [1; 32],
        eph: [0; 32],
        caps: "v2",
    });
    assert_eq!(
        feed(&mut c, &line),
        Err(LineError::BadChallenge(IdentityError::WeakKey))
    );
    assert_eq!(transmit(&mut c), None);
    // The spki the host sets per connection goes into the next proof.
    c.reset();
    c.set_server_spki([9; 32]);
    transmit(&mut c).unwrap();
    let ch = Challenge::generate(&mut rng);
    feed(&mut c, &challenge_line(&ch)).unwrap();
    let proof = proof_of(&transmit(&mut c).unwrap());
    let bind = ana.bind("ana").unwrap();
    ch.verify("ana", &ana.public_keys(), &bind, &[9; 32], &proof)
        .unwrap();
    assert!(
        ch.verify("ana", &ana.public_keys(), &bind, &SPKI, &proof)
            .is_err()
    );
}
