//! Protocol v2's `hello` on a real `seguro serve` (real TLS, raw protocol lines built
//! with core's v2 functions): the challenge and its proof, the v2 section of the
//! welcome, name ownership across restarts, and the attacks the proof stops (a forged
//! signature or MAC, a proof answering another connection's challenge, another key for
//! a registered name, a v1 `hello` for one). Reference (v1) clients keep v1.

mod common;

use std::time::Duration;

use base64ct::{Base64, Encoding};
use common::*;
use rustls::pki_types::CertificateDer;
use seguro_core::identity::{Identity, PublicIdentity};
use seguro_core::msg::{self, Message};
use seguro_core::v2::identity::{HelloProof, verify_binding};
use seguro_core::v2::json::{self as v2json, HelloV2, V2Message};

const CAPS: &str = "v2 sas receipts";

fn identity() -> Identity {
    Identity::generate(&mut rand_core::OsRng, 0)
}

fn spki_of(cert: &CertificateDer<'_>) -> [u8; 32] {
    seguro::pin::key_pin_of(cert).unwrap().sha256
}

fn hello_v2_line(user: &str, id: &Identity) -> String {
    let v2 = HelloV2 {
        caps: CAPS,
        ed: id.ed25519_public(),
        bind: id.bind(user).unwrap(),
    };
    let mut out = vec![0u8; 1024];
    let n = v2json::emit_hello_line(user, &id.public(), &v2, &mut out).unwrap();
    String::from_utf8(out[..n - 1].to_vec()).unwrap()
}

fn v1_hello_line(user: &str, key: &[u8; 32]) -> String {
    format!(
        "{{\"type\": \"hello\", \"user\": \"{user}\", \"pub\": \"{}\"}}",
        Base64::encode_string(key)
    )
}

fn emit(m: &V2Message<'_>) -> String {
    let mut out = vec![0u8; m.line_len()];
    let n = m.emit_line(&mut out).unwrap();
    String::from_utf8(out[..n - 1].to_vec()).unwrap()
}

/// The challenge's nonce and ephemeral key (panics on anything else).
fn challenge_of(line: &str) -> ([u8; 32], [u8; 32], String) {
    let mut scratch = vec![0u8; line.len()];
    match v2json::parse(line.as_bytes(), &mut scratch) {
        Ok(V2Message::Challenge { nonce, eph, caps }) => (nonce, eph, caps.to_owned()),
        other => panic!("expected a challenge, got {other:?} from {line}"),
    }
}

/// The `code` of a v2 error line.
fn code_of(line: &str) -> String {
    let mut scratch = vec![0u8; line.len()];
    match v2json::parse(line.as_bytes(), &mut scratch) {
        Ok(V2Message::Error { code, .. }) => code.as_str().to_owned(),
        other => panic!("expected an error with a code, got {other:?} from {line}"),
    }
}

/// Connects, sends a v2 hello, returns the connection and the challenge.
fn start_v2(server: &Server, user: &str, id: &Identity) -> (Raw, [u8; 32], [u8; 32]) {
    let mut r = Raw::connect(server.port(), server.pinned());
    r.send_line(&hello_v2_line(user, id));
    let line = r.read_line(T).expect("challenge");
    let (nonce, eph, caps) = challenge_of(&line);
    assert!(caps.split(' ').any(|w| w == "v2"), "{caps}");
    (r, nonce, eph)
}

fn proof_line(p: &HelloProof) -> String {
    emit(&V2Message::Proof {
        sig: p.sig,
        mac: p.mac,
    })
}

/// A full v2 registration; returns the connection and its welcome line.
fn register_v2(server: &Server, user: &str, id: &Identity) -> (Raw, String) {
    let (mut r, nonce, eph) = start_v2(server, user, id);
    let spki = spki_of(&server.pinned());
    let p = id.hello_proof(user, &spki, &nonce, &eph).unwrap();
    r.send_line(&proof_line(&p));
    let w = r.read_line(T).expect("welcome");
    assert!(
        w.starts_with("{\"type\":\"welcome\""),
        "expected welcome, got {w}"
    );
    (r, w)
}

/// The refusal a connection gets, and that it is closed after it.
fn refusal(r: &mut Raw) -> String {
    let line = r.read_line(T).expect("an error line");
    let code = code_of(&line);
    assert!(r.closed_within(T), "not closed after {line}");
    code
}

/// v1's users of a directory line: name and X25519 key.
type V1Users = Vec<(String, [u8; 32])>;
/// The v2 section's users: name, caps, Ed25519 key, binding.
type V2Users = Vec<(String, String, [u8; 32], [u8; 64])>;

/// v1's users of a welcome, and the v2 section's users with their entries.
fn directory(line: &str) -> (V1Users, V2Users) {
    let mut s1 = vec![0u8; line.len()];
    let v1 = match msg::parse(line.as_bytes(), &mut s1) {
        Ok(Message::Welcome { users } | Message::Users { users }) => {
            users.iter().map(|(n, k)| (n.to_owned(), *k)).collect()
        }
        other => panic!("not a directory: {other:?}"),
    };
    let mut s2 = vec![0u8; line.len()];
    let v2 = match v2json::parse_directory_v2(line.as_bytes(), &mut s2).unwrap() {
        Some(d) => {
            assert_eq!(d.seq, 0);
            d.users
                .iter()
                .map(|(n, v)| (n.to_owned(), v.caps.to_owned(), v.ed, v.bind))
                .collect()
        }
        None => Vec::new(),
    };
    (v1, v2)
}

#[test]
fn a_v2_client_gets_a_challenge_and_after_its_proof_a_v2_welcome_while_v1_clients_see_v1() {
    let dir = TempDir::new("v2-welcome");
    let server = Server::start(&dir, &[]);
    let alice = identity();
    let (mut a, w) = register_v2(&server, "alice", &alice);
    let (v1, v2) = directory(&w);
    assert_eq!(v1, vec![("alice".to_owned(), alice.public())]);
    assert_eq!(v2.len(), 1);
    assert_eq!((v2[0].0.as_str(), v2[0].1.as_str()), ("alice", CAPS));
    assert_eq!(v2[0].2, alice.ed25519_public());
    verify_binding("alice", &alice.public_keys(), &v2[0].3).unwrap();

    // A v1 (reference) client: no challenge, a plain v1 welcome listing both, no v2.
    let mut carol = Raw::connect(server.port(), server.pinned());
    carol.send_line(&v1_hello_line("carol", &carol.key.clone()));
    let wc = carol.read_line(T).expect("welcome");
    assert!(!wc.contains("\"v2\"") && !wc.contains("challenge"), "{wc}");
    let (v1c, v2c) = directory(&wc);
    assert_eq!(v1c.len(), 2);
    assert!(v2c.is_empty());

    // A second v2 client sees alice as v2 and carol as v1.
    let bob = identity();
    let (_b, wb) = register_v2(&server, "bob", &bob);
    let (v1b, v2b) = directory(&wb);
    let names: Vec<&str> = v1b.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["alice", "bob", "carol"]);
    let v2_names: Vec<&str> = v2b.iter().map(|(n, ..)| n.as_str()).collect();
    assert_eq!(v2_names, ["alice", "bob"]);
    for (name, _, ed, bind) in &v2b {
        let x = v1b.iter().find(|(n, _)| n == name).unwrap().1;
        verify_binding(name, &PublicIdentity { x, ed: *ed }, bind).unwrap();
    }
    // alice (v2) learns of bob through a `dir` delta with his v2 entry (§10); carol
    // (v1) through the plain v1 push.
    let pushed = a.read_until("\"bob\"", T);
    let mut scratch = vec![0u8; pushed.len()];
    match v2json::parse(pushed.as_bytes(), &mut scratch) {
        Ok(V2Message::Dir {
            delta: v2json::DirDelta::Join(e),
            ..
        }) => {
            assert_eq!((e.user, e.x), ("bob", bob.public()));
            assert_eq!(e.v2.map(|v| v.ed), Some(bob.ed25519_public()));
        }
        other => panic!("expected a dir join, got {other:?} from {pushed}"),
    }
    let pushed_v1 = carol.read_until("\"bob\"", T);
    assert!(!pushed_v1.contains("\"v2\""), "{pushed_v1}");
    assert_eq!(directory(&pushed_v1).0.len(), 3);
    // The v1 client still chats as before: a relay from carol reaches alice.
    let relay = format!(
        "{{\"type\":\"relay\",\"to\":\"alice\",\"from\":\"carol\",\"nonce\":\"{}\",\"cipher\":\"{}\",\"alg\":\"X25519+AESGCM\"}}",
        Base64::encode_string(&[1u8; 12]),
        Base64::encode_string(&[2u8; 17])
    );
    carol.send_line(&relay);
    let got = a.read_until("\"relay\"", T);
    assert!(got.contains("\"from\":\"carol\""), "{got}");
}

#[test]
fn forged_or_replayed_proofs_are_refused_with_bad_proof() {
    let dir = TempDir::new("v2-bad-proof");
    let server = Server::start(&dir, &[]);
    let spki = spki_of(&server.pinned());
    let alice = identity();

    // A signature with one bit flipped.
    let (mut r, nonce, eph) = start_v2(&server, "alice", &alice);
    let mut p = alice.hello_proof("alice", &spki, &nonce, &eph).unwrap();
    p.sig[10] ^= 1;
    r.send_line(&proof_line(&p));
    assert_eq!(refusal(&mut r), "bad_proof");

    // A MAC with one bit flipped.
    let (mut r, nonce, eph) = start_v2(&server, "alice", &alice);
    let mut p = alice.hello_proof("alice", &spki, &nonce, &eph).unwrap();
    p.mac[0] ^= 0x80;
    r.send_line(&proof_line(&p));
    assert_eq!(refusal(&mut r), "bad_proof");

    // A proof made for another server (another SPKI).
    let (mut r, nonce, eph) = start_v2(&server, "alice", &alice);
    let p = alice.hello_proof("alice", &[7; 32], &nonce, &eph).unwrap();
    r.send_line(&proof_line(&p));
    assert_eq!(refusal(&mut r), "bad_proof");

    // A valid proof of one connection's challenge, replayed on another connection.
    let (mut first, nonce1, eph1) = start_v2(&server, "alice", &alice);
    let (mut second, _, _) = start_v2(&server, "alice", &alice);
    let p1 = alice.hello_proof("alice", &spki, &nonce1, &eph1).unwrap();
    second.send_line(&proof_line(&p1));
    assert_eq!(refusal(&mut second), "bad_proof");
    // ... while it is good on its own connection.
    first.send_line(&proof_line(&p1));
    let w = first.read_line(T).expect("welcome");
    assert!(w.starts_with("{\"type\":\"welcome\""), "{w}");
    drop(first);

    // Something else than the proof first.
    let bob = identity();
    let (mut r, _, _) = start_v2(&server, "bob", &bob);
    r.send_line("{\"type\":\"list\"}");
    assert_eq!(refusal(&mut r), "bad_proof");

    // A binding that does not verify: refused before any challenge.
    let mut r = Raw::connect(server.port(), server.pinned());
    let other = identity();
    let v2 = HelloV2 {
        caps: CAPS,
        ed: bob.ed25519_public(),
        bind: other.bind("bob").unwrap(),
    };
    let mut out = vec![0u8; 1024];
    let n = v2json::emit_hello_line("bob", &bob.public(), &v2, &mut out).unwrap();
    r.send_line(std::str::from_utf8(&out[..n - 1]).unwrap());
    assert_eq!(refusal(&mut r), "bad_hello");
    let mut server = server;
    server.assert_alive();
}

#[test]
fn a_registered_name_is_refused_to_other_keys_and_to_v1_and_survives_a_restart() {
    let dir = TempDir::new("v2-registry");
    let mut server = Server::start(&dir, &[]);
    let alice = identity();
    let (a, _) = register_v2(&server, "alice", &alice);
    drop(a);
    // Never-registered names are v1 as before: dave comes and goes with new keys.
    for _ in 0..2 {
        let r = Raw::register(server.port(), server.pinned(), "dave");
        drop(r);
        std::thread::sleep(Duration::from_millis(200));
    }
    let registry = dir.path("name-registry");
    wait_until(|| std::fs::read_to_string(&registry).is_ok_and(|t| t.contains("name alice ")));

    let check_refusals = |server: &Server| {
        // Another identity (v2) for alice.
        let mallory = identity();
        let mut r = Raw::connect(server.port(), server.pinned());
        r.send_line(&hello_v2_line("alice", &mallory));
        let line = r.read_line(T).expect("refusal");
        assert_eq!(code_of(&line), "name_taken");
        assert!(
            msg_text(&line).contains("belongs to another key; it is released after 90 days unused"),
            "{line}"
        );
        assert!(r.closed_within(T));
        // A v1 hello with alice's own X25519 key (anyone can copy a public key).
        let mut r = Raw::connect(server.port(), server.pinned());
        r.send_line(&v1_hello_line("alice", &alice.public()));
        assert_eq!(refusal(&mut r), "proof_required");
        // A v1 hello with another key.
        let mut r = Raw::connect(server.port(), server.pinned());
        r.send_line(&v1_hello_line("alice", &r.key.clone()));
        assert_eq!(refusal(&mut r), "name_taken");
        // Alice herself gets her name back.
        let (_a, w) = register_v2(server, "alice", &alice);
        assert_eq!(directory(&w).1.len(), 1);
    };
    check_refusals(&server);

    server.assert_alive();
    drop(server);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&registry).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let text = std::fs::read_to_string(&registry).unwrap();
    assert!(text.starts_with("seguro-names 1\n"), "{text}");
    assert!(!text.contains("dave"), "{text}");
    let server = Server::start(&dir, &[]);
    check_refusals(&server);
}

#[test]
fn a_name_unused_for_longer_than_the_expiry_goes_to_a_new_key() {
    let dir = TempDir::new("v2-expiry");
    let old = identity();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let record = |name: &str, last_seen: u64| {
        format!(
            "name {name} {} {} {last_seen} {last_seen}\n",
            Base64::encode_string(&old.public()),
            Base64::encode_string(&old.ed25519_public())
        )
    };
    // erin last seen 3 days ago, frank 1 day ago; the expiry is 2 days.
    let text = format!(
        "seguro-names 1\n{}{}",
        record("erin", now - 3 * 86_400),
        record("frank", now - 86_400)
    );
    std::fs::write(dir.path("name-registry"), text).unwrap();
    let server = Server::start(&dir, &["--name-expiry", "2"]);
    let new = identity();
    let (_e, _) = register_v2(&server, "erin", &new);
    let mut r = Raw::connect(server.port(), server.pinned());
    r.send_line(&hello_v2_line("frank", &new));
    let line = r.read_line(T).expect("refusal");
    assert_eq!(code_of(&line), "name_taken");
    assert!(
        msg_text(&line).contains("released after 2 days unused"),
        "{line}"
    );
}

#[test]
fn a_corrupt_or_newer_registry_stops_the_server_with_a_clear_error() {
    for (content, says) in [
        (
            "seguro-names 1\nname alice !!! x 1 2\n".as_bytes(),
            "line 2",
        ),
        (b"\xff\xfe garbage".as_slice(), "not text"),
        (b"seguro-names 9\n".as_slice(), "newer Seguro"),
        (b"".as_slice(), "is not"),
    ] {
        let dir = TempDir::new("v2-corrupt");
        // A certificate first, so that only the registry can fail.
        drop(Server::start(&dir, &[]));
        let path = dir.path("name-registry");
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
            line.contains("name registry")
                && line.contains(path.to_str().unwrap())
                && line.contains(says),
            "{line}"
        );
        // Never silently reset.
        assert_eq!(std::fs::read(&path).unwrap(), content);
    }
}

fn msg_text(line: &str) -> String {
    error_text(line).unwrap_or_default()
}

fn wait_until(pred: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + T;
    while !pred() {
        assert!(std::time::Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn seguro_chat_registers_its_name_through_v2_and_another_identity_is_refused() {
    let dir = TempDir::new("v2-chat");
    let server = Server::start(&dir, &[]);
    let cert = dir.path("server.crt");
    let state = TempDir::new("v2-chat-state");
    let state_arg = state.0.to_str().unwrap().to_owned();
    let mut ana = Chat::start("ana", server.port(), &cert, &["--state-dir", &state_arg]);
    ana.out.wait_for("[SYS] connected to ");
    server.err.wait_for("v2 proof accepted");
    // A reference-style client chats with it as always.
    let mut raw = Raw::register(server.port(), server.pinned(), "rawv1");
    ana.out.wait_for("[SYS] rawv1 joined");
    let _ = &mut raw;
    ana.send("/server hola");
    ana.out.wait_exact("[SERVER] echo: hola");
    let (code, out) = ana.finish();
    assert_eq!(code, Some(0));
    assert!(
        !out.all().iter().any(|l| l.contains("protocol v1 only")),
        "{:?}",
        out.all()
    );
    let registry = std::fs::read_to_string(dir.path("name-registry")).unwrap();
    assert!(registry.contains("name ana "), "{registry}");

    // Another identity (a fresh state directory) for ana: refused, and told why.
    let mut impostor = Chat::start("ana", server.port(), &cert, &[]);
    impostor
        .out
        .wait_for("the name ana belongs to another key; it is released after 90 days unused");
    impostor.kill();
    // The owner again: welcome.
    let mut ana = Chat::start("ana", server.port(), &cert, &["--state-dir", &state_arg]);
    ana.out.wait_for("[SYS] connected to ");
    ana.kill();
}

#[test]
fn with_a_name_expiry_of_zero_no_name_is_reserved() {
    let dir = TempDir::new("v2-expiry-zero");
    let server = Server::start(&dir, &["--name-expiry", "0"]);
    let (a, _) = register_v2(&server, "alice", &identity());
    drop(a);
    std::thread::sleep(Duration::from_millis(300));
    // Another identity, then a v1 client, take the name as in v1.
    let (b, _) = register_v2(&server, "alice", &identity());
    drop(b);
    std::thread::sleep(Duration::from_millis(300));
    let _c = Raw::register(server.port(), server.pinned(), "alice");
}
