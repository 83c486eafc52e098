//! Errors for people and output for scripts, with the real binary: a port that answers
//! HTTP, a port that closes at once, a server killed mid-session, the serve banner,
//! `--timestamps` and `--json`.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;

use common::*;

/// A listener on loopback that answers every connection with `reply` (after reading
/// what the client sent first), then closes it.
fn fake_service(reply: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for tcp in listener.incoming().flatten().take(4) {
            let mut tcp = tcp;
            tcp.set_read_timeout(Some(T)).unwrap();
            let mut b = [0u8; 512];
            let _ = tcp.read(&mut b);
            let _ = tcp.write_all(reply);
        }
    });
    port
}

#[test]
fn a_web_server_on_the_port_is_named_with_its_own_exit_code() {
    let dir = TempDir::new("http");
    let port = fake_service(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    let crt = dir.gen_cert("server");
    let chat = Chat::start("alice", port, &crt, &[]);
    let (code, out) = chat.finish();
    assert_eq!(code, Some(seguro::exit::NOT_SEGURO), "{:?}", out.all());
    let line = out.wait_for(&format!(
        "[ERROR] 127.0.0.1:{port} is not a Seguro server: it is a web (HTTP) server"
    ));
    assert!(line.contains("400 Bad Request"), "{line}");
    assert!(!out.contains("InvalidContentType"), "{:?}", out.all());
    assert!(
        !out.contains("pinn"),
        "not a pinning failure: {:?}",
        out.all()
    );
}

#[test]
fn a_port_that_closes_at_once_says_no_server_is_behind_it() {
    let dir = TempDir::new("closes");
    let port = fake_service(b"");
    let crt = dir.gen_cert("server");
    let chat = Chat::start("alice", port, &crt, &[]);
    let (code, out) = chat.finish();
    assert_eq!(code, Some(seguro::exit::CONNECT), "{:?}", out.all());
    out.wait_for("closed it without answering: no Seguro server is behind it");
}

#[test]
fn a_killed_server_is_an_abrupt_close_in_plain_words() {
    let dir = TempDir::new("abrupt");
    let mut server = Server::start(&dir, &[]);
    let cert = dir.path("server.crt");
    let alice = Chat::start("alice", server.port(), &cert, &["--no-reconnect"]);
    alice.out.wait_for("[SYS] connected to");
    let _ = server.child.kill();
    let _ = server.child.wait();
    alice
        .out
        .wait_exact("[WARN] connection lost (the server closed the connection abruptly)");
    let (code, out) = alice.finish();
    assert_eq!(code, Some(seguro::exit::CONNECT));
    assert!(!out.contains("close_notify"), "{:?}", out.all());
}

#[test]
fn the_serve_banner_prints_a_command_to_copy() {
    let dir = TempDir::new("banner");
    let server = Server::start(&dir, &[]);
    let cert = dir.path("server.crt");
    let want = format!(
        "  seguro chat \"$USER\" 127.0.0.1 {} --cert {}   # on this machine",
        server.port(),
        cert.display()
    );
    server.out.wait_exact(&want);
    server.out.wait_for(&format!("ngrok tcp {}", server.port()));
    assert!(
        !server.out.contains("<host> <port>"),
        "{:?}",
        server.out.all()
    );
}

/// `2026-12-01T15:04:05Z` or `...+01:00`, then a space.
fn stamped(l: &str) -> Option<&str> {
    let b = l.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let ok = digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && b.get(10) == Some(&b'T')
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19);
    if !ok {
        return None;
    }
    if b.get(19) == Some(&b'Z') {
        return l.get(20..)?.strip_prefix(' ');
    }
    let sign = matches!(b.get(19), Some(b'+' | b'-'));
    (sign && digits(20..22) && b.get(22) == Some(&b':') && digits(23..25))
        .then(|| l.get(25..)?.strip_prefix(' '))
        .flatten()
}

#[test]
fn timestamps_and_json_for_scripts() {
    let dir = TempDir::new("scripts");
    let server = Server::start(&dir, &[]);
    let cert = dir.path("server.crt");
    let port = server.port();
    let bob = Chat::start("bob", port, &cert, &["--timestamps"]);
    let carol = Chat::start("carol", port, &cert, &["--json"]);
    let connected = format!("[SYS] connected to 127.0.0.1:{port} as bob");
    bob.out.wait("stamped registration", T, |l| {
        stamped(l) == Some(&connected)
    });
    carol
        .out
        .wait("json registration", T, |l| l.contains("\"connected\""));
    let mut alice = Chat::connect("alice", port, &cert);
    alice
        .out
        .wait("carol listed", T, |l| l.starts_with("[SYS]   carol  fp "));
    alice.send("/to bob hi bob");
    alice.send("/to carol hi \"carol\"");
    bob.out.wait("stamped message", T, |l| {
        stamped(l) == Some("[alice] hi bob")
    });
    let line = carol
        .out
        .wait("json message", T, |l| l.contains("\"message\""));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["event"], "message");
    assert_eq!(v["kind"], "message");
    assert_eq!(v["from"], "alice");
    assert_eq!(v["peer"], "alice");
    assert_eq!(v["text"], "hi \"carol\"");
    assert_eq!(v["line"], "[alice] hi \"carol\"");
    assert!(
        stamped(&format!("{} x", v["time"].as_str().unwrap())).is_some(),
        "{v}"
    );
    // Every line of both is stamped or JSON; none is bare.
    for l in bob.out.all() {
        assert!(stamped(&l).is_some(), "unstamped: {l:?}");
    }
    for l in carol.out.all() {
        let v: serde_json::Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["line"].is_string(), "{l}");
    }
    // The plain client's lines stay the reference's.
    assert!(
        alice.out.all().iter().all(|l| l.starts_with('[')),
        "{:?}",
        alice.out.all()
    );
}
