//! Protocol v2's prekeys (§5.5) on a real `seguro serve` (real TLS, raw protocol lines
//! built with core's v2 functions): a v2 client publishes its signed prekey and
//! one-time prekeys, another fetches bundles while the owner is connected or not, each
//! one-time prekey is handed out once (also across a restart), a bad signature is
//! refused, unknown users and users without prekeys get an error and the connection
//! stays, and a corrupt prekey file stops the server with a clear error.

mod common;

use base64ct::{Base64, Encoding};
use common::*;
use seguro_core::identity::Identity;
use seguro_core::v2::json::{self as v2json, AckStatus, HelloV2, OpkList, V2Message};

const CAPS: &str = "v2 sas receipts";

fn identity() -> Identity {
    Identity::generate(&mut rand_core::OsRng, 0)
}

fn emit(m: &V2Message<'_>) -> String {
    let mut out = vec![0u8; m.line_len()];
    let n = m.emit_line(&mut out).unwrap();
    String::from_utf8(out[..n - 1].to_vec()).unwrap()
}

/// A full v2 registration (hello, challenge, proof, welcome).
fn register_v2(server: &Server, user: &str, id: &Identity) -> Raw {
    let mut r = Raw::connect(server.port(), server.pinned());
    let v2 = HelloV2 {
        caps: CAPS,
        ed: id.ed25519_public(),
        bind: id.bind(user).unwrap(),
    };
    let mut out = vec![0u8; 1024];
    let n = v2json::emit_hello_line(user, &id.public(), &v2, &mut out).unwrap();
    r.send_line(std::str::from_utf8(&out[..n - 1]).unwrap());
    let line = r.read_line(T).expect("challenge");
    let mut scratch = vec![0u8; line.len()];
    let Ok(V2Message::Challenge { nonce, eph, caps }) =
        v2json::parse(line.as_bytes(), &mut scratch)
    else {
        panic!("expected a challenge, got {line}");
    };
    assert!(caps.split(' ').any(|w| w == "prekeys"), "{caps}");
    let spki = seguro::pin::key_pin_of(&server.pinned()).unwrap().sha256;
    let p = id.hello_proof(user, &spki, &nonce, &eph).unwrap();
    r.send_line(&emit(&V2Message::Proof {
        sig: p.sig,
        mac: p.mac,
    }));
    let w = r.read_line(T).expect("welcome");
    assert!(w.starts_with("{\"type\":\"welcome\""), "{w}");
    r
}

/// A `prekeys` line: signed prekey `spk_id` signed by `signer`, one-time prekeys `opks`.
fn prekeys_line(id: u32, signer: &Identity, spk_id: u32, opks: &[(u32, [u8; 32])]) -> String {
    let spk = [spk_id as u8 ^ 0x5a; 32];
    let mut buf = vec![0u8; 56 * opks.len().max(1)];
    let list = OpkList::encode(opks, &mut buf).unwrap();
    emit(&V2Message::Prekeys {
        id,
        spk_id,
        spk,
        spk_sig: signer.sign_prekey(spk_id, &spk),
        opks: list,
    })
}

fn opks(ids: std::ops::Range<u32>) -> Vec<(u32, [u8; 32])> {
    ids.map(|i| (i, [i as u8 + 1; 32])).collect()
}

/// Reads the next v2 line of kind `ty` (skipping directory pushes), parsed by `f`.
fn next<R>(r: &mut Raw, ty: &str, f: impl Fn(V2Message<'_>) -> Option<R>) -> R {
    let needle = format!("\"type\":\"{ty}\"");
    let line = r.read_until(&needle, T);
    let mut scratch = vec![0u8; line.len()];
    let m = v2json::parse(line.as_bytes(), &mut scratch)
        .unwrap_or_else(|e| panic!("{e:?} parsing {line}"));
    f(m).unwrap_or_else(|| panic!("unexpected {line}"))
}

fn ack(r: &mut Raw) -> (u32, AckStatus) {
    next(r, "ack", |m| match m {
        V2Message::Ack { id, status } => Some((id, status)),
        _ => None,
    })
}

/// A bundle for `user`: the one-time prekey id (if any), after checking it verifies
/// and names `owner`'s keys. Errors come back as their code.
fn bundle(r: &mut Raw, user: &str, owner: &Identity) -> Result<Option<u32>, String> {
    r.send_line(&emit(&V2Message::BundleReq { user }));
    let line = loop {
        let l = r.read_line(T).expect("a bundle or an error");
        if l.contains("\"type\":\"bundle\"") || l.contains("\"type\":\"error\"") {
            break l;
        }
    };
    let mut scratch = vec![0u8; line.len()];
    match v2json::parse(line.as_bytes(), &mut scratch) {
        Ok(V2Message::Bundle(b)) => {
            b.verify().unwrap();
            assert_eq!(b.peer.name, user);
            assert_eq!(b.peer.keys.x, owner.public());
            assert_eq!(b.peer.keys.ed, owner.ed25519_public());
            if let Some((id, key)) = b.opk {
                assert_eq!(key, [id as u8 + 1; 32]);
            }
            Ok(b.opk.map(|(id, _)| id))
        }
        Ok(V2Message::Error { code, user: u, .. }) => {
            assert_eq!(u, Some(user));
            Err(code.as_str().to_owned())
        }
        other => panic!("{other:?} from {line}"),
    }
}

#[test]
fn prekeys_are_checked_stored_and_handed_out_once_to_anyone_while_the_owner_is_offline() {
    let dir = TempDir::new("v2-prekeys");
    let mut server = Server::start(&dir, &[]);
    let alice = identity();
    let bob = identity();
    let mut a = register_v2(&server, "alice", &alice);
    let mut b = register_v2(&server, "bob", &bob);

    // No prekeys yet; a name nobody registered.
    assert_eq!(bundle(&mut b, "alice", &alice).unwrap_err(), "no_prekeys");
    assert_eq!(bundle(&mut b, "zed", &alice).unwrap_err(), "unknown_user");

    // A signed prekey signed by someone else, or a signature for another id: refused.
    a.send_line(&prekeys_line(1, &bob, 7, &opks(0..3)));
    assert_eq!(ack(&mut a), (1, AckStatus::Refused));
    let spk = [1u8; 32];
    let mut buf = [0u8; 64];
    a.send_line(&emit(&V2Message::Prekeys {
        id: 2,
        spk_id: 7,
        spk,
        spk_sig: alice.sign_prekey(8, &spk),
        opks: OpkList::encode(&[], &mut buf).unwrap(),
    }));
    assert_eq!(ack(&mut a), (2, AckStatus::Refused));
    assert_eq!(bundle(&mut b, "alice", &alice).unwrap_err(), "no_prekeys");

    // 10 one-time prekeys, then 12 more (8 and 9 are held already) of which 6 fit.
    a.send_line(&prekeys_line(3, &alice, 7, &opks(0..10)));
    assert_eq!(ack(&mut a), (3, AckStatus::Stored));
    a.send_line(&prekeys_line(4, &alice, 7, &opks(8..20)));
    assert_eq!(ack(&mut a), (4, AckStatus::Full));

    // bob takes 5 while alice is connected; then alice leaves.
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(bundle(&mut b, "alice", &alice).unwrap().unwrap());
    }
    drop(a);
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Offline: a third client still gets bundles, with the following prekeys.
    let carol = identity();
    let mut c = register_v2(&server, "carol", &carol);
    for _ in 0..5 {
        got.push(bundle(&mut c, "alice", &alice).unwrap().unwrap());
    }
    assert_eq!(got, (0..10).collect::<Vec<_>>());

    // The store survives a restart (killed, not stopped): prekeys handed out stay gone.
    server.assert_alive();
    drop(server);
    let path = dir.path("prekeys");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("seguro-prekeys 1\nuser alice "), "{text}");
    let server = Server::start(&dir, &[]);
    let mut b = register_v2(&server, "bob", &bob);
    for want in 10..16 {
        assert_eq!(bundle(&mut b, "alice", &alice).unwrap(), Some(want));
    }
    // None left: a bundle without a one-time prekey (X3DH without DH4).
    assert_eq!(bundle(&mut b, "alice", &alice).unwrap(), None);
    // The connection stayed up through all of it.
    b.send_line("{\"type\":\"list\"}");
    assert!(b.read_until("\"users\"", T).contains("\"bob\""));
}

#[test]
fn an_owner_running_out_of_one_time_prekeys_is_told() {
    let dir = TempDir::new("v2-prekeys-low");
    let server = Server::start(&dir, &[]);
    let alice = identity();
    let bob = identity();
    let mut a = register_v2(&server, "alice", &alice);
    let mut b = register_v2(&server, "bob", &bob);
    a.send_line(&prekeys_line(1, &alice, 1, &opks(0..5)));
    assert_eq!(ack(&mut a), (1, AckStatus::Stored));
    // 5 → 4 left: nothing; 4 → 3: prekeys_low 3.
    assert_eq!(bundle(&mut b, "alice", &alice).unwrap(), Some(0));
    assert_eq!(bundle(&mut b, "alice", &alice).unwrap(), Some(1));
    let left = next(&mut a, "prekeys_low", |m| match m {
        V2Message::PrekeysLow { left } => Some(left),
        _ => None,
    });
    assert_eq!(left, 3);
    // Publishing too few says so at once.
    a.send_line(&prekeys_line(2, &alice, 2, &[]));
    assert_eq!(ack(&mut a), (2, AckStatus::Stored));
    let left = next(&mut a, "prekeys_low", |m| match m {
        V2Message::PrekeysLow { left } => Some(left),
        _ => None,
    });
    assert_eq!(left, 3);
}

#[test]
fn a_v1_client_cannot_publish_or_fetch_prekeys() {
    let dir = TempDir::new("v2-prekeys-v1");
    let server = Server::start(&dir, &[]);
    let alice = identity();
    let _a = register_v2(&server, "alice", &alice);
    let mut v1 = Raw::register(server.port(), server.pinned(), "dave");
    v1.send_line(&prekeys_line(1, &alice, 1, &opks(0..2)));
    let l = v1.read_until("\"error\"", T);
    assert!(!l.contains("\"ack\""), "{l}");
    v1.send_line(&emit(&V2Message::BundleReq { user: "alice" }));
    let l = v1.read_until("\"error\"", T);
    assert!(!l.contains("\"bundle\""), "{l}");
    assert!(!std::fs::read_to_string(dir.path("prekeys")).is_ok_and(|t| t.contains("alice")));
}

#[test]
fn a_corrupt_or_newer_prekey_file_stops_the_server_with_a_clear_error() {
    let k = Base64::encode_string(&[0u8; 32]);
    let bad_record = format!("seguro-prekeys 1\nuser alice {k} {k}\n");
    for (content, says) in [
        (bad_record.as_bytes(), "line 2"),
        (b"\xff\xfe garbage".as_slice(), "not text"),
        (b"seguro-prekeys 9\n".as_slice(), "newer Seguro"),
    ] {
        let dir = TempDir::new("v2-prekeys-corrupt");
        drop(Server::start(&dir, &[]));
        let path = dir.path("prekeys");
        std::fs::write(&path, content).unwrap();
        let mut child = std::process::Command::new(BIN)
            .args(["serve", "--bind", "127.0.0.1:0", "--cert"])
            .arg(dir.path("server.crt"))
            .arg("--key")
            .arg(dir.path("server.key"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let err = Lines::default();
        err.spawn_reader(child.stderr.take().unwrap());
        assert_eq!(wait_exit(&mut child, T), Some(1), "{:?}", err.all());
        let line = err.wait("the error", T, |l| l.starts_with("error: "));
        assert!(
            line.contains("prekey file")
                && line.contains(path.to_str().unwrap())
                && line.contains(says),
            "{line}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), content);
    }
}

#[test]
fn without_name_reservation_bundles_are_served_only_while_the_owner_is_connected() {
    let dir = TempDir::new("v2-prekeys-noexpiry");
    let server = Server::start(&dir, &["--name-expiry", "0"]);
    let alice = identity();
    let bob = identity();
    let mut a = register_v2(&server, "alice", &alice);
    let mut b = register_v2(&server, "bob", &bob);
    a.send_line(&prekeys_line(1, &alice, 1, &opks(0..8)));
    assert_eq!(ack(&mut a), (1, AckStatus::Stored));
    assert_eq!(bundle(&mut b, "alice", &alice).unwrap(), Some(0));
    drop(a);
    // Nobody owns the name once alice is gone: her prekeys are not handed out (another
    // identity may take the name), and are dropped.
    let deadline = std::time::Instant::now() + T;
    loop {
        match bundle(&mut b, "alice", &alice) {
            Err(code) => {
                assert_eq!(code, "unknown_user");
                break;
            }
            Ok(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            Ok(got) => panic!("still served after the owner left: {got:?}"),
        }
    }
    // Another identity takes the name and publishes: its bundle, none of alice's keys.
    let eve = identity();
    let mut e = register_v2(&server, "alice", &eve);
    e.send_line(&prekeys_line(1, &eve, 2, &opks(50..52)));
    assert_eq!(ack(&mut e), (1, AckStatus::Stored));
    assert_eq!(bundle(&mut b, "alice", &eve).unwrap(), Some(50));
}

/// The `relay2` line alice sends, with `from` forged (the server must overwrite it).
fn relay2_line(to: &str, id: Option<u32>, body: &str) -> String {
    let l = emit(&V2Message::Relay2 {
        to: Some(to),
        from: Some("mallory"),
        id,
        body,
    });
    assert!(l.contains("mallory"), "{l}");
    l
}

#[test]
fn relay2_is_forwarded_from_the_sender_and_acknowledged_and_bad_ones_are_refused() {
    let dir = TempDir::new("v2-relay2");
    let server = Server::start(&dir, &[]);
    let alice = identity();
    let bob = identity();
    let mut a = register_v2(&server, "alice", &alice);
    let mut b = register_v2(&server, "bob", &bob);
    let mut dave = Raw::register(server.port(), server.pinned(), "dave");

    let body = Base64::encode_string(&[0x02u8; 100]);
    a.send_line(&relay2_line("bob", Some(17), &body));
    assert_eq!(ack(&mut a), (17, AckStatus::Forwarded));
    let got = b.read_until("\"relay2\"", T);
    assert_eq!(
        got,
        format!("{{\"type\":\"relay2\",\"from\":\"alice\",\"body\":\"{body}\"}}")
    );
    // Without an id: forwarded, no ack (the next ack is the next relay's).
    a.send_line(&relay2_line("bob", None, &body));
    assert!(b.read_until("\"relay2\"", T).contains("\"from\":\"alice\""));
    // A v1 client cannot read v2, nobody is called zed: not_connected.
    a.send_line(&relay2_line("dave", Some(18), &body));
    assert_eq!(ack(&mut a), (18, AckStatus::NotConnected));
    a.send_line(&relay2_line("zed", Some(19), &body));
    assert_eq!(ack(&mut a), (19, AckStatus::NotConnected));
    // The largest body passes, one more byte does not; garbage is a bad message.
    let max = Base64::encode_string(&[7u8; 1127]);
    a.send_line(&relay2_line("bob", Some(20), &max));
    assert_eq!(ack(&mut a), (20, AckStatus::Forwarded));
    assert!(b.read_until("\"relay2\"", T).contains(&max));
    let over = Base64::encode_string(&[7u8; 1128]);
    a.send_line(&relay2_line("bob", Some(21), &over));
    let e = a.read_until("\"error\"", T);
    assert!(e.contains("\"code\":\"too_large\""), "{e}");
    let longer = Base64::encode_string(&[7u8; 1200]);
    a.send_line(&relay2_line("bob", Some(21), &longer));
    let e = a.read_until("\"error\"", T);
    assert!(e.contains("\"code\":\"too_large\""), "{e}");
    a.send_line(&relay2_line("bob", Some(22), "!!!!"));
    let e = a.read_until("\"error\"", T);
    assert!(e.contains("\"code\":\"bad_message\""), "{e}");
    a.send_line("{\"type\":\"relay2\",\"to\":\"bob\"}");
    let e = a.read_until("\"error\"", T);
    assert!(e.contains("\"code\":\"bad_message\""), "{e}");
    // A v1 client's relay2 is an unknown message to v1, and reaches nobody.
    dave.send_line(&relay2_line("bob", Some(1), &body));
    let e = dave.read_until("\"error\"", T);
    assert!(!e.contains("\"code\""), "{e}");
    // Nothing of the refused ones reached bob; both connections are up.
    a.send_line(&relay2_line("bob", Some(23), &body));
    assert_eq!(ack(&mut a), (23, AckStatus::Forwarded));
    let next = b.read_until("\"relay2\"", T);
    assert!(next.contains(&body) && !next.contains("dave"), "{next}");
    drop(b);
    std::thread::sleep(std::time::Duration::from_millis(300));
    a.send_line(&relay2_line("bob", Some(24), &body));
    assert_eq!(ack(&mut a), (24, AckStatus::NotConnected));
}
