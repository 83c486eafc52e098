//! Hostile and broken peers against a live server, while a healthy pair keeps chatting.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64ct::{Base64, Encoding};
use common::*;

/// The healthy pair: after every case, alice's message must still reach bob.
struct Healthy {
    alice: Chat,
    bob: Chat,
    n: usize,
}

impl Healthy {
    fn new(port: u16, cert: &std::path::Path) -> Self {
        let alice = Chat::connect("alice", port, cert);
        let bob = Chat::connect("bob", port, cert);
        alice.out.wait_for("[SYS] bob joined");
        Self { alice, bob, n: 0 }
    }
    fn check(&mut self, case: &str) {
        self.n += 1;
        let text = format!("still fine after {case} #{}", self.n);
        self.alice.send(&format!("/to bob {text}"));
        self.bob.out.wait_exact(&format!("[alice] {text}"));
    }
}

fn b64(bytes: &[u8]) -> String {
    Base64::encode_string(bytes)
}

fn good_key() -> String {
    let kp = seguro_core::e2ee::KeyPair::generate(&mut rand_core::OsRng);
    b64(&kp.public())
}

/// First lines that must get an `error` and a close.
fn bad_first_lines() -> Vec<(&'static str, Vec<u8>)> {
    let hello = |user: &str, key: &str| {
        format!(r#"{{"type": "hello", "user": "{user}", "pub": "{key}"}}"#).into_bytes()
    };
    let mut order8 = [0u8; 32];
    order8.copy_from_slice(
        &[
            0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f,
            0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16,
            0x5f, 0x49, 0xb8, 0x00,
        ][..],
    );
    let mut one = [0u8; 32];
    one[0] = 1;
    vec![
        ("invalid JSON", b"{\"type\": \"hello\", \"user\": ".to_vec()),
        ("not an object", b"[1, 2, 3]".to_vec()),
        ("not hello first", br#"{"type": "list"}"#.to_vec()),
        ("chat first", br#"{"type": "chat", "text": "hi"}"#.to_vec()),
        (
            "missing pub",
            br#"{"type": "hello", "user": "x1"}"#.to_vec(),
        ),
        (
            "missing user",
            format!(r#"{{"type": "hello", "pub": "{}"}}"#, good_key()).into_bytes(),
        ),
        (
            "pub wrong type",
            br#"{"type": "hello", "user": "x2", "pub": 12345}"#.to_vec(),
        ),
        (
            "user wrong type",
            format!(r#"{{"type": "hello", "user": 7, "pub": "{}"}}"#, good_key()).into_bytes(),
        ),
        ("bad base64", hello("x3", "!!!not base64!!!")),
        ("31-byte key", hello("x4", &b64(&[7u8; 31]))),
        ("33-byte key", hello("x5", &b64(&[7u8; 33]))),
        ("all-zero key", hello("x6", &b64(&[0u8; 32]))),
        ("key one", hello("x7", &b64(&one))),
        ("order-8 key", hello("x8", &b64(&order8))),
        ("name with space", hello("a b", &good_key())),
        ("empty name", hello("", &good_key())),
        ("33-char name", hello(&"n".repeat(33), &good_key())),
        ("control char in name", hello("tab\\there", &good_key())),
        (
            "binary garbage",
            vec![0xff, 0xfe, 0x00, 0x01, 0x80, 0x9f, 0xc3, 0x28],
        ),
        ("overlong first line", vec![b'a'; 20_000]),
    ]
}

#[test]
fn bad_input_table() {
    let dir = TempDir::new("badinput");
    let mut server = Server::start(&dir, &["--hello-timeout", "3"]);
    let cert = dir.path("server.crt");
    let port = server.port();
    let mut healthy = Healthy::new(port, &cert);

    // 1. Bad first lines: an error, then the server closes.
    for (case, line) in bad_first_lines() {
        let mut raw = Raw::connect(port, server.pinned());
        let mut bytes = line.clone();
        bytes.push(b'\n');
        raw.send_bytes(&bytes).unwrap();
        let reply = raw
            .read_line(T)
            .unwrap_or_else(|| panic!("{case}: no reply"));
        let text = error_text(&reply).unwrap_or_else(|| panic!("{case}: not an error: {reply}"));
        assert!(!text.is_empty(), "{case}");
        assert!(raw.closed_within(T), "{case}: connection not closed");
        healthy.check(case);
    }
    // The exact wording of the reference for a first line that is not hello.
    let mut raw = Raw::connect(port, server.pinned());
    raw.send_line(r#"{"type": "list"}"#);
    assert_eq!(
        error_text(&raw.read_line(T).unwrap()).unwrap(),
        "first message must be hello"
    );

    // 2. Transport-level junk.
    // Plain TCP that closes at once.
    drop(TcpStream::connect(("127.0.0.1", port)).unwrap());
    healthy.check("bare connect");
    // Plain text without TLS: the server closes.
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(T)).unwrap();
    tcp.write_all(b"{\"type\": \"hello\", \"user\": \"plain\"}\n")
        .unwrap();
    let mut b = [0u8; 512];
    let closed = loop {
        match tcp.read(&mut b) {
            Ok(0) => break true,
            Ok(_) => {} // a TLS alert
            Err(e) => break e.kind() != std::io::ErrorKind::WouldBlock,
        }
    };
    assert!(closed, "plain TCP not closed");
    healthy.check("plain TCP without TLS");
    // Binary garbage without TLS.
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(T)).unwrap();
    let _ = tcp.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0, 1, 2, 3, 4, 5]);
    let _ = tcp.read(&mut b);
    healthy.check("non-TLS bytes");
    // TCP then silence, TLS then silence: closed by the hello deadline.
    let mut silent_tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    silent_tcp.set_read_timeout(Some(T)).unwrap();
    let mut silent_tls = Raw::connect(port, server.pinned());
    healthy.check("silent connections open");
    assert!(silent_tls.closed_within(T), "TLS then silence: not closed");
    let closed = match silent_tcp.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    assert!(closed, "TCP then silence: not closed by the hello deadline");
    healthy.check("silent connections closed");

    // 3. After registration: errors, and the connection survives.
    let mut eve = Raw::register(port, server.pinned(), "eve");
    let after: Vec<(&str, Vec<u8>)> = vec![
        ("invalid JSON", b"{\"type\": ".to_vec()),
        (
            "unknown type",
            br#"{"type": "shout", "text": "x"}"#.to_vec(),
        ),
        ("missing type", br#"{"text": "x"}"#.to_vec()),
        (
            "relay without to",
            br#"{"type": "relay", "nonce": "AAAA", "cipher": "AAAA"}"#.to_vec(),
        ),
        (
            "relay without cipher",
            br#"{"type": "relay", "to": "bob", "nonce": "AAAA"}"#.to_vec(),
        ),
        (
            "chat text wrong type",
            br#"{"type": "chat", "text": 42}"#.to_vec(),
        ),
        (
            "relay to wrong type",
            br#"{"type": "relay", "to": ["bob"], "nonce": "A", "cipher": "A"}"#.to_vec(),
        ),
        (
            "second hello",
            format!(
                r#"{{"type": "hello", "user": "eve", "pub": "{}"}}"#,
                good_key()
            )
            .into_bytes(),
        ),
        (
            "server-only type",
            br#"{"type": "welcome", "users": {}}"#.to_vec(),
        ),
        ("binary garbage", vec![0xff, 0x00, 0xfe, 0x80]),
        ("overlong line", vec![b'z'; 40_000]),
    ];
    // Relays to a connected user whose fields cannot be ciphertext: refused, and why.
    let relay = |alg: &str, nonce: &str, cipher: &str| {
        format!(
            r#"{{"type": "relay", "to": "bob", "alg": "{alg}", "nonce": "{nonce}", "cipher": "{cipher}"}}"#
        )
    };
    let n12 = b64(&[1u8; 12]);
    let c16 = b64(&[2u8; 16]);
    let bad_relays = [
        (
            relay("X25519+AESGCM", "AAAA", &c16),
            "bad relay: \"nonce\" must be base64 of 12 bytes",
        ),
        (
            relay("X25519+AESGCM", &b64(&[1u8; 13]), &c16),
            "bad relay: \"nonce\" must be base64 of 12 bytes",
        ),
        (
            relay("X25519+AESGCM", "!!!!!!!!!!!!!!!!", &c16),
            "bad relay: \"nonce\" must be base64 of 12 bytes",
        ),
        (
            relay("X25519+AESGCM", &n12, &b64(&[2u8; 15])),
            "bad relay: \"cipher\" must be base64 of at least 16 bytes",
        ),
        (
            relay("X25519+AESGCM", &n12, "not base64 at all"),
            "bad relay: \"cipher\" must be base64 of at least 16 bytes",
        ),
        (
            relay("ROT13", &n12, &c16),
            "bad relay: unknown \"alg\" (known: X25519+AESGCM)",
        ),
    ];
    for (line, want) in &bad_relays {
        eve.send_line(line);
        let reply = eve.read_until("\"error\"", T);
        assert_eq!(error_text(&reply).as_deref(), Some(*want), "{line}");
        eve.send_line(r#"{"type": "chat", "text": "alive?"}"#);
        eve.read_until("echo: alive?", T);
    }
    healthy.check("bad relays");
    // Control and bidi characters come back replaced, in echoes and in errors.
    eve.send_line(r#"{"type": "chat", "text": "a\u001b[2Jb\u202ec\r\nd"}"#);
    let echo = eve.read_until("echo: a", T);
    let mut scratch = vec![0u8; echo.len()];
    match seguro_core::msg::parse(echo.as_bytes(), &mut scratch) {
        Ok(seguro_core::msg::Message::Server { text }) => {
            assert_eq!(text, "echo: a\u{fffd}[2Jb\u{fffd}c\u{fffd}\u{fffd}d")
        }
        other => panic!("{other:?}"),
    }
    eve.send_line(&format!(
        r#"{{"type": "relay", "to": "\u001b[31mbob", "alg": "X25519+AESGCM", "nonce": "{n12}", "cipher": "{c16}"}}"#
    ));
    let reply = eve.read_until("\"error\"", T);
    assert_eq!(
        error_text(&reply).as_deref(),
        Some("user not connected: \u{fffd}[31mbob")
    );
    healthy.check("sanitized echoes");
    for (case, line) in after {
        let mut bytes = line.clone();
        bytes.push(b'\n');
        eve.send_bytes(&bytes).unwrap();
        let reply = eve.read_until("\"error\"", T);
        assert!(error_text(&reply).is_some(), "{case}: {reply}");
        eve.send_line(r#"{"type": "chat", "text": "alive?"}"#);
        eve.read_until("echo: alive?", T);
        healthy.check(case);
    }

    // A line longer than the server's read buffer, sent in pieces (one TLS record each),
    // ending in \r\n, with escapes the parser decodes: parsed whole, and so are the
    // short lines after it.
    let escaped = "\\u0041".repeat(1500);
    let long = format!("{{\"type\": \"chat\", \"text\": \"{escaped}\"}}\r\n");
    for piece in long.as_bytes().chunks(700) {
        eve.send_bytes(piece).unwrap();
    }
    eve.read_until(&format!("echo: {}", "A".repeat(1500)), T);
    eve.send_line(r#"{"type": "chat", "text": "short again"}"#);
    eve.read_until("echo: short again", T);
    healthy.check("line split across records");

    // 4. A peer that keeps sending garbage is disconnected.
    let mut spammer = Raw::register(port, server.pinned(), "spammer");
    let mut burst = Vec::new();
    for _ in 0..25 {
        burst.extend_from_slice(b"garbage\n");
    }
    spammer.send_bytes(&burst).unwrap();
    assert!(spammer.closed_within(T), "garbage sender not disconnected");
    server.err.wait_for("too many consecutive bad messages");
    healthy.check("garbage sender");

    // Bad relays count towards --max-errors too (and reach nobody).
    let mut forger = Raw::register(port, server.pinned(), "forger");
    let mut burst = Vec::new();
    for _ in 0..25 {
        burst.extend_from_slice(relay("X25519+AESGCM", "AAAA", &c16).as_bytes());
        burst.push(b'\n');
    }
    forger.send_bytes(&burst).unwrap();
    assert!(forger.closed_within(T), "bad relay sender not disconnected");
    healthy.check("bad relay sender");
    // (bob's client shows forger joining and leaving, never a message from it.)
    assert!(
        !healthy
            .bob
            .out
            .all()
            .iter()
            .any(|l| l.starts_with("[forger]")),
        "a bad relay reached bob"
    );

    server.assert_alive();
}

#[test]
fn connections_cut_off_before_hello_are_logged_at_info_level() {
    let dir = TempDir::new("cutofflog");
    let server = Server::start_logging(
        &dir.path("server.crt"),
        &dir.path("server.key"),
        &["--hello-timeout", "1"],
        "info",
    );
    let port = server.port();
    // Not TLS: the handshake fails.
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(T)).unwrap();
    let _ = tcp.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0, 1, 2, 3, 4, 5]);
    let local = tcp.local_addr().unwrap();
    let mut b = [0u8; 512];
    let _ = tcp.read(&mut b);
    let l = server.err.wait_for("TLS handshake failed");
    assert!(l.contains(&format!("addr={local}")), "{l}");
    // TCP then silence: the deadline.
    let silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let local = silent.local_addr().unwrap();
    let l = server
        .err
        .wait_for("no TLS handshake and hello before the deadline");
    assert!(l.contains(&format!("addr={local}")), "{l}");
    assert!(
        !server.err.contains("DEBUG"),
        "debug lines at RUST_LOG=info"
    );
}

#[test]
fn rate_limit_and_connection_limit() {
    let dir = TempDir::new("limits");
    let server = Server::start(
        &dir,
        &["--rate", "2", "--burst", "3", "--max-connections", "3"],
    );
    let mut a = Raw::register(server.port(), server.pinned(), "fast");
    let mut burst = String::new();
    for i in 0..15 {
        burst.push_str(&format!("{{\"type\": \"chat\", \"text\": \"m{i}\"}}\n"));
    }
    a.send_bytes(burst.as_bytes()).unwrap();
    // Over the rate a connection is read more slowly: every message is answered, none
    // dropped, no error.
    for i in 0..15 {
        let l = a.read_until("\"server\"", Duration::from_secs(60));
        assert!(l.contains(&format!("echo: m{i}\"")), "{l}");
    }

    // Two more connections fill the limit of 3; the fourth is closed at once.
    let _b = Raw::register(server.port(), server.pinned(), "b");
    let _c = Raw::register(server.port(), server.pinned(), "c");
    let mut tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(T)).unwrap();
    let mut buf = [0u8; 16];
    let closed = match tcp.read(&mut buf) {
        Ok(n) => n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    assert!(closed, "a connection over the limit must be closed at once");
    server.err.wait_for("connection limit (3) reached");
}

#[test]
fn a_reader_that_stops_reading_is_dropped_without_stalling_others() {
    let dir = TempDir::new("slow");
    let mut server = Server::start(
        &dir,
        &["--rate", "0", "--queue", "8", "--write-timeout", "3"],
    );
    let cert = dir.path("server.crt");
    let mut healthy = Healthy::new(server.port(), &cert);
    let _sloth = Raw::register(server.port(), server.pinned(), "sloth");
    let mut flooder = Raw::register(server.port(), server.pinned(), "flooder");
    let cipher = "Q".repeat(12_000);
    let line = format!(
        "{{\"type\":\"relay\",\"to\":\"sloth\",\"alg\":\"X25519+AESGCM\",\"nonce\":\"AAAAAAAAAAAAAAAA\",\"cipher\":\"{cipher}\"}}\n"
    );
    // Up to ~60 MB, far more than socket buffers hold; stop once the server drops sloth.
    for _ in 0..5000 {
        // Once sloth is gone the flooder's own errors pile up unread and it is dropped
        // too: stop at the first failed write.
        if server.err.contains("user=sloth") && server.err.contains("left: write timed out")
            || flooder.send_bytes(line.as_bytes()).is_err()
        {
            break;
        }
    }
    server
        .err
        .wait("sloth dropped", Duration::from_secs(30), |l| {
            l.contains("user=sloth") && l.contains("left: write timed out")
        });
    healthy.check("slow reader");
    server.assert_alive();
}

/// A `hello` line for `user` (escaped as JSON) with a fresh key.
fn hello_as(user: &str) -> String {
    let mut esc = String::new();
    for c in user.chars() {
        match c {
            '"' | '\\' => {
                esc.push('\\');
                esc.push(c);
            }
            c if u32::from(c) < 0x20 || !c.is_ascii() => {
                let mut b = [0u16; 2];
                for u in c.encode_utf16(&mut b) {
                    esc.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => esc.push(c),
        }
    }
    format!(
        r#"{{"type": "hello", "user": "{esc}", "pub": "{}"}}"#,
        good_key()
    )
}

#[test]
fn names_that_pose_as_others_or_as_the_system_are_refused_with_the_reason() {
    let dir = TempDir::new("names");
    let mut server = Server::start(&dir, &[]);
    let cert = dir.path("server.crt");
    let port = server.port();
    let mut healthy = Healthy::new(port, &cert);
    // The names of the attack, with alice connected (the healthy pair).
    let cases: &[(&str, &str)] = &[
        ("SYS", "user name \"SYS\" (or a look-alike) is reserved"),
        (
            "SERVER",
            "user name \"SERVER\" (or a look-alike) is reserved",
        ),
        ("WARN", "user name \"WARN\" (or a look-alike) is reserved"),
        ("ERROR", "user name \"ERROR\" (or a look-alike) is reserved"),
        ("[SYS]", "user name contains a bracket ('[')"),
        (
            "alice\u{2060}",
            "user name contains U+2060, a zero-width character",
        ),
        (
            "alice\u{200d}",
            "user name contains U+200D, a zero-width character",
        ),
        (
            "\u{430}lice",
            "user name mixes letters of scripts that look alike (e.g. Latin and Cyrillic)",
        ),
        (
            "\u{202e}ecila",
            "user name contains U+202E, a bidirectional control character",
        ),
        ("ALICE", "\"ALICE\" looks like \"alice\", who is connected"),
        (
            "\u{430}\u{4cf}\u{456}\u{441}\u{435}",
            "looks like \"alice\", who is connected",
        ),
        ("b0b", "\"b0b\" looks like \"bob\", who is connected"),
        (
            "Jose\u{301}",
            "user name is not in Unicode normalization form C (NFC)",
        ),
        (
            "a\u{e000}",
            "user name contains U+E000, a private-use character",
        ),
        (
            "a\u{fe0f}",
            "user name contains U+FE0F, a variation selector",
        ),
    ];
    for (i, (name, want)) in cases.iter().enumerate() {
        let mut raw = Raw::connect(port, server.pinned());
        raw.send_line(&hello_as(name));
        let reply = raw
            .read_line(T)
            .unwrap_or_else(|| panic!("{name:?}: no reply"));
        let text = error_text(&reply).unwrap_or_else(|| panic!("{name:?}: {reply}"));
        assert!(text.starts_with("invalid user name: "), "{name:?}: {text}");
        assert!(text.contains(want), "{name:?}: {text}");
        // The refusal never carries the refused character itself.
        assert!(text.is_ascii() || !text.contains('\u{202e}'), "{text}");
        assert!(raw.closed_within(T), "{name:?}: not closed");
        healthy.check(&format!("refused name {i}"));
    }
    // Ordinary non-ASCII names still register; once alice leaves, a look-alike may too.
    let _jose = Raw::register(port, server.pinned(), "Jos\\u00e9");
    let _elena = Raw::register(port, server.pinned(), "\\u0395\\u03bb\\u03ad\\u03bd\\u03b7");
    let Healthy { alice, bob, .. } = healthy;
    drop(alice);
    let bob_r = bob;
    bob_r.out.wait_for("[SYS] alice left");
    let _alice2 = Raw::register(port, server.pinned(), "ALICE");
    server.assert_alive();
}

#[test]
fn non_finite_numbers_are_refused_by_the_command_line() {
    for bad in ["NaN", "inf", "-inf", "-1", "1e400"] {
        let out = std::process::Command::new(BIN)
            .args(["chat", "alice", "127.0.0.1", "1"])
            .arg(format!("--linger={bad}"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--linger {bad}: {err}");
        assert!(err.contains("--linger"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[cfg(unix)]
#[test]
fn the_key_file_mode_is_enforced_on_every_write_and_serve_warns_about_a_readable_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("keymode");
    let (crt, key) = (dir.path("server.crt"), dir.path("server.key"));
    let gen_cert = |force: bool| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("gen-cert")
            .arg("--cert")
            .arg(&crt)
            .arg("--key")
            .arg(&key);
        if force {
            cmd.arg("--force");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    gen_cert(false);
    assert_eq!(mode(&key), 0o600);
    // A readable key: serve says so.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Server::start_logging(&crt, &key, &[], "info");
    server.err.wait_for("is readable by other users");
    drop(server);
    // --force over the 0644 key writes a 0600 one (a new file, renamed over).
    let old = std::fs::read(&key).unwrap();
    gen_cert(true);
    assert_eq!(mode(&key), 0o600);
    assert_ne!(std::fs::read(&key).unwrap(), old);
    assert!(!dir.path("server.key.tmp").exists());
    let server = Server::start_logging(&crt, &key, &[], "info");
    server.out.wait_for(" listening on ");
    assert!(!server.err.contains("readable by other users"));
}

#[test]
fn a_line_sent_byte_by_byte_and_a_silent_peer_are_cut_off_with_the_reason() {
    let dir = TempDir::new("slowloris");
    let server = Server::start(&dir, &["--line-timeout", "2", "--idle-timeout", "4"]);
    let mut slow = Raw::register(server.port(), server.pinned(), "slow");
    let _quiet = Raw::register(server.port(), server.pinned(), "quiet");
    let mut ok = Raw::register(server.port(), server.pinned(), "busy");
    // One byte every 300 ms: the line never ends within 2 s.
    let line = br#"{"type": "chat", "text": "never finished in time"}"#;
    let mut cut = false;
    for b in line.iter() {
        if slow.send_bytes(&[*b]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        if server.err.contains("user=slow") && server.err.contains("line timeout") {
            break;
        }
    }
    let l = server.err.wait("slow cut off", T, |l| {
        l.contains("user=slow") && l.contains("left:")
    });
    assert!(
        l.contains("a line started but not finished within the line timeout"),
        "{l} {cut}"
    );
    // Full lines now and then keep a connection alive; silence past 4 s does not.
    for i in 0..6 {
        ok.send_line(&format!(r#"{{"type": "chat", "text": "tick {i}"}}"#));
        ok.read_until(&format!("echo: tick {i}"), T);
        std::thread::sleep(Duration::from_millis(1000));
    }
    let l = server.err.wait("quiet cut off", T, |l| {
        l.contains("user=quiet") && l.contains("left:")
    });
    assert!(l.contains("silent for the idle timeout"), "{l}");
    assert!(!server.err.contains("user=busy left"));
}
