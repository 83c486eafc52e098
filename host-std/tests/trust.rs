//! Trust with real processes over real TLS: the contact list survives a restart and a
//! key substituted after that restart (same name, another key) is reported; `/verify`
//! shows the same code on both sides and marks the contact verified; a verified
//! contact's changed key is the louder warning; `--strict` and `strict = true` in the
//! config file refuse to send until `/verify` or `/accept`; a bad config file is a
//! clear error.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use common::{BIN, Lines, Server, T, TempDir, wait_exit};

/// `seguro chat` with its own state and config directories.
struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Lines,
    err: Lines,
}

impl Client {
    fn start(
        user: &str,
        port: u16,
        cert: &Path,
        state: &Path,
        config: &Path,
        extra: &[&str],
    ) -> Self {
        let mut child = Command::new(BIN)
            .args(["chat", user, "127.0.0.1", &port.to_string(), "--cert"])
            .arg(cert)
            .arg("--state-dir")
            .arg(state)
            .args(extra)
            .env("XDG_CONFIG_HOME", config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Lines::default();
        let err = Lines::default();
        out.spawn_reader(child.stdout.take().unwrap());
        err.spawn_reader(child.stderr.take().unwrap());
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            out,
            err,
        }
    }

    fn connected(self, user: &str, port: u16) -> Self {
        self.out
            .wait_for(&format!("[SYS] connected to 127.0.0.1:{port} as {user}"));
        self
    }

    fn send(&mut self, line: &str) {
        let s = self.stdin.as_mut().unwrap();
        writeln!(s, "{line}").unwrap();
        s.flush().unwrap();
    }

    fn finish(mut self) -> Option<i32> {
        drop(self.stdin.take());
        wait_exit(&mut self.child, T)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Setup {
    dir: TempDir,
    server: Server,
}

impl Setup {
    fn new(tag: &str) -> Self {
        let dir = TempDir::new(tag);
        // Names are not reserved (`--name-expiry 0`), so another key can take a name:
        // that is how these tests play a server substituting a contact's key (a
        // registering server refuses it: tests/v2_hello.rs).
        let server = Server::start(&dir, &["--name-expiry", "0"]);
        Self { dir, server }
    }

    fn state(&self, name: &str) -> PathBuf {
        self.dir.path(name)
    }

    fn config(&self) -> PathBuf {
        self.dir.path("config")
    }

    fn chat(&self, user: &str, state: &str, extra: &[&str]) -> Client {
        let port = self.server.port();
        Client::start(
            user,
            port,
            &self.dir.path("server.crt"),
            &self.state(state),
            &self.config(),
            extra,
        )
        .connected(user, port)
    }
}

/// The `/trust` row of `name`.
fn contact_row(out: &Lines, name: &str) -> String {
    let p = format!("[SYS]   {name}  fp ");
    out.wait(&p, T, |l| l.starts_with(&p) && l.contains("verified"))
}

fn code_of(line: &str) -> &str {
    line.split(": ").nth(1).unwrap()
}

#[test]
fn verified_contact_survives_restart_and_a_substituted_key_is_the_louder_warning() {
    let s = Setup::new("trust-verify");
    let mut alice = s.chat("alice", "alice", &[]);
    let mut bob = s.chat("bob", "bob", &[]);
    alice.out.wait_for("[SYS] new contact bob, fp ");
    bob.out.wait_for("[SYS] new contact alice, fp ");

    // The same pair code on both sides.
    alice.send("/verify bob");
    bob.send("/verify alice");
    let ca = alice.out.wait_for("[SYS] safety code of you and bob: ");
    let cb = bob.out.wait_for("[SYS] safety code of you and alice: ");
    assert_eq!(code_of(&ca), code_of(&cb));
    assert_eq!(code_of(&ca).len(), 71, "{ca}");
    alice.send("/verify bob yes");
    alice.out.wait_for("[SYS] bob is verified (fp ");
    alice.send("/trust");
    let row = contact_row(&alice.out, "bob");
    assert!(row.ends_with("  verified"), "{row}");
    assert_eq!(alice.finish(), Some(0));
    let trust = s.state("alice").join("users/alice/trust");
    assert!(trust.is_file());

    // Restarted with the same state: bob is known and unchanged, nothing is said.
    let mut alice = s.chat("alice", "alice", &[]);
    alice.send("/trust");
    let row = contact_row(&alice.out, "bob");
    assert!(row.ends_with("  verified"), "{row}");
    assert!(
        !alice.out.contains("new contact bob"),
        "{:?}",
        alice.out.all()
    );
    assert!(!alice.out.contains("[WARN]"), "{:?}", alice.out.all());
    assert_eq!(alice.finish(), Some(0));

    // bob leaves; "bob" comes back with another key while alice is away.
    assert_eq!(bob.finish(), Some(0));
    let _eve = s.chat("bob", "eve-as-bob", &[]);
    let alice = s.chat("alice", "alice", &[]);
    let w = alice
        .out
        .wait_for("[WARN] KEY CHANGED for bob, WHOSE KEY YOU VERIFIED: fp was ");
    assert!(
        w.contains("/verify bob") && w.contains("/accept bob"),
        "{w}"
    );
    drop(alice);
}

#[test]
fn strict_mode_refuses_until_accept_and_the_config_file_sets_it() {
    let s = Setup::new("trust-strict");
    let mut alice = s.chat("alice", "alice", &[]);
    let bob = s.chat("bob", "bob", &[]);
    alice.out.wait_for("[SYS] new contact bob, fp ");
    alice.send("/verify bob");
    alice.out.wait_for("[SYS] safety code of you and bob: ");
    alice.send("/verify bob yes");
    alice.out.wait_for("[SYS] bob is verified");
    assert_eq!(alice.finish(), Some(0));
    assert_eq!(bob.finish(), Some(0));

    let mut eve = s.chat("bob", "eve-as-bob", &[]);
    // The config file turns strict mode on.
    std::fs::create_dir_all(s.config().join("seguro")).unwrap();
    std::fs::write(s.config().join("seguro/config.toml"), "strict = true\n").unwrap();
    let mut alice = s.chat("alice", "alice", &[]);
    alice
        .out
        .wait_for("[WARN] KEY CHANGED for bob, WHOSE KEY YOU VERIFIED");
    alice.send("/to bob first try");
    alice
        .out
        .wait_for("[ERROR] not sent: the key of bob changed since you verified it (strict mode)");
    alice.send("/accept bob");
    alice
        .out
        .wait_for("[WARN] accepted the new key of bob (fp ");
    alice.send("/to bob second try");
    eve.out.wait_exact("[alice] second try");
    assert!(!eve.out.contains("first try"), "{:?}", eve.out.all());
    eve.send("/to alice hi");
    alice.out.wait_exact("[bob] hi");
    assert_eq!(alice.finish(), Some(0));
    drop(eve);

    // Without the config file: an unverified contact's change warns, nothing blocks.
    std::fs::remove_file(s.config().join("seguro/config.toml")).unwrap();
    let mallory = s.chat("bob", "mallory-as-bob", &[]);
    let mut alice = s.chat("alice", "alice", &["--strict"]);
    alice.out.wait_for("[WARN] KEY CHANGED for bob: fp was ");
    alice.send("/to bob not verified, so not blocked");
    mallory
        .out
        .wait_exact("[alice] not verified, so not blocked");
    alice.send("/trust");
    let row = contact_row(&alice.out, "bob");
    assert!(row.ends_with("  not verified"), "{row}");
    // --strict alone blocks once the contact is verified and its key changes.
    alice.send("/verify bob");
    alice.out.wait_for("[SYS] safety code of you and bob: ");
    alice.send("/verify bob yes");
    alice.out.wait_for("[SYS] bob is verified");
    assert_eq!(alice.finish(), Some(0));
    drop(mallory);
    let trudy = s.chat("bob", "trudy-as-bob", &[]);
    let mut alice = s.chat("alice", "alice", &["--strict"]);
    alice
        .out
        .wait_for("[WARN] KEY CHANGED for bob, WHOSE KEY YOU VERIFIED");
    alice.send("/to bob blocked");
    alice
        .out
        .wait_for("[ERROR] not sent: the key of bob changed");
    assert_eq!(alice.finish(), Some(0));
    // Without --strict nor the file: warn only, the message goes.
    let mut alice = s.chat("alice", "alice", &[]);
    alice
        .out
        .wait_for("[WARN] KEY CHANGED for bob, WHOSE KEY YOU VERIFIED");
    alice.send("/to bob warned but sent");
    trudy.out.wait_exact("[alice] warned but sent");
    // Anything the refused message had sent would have arrived first.
    assert!(!trudy.out.contains("blocked"), "{:?}", trudy.out.all());
    assert_eq!(alice.finish(), Some(0));
}

#[test]
fn a_bad_config_file_is_a_clear_error() {
    let s = Setup::new("trust-config");
    std::fs::create_dir_all(s.config().join("seguro")).unwrap();
    std::fs::write(s.config().join("seguro/config.toml"), "strikt = true\n").unwrap();
    let mut c = Client::start(
        "alice",
        s.server.port(),
        &s.dir.path("server.crt"),
        &s.state("alice"),
        &s.config(),
        &[],
    );
    drop(c.stdin.take());
    let code = wait_exit(&mut c.child, T);
    assert_eq!(code, Some(2));
    let all = format!("{:?}{:?}", c.out.all(), c.err.all());
    assert!(all.contains("config file "), "{all}");
    assert!(all.contains("strikt"), "{all}");
    assert!(all.contains("line 1"), "{all}");
}

#[test]
fn a_corrupt_contact_list_is_refused_and_left_alone() {
    let s = Setup::new("trust-corrupt");
    let alice = s.chat("alice", "alice", &[]);
    let _bob = s.chat("bob", "bob", &[]);
    alice.out.wait_for("[SYS] new contact bob");
    assert_eq!(alice.finish(), Some(0));
    let trust = s.state("alice").join("users/alice/trust");
    let mut data = std::fs::read(&trust).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x40;
    std::fs::write(&trust, &data).unwrap();
    let mut c = Client::start(
        "alice",
        s.server.port(),
        &s.dir.path("server.crt"),
        &s.state("alice"),
        &s.config(),
        &[],
    );
    drop(c.stdin.take());
    assert_eq!(wait_exit(&mut c.child, T), Some(5));
    let all = format!("{:?}{:?}", c.out.all(), c.err.all());
    assert!(all.contains("trust") || all.contains("contact"), "{all}");
    assert_eq!(std::fs::read(&trust).unwrap(), data, "left as it was");
}
