//! Invites end to end, with the real binary, real sockets and real TLS: `seguro invite`
//! and the invite `seguro serve` prints, `seguro chat --invite` (no certificate file),
//! several addresses, a renewed certificate for the same key, another key, a backup
//! key, and mistyped invites.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn seguro(args: &[&str], cwd: Option<&Path>) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let o = cmd.args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8(o.stderr).unwrap(),
    )
}

fn gen_cert(dir: &TempDir, name: &str) -> (String, String) {
    let crt = dir.path(&format!("{name}.crt")).display().to_string();
    let key = dir.path(&format!("{name}.key")).display().to_string();
    let (code, _, err) = seguro(&["gen-cert", "--cert", &crt, "--key", &key], None);
    assert_eq!(code, 0, "{err}");
    (crt, key)
}

/// `seguro invite --cert CRT --address ...` → the line.
fn invite(crt: &str, addresses: &[String], extra: &[&str]) -> String {
    let mut args = vec!["invite", "--cert", crt];
    for a in addresses {
        args.extend(["--address", a.as_str()]);
    }
    args.extend(extra);
    let (code, out, err) = seguro(&args, None);
    assert_eq!(code, 0, "{err}");
    out.lines().last().unwrap().to_owned()
}

/// A client joining with `--invite`, from a directory with no certificate in it.
fn chat_invite(user: &str, line: &str, dir: &TempDir) -> Chat {
    let empty = dir.path(&format!("cwd-{user}"));
    std::fs::create_dir_all(&empty).unwrap();
    Chat::start_args(&["chat", user, "--invite", line], Some(&empty))
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn the_invite_serve_prints_joins_without_a_certificate_file() {
    let dir = TempDir::new("inv-roundtrip");
    let server = Server::start(&dir, &[]);
    let port = server.port();
    // The banner: the key pin and the invite for the listening address.
    let pin_line = server.out.wait_for("key pin: p256:");
    server.out.wait_exact("invite (for this machine):");
    let printed = server.out.wait_for("  seguro://").trim().to_owned();
    assert!(printed.starts_with(&format!("seguro://127.0.0.1:{port}/v=1/k=p256:")));
    assert!(printed.contains(pin_line.trim_start_matches("key pin: ")));
    // `seguro invite` makes the same line from server.crt.
    let crt = dir.path("server.crt").display().to_string();
    let made = invite(&crt, &[format!("127.0.0.1:{port}")], &[]);
    assert_eq!(made, printed);
    // It decodes, and says what it holds.
    let (code, out, _) = seguro(&["invite", "--decode", &made], None);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("address 1: 127.0.0.1:{port}")),
        "{out}"
    );
    assert!(out.contains("the check matches"), "{out}");

    let mut alice = chat_invite("alice", &made, &dir);
    alice
        .out
        .wait_exact(&format!("[SYS] connected to 127.0.0.1:{port} as alice"));
    // The invite in place of host and port.
    let empty = dir.path("cwd-bob");
    std::fs::create_dir_all(&empty).unwrap();
    let mut bob = Chat::start_args(&["chat", "bob", &made], Some(&empty));
    bob.out
        .wait_exact(&format!("[SYS] connected to 127.0.0.1:{port} as bob"));
    alice.out.wait_for("[SYS] bob joined");
    alice.send("/to bob over an invite");
    bob.out.wait_exact("[alice] over an invite");
    bob.send("/to alice received");
    alice.out.wait_exact("[bob] received");
    let (code, _) = alice.finish();
    assert_eq!(code, Some(0));
    let (code, _) = bob.finish();
    assert_eq!(code, Some(0));
}

#[test]
fn addresses_are_tried_in_order() {
    let dir = TempDir::new("inv-order");
    let server = Server::start(&dir, &[]);
    let crt = dir.path("server.crt").display().to_string();
    let dead = closed_port();
    let line = invite(
        &crt,
        &[
            format!("127.0.0.1:{dead}"),
            format!("localhost:{}", server.port()),
        ],
        &[],
    );
    let chat = chat_invite("carol", &line, &dir);
    chat.out
        .wait_for(&format!("[WARN] cannot connect to 127.0.0.1:{dead}: "));
    chat.out.wait_for("trying the next address");
    chat.out.wait_exact(&format!(
        "[SYS] connected to localhost:{} as carol",
        server.port()
    ));
    let (code, _) = chat.finish();
    assert_eq!(code, Some(0));
    // No address works: the client says why and exits 4.
    let line = invite(&crt, &[format!("127.0.0.1:{dead}")], &[]);
    let (code, out) = chat_invite("dave", &line, &dir).finish();
    assert_eq!(code, Some(seguro::exit::CONNECT), "{:?}", out.all());
    out.wait_for(&format!("[ERROR] cannot connect to 127.0.0.1:{dead}"));
}

#[test]
fn a_renewed_certificate_for_the_same_key_is_accepted() {
    let dir = TempDir::new("inv-renew");
    let (crt, key) = gen_cert(&dir, "server");
    let old = seguro::certs::load_cert(Path::new(&crt)).unwrap();
    let old_copy = dir.path("old.crt");
    std::fs::copy(&crt, &old_copy).unwrap();
    // The invite is made before the renewal, with a placeholder port fixed below.
    let port = closed_port();
    let line = invite(&crt, &[format!("127.0.0.1:{port}")], &[]);
    let (code, out, err) = seguro(
        &["gen-cert", "--renew", "--cert", &crt, "--key", &key],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("invites stay valid"), "{out}");
    let new = seguro::certs::load_cert(Path::new(&crt)).unwrap();
    assert_ne!(old, new, "the certificate is a new one");
    assert_eq!(
        seguro::certs::key_pin(&old).unwrap(),
        seguro::certs::key_pin(&new).unwrap()
    );
    let bind = format!("127.0.0.1:{port}");
    let server = Server::start_with(Path::new(&crt), Path::new(&key), &["--bind", &bind]);
    // The invite still works...
    let chat = chat_invite("erin", &line, &dir);
    chat.out
        .wait_exact(&format!("[SYS] connected to 127.0.0.1:{port} as erin"));
    assert_eq!(chat.finish().0, Some(0));
    // ...while a client that pinned the old certificate file is refused, as before.
    let (code, out) = Chat::start("frank", server.port(), &old_copy, &[]).finish();
    assert_eq!(code, Some(seguro::exit::TLS), "{:?}", out.all());
    out.wait_for("[ERROR] server certificate does not match the pinned certificate");
}

#[test]
fn a_server_with_another_key_is_refused_like_a_wrong_certificate() {
    let dir = TempDir::new("inv-otherkey");
    let server = Server::start(&dir, &[]);
    let (other, _) = gen_cert(&dir, "other");
    let line = invite(&other, &[format!("127.0.0.1:{}", server.port())], &[]);
    let (code, out) = chat_invite("mallory", &line, &dir).finish();
    assert_eq!(code, Some(seguro::exit::TLS), "{:?}", out.all());
    let expected = seguro::certs::key_pin(&seguro::certs::load_cert(Path::new(&other)).unwrap())
        .unwrap()
        .to_string();
    let presented = seguro::certs::key_pin(&server.pinned())
        .unwrap()
        .to_string();
    let l = out.wait_for("[ERROR] server key does not match the pinned key");
    assert!(l.contains(&format!("expected key {expected}")), "{l}");
    assert!(l.contains(&format!("presented key {presented}")), "{l}");
    assert!(l.contains("the invite is not for this server"), "{l}");
    assert!(l.contains("do not continue"), "{l}");
    assert!(!out.contains("[SYS] connected"));
}

#[test]
fn a_backup_key_is_accepted_and_only_when_pinned() {
    let dir = TempDir::new("inv-backup");
    let (crt, _) = gen_cert(&dir, "server");
    let (next_crt, next_key) = gen_cert(&dir, "next");
    let port = closed_port();
    let addr = format!("127.0.0.1:{port}");
    let with_backup = invite(
        &crt,
        std::slice::from_ref(&addr),
        &["--backup-cert", &next_crt],
    );
    assert!(with_backup.contains("/b=p256:"), "{with_backup}");
    let without = invite(&crt, std::slice::from_ref(&addr), &[]);
    // The server has switched to the backup key.
    let _server = Server::start_with(
        Path::new(&next_crt),
        Path::new(&next_key),
        &["--bind", &addr],
    );
    let chat = chat_invite("grace", &with_backup, &dir);
    chat.out
        .wait_exact(&format!("[SYS] connected to {addr} as grace"));
    assert_eq!(chat.finish().0, Some(0));
    let (code, out) = chat_invite("heidi", &without, &dir).finish();
    assert_eq!(code, Some(seguro::exit::TLS), "{:?}", out.all());
    out.wait_for("[ERROR] server key does not match the pinned key");
}

#[test]
fn serve_prints_the_invite_for_the_given_addresses() {
    let dir = TempDir::new("inv-banner");
    let (next_crt, _) = gen_cert(&dir, "next");
    let server = Server::start(
        &dir,
        &[
            "--invite-address",
            "tcp://0.tcp.eu.ngrok.io:12345",
            "--invite-address",
            "192.168.1.20:5000",
            "--backup-cert",
            &next_crt,
        ],
    );
    let line = server.out.wait_for("  seguro://").trim().to_owned();
    assert!(
        line.starts_with("seguro://0.tcp.eu.ngrok.io:12345,192.168.1.20:5000/v=1/k=p256:"),
        "{line}"
    );
    let (code, out, _) = seguro(&["invite", "--decode", &line], None);
    assert_eq!(code, 0);
    let next =
        seguro::certs::key_pin(&seguro::certs::load_cert(Path::new(&next_crt)).unwrap()).unwrap();
    assert!(out.contains(&format!("backup key: {next}")), "{out}");
    // Listening on every interface: the printed invite is for this machine, and says
    // how to make one for others.
    let dir2 = TempDir::new("inv-banner-any");
    let s2 = Server::start(&dir2, &["--bind", "0.0.0.0:0"]);
    s2.out.wait_exact("invite (for this machine):");
    s2.out
        .wait_for(&format!("  seguro://127.0.0.1:{}/v=1/k=p256:", s2.port()));
    s2.out
        .wait_for("for friends elsewhere: seguro invite --cert ");
}

#[test]
fn mistyped_invites_are_refused_saying_what_is_wrong() {
    let dir = TempDir::new("inv-typo");
    let server = Server::start(&dir, &[]);
    let crt = dir.path("server.crt").display().to_string();
    let line = invite(&crt, &[format!("localhost:{}", server.port())], &[]);
    let cases = [
        // A letter of the pin changed: only the check can tell.
        (
            {
                let i = line.find("/k=p256:").unwrap() + 12;
                let mut b = line.clone().into_bytes();
                b[i] = if b[i] == b'a' { b'b' } else { b'a' };
                String::from_utf8(b).unwrap()
            },
            "check does not match",
        ),
        (
            line.replacen("localhost", "lcoalhost", 1),
            "check does not match",
        ),
        (line.replacen("v=1", "v=2", 1), "version 2"),
        (
            line.replacen(&format!(":{}", server.port()), ":99999", 1),
            "address 1 of the invite has a bad port",
        ),
        (line[..line.len() - 3].to_owned(), "incomplete"),
        (
            "https://example.org".to_owned(),
            "must start with seguro://",
        ),
    ];
    for (bad, why) in cases {
        let (code, out) = chat_invite("ivan", &bad, &dir).finish();
        assert_eq!(code, Some(seguro::exit::USAGE), "{bad}: {:?}", out.all());
        let l = out.wait_for("[ERROR] invalid invite: ");
        assert!(l.contains(why), "{bad}: {l}");
        let (code, _, err) = seguro(&["invite", "--decode", &bad], None);
        assert_eq!(code, seguro::exit::USAGE);
        assert!(err.contains(why), "{err}");
    }
    // Nobody connected with a mistyped invite.
    assert!(!server.err.contains("ivan"));
}

#[test]
fn the_reference_kind_of_rsa_server_works_with_an_invite() {
    let dir = TempDir::new("inv-rsa");
    let (crt, key) = openssl_rsa_pair(&dir);
    let server = Server::start_with(&crt, &key, &[]);
    let line = server.out.wait_for("  seguro://").trim().to_owned();
    assert!(line.contains("/k=rsa:"), "{line}");
    let chat = chat_invite("judy", &line, &dir);
    chat.out.wait_for("[SYS] connected to 127.0.0.1:");
    assert_eq!(chat.finish().0, Some(0));
}

#[test]
fn invite_qr_and_usage_errors() {
    let dir = TempDir::new("inv-qr");
    let (crt, _) = gen_cert(&dir, "server");
    let (code, out, err) = seguro(
        &["invite", "--cert", &crt, "--address", "h.example:1", "--qr"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("seguro://h.example:1/v=1/k=p256:")
    );
    // Above it, a square of half-block characters with a light quiet zone.
    let qr: Vec<&str> = lines[..lines.len() - 1]
        .iter()
        .copied()
        .filter(|l| !l.is_empty())
        .collect();
    assert!(qr.len() > 12, "{out}");
    assert!(qr[0].chars().all(|c| c == '█'), "{}", qr[0]);
    let width = qr[0].chars().count();
    assert!(qr.iter().all(|l| l.chars().count() == width));
    // The QR's rows are half as many as its columns (two modules per character).
    assert!(
        (qr.len() * 2).abs_diff(width) <= 1,
        "{} x {width}",
        qr.len()
    );
    // As a camera sees it on a dark terminal (drawn = light), it reads back as the line.
    let scale = 4;
    let (w, h) = (width * scale, qr.len() * 2 * scale);
    let rows: Vec<Vec<char>> = qr.iter().map(|l| l.chars().collect()).collect();
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        let (col, half) = (x / scale, y / scale);
        let c = rows[half / 2][col];
        let lit = if half % 2 == 0 {
            matches!(c, '█' | '▀')
        } else {
            matches!(c, '█' | '▄')
        };
        if lit { 255 } else { 0 }
    });
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code");
    let (_, content) = grids[0].decode().unwrap();
    assert_eq!(content, *lines.last().unwrap());

    let (code, _, err) = seguro(&["invite", "--cert", &crt, "--address", "nope"], None);
    assert_eq!(code, seguro::exit::USAGE);
    assert!(err.contains("host:port"), "{err}");
    let (code, _, err) = seguro(
        &["invite", "--cert", "missing.crt", "--address", "h:1"],
        Some(&dir.0),
    );
    assert_eq!(code, seguro::exit::ERROR);
    assert!(err.contains("missing.crt"), "{err}");
    let (code, _, err) = seguro(&["chat", "kim"], None);
    assert_eq!(code, seguro::exit::USAGE, "{err}");
}
