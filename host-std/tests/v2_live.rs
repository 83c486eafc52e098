//! Protocol v2's heartbeats (`docs/protocol-v2.md` §11) with real processes and real
//! TLS: a `seguro serve` answers a v2 client's `ping` with `pong` and closes a silent v2
//! connection after `--v2-idle-timeout`, while v1 connections keep v1's rules (a `ping`
//! is an unknown message, silence is judged by `--idle-timeout`); a real `seguro chat`
//! behind a TCP proxy that stops forwarding reports the stall and reconnects, and what
//! is typed meanwhile arrives.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use rustls::pki_types::CertificateDer;
use seguro_core::identity::Identity;
use seguro_core::msg::{self, Message, UserList};
use seguro_core::v2::json::{self as v2json, DirDelta, HelloV2, V2Message};

fn emit(m: &V2Message<'_>) -> String {
    let mut out = vec![0u8; m.line_len()];
    let n = m.emit_line(&mut out).unwrap();
    String::from_utf8(out[..n - 1].to_vec()).unwrap()
}

/// A v2 registration with a real proof; returns the connection after its welcome.
fn register_v2(server: &Server, user: &str) -> Raw {
    register_v2_welcome(server, user).0
}

/// [`register_v2`], with the welcome line.
fn register_v2_welcome(server: &Server, user: &str) -> (Raw, String) {
    let id = Identity::generate(&mut rand_core::OsRng, 0);
    let mut r = Raw::connect(server.port(), server.pinned());
    let v2 = HelloV2 {
        caps: "v2",
        ed: id.ed25519_public(),
        bind: id.bind(user).unwrap(),
    };
    let mut out = vec![0u8; 1024];
    let n = v2json::emit_hello_line(user, &id.public(), &v2, &mut out).unwrap();
    r.send_line(std::str::from_utf8(&out[..n - 1]).unwrap());
    let line = r.read_line(T).expect("challenge");
    let mut scratch = vec![0u8; line.len()];
    let (nonce, eph) = match v2json::parse(line.as_bytes(), &mut scratch) {
        Ok(V2Message::Challenge { nonce, eph, caps }) => {
            assert!(caps.split(' ').any(|w| w == "ping"), "{caps}");
            (nonce, eph)
        }
        other => panic!("expected a challenge, got {other:?}"),
    };
    let spki = spki_of(&server.pinned());
    let p = id.hello_proof(user, &spki, &nonce, &eph).unwrap();
    r.send_line(&emit(&V2Message::Proof {
        sig: p.sig,
        mac: p.mac,
    }));
    let w = r.read_line(T).expect("welcome");
    assert!(w.starts_with("{\"type\":\"welcome\""), "{w}");
    (r, w)
}

fn spki_of(cert: &CertificateDer<'_>) -> [u8; 32] {
    seguro::pin::key_pin_of(cert).unwrap().sha256
}

#[test]
fn a_v2_ping_gets_a_pong_and_a_v1_ping_stays_an_unknown_message() {
    let dir = TempDir::new("v2-ping");
    let server = Server::start(&dir, &[]);
    let mut v2 = register_v2(&server, "ana");
    v2.send_line(r#"{"type":"ping","id":"41"}"#);
    assert_eq!(v2.read_until("pong", T), r#"{"type":"pong","id":"41"}"#);
    // A pong from the client (answering nothing) is accepted silently; the next ping
    // is still answered, and nothing else came in between.
    v2.send_line(r#"{"type":"pong","id":"3"}"#);
    v2.send_line(r#"{"type":"ping","id":"4294967295"}"#);
    assert_eq!(
        v2.read_line(T).unwrap(),
        r#"{"type":"pong","id":"4294967295"}"#
    );
    // A malformed ping is a bad message, as any.
    v2.send_line(r#"{"type":"ping","id":7}"#);
    let e = v2.read_line(T).unwrap();
    assert!(e.contains("\"error\""), "{e}");

    // A v1 (reference-style) client: a ping is an unknown message type, as before,
    // and no pong comes.
    let mut v1 = Raw::register(server.port(), server.pinned(), "bo");
    v1.send_line(r#"{"type":"ping","id":"1"}"#);
    let line = v1.read_until("error", T);
    assert_eq!(error_text(&line).as_deref(), Some("unknown message type"));
    while let Some(l) = v1.read_line(Duration::from_millis(500)) {
        assert!(!l.contains("pong"), "{l}");
    }
}

#[test]
fn a_silent_v2_connection_is_closed_after_its_timeout_and_a_v1_one_after_the_v1_timeout() {
    let dir = TempDir::new("v2-idle");
    let server = Server::start(&dir, &["--idle-timeout", "10", "--v2-idle-timeout", "1"]);
    let mut v1 = Raw::register(server.port(), server.pinned(), "old");
    let start = Instant::now();
    let mut pinging = register_v2(&server, "busy");
    let mut silent = register_v2(&server, "quiet");
    // A v2 client that pings stays; the silent one is closed.
    let mut closed = false;
    while start.elapsed() < Duration::from_secs(20) {
        pinging.send_line(r#"{"type":"ping","id":"1"}"#);
        pinging.read_until("pong", T);
        if silent.closed_within(Duration::from_millis(300)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "the silent v2 connection was not closed");
    let v2_closed = start.elapsed();
    // The v1 connection, silent since before, follows --idle-timeout (10 s) instead.
    if v2_closed < Duration::from_secs(9) {
        assert!(
            !v1.closed_within(Duration::from_millis(100)),
            "the v1 connection was closed with the v2 timeout"
        );
    }
    assert!(
        v1.closed_within(Duration::from_secs(40)),
        "the v1 connection outlived --idle-timeout"
    );
    assert!(
        start.elapsed() >= Duration::from_secs(9),
        "the v1 connection was closed after {:?}",
        start.elapsed()
    );
    server.err.wait("the close logged", T, |l| {
        l.contains("quiet") && l.contains("idle")
    });
}

/// A TCP proxy on loopback; `freeze` makes the connections open so far stop forwarding
/// (bytes stay unread), later ones forward normally.
struct Proxy {
    port: u16,
    frozen_below: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(to: u16) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let frozen_below = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (fb, st) = (frozen_below.clone(), stop.clone());
        std::thread::spawn(move || {
            for (n, c) in l.incoming().enumerate() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(c) = c else { continue };
                let Ok(s) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                for (a, b) in [(c.try_clone().unwrap(), s.try_clone().unwrap()), (s, c)] {
                    let (fb, st) = (fb.clone(), st.clone());
                    std::thread::spawn(move || pump(a, b, n, &fb, &st));
                }
            }
        });
        Self {
            port,
            frozen_below,
            stop,
        }
    }

    /// Connections accepted so far stop forwarding.
    fn freeze(&self, accepted: usize) {
        self.frozen_below.store(accepted, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, n: usize, frozen: &AtomicUsize, stop: &AtomicBool) {
    from.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(300);
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        if n < frozen.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => {
                if to.write_all(&buf[..k]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

#[test]
fn a_stalled_link_is_reported_and_the_client_reconnects_and_delivers_what_was_typed() {
    let dir = TempDir::new("v2-stall");
    let cert = dir.path("server.crt");
    // The server drops the stalled connection soon, so the name is free again.
    let server = Server::start(&dir, &["--v2-idle-timeout", "2", "--reconnect-grace", "0"]);
    let proxy = Proxy::start(server.port());
    let bob = Chat::connect("bob", server.port(), &cert);
    let mut alice = Chat::start("alice", proxy.port, &cert, &["--ping-ms", "1000,1000"]);
    let connected = format!("[SYS] connected to 127.0.0.1:{} as alice", proxy.port);
    alice.out.wait_exact(&connected);
    alice.out.wait("bob listed", T, |l| {
        l.starts_with("[SYS]   bob  fp ") || l.starts_with("[SYS] bob joined")
    });
    // Pings keep an idle link up well past the server's 2 s: no stall, no reconnect.
    std::thread::sleep(Duration::from_secs(4));
    assert!(!alice.out.contains("no answer"), "{:?}", alice.out.all());
    assert_eq!(
        alice.out.all().iter().filter(|l| **l == connected).count(),
        1,
        "{:?}",
        alice.out.all()
    );

    proxy.freeze(1);
    let stall = alice.out.wait("the stall", Duration::from_secs(30), |l| {
        l.contains("no answer from the server")
    });
    assert!(
        stall
            .starts_with("[WARN] connection lost (no answer from the server within 1 s of a ping)"),
        "{stall}"
    );
    alice.send("/to bob typed after the stall");
    alice
        .out
        .wait_count("alice back", 2, Duration::from_secs(60), |l| l == connected);
    bob.out.wait("the message", Duration::from_secs(60), |l| {
        l == "[alice] typed after the stall"
    });
    assert!(!alice.out.contains("NOT sent"), "{:?}", alice.out.all());
    let _ = alice.finish();
}

/// A directory as a client keeps it: name → X25519 key and Ed25519 key (v2 users).
type Model = std::collections::BTreeMap<String, ([u8; 32], Option<[u8; 32]>)>;

/// The directory a `welcome` or `users` line lists, and its v2 `seq`.
fn full_directory(line: &str) -> (Model, Option<u32>) {
    let mut s1 = vec![0u8; line.len()];
    let mut model = Model::new();
    match msg::parse(line.as_bytes(), &mut s1) {
        Ok(Message::Welcome { users } | Message::Users { users }) => {
            for (n, k) in users.iter() {
                model.insert(n.to_owned(), (*k, None));
            }
        }
        other => panic!("not a directory: {other:?}"),
    }
    let mut s2 = vec![0u8; line.len()];
    let seq = v2json::parse_directory_v2(line.as_bytes(), &mut s2)
        .unwrap()
        .map(|d| {
            for (n, v) in d.users.iter() {
                model.get_mut(n).expect("v2 entry of a listed user").1 = Some(v.ed);
            }
            d.seq
        });
    (model, seq)
}

#[test]
fn a_v2_client_gets_deltas_that_add_up_to_the_directory_while_v1_gets_full_users() {
    let dir = TempDir::new("v2-dir");
    // Leaves at once; a second's debounce makes a quick reconnect with a new key one
    // `key` delta.
    let server = Server::start(
        &dir,
        &["--reconnect-grace", "0", "--users-debounce-ms", "1000"],
    );
    let (port, pinned) = (server.port(), server.pinned());
    let mut old = Raw::register(port, pinned.clone(), "old");
    let (mut ana, welcome) = register_v2_welcome(&server, "ana");
    let (mut model, seq) = full_directory(&welcome);
    assert_eq!(seq, Some(0));
    assert_eq!(model.keys().collect::<Vec<_>>(), ["ana", "old"]);

    let mut last = 0u32;
    let mut ops = Vec::new();
    let mut apply = |ana: &mut Raw, model: &mut Model, done: &dyn Fn(&Model) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(model) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = ana.read_line(left).expect("a delta before the timeout");
            assert!(
                !line.starts_with("{\"type\":\"users\""),
                "a full push: {line}"
            );
            let mut scratch = vec![0u8; line.len()];
            let Ok(V2Message::Dir { seq, delta }) = v2json::parse(line.as_bytes(), &mut scratch)
            else {
                continue;
            };
            assert_eq!(seq, last + 1, "{line}");
            last = seq;
            match delta {
                DirDelta::Join(e) | DirDelta::Key(e) => {
                    if let Some(p) = e.peer() {
                        p.verify().unwrap();
                    }
                    let before = model.insert(e.user.to_owned(), (e.x, e.v2.map(|v| v.ed)));
                    let key = matches!(delta, DirDelta::Key(_));
                    assert_eq!(before.is_some(), key, "{line}");
                    ops.push(if key { "key" } else { "join" });
                }
                DirDelta::Leave { user } => {
                    assert!(model.remove(user).is_some(), "{line}");
                    ops.push("leave");
                }
            }
        }
    };

    let mut bob = register_v2(&server, "bob");
    let carol = Raw::register(port, pinned.clone(), "carol");
    let carol_key = carol.key;
    apply(&mut ana, &mut model, &|m| {
        m.contains_key("bob") && m.contains_key("carol")
    });
    assert!(
        model["bob"].1.is_some() && model["carol"].1.is_none(),
        "{model:?}"
    );
    bob.send_line(r#"{"type":"ping","id":"1"}"#);
    bob.read_until("pong", T);
    drop(bob);
    apply(&mut ana, &mut model, &|m| !m.contains_key("bob"));
    // carol comes back at once with another key.
    drop(carol);
    let carol = Raw::register(port, pinned.clone(), "carol");
    let new_key = carol.key;
    assert_ne!(new_key, carol_key);
    apply(&mut ana, &mut model, &|m| {
        m.get("carol").is_some_and(|c| c.0 == new_key)
    });
    assert!(ops.contains(&"join") && ops.contains(&"leave"), "{ops:?}");
    assert!(ops.contains(&"key"), "no key delta: {ops:?}");

    // `list` gets the whole directory, with the last delta's number: it equals what the
    // deltas built.
    ana.send_line(r#"{"type":"list"}"#);
    let full = ana.read_until("\"users\"", T);
    let (listed, seq) = full_directory(&full);
    assert_eq!(seq, Some(last));
    assert_eq!(listed, model);

    // The v1 client got full `users` lines only, the last one byte for byte what v1
    // builds from that directory.
    let mut v1_lines = Vec::new();
    while let Some(l) = old.read_line(Duration::from_millis(1500)) {
        v1_lines.push(l);
    }
    assert!(!v1_lines.is_empty());
    for l in &v1_lines {
        assert!(l.starts_with("{\"type\":\"users\""), "{l}");
        // No `v2` section (checked by parsing: a base64 key may contain "v2").
        assert_eq!(full_directory(l).1, None, "{l}");
    }
    let mut buf = vec![0u8; 4096];
    let users = UserList::pack(model.iter().map(|(n, (k, _))| (n.as_str(), k)), &mut buf).unwrap();
    let m = Message::Users { users };
    let mut want = vec![0u8; m.line_len()];
    let n = m.emit_line(&mut want).unwrap();
    assert_eq!(v1_lines.last().unwrap().as_bytes(), &want[..n - 1]);
    drop(carol);
}

/// A v1 `relay` line with an `id` (protocol v2 §11), as a v2 client sends to a v1 peer.
fn relay_line(to: &str, id: Option<&str>) -> String {
    use base64ct::{Base64, Encoding};
    let id = id.map(|i| format!(",\"id\":\"{i}\"")).unwrap_or_default();
    format!(
        "{{\"type\":\"relay\",\"to\":\"{to}\",\"alg\":\"X25519+AESGCM\",\"nonce\":\"{}\",\
         \"cipher\":\"{}\"{id}}}",
        Base64::encode_string(&[1u8; 12]),
        Base64::encode_string(&[2u8; 32])
    )
}

fn ack_of(line: &str) -> (u32, v2json::AckStatus) {
    let mut scratch = vec![0u8; line.len()];
    match v2json::parse(line.as_bytes(), &mut scratch) {
        Ok(V2Message::Ack { id, status }) => (id, status),
        other => panic!("expected an ack, got {other:?} from {line}"),
    }
}

/// Nothing arrives on `r` for half a second.
fn quiet(r: &mut Raw, who: &str) {
    if let Some(l) = r.read_line(Duration::from_millis(500)) {
        panic!("{who} got {l}");
    }
}

/// §11: a v2 client's v1 `relay` with an `id` is acknowledged (`forwarded`, or
/// `not_connected` in place of v1's error line) and forwarded without the id, so the v1
/// recipient reads v1 bytes; a relay without an id gets no ack, and a v1 client's relay
/// is never acknowledged (the reference knows no `ack`), id or not.
#[test]
fn a_v2_clients_v1_relay_with_an_id_is_acknowledged_and_forwarded_without_it() {
    use v2json::AckStatus::{Forwarded, NotConnected};
    let dir = TempDir::new("v2-relay-ack");
    let server = Server::start(&dir, &[]);
    let mut bo = Raw::register(server.port(), server.pinned(), "bo");
    let mut ana = register_v2(&server, "ana");
    bo.read_until("ana", T);

    ana.send_line(&relay_line("bo", Some("41")));
    assert_eq!(ack_of(&ana.read_until("ack", T)), (41, Forwarded));
    let got = bo.read_until("relay", T);
    assert!(!got.contains("\"id\""), "the id reached the v1 peer: {got}");
    let mut scratch = vec![0u8; got.len()];
    match msg::parse(got.as_bytes(), &mut scratch) {
        Ok(Message::Relay(r)) => {
            assert_eq!((r.to, r.from), ("bo", Some("ana")));
            let want = <base64ct::Base64 as base64ct::Encoding>::encode_string(&[2u8; 32]);
            assert_eq!(r.cipher, want.as_str());
        }
        other => panic!("{other:?}"),
    }

    ana.send_line(&relay_line("zed", Some("4294967295")));
    assert_eq!(ack_of(&ana.read_line(T).unwrap()), (u32::MAX, NotConnected));
    quiet(&mut ana, "ana, after not_connected");

    // Without an id: forwarded, no ack; to nobody, v1's error.
    ana.send_line(&relay_line("bo", None));
    bo.read_until("relay", T);
    quiet(&mut ana, "ana, after a relay without id");
    ana.send_line(&relay_line("zed", None));
    let e = ana.read_line(T).unwrap();
    assert_eq!(error_text(&e).as_deref(), Some("user not connected: zed"));

    // A v1 client's relay: never acknowledged; the recipient gets no id either.
    bo.send_line(&relay_line("ana", Some("7")));
    let got = ana.read_until("relay", T);
    assert!(!got.contains("\"id\""), "{got}");
    quiet(&mut bo, "bo, after its relay with an id");
    bo.send_line(&relay_line("zed", Some("8")));
    let e = bo.read_line(T).unwrap();
    assert_eq!(error_text(&e).as_deref(), Some("user not connected: zed"));
}
