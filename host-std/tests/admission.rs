//! `seguro serve --private` against real clients over real TLS: who is refused (no
//! token, an unknown, used-up, expired or revoked token), with which error, and that a
//! refused client never receives a directory; who is admitted (a valid token, then the
//! same key without it, a key on the allow list or given with --allow-key); and that
//! a server without --private ignores tokens. Tokens are made, listed and revoked with
//! the real `seguro invite`, while the server runs.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64ct::{Base64, Encoding};
use common::{BIN, Chat, Raw, Server, T, TempDir, error_text, wait_exit};
use seguro_core::e2ee::KeyPair;
use seguro_core::invite::Invite;

/// `seguro invite` in the server's directory; returns its standard output (the
/// invite, or the listing) after checking it succeeded.
fn invite(cert: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("invite")
        .arg("--cert")
        .arg(cert)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "seguro invite {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A new invite with a join token, and that token.
fn token_invite(s: &Server, args: &[&str]) -> (String, String) {
    let addr = format!("127.0.0.1:{}", s.port());
    let mut all = vec!["--address", &addr];
    all.extend_from_slice(args);
    let line = invite(&s.cert, &all).trim().to_owned();
    let token = Invite::parse(&line)
        .unwrap()
        .token()
        .expect("the invite carries a token")
        .as_str()
        .to_owned();
    (line, token)
}

fn hello(user: &str, key: &[u8; 32], token: Option<&str>) -> String {
    let key = Base64::encode_string(key);
    match token {
        // The reference client's spacing: the token is just one more field.
        Some(t) => format!(
            "{{\"type\": \"hello\", \"user\": \"{user}\", \"pub\": \"{key}\", \"token\": \"{t}\"}}"
        ),
        None => format!("{{\"type\": \"hello\", \"user\": \"{user}\", \"pub\": \"{key}\"}}"),
    }
}

fn new_key() -> [u8; 32] {
    KeyPair::generate(&mut rand_core::OsRng).public()
}

/// Everything the server sends a refused client, to the close.
fn refused(s: &Server, user: &str, key: &[u8; 32], token: Option<&str>) -> String {
    let mut r = Raw::connect(s.port(), s.pinned());
    r.send_line(&hello(user, key, token));
    let mut lines = Vec::new();
    while let Some(l) = r.read_line(T) {
        lines.push(l);
    }
    // One error, then the close: never a welcome or a users line.
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        !lines[0].contains("\"welcome\"") && !lines[0].contains("\"users\":"),
        "{lines:?}"
    );
    error_text(&lines[0]).unwrap_or_else(|| panic!("not an error: {lines:?}"))
}

/// Registers; returns the connection and its welcome.
fn admitted(s: &Server, user: &str, key: &[u8; 32], token: Option<&str>) -> (Raw, String) {
    let mut r = Raw::connect(s.port(), s.pinned());
    r.send_line(&hello(user, key, token));
    let w = r.read_line(T).expect("a reply to hello");
    assert!(
        w.contains("\"welcome\""),
        "{user}: expected a welcome, got {w}"
    );
    (r, w)
}

const NOT_INVITED: &str = "this server is private: it admits only invited users (a join token \
    from an invite, or a key on its allow list); ask its operator for an invite and join \
    with: seguro chat <user> --invite '<invite>'";

#[test]
fn a_private_server_admits_only_the_invited() {
    let dir = TempDir::new("admission");
    let s = Server::start(&dir, &["--private"]);
    s.out.wait_for("private server: admits only invited users");

    // A member already inside, to see that refused clients never appear.
    let (_, one) = token_invite(&s, &["--uses", "1"]);
    let ana = new_key();
    let (mut ana_conn, w) = admitted(&s, "ana", &ana, Some(&one));
    assert!(w.contains("\"ana\""));

    // No token (what every reference client sends).
    assert_eq!(refused(&s, "eve", &new_key(), None), NOT_INVITED);
    // A token this server never issued, well-formed or not.
    let forged = "abcdefghijklmnopqrstuvwxyz";
    assert!(refused(&s, "eve", &new_key(), Some(forged)).contains("is not one of its tokens"));
    assert!(refused(&s, "eve", &new_key(), Some("")).contains("is not one of its tokens"));
    // A used-up token: its one use admitted ana.
    assert!(
        refused(&s, "eve", &new_key(), Some(&one))
            .contains("has been used as many times as it may")
    );
    // An expired token.
    let (_, short) = token_invite(&s, &["--expires", "1s"]);
    std::thread::sleep(Duration::from_millis(2100));
    assert!(refused(&s, "eve", &new_key(), Some(&short)).contains("has expired"));
    // A revoked token, revoked while the server runs (by its number and by the invite).
    let (line, revoked) = token_invite(&s, &["--uses", "5", "--label", "for the group"]);
    let (line2, revoked2) = token_invite(&s, &["--uses", "5"]);
    let list = invite(&s.cert, &["--list"]);
    let id = list
        .lines()
        .find(|l| l.contains("\"for the group\""))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    invite(&s.cert, &["--revoke", &id]);
    invite(&s.cert, &["--revoke", &line2]);
    assert!(refused(&s, "eve", &new_key(), Some(&revoked)).contains("was revoked"));
    assert!(refused(&s, "eve", &new_key(), Some(&revoked2)).contains("was revoked"));
    let _ = line;

    // None of that registered anyone: ana got no directory push, and sees only herself.
    ana_conn.send_line("{\"type\":\"list\"}");
    let users = ana_conn.read_line(T).unwrap();
    assert!(
        users.contains("\"users\"") && users.contains("\"ana\""),
        "{users}"
    );
    assert!(!users.contains("\"eve\""), "{users}");

    // A valid token admits; its holder comes back without it and costs no use.
    let (three, three_token) = token_invite(&s, &["--uses", "3", "--expires", "7d"]);
    let bo = new_key();
    let (bo_conn, _) = admitted(&s, "bo", &bo, Some(&three_token));
    drop(bo_conn);
    std::thread::sleep(Duration::from_millis(300));
    let (bo_conn, _) = admitted(&s, "bo", &bo, None);
    drop(bo_conn);
    let list = invite(&s.cert, &["--list"]);
    assert!(list.contains("1/3 used"), "{list}");
    assert!(list.contains("joined: bo (fp "), "{list}");
    // No token text is ever stored.
    let store = std::fs::read_to_string(dir.path("join-tokens")).unwrap();
    for t in [&one, &short, &revoked, &three_token] {
        assert!(!store.contains(t.as_str()));
    }
    // Revoking the token refuses the people who joined with it, at their next hello.
    invite(&s.cert, &["--revoke", &three]);
    assert_eq!(refused(&s, "bo", &bo, None), NOT_INVITED);

    // The allow list: a key (base64) and a fingerprint in the file, read at once.
    let (cy, dee) = (new_key(), new_key());
    std::fs::write(
        dir.path("allowed-keys"),
        format!(
            "# friends\n{} cy's laptop\n{}  # dee\n",
            Base64::encode_string(&cy),
            seguro_core::fingerprint::short(&dee)
        ),
    )
    .unwrap();
    admitted(&s, "cy", &cy, None);
    admitted(&s, "dee", &dee, Some(forged));
    // ... and bo, back on the list.
    std::fs::write(
        dir.path("allowed-keys"),
        format!("{}\n", Base64::encode_string(&bo)),
    )
    .unwrap();
    admitted(&s, "bo", &bo, None);
    // A damaged allow list refuses everyone (the error says why in the log).
    std::fs::write(dir.path("allowed-keys"), "not a key\n").unwrap();
    assert!(refused(&s, "bo", &bo, None).contains("cannot check invites right now"));
    s.err.wait("the log naming the file", T, |l| {
        l.contains("allowed-keys line 1") && l.contains("is not an identity key")
    });
    drop(ana_conn);
}

#[test]
fn allow_key_on_the_command_line_and_bad_files_at_start() {
    let dir = TempDir::new("admission-flags");
    let allowed = new_key();
    let fp = seguro_core::fingerprint::short(&allowed).to_string();
    let s = Server::start(&dir, &["--private", "--allow-key", &fp]);
    s.out.wait_for("and 1 from --allow-key");
    admitted(&s, "ana", &allowed, None);
    assert_eq!(refused(&s, "eve", &new_key(), None), NOT_INVITED);
    drop(s);

    // A bad --allow-key and a damaged store stop the server at start, saying why.
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["serve", "--bind", "127.0.0.1:0", "--cert"])
            .arg(dir.path("server.crt"))
            .arg("--key")
            .arg(dir.path("server.key"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--private", "--allow-key", "nope"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("--allow-key: \"nope\" is not an identity key"),
        "{err}"
    );
    std::fs::write(dir.path("join-tokens"), "seguro-join-tokens 1\nnext x\n").unwrap();
    let (code, err) = run(&["--private"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("join-tokens is damaged (line 2: bad next number)"),
        "{err}"
    );
    // --allow-key needs --private.
    let (code, _) = run(&["--allow-key", &fp]);
    assert_eq!(code, Some(2));
}

#[test]
fn a_public_server_ignores_tokens() {
    let dir = TempDir::new("admission-public");
    let s = Server::start(&dir, &[]);
    admitted(&s, "ana", &new_key(), None);
    admitted(&s, "bo", &new_key(), Some("abcdefghijklmnopqrstuvwxyz"));
    admitted(&s, "cy", &new_key(), Some("not even base32"));
}

#[test]
fn the_desktop_client_sends_its_invites_token() {
    let dir = TempDir::new("admission-desktop");
    let s = Server::start(&dir, &["--private"]);
    let (with, _) = token_invite(&s, &["--uses", "1"]);
    let addr = format!("127.0.0.1:{}", s.port());
    let without = invite(&s.cert, &["--address", &addr]).trim().to_owned();
    let state = dir.path("state");
    let state = state.to_str().unwrap();

    // An invite without a token: refused, told why, exit code 4, no reconnection.
    let mut c = Chat::start_args(
        &["chat", "eve", "--invite", &without, "--state-dir", state],
        None,
    );
    let code = wait_exit(&mut c.child, T);
    let out = c.out.clone();
    assert_eq!(code, Some(4));
    assert!(
        out.contains(&format!("[ERROR] {NOT_INVITED}")),
        "{:?}",
        out.all()
    );
    assert!(!out.contains("users online"), "{:?}", out.all());

    // With the token: admitted; later, the same identity with the plain invite too.
    let mut c = Chat::start_args(
        &["chat", "ana", "--invite", &with, "--state-dir", state],
        None,
    );
    c.out.wait_for("[SYS] connected to ");
    c.send("/server hola");
    c.out.wait_exact("[SERVER] echo: hola");
    let (code, _) = c.finish();
    assert_eq!(code, Some(0));
    let mut c = Chat::start_args(
        &["chat", "ana", "--invite", &without, "--state-dir", state],
        None,
    );
    c.out.wait_for("[SYS] connected to ");
    c.send("/server otra vez");
    c.out.wait_exact("[SERVER] echo: otra vez");
    assert_eq!(c.finish().0, Some(0));
    // The one use went to ana: another identity is refused with it.
    let mut c = Chat::start_args(
        &["chat", "bo", "--invite", &with, "--state-dir", state],
        None,
    );
    assert_eq!(wait_exit(&mut c.child, T), Some(4));

    // The public key `seguro id show` prints, on the allow list, admits that identity
    // with no token at all, also with the certificate file instead of an invite.
    let id = |args: &[&str]| {
        let o = Command::new(BIN).arg("id").args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    id(&["create", "cy", "--state-dir", state]);
    let shown = id(&["show", "cy", "--state-dir", state]);
    let key = shown
        .lines()
        .find_map(|l| l.trim().strip_prefix("public key"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no public key in {shown}"))
        .to_owned();
    std::fs::write(dir.path("allowed-keys"), format!("{key} cy\n")).unwrap();
    let port = s.port().to_string();
    let cert = s.cert.to_str().unwrap();
    let mut c = Chat::start_args(
        &[
            "chat",
            "cy",
            "127.0.0.1",
            &port,
            "--cert",
            cert,
            "--state-dir",
            state,
        ],
        None,
    );
    c.out.wait_for("[SYS] connected to ");
    c.send("/server hola");
    c.out.wait_exact("[SERVER] echo: hola");
    assert_eq!(c.finish().0, Some(0));
}
