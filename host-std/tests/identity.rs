//! Persistent identities with real processes: a restarted `seguro chat` presents the
//! same key and its peers print no warning (through a real server, over real TLS);
//! `kill -9` while a state file is being written leaves the old file or the new one;
//! corrupt, truncated, world-readable and misplaced files get their error and exit
//! code and are left as they are; `seguro id` show/create/rotate/export/import.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{BIN, Chat, Lines, Server, T, TempDir, wait_exit};

fn seguro(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .env_remove(seguro::state::TEST_PAUSE_ENV)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn state_dir(dir: &TempDir) -> PathBuf {
    dir.path("state")
}

/// `seguro id show USER` → the short fingerprint it prints.
fn shown_fp(state: &Path, user: &str) -> String {
    let o = seguro(&["id", "show", user, "--state-dir", state.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    let line = t
        .lines()
        .find(|l| l.trim_start().starts_with("fingerprint"))
        .unwrap_or_else(|| panic!("no fingerprint in {t}"));
    line.split_whitespace().nth(1).unwrap().to_owned()
}

fn identity_file(state: &Path, user: &str) -> PathBuf {
    state.join("users").join(user).join("identity")
}

fn chat_in(user: &str, port: u16, cert: &Path, state: &Path) -> Chat {
    let c = Chat::start(user, port, cert, &["--state-dir", state.to_str().unwrap()]);
    c.out
        .wait_for(&format!("[SYS] connected to 127.0.0.1:{port} as {user}"));
    c
}

fn joined_fp(lines: &Lines, user: &str, nth: usize) -> String {
    let prefix = format!("[SYS] {user} joined, fp ");
    lines.wait_count(&prefix, nth, T, |l| l.starts_with(&prefix));
    let all = lines.all();
    let l = all
        .iter()
        .filter(|l| l.starts_with(&prefix))
        .nth(nth - 1)
        .unwrap();
    l[prefix.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn a_restarted_client_presents_the_same_key_and_peers_see_no_warning() {
    let dir = TempDir::new("id-restart");
    let server = Server::start(&dir, &[]);
    let cert = dir.path("server.crt");
    let state = state_dir(&dir);
    let port = server.port();

    let bob = Chat::connect("bob", port, &cert);
    let alice = chat_in("alice", port, &cert, &state);
    let created = alice
        .out
        .wait_for("[SYS] created a new identity for alice: fp ");
    let fp1 = joined_fp(&bob.out, "alice", 1);
    assert!(created.contains(&fp1), "{created} vs {fp1}");
    assert_eq!(shown_fp(&state, "alice"), fp1);
    let mode = std::fs::metadata(identity_file(&state, "alice"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (code, _) = alice.finish();
    assert_eq!(code, Some(0));
    bob.out.wait_exact("[SYS] alice left");

    // The same state directory: the same key, no warning anywhere.
    let alice = chat_in("alice", port, &cert, &state);
    let fp2 = joined_fp(&bob.out, "alice", 2);
    assert_eq!(fp1, fp2);
    assert!(!alice.out.contains("created a new identity"));
    let (code, _) = alice.finish();
    assert_eq!(code, Some(0));
    bob.out
        .wait_count("alice left", 2, T, |l| l == "[SYS] alice left");
    assert!(
        !bob.out.contains("[WARN]"),
        "bob warned: {:?}",
        bob.out.all()
    );

    // Control: another state directory is another key, which the server refuses:
    // alice's v2 hello registered her name to her keys.
    let other = dir.path("other-state");
    let alice3 = Chat::start(
        "alice",
        port,
        &cert,
        &["--state-dir", other.to_str().unwrap()],
    );
    alice3.out.wait_for(
        "[ERROR] the name alice belongs to another key; it is released after 90 days unused \
         (if it is yours, move your identity from the other machine: `seguro id export alice \
         FILE` there, `seguro id import FILE` here)",
    );
    assert_ne!(shown_fp(&other, "alice"), fp1);
}

#[test]
fn the_default_location_is_xdg_data_home_then_home() {
    let dir = TempDir::new("id-xdg");
    let xdg = dir.path("xdg");
    let o = Command::new(BIN)
        .args(["id", "create", "carol"])
        .env("XDG_DATA_HOME", &xdg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(xdg.join("seguro/users/carol/identity").is_file());
    let home = dir.path("home");
    let o = Command::new(BIN)
        .args(["id", "create", "carol"])
        .env_remove("XDG_DATA_HOME")
        .env("HOME", &home)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        home.join(".local/share/seguro/users/carol/identity")
            .is_file()
    );
    for d in [
        home.join(".local/share/seguro"),
        home.join(".local/share/seguro/users/carol"),
    ] {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", d.display());
    }
    // A relative XDG_DATA_HOME is ignored, as the XDG spec says.
    let o = Command::new(BIN)
        .args(["id", "show"])
        .env("XDG_DATA_HOME", "relative")
        .env("HOME", &home)
        .output()
        .unwrap();
    assert!(text(&o).contains("carol"), "{}", text(&o));
}

/// Starts `seguro id rotate USER --yes` pausing before the rename; returns once the
/// new file is written and flushed.
fn rotation_paused(state: &Path, user: &str) -> (std::process::Child, Lines) {
    let mut child = Command::new(BIN)
        .args(["id", "rotate", user, "--yes", "--state-dir"])
        .arg(state)
        .env(seguro::state::TEST_PAUSE_ENV, "60")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = Lines::default();
    err.spawn_reader(child.stderr.take().unwrap());
    err.wait_for("seguro: test pause: ");
    (child, err)
}

#[test]
fn kill_9_while_writing_leaves_the_old_file_or_the_new_one() {
    let dir = TempDir::new("id-kill");
    let state = state_dir(&dir);
    let s = state.to_str().unwrap();
    let o = seguro(&["id", "create", "alice", "--state-dir", s]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let file = identity_file(&state, "alice");
    let before = std::fs::read(&file).unwrap();
    let fp0 = shown_fp(&state, "alice");

    // Killed after the new file is complete on disk but before it replaces the old.
    let (mut child, _err) = rotation_paused(&state, "alice");
    let tmp = state.join("users/alice/.identity.tmp");
    assert!(tmp.is_file());
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    assert_eq!(std::fs::read(&file).unwrap(), before);
    assert_eq!(shown_fp(&state, "alice"), fp0);

    // The leftover temporary file is never read, and the next write replaces it.
    let o = seguro(&["id", "rotate", "alice", "--yes", "--state-dir", s]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let fp1 = shown_fp(&state, "alice");
    assert_ne!(fp1, fp0);
    assert!(!tmp.exists());

    // Killed at arbitrary moments of a rotation: always a whole identity, old or new.
    for i in 0..20u64 {
        let before = std::fs::read(&file).unwrap();
        let mut child = Command::new(BIN)
            .args(["id", "rotate", "alice", "--yes", "--state-dir", s])
            .env_remove(seguro::state::TEST_PAUSE_ENV)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(500 * i));
        let _ = child.kill();
        let _ = child.wait();
        let after = std::fs::read(&file).unwrap();
        let o = seguro(&["id", "show", "alice", "--state-dir", s]);
        assert_eq!(o.status.code(), Some(0), "kill {i}: {}", text(&o));
        if after != before {
            assert_ne!(
                seguro_core::identity::Identity::decode_file(&after)
                    .unwrap()
                    .0
                    .public(),
                seguro_core::identity::Identity::decode_file(&before)
                    .unwrap()
                    .0
                    .public()
            );
        }
    }

    // A first creation killed before its rename leaves no identity; the next run makes
    // one (and says so).
    let fresh = dir.path("fresh");
    let mut child = Command::new(BIN)
        .args(["id", "create", "dave", "--state-dir"])
        .arg(&fresh)
        .env(seguro::state::TEST_PAUSE_ENV, "60")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let err = Lines::default();
    err.spawn_reader(child.stderr.take().unwrap());
    err.wait_for("seguro: test pause: ");
    child.kill().unwrap();
    let _ = child.wait();
    assert!(!identity_file(&fresh, "dave").exists());
    let o = seguro(&["id", "show", "dave", "--state-dir", fresh.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no identity for dave"), "{}", text(&o));
}

/// Runs `seguro chat alice` against a certificate but no server: the identity is read
/// before connecting.
fn chat_once(state: &Path, cert: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args([
            "chat",
            "alice",
            "127.0.0.1",
            "9",
            "--no-reconnect",
            "--cert",
        ])
        .arg(cert)
        .arg("--state-dir")
        .arg(state)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Lines::default();
    out.spawn_reader(child.stdout.take().unwrap());
    let code = wait_exit(&mut child, T);
    out.wait_closed(T);
    (code, out.all().join("\n"))
}

#[test]
fn corrupt_truncated_exposed_and_misplaced_files_get_a_clear_error() {
    let dir = TempDir::new("id-bad");
    let state = state_dir(&dir);
    let s = state.to_str().unwrap();
    let cert = dir.path("server.crt");
    let o = seguro(&[
        "gen-cert",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        dir.path("server.key").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    let o = seguro(&["id", "create", "alice", "--state-dir", s]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let file = identity_file(&state, "alice");
    let good = std::fs::read(&file).unwrap();

    let put = |data: &[u8], mode: u32| {
        std::fs::write(&file, data).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x01;
    let cases: Vec<(&str, Vec<u8>, u32, &str)> = vec![
        (
            "truncated",
            good[..good.len() - 7].to_vec(),
            0o600,
            "truncated",
        ),
        ("empty", Vec::new(), 0o600, "truncated"),
        (
            "one bit flipped",
            flipped,
            0o600,
            "corrupt (checksum mismatch)",
        ),
        (
            "garbage",
            b"not a key at all\n".to_vec(),
            0o600,
            "not a Seguro state file",
        ),
        (
            "world-readable",
            good.clone(),
            0o644,
            "accessible to other users (mode 0644)",
        ),
        ("group-readable", good.clone(), 0o640, "chmod 600"),
    ];
    for (what, data, mode, needle) in cases {
        put(&data, mode);
        let (code, out) = chat_once(&state, &cert);
        assert_eq!(code, Some(5), "{what}: {out}");
        assert!(
            out.contains("[ERROR]") && out.contains(needle),
            "{what}: {out}"
        );
        // Left exactly as it was: nothing replaced silently.
        assert_eq!(std::fs::read(&file).unwrap(), data, "{what}");
        let o = seguro(&["id", "show", "alice", "--state-dir", s]);
        assert_eq!(o.status.code(), Some(5), "{what}: {}", text(&o));
        assert!(text(&o).contains(needle), "{what}: {}", text(&o));
    }
    // Every refusal explains how to recover.
    put(&good[..good.len() - 1], 0o600);
    let (_, out) = chat_once(&state, &cert);
    assert!(
        out.contains("never replaces an identity by itself"),
        "{out}"
    );
    assert!(out.contains("seguro id import"), "{out}");

    // Alice's identity copied to bob's place.
    put(&good, 0o600);
    let bob = identity_file(&state, "bob");
    std::fs::create_dir_all(bob.parent().unwrap()).unwrap();
    std::fs::copy(&file, &bob).unwrap();
    std::fs::set_permissions(&bob, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = seguro(&["id", "show", "bob", "--state-dir", s]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(
        text(&o).contains("holds the identity of \"alice\", not of \"bob\""),
        "{}",
        text(&o)
    );

    // A corrupt contact list is refused too (and left alone).
    let trust = state.join("users/alice/trust");
    std::fs::write(&trust, b"SEGURO?").unwrap();
    std::fs::set_permissions(&trust, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = seguro(&["id", "show", "alice", "--state-dir", s]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(text(&o).contains("empty contact list"), "{}", text(&o));
    assert_eq!(std::fs::read(&trust).unwrap(), b"SEGURO?");

    // A user name that is not one.
    let o = seguro(&["id", "create", "two words", "--state-dir", s]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn rotate_asks_export_and_import_move_the_identity() {
    let dir = TempDir::new("id-move");
    let a = dir.path("machine-a");
    let b = dir.path("machine-b");
    let (sa, sb) = (a.to_str().unwrap(), b.to_str().unwrap());
    assert_eq!(
        seguro(&["id", "create", "erin", "--state-dir", sa])
            .status
            .code(),
        Some(0)
    );
    let o = seguro(&["id", "create", "erin", "--state-dir", sa]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("already exists"), "{}", text(&o));
    let fp = shown_fp(&a, "erin");

    // No terminal and no --yes: refused, unchanged.
    let o = seguro(&["id", "rotate", "erin", "--state-dir", sa]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("KEY CHANGED"), "{}", text(&o));
    assert!(text(&o).contains("--yes"), "{}", text(&o));
    assert_eq!(shown_fp(&a, "erin"), fp);

    let bundle = dir.path("erin.seguro");
    let bs = bundle.to_str().unwrap();
    let o = seguro(&["id", "export", "erin", bs, "--state-dir", sa]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mode = std::fs::metadata(&bundle).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let o = seguro(&["id", "export", "erin", bs, "--state-dir", sa]);
    assert_eq!(o.status.code(), Some(1), "never overwrites: {}", text(&o));

    let o = seguro(&["id", "import", bs, "--state-dir", sb]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(shown_fp(&b, "erin"), fp);
    assert_eq!(
        std::fs::read(identity_file(&a, "erin")).unwrap(),
        std::fs::read(identity_file(&b, "erin")).unwrap()
    );
    let o = seguro(&["id", "import", bs, "--state-dir", sb]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("--force"), "{}", text(&o));
    // An identity file is not a bundle.
    let o = seguro(&[
        "id",
        "import",
        identity_file(&a, "erin").to_str().unwrap(),
        "--state-dir",
        sb,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not an export bundle"), "{}", text(&o));

    // Rotate for real; --force brings the exported key back.
    let o = seguro(&["id", "rotate", "erin", "--yes", "--state-dir", sb]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let new_fp = shown_fp(&b, "erin");
    assert_ne!(new_fp, fp);
    assert!(
        text(&o).contains(&new_fp) && text(&o).contains(&fp),
        "{}",
        text(&o)
    );
    let o = seguro(&["id", "import", bs, "--force", "--state-dir", sb]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(shown_fp(&b, "erin"), fp);

    let o = seguro(&["id", "show", "--state-dir", sb]);
    assert!(text(&o).contains(&format!("erin  fp {fp}")), "{}", text(&o));
}
