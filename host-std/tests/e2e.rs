//! End to end: the real `seguro` binary as server and clients, real sockets, real TLS.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;

#[test]
fn three_clients_list_echo_messages_joins_leaves_duplicates() {
    let dir = TempDir::new("three");
    let mut server = Server::start(&dir, &[]);
    let cert = dir.path("server.crt");
    let port = server.port();

    let mut alice = Chat::connect("alice", port, &cert);
    let mut bob = Chat::connect("bob", port, &cert);
    alice
        .out
        .wait("bob joined", T, |l| l.starts_with("[SYS] bob joined, fp "));
    let mut carol = Chat::connect("carol", port, &cert);
    alice.out.wait("carol joined", T, |l| {
        l.starts_with("[SYS] carol joined, fp ")
    });
    bob.out.wait("carol joined", T, |l| {
        l.starts_with("[SYS] carol joined, fp ")
    });

    // /list
    alice.send("/list");
    alice.out.wait_for("[SYS] users online (3):");
    alice
        .out
        .wait("carol in list", T, |l| l.starts_with("[SYS]   carol  fp "));

    // /server echo
    bob.send("/server hi");
    bob.out.wait_exact("[SERVER] echo: hi");

    // /to both ways, with non-ASCII text
    alice.send("/to bob hola bob, ¿qué tal? 🚀");
    bob.out.wait_exact("[alice] hola bob, ¿qué tal? 🚀");
    bob.send("/to alice bien, gracias");
    alice.out.wait_exact("[bob] bien, gracias");
    carol.send("/to alice  two  spaces kept");
    alice.out.wait_exact("[carol]  two  spaces kept");
    assert!(
        !carol.out.contains("bien, gracias"),
        "carol must not see bob's message"
    );

    // /fp shows the short fingerprint and the safety code, matching the directory.
    alice.send("/fp bob");
    let fp = alice
        .out
        .wait("fp line", T, |l| l.starts_with("[SYS] fp bob: "));
    let short = fp.trim_start_matches("[SYS] fp bob: ").to_owned();
    assert_eq!(short.len(), 17);
    assert!(alice.out.contains(&format!("[SYS] bob joined, fp {short}")));
    alice.out.wait("safety code", T, |l| {
        l.starts_with("[SYS] safety code bob: ")
    });

    // A second "alice" (another identity) is refused and exits non-zero: alice's v2
    // hello registered the name to her keys. The first one is unaffected.
    let dup = Chat::start("alice", port, &cert, &[]);
    let (code, out) = dup.finish();
    assert_eq!(code, Some(seguro::exit::CONNECT), "{:?}", out.all());
    assert!(
        out.contains(
            "[ERROR] the name alice belongs to another key; it is released after 90 days unused"
        ),
        "{:?}",
        out.all()
    );
    bob.send("/to alice still here?");
    alice.out.wait_exact("[bob] still here?");

    // Unknown user: refused locally with a hint.
    alice.send("/to nadie hola");
    alice.out.wait_for("[ERROR] unknown user: nadie");

    // Leave: the others see it.
    let (code, _) = carol.finish();
    assert_eq!(code, Some(0));
    alice.out.wait_exact("[SYS] carol left");
    bob.out.wait_exact("[SYS] carol left");

    let (a, _) = alice.finish();
    let (b, _) = bob.finish();
    assert_eq!((a, b), (Some(0), Some(0)));
    server.assert_alive();
}

#[test]
fn eof_sends_everything_typed_then_exits_zero() {
    let dir = TempDir::new("eof");
    let server = Server::start(&dir, &[]);
    let cert = dir.path("server.crt");
    let bob = Chat::connect("bob", server.port(), &cert);
    // The whole script is written before the client even connects.
    let mut alice = Chat::start("alice", server.port(), &cert, &[]);
    for i in 0..20 {
        alice.send(&format!("/to bob line {i}"));
    }
    alice.send("/server bye");
    let (code, out) = alice.finish();
    assert_eq!(code, Some(0));
    assert!(out.contains("[SERVER] echo: bye"), "{:?}", out.all());
    for i in 0..20 {
        bob.out.wait_exact(&format!("[alice] line {i}"));
    }
}

#[test]
fn relay_from_is_rewritten_and_unknown_recipient_gets_error() {
    let dir = TempDir::new("forge");
    let server = Server::start(&dir, &[]);
    let mut bob = Raw::register(server.port(), server.pinned(), "bob");
    let mut mallory = Raw::register(server.port(), server.pinned(), "mallory");
    mallory.send_line(
        r#"{"type": "relay", "to": "bob", "from": "alice", "alg": "X25519+AESGCM", "nonce": "AAAAAAAAAAAAAAAA", "cipher": "c2VjcmV0c2VjcmV0c2VjcmV0"}"#,
    );
    let got = bob.read_until("\"relay\"", T);
    assert!(got.contains(r#""from":"mallory""#), "{got}");
    assert!(!got.contains("alice"), "{got}");
    assert!(
        got.contains(r#""nonce":"AAAAAAAAAAAAAAAA""#) && got.contains("c2VjcmV0c2VjcmV0c2VjcmV0")
    );

    mallory.send_line(r#"{"type":"relay","to":"nadie","nonce":"AAAAAAAAAAAAAAAA","cipher":"c2VjcmV0c2VjcmV0c2VjcmV0"}"#);
    let e = mallory.read_until("\"error\"", T);
    assert!(error_text(&e).unwrap().contains("not connected"), "{e}");
    // Even at RUST_LOG=debug the server logs who sent to whom, never the payload.
    server.err.wait_for("relayed");
    assert!(!server.err.contains("c2VjcmV0c2VjcmV0c2VjcmV0"));
    assert!(!server.err.contains("AAAAAAAAAAAAAAAA"));
}

/// Forwards TCP connections to `target`, recording every byte in both directions.
fn capturing_forwarder(target: std::net::SocketAddr) -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let captured = Arc::new(Mutex::new(Vec::new()));
    let cap = captured.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(down) = conn else { return };
            let Ok(up) = TcpStream::connect(target) else {
                continue;
            };
            for (mut from, mut to) in [
                (down.try_clone().unwrap(), up.try_clone().unwrap()),
                (up, down),
            ] {
                let cap = cap.clone();
                thread::spawn(move || {
                    let mut b = [0u8; 16384];
                    loop {
                        match from.read(&mut b) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                cap.lock().unwrap().extend_from_slice(&b[..n]);
                                if to.write_all(&b[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    (port, captured)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_tunnel_in_the_middle_sees_no_plaintext() {
    let dir = TempDir::new("tunnel");
    let server = Server::start(&dir, &[]);
    let cert = dir.path("server.crt");
    let (fport, captured) = capturing_forwarder(server.addr);

    let mut zorro = Chat::connect("zorroplateado", fport, &cert);
    let mut lince = Chat::connect("linceiberico", fport, &cert);
    zorro.out.wait_for("[SYS] linceiberico joined");
    zorro.send("/to linceiberico el tesoro esta bajo el olivo");
    lince
        .out
        .wait_exact("[zorroplateado] el tesoro esta bajo el olivo");
    lince.send("/to zorroplateado recibido el mensaje secreto");
    zorro
        .out
        .wait_exact("[linceiberico] recibido el mensaje secreto");
    zorro.send("/server palabra clave para el servidor");
    zorro
        .out
        .wait_exact("[SERVER] echo: palabra clave para el servidor");
    let _ = zorro.finish();
    let _ = lince.finish();

    let bytes = captured.lock().unwrap().clone();
    assert!(bytes.len() > 1000, "the forwarder carried the traffic");
    for secret in [
        "el tesoro esta bajo el olivo",
        "recibido el mensaje secreto",
        "palabra clave",
        "zorroplateado",
        "linceiberico",
        "relay",
        "hello",
    ] {
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "{secret:?} crossed the tunnel in clear"
        );
    }
}

#[test]
fn reconnects_with_the_same_key_after_a_server_restart() {
    let dir = TempDir::new("reconnect");
    let cert = dir.path("server.crt");
    let mut server = Server::start(&dir, &[]);
    let port = server.port();
    let mut alice = Chat::connect("alice", port, &cert);
    let bob = Chat::connect("bob", port, &cert);
    bob.out
        .wait("alice in list", T, |l| l.starts_with("[SYS]   alice  fp "));
    let fp_before = bob
        .out
        .all()
        .into_iter()
        .find(|l| l.starts_with("[SYS]   alice  fp "))
        .unwrap();
    drop(bob);

    let _ = server.child.kill();
    let _ = server.child.wait();
    alice.out.wait_for("[WARN] connection lost");

    let bind = format!("127.0.0.1:{port}");
    let server2 = Server::start(&dir, &["--bind", &bind]);
    assert_eq!(server2.port(), port);
    let connected = format!("[SYS] connected to 127.0.0.1:{port} as alice");
    alice
        .out
        .wait_count("registrations", 2, Duration::from_secs(40), |l| {
            l == connected
        });
    // Someone new (bob's name is registered to bob's identity since his v2 hello).
    let carol = Chat::connect("carol", port, &cert);
    carol
        .out
        .wait("alice in list", T, |l| l.starts_with("[SYS]   alice  fp "));
    // Alice knows carol's key once any line of hers shows its fingerprint (a join or
    // a listing, depending on the order things happened in).
    let me_line = carol.out.wait("carol's own line", T, |l| {
        l.starts_with("[SYS]   carol  fp ") && l.ends_with(" (you)")
    });
    let carol_fp = me_line
        .trim_start_matches("[SYS]   carol  fp ")
        .trim_end_matches(" (you)")
        .to_owned();
    alice.out.wait_for(&carol_fp);
    assert!(
        carol.out.contains(&fp_before),
        "alice kept her key pair across the reconnect"
    );
    alice.send("/to carol back again");
    carol.out.wait_exact("[alice] back again");
}

#[test]
fn server_with_the_reference_openssl_rsa_pair() {
    let dir = TempDir::new("rsa");
    let (crt, key) = openssl_rsa_pair(&dir);
    let server = Server::start_with(&crt, &key, &[]);
    let mut a = Chat::connect("ana", server.port(), &crt);
    let b = Chat::connect("beto", server.port(), &crt);
    a.out.wait_for("[SYS] beto joined");
    a.send("/to beto hola con RSA");
    b.out.wait_exact("[ana] hola con RSA");
}

#[test]
fn server_loads_pkcs1_and_sec1_keys() {
    let dir = TempDir::new("keyforms");
    let (crt, key) = openssl_rsa_pair(&dir);
    let pkcs1 = dir.path("rsa1.key");
    let st = std::process::Command::new("openssl")
        .args(["rsa", "-traditional", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&pkcs1)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    assert!(
        std::fs::read_to_string(&pkcs1)
            .unwrap()
            .contains("BEGIN RSA PRIVATE KEY")
    );
    let s = Server::start_with(&crt, &pkcs1, &[]);
    let _ = Raw::register(s.port(), s.pinned(), "pkcs1");

    let eckey = dir.path("ec.key");
    let eccrt = dir.path("ec.crt");
    let st = std::process::Command::new("openssl")
        .args([
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-noout",
            "-out",
        ])
        .arg(&eckey)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(
        std::fs::read_to_string(&eckey)
            .unwrap()
            .contains("BEGIN EC PRIVATE KEY")
    );
    let st = std::process::Command::new("openssl")
        .args([
            "req",
            "-new",
            "-x509",
            "-days",
            "30",
            "-subj",
            "/CN=servidor-local",
            "-key",
        ])
        .arg(&eckey)
        .arg("-out")
        .arg(&eccrt)
        .status()
        .unwrap();
    assert!(st.success());
    let s = Server::start_with(&eccrt, &eckey, &[]);
    let _ = Raw::register(s.port(), s.pinned(), "sec1");
}

#[test]
fn gen_cert_never_overwrites_and_half_pairs_are_refused() {
    let dir = TempDir::new("gencert");
    let crt = dir.path("a.crt");
    let key = dir.path("a.key");
    let run = |args: &[&str]| std::process::Command::new(BIN).args(args).output().unwrap();
    let c = crt.to_str().unwrap();
    let k = key.to_str().unwrap();
    let o = run(&["gen-cert", "--cert", c, "--key", k]);
    assert!(o.status.success(), "{o:?}");
    let first = std::fs::read(&crt).unwrap();
    let o = run(&["gen-cert", "--cert", c, "--key", k]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert_eq!(std::fs::read(&crt).unwrap(), first, "not overwritten");
    let o = run(&[
        "gen-cert", "--cert", c, "--key", k, "--force", "--cn", "otro", "--days", "2",
    ]);
    assert!(o.status.success());
    assert_ne!(std::fs::read(&crt).unwrap(), first);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "private key readable by others");
    }

    // serve with only the certificate present: a clear error, nothing generated.
    std::fs::remove_file(&key).unwrap();
    let o = run(&["serve", "--bind", "127.0.0.1:0", "--cert", c, "--key", k]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("exists but") && err.contains("does not"),
        "{err}"
    );
    assert!(!key.exists());

    // --help everywhere, --version.
    for sub in ["serve", "chat", "gen-cert"] {
        let o = run(&[sub, "--help"]);
        assert!(o.status.success());
    }
    let o = run(&["--version"]);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("seguro "));
    let o = run(&["chat", "only-user"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn serve_generates_a_pair_on_first_run_and_prints_its_fingerprint() {
    let dir = TempDir::new("firstrun");
    let server = Server::start(&dir, &[]);
    assert!(server.out.contains("generated a new certificate"));
    let fp = server.out.wait_for("certificate SHA-256: ");
    let expected = seguro::certs::sha256_colon_hex(&server.pinned());
    assert!(fp.ends_with(&expected), "{fp} vs {expected}");
    drop(server);
    // Second run loads the same pair.
    let server = Server::start(&dir, &[]);
    server.out.wait_for(&expected);
    assert!(!server.out.contains("generated a new certificate"));
}

#[test]
fn a_burst_of_joins_sends_coalesced_directories() {
    let dir = TempDir::new("coalesce");
    // A long debounce makes the coalescing visible without depending on speed.
    let server = Server::start(&dir, &["--users-debounce-ms", "1500"]);
    let mut watcher = Raw::register(server.port(), server.pinned(), "watcher");
    // Connect (TLS) first, then register all at once.
    let mut joiners: Vec<Raw> = (0..12)
        .map(|_| Raw::connect(server.port(), server.pinned()))
        .collect();
    for (i, j) in joiners.iter_mut().enumerate() {
        let hello = format!(
            "{{\"type\": \"hello\", \"user\": \"j{i}\", \"pub\": \"{}\"}}",
            <base64ct::Base64 as base64ct::Encoding>::encode_string(&j.key)
        );
        j.send_line(&hello);
    }
    // Every joiner gets its welcome at once.
    for j in joiners.iter_mut() {
        let w = j.read_line(T).expect("welcome");
        assert!(w.contains("\"welcome\""), "{w}");
    }
    // The watcher eventually sees all 13 users, in far fewer than 12 pushes.
    let mut pushes = 0;
    loop {
        let l = watcher.read_line(T).expect("users push");
        assert!(l.contains("\"users\""), "{l}");
        pushes += 1;
        if (0..12).all(|i| l.contains(&format!("\"j{i}\""))) {
            break;
        }
    }
    assert!(pushes <= 3, "{pushes} directory pushes for one burst");
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let dir = TempDir::new("sigterm");
    let mut server = Server::start(&dir, &[]);
    let cert = dir.path("server.crt");
    let alice = Chat::start("alice", server.port(), &cert, &["--no-reconnect"]);
    alice.out.wait_for(&format!(
        "[SYS] connected to 127.0.0.1:{} as alice",
        server.port()
    ));
    let st = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(wait_exit(&mut server.child, T), Some(0));
    server.err.wait_for("shutting down");
    alice.out.wait_exact("[SYS] the server is shutting down");
    alice
        .out
        .wait_exact("[WARN] connection lost (the server shut down)");
    assert!(!alice.out.contains("[ERROR]"), "{:?}", alice.out.all());
    let (code, _) = alice.finish();
    assert_eq!(code, Some(seguro::exit::CONNECT));
}

#[test]
fn a_returning_user_with_another_key_is_a_loud_warning() {
    let dir = TempDir::new("keychange");
    let server = Server::start(&dir, &[]);
    let cert = dir.path("server.crt");
    let alice = Chat::connect("alice", server.port(), &cert);
    // bob is a reference (v1) client: his name is never registered, so the server lets
    // another key take it, as v1 does (a v2 client's name is refused to another key:
    // tests/v2_hello.rs).
    let mut bob = Raw::register(server.port(), server.pinned(), "bob");
    alice.out.wait_for("[SYS] bob joined");
    assert!(!alice.out.contains("[WARN]"));
    bob.tls.conn.send_close_notify();
    let _ = std::io::Write::flush(&mut bob.tls);
    drop(bob);
    alice.out.wait_exact("[SYS] bob left");
    // A new process: a new key pair under the same name.
    let _bob2 = Raw::register(server.port(), server.pinned(), "bob");
    let w = alice.out.wait_for("[WARN] KEY CHANGED for bob: fp was ");
    assert!(w.contains("verify the new fingerprint"), "{w}");
}
