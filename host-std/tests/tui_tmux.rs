//! The full-screen client in a real terminal: tmux runs two `seguro chat` clients
//! against a real server; the test types, pastes several lines with bracketed paste,
//! resizes a window to 30 columns and back, kills the server and starts it again on
//! the same port while a user types, and reads the screens with `capture-pane`: every
//! message appears exactly once, with its time, and nothing typed is lost.
//!
//! Needs tmux (the CI phase installs it). Without it the test says so and passes,
//! unless `SEGURO_REQUIRE_TMUX=1`, when it fails. Every wait polls the screen with a
//! generous deadline (the machines are slow and shared); no sleep is an assertion.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// How long any one thing may take to show on screen.
const WAIT: Duration = Duration::from_secs(60);

/// A tmux server of the test's own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Option<Self> {
        let ok = Command::new("tmux")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return None;
        }
        static N: AtomicUsize = AtomicUsize::new(0);
        Some(Self {
            socket: format!(
                "seguro-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
        })
    }

    fn run(&self, args: &[&str]) -> String {
        let o = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(["-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux runs");
        assert!(
            o.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Starts `cmd` (a shell command line) in a new session `name` of `w`×`h`.
    fn session(&self, name: &str, w: u16, h: u16, cmd: &str) {
        self.run(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            &w.to_string(),
            "-y",
            &h.to_string(),
            cmd,
        ]);
    }

    fn screen(&self, name: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", &format!("{name}:")])
    }

    /// Polls the screen of `name` until `pred` holds; panics with the screen if not
    /// within [`WAIT`].
    fn wait(&self, name: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.screen(name);
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: no {what} within {WAIT:?}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn keys(&self, name: &str, keys: &[&str]) {
        let t = format!("{name}:");
        let mut args = vec!["send-keys", "-t", t.as_str()];
        args.extend(keys);
        self.run(&args);
    }

    /// Types `text` literally, then Enter.
    fn line(&self, name: &str, text: &str) {
        let t = format!("{name}:");
        self.run(&["send-keys", "-t", &t, "-l", text]);
        self.run(&["send-keys", "-t", &t, "Enter"]);
    }

    /// Pastes `text` as the terminal would: in bracketed-paste markers, since the
    /// client asked for them.
    fn paste(&self, name: &str, text: &str) {
        self.run(&["set-buffer", "-b", "seguro", text]);
        self.run(&[
            "paste-buffer",
            "-p",
            "-d",
            "-b",
            "seguro",
            "-t",
            &format!("{name}:"),
        ]);
    }

    fn resize(&self, name: &str, w: u16, h: u16) {
        self.run(&[
            "resize-window",
            "-t",
            &format!("{name}:"),
            "-x",
            &w.to_string(),
            "-y",
            &h.to_string(),
        ]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// How many rows of `screen` contain `needle`.
fn count(screen: &str, needle: &str) -> usize {
    screen.lines().filter(|l| l.contains(needle)).count()
}

/// True if the row holding `needle` has a `HH:MM ` time just before it.
fn stamped(screen: &str, needle: &str) -> bool {
    screen.lines().any(|row| {
        row.find(needle).is_some_and(|i| {
            let b = row.as_bytes();
            i >= 6
                && b[i - 1] == b' '
                && b[i - 4] == b':'
                && b[i - 6..i - 4].iter().all(u8::is_ascii_digit)
                && b[i - 3..i - 1].iter().all(u8::is_ascii_digit)
        })
    })
}

/// The shell command that runs a full-screen client (its process id in the file
/// `<user>.pid`), then says how it exited and whether the terminal is back in its
/// normal (cooked, echoing) mode.
fn client(dir: &TempDir, user: &str, port: u16) -> String {
    client_with(dir, user, port, "")
}

/// [`client`] with `extra` arguments.
fn client_with(dir: &TempDir, user: &str, port: u16, extra: &str) -> String {
    format!(
        "env XDG_DATA_HOME='{}' NO_COLOR= sh -c 'echo $$ > \"$0\"; exec \"$@\"' '{}' \
         '{BIN}' chat {user} 127.0.0.1 {port} --cert '{}' --no-bell {extra}; echo EXITED=$?; \
         if stty -a | tr ' ;' '\\n\\n' | grep -qx -e -icanon -e -echo; \
         then echo TTY=raw; else echo TTY=cooked; fi; sleep 120",
        dir.path(user).display(),
        dir.path(&format!("{user}.pid")).display(),
        dir.path("server.crt").display()
    )
}

/// Sends `signal` (`TERM`, `KILL`…) to process `pid`.
fn signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{signal} {pid}");
}

/// The process id a [`client`] wrote.
fn client_pid(dir: &TempDir, user: &str) -> u32 {
    let path = dir.path(&format!("{user}.pid"));
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(pid) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "no {}", path.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The tmux test needs tmux: `None` (after saying so) when it is missing and not
/// required.
fn tmux_or_skip() -> Option<Tmux> {
    let t = Tmux::new();
    if t.is_none() {
        assert!(
            std::env::var("SEGURO_REQUIRE_TMUX").as_deref() != Ok("1"),
            "tmux is required (SEGURO_REQUIRE_TMUX=1) but not installed"
        );
        eprintln!("tmux not installed: the terminal test is skipped");
    }
    t
}

#[test]
fn two_full_screen_clients_paste_resize_and_survive_a_server_restart() {
    let Some(tmux) = tmux_or_skip() else {
        return;
    };
    let dir = TempDir::new("tmux");
    let mut server = Server::start(&dir, &[]);
    let port = server.port();
    tmux.session("alice", 100, 40, &client(&dir, "alice", port));
    tmux.session("bob", 100, 60, &client(&dir, "bob", port));
    let connected = "| connected |";
    tmux.wait("alice", "connection", |s| s.contains(connected));
    tmux.wait("bob", "connection", |s| s.contains(connected));
    tmux.wait("alice", "bob in the directory", |s| {
        s.contains("bob joined") || s.contains("  bob  fp ")
    });

    // Conversations: plain text goes to the contact.
    tmux.line("alice", "/q bob");
    tmux.line("bob", "/q alice");
    tmux.wait("alice", "bob's conversation", |s| s.contains("bob>"));
    tmux.wait("bob", "alice's conversation", |s| s.contains("alice>"));
    tmux.line("alice", "hello bob");
    let s = tmux.wait("bob", "the first message", |s| {
        s.contains("[alice] hello bob")
    });
    assert!(stamped(&s, "[alice] hello bob"), "{s}");

    // A paste of four lines: four messages, in order, none glued or lost.
    let pasted: Vec<String> = (1..=4).map(|i| format!("pasted line {i} of 4")).collect();
    tmux.paste("alice", &pasted.join("\n"));
    tmux.wait("alice", "the paste in the input", |s| {
        s.contains("bob> pasted line 1 of 4") && s.contains("pasted line 4 of 4")
    });
    tmux.keys("alice", &["Enter"]);
    let s = tmux.wait("bob", "the pasted lines", |s| {
        pasted.iter().all(|p| s.contains(&format!("[alice] {p}")))
    });
    let rows: Vec<usize> = pasted
        .iter()
        .map(|p| {
            let needle = format!("[alice] {p}");
            assert_eq!(count(&s, &needle), 1, "{needle} once:\n{s}");
            assert!(stamped(&s, &needle), "{needle} with its time:\n{s}");
            s.lines().position(|l| l.contains(&needle)).unwrap()
        })
        .collect();
    assert!(rows.windows(2).all(|w| w[0] < w[1]), "in order:\n{s}");
    assert!(!s.contains('\u{fffd}'), "{s}");

    // Resize to 30 columns and back: nothing leaves the screen.
    tmux.resize("bob", 30, 60);
    tmux.wait("bob", "the narrow layout", |s| {
        s.lines().all(|l| l.chars().count() <= 30) && s.contains("[alice] hello")
    });
    tmux.resize("bob", 100, 60);
    let s = tmux.wait("bob", "the wide layout again", |s| {
        // Two Seguro clients on a Seguro server: the conversation is protocol v2.
        s.contains("| v2 |") && pasted.iter().all(|p| s.contains(&format!("[alice] {p}")))
    });
    for p in &pasted {
        assert_eq!(
            count(&s, &format!("[alice] {p}")),
            1,
            "{p} after resizing:\n{s}"
        );
    }

    // The server dies; alice types while it is down.
    let _ = server.child.kill();
    let _ = server.child.wait();
    tmux.wait("alice", "the reconnecting state", |s| {
        s.contains("reconnecting in")
    });
    // Typed fast: twenty lines in one burst of keys.
    let down: Vec<String> = (1..=20).map(|i| format!("typed while down {i}")).collect();
    let mut burst: Vec<&str> = Vec::new();
    for d in &down {
        burst.extend([d.as_str(), "Enter"]);
    }
    tmux.keys("alice", &burst);
    tmux.wait("alice", "pending messages", |s| {
        s.contains("[alice] typed while down 20 (pending)")
    });
    let bind = format!("127.0.0.1:{port}");
    let _server2 = Server::start(&dir, &["--bind", &bind]);
    tmux.wait("alice", "the reconnection", |s| {
        s.contains(connected) && !s.contains("(pending)")
    });
    let s = tmux.wait("bob", "the messages typed while down", |s| {
        s.contains("[alice] typed while down 20")
    });
    let mut last = 0;
    for n in down.iter().map(String::as_str).chain(["hello bob"]) {
        let needle = format!("[alice] {n}");
        let hits: Vec<usize> = s
            .lines()
            .enumerate()
            .filter(|(_, l)| l.trim_end().ends_with(&needle))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(hits.len(), 1, "{n} once:\n{s}");
        if n != "hello bob" {
            assert!(hits[0] > last, "{n} in order:\n{s}");
            last = hits[0];
        }
    }
    // Bob answers after the restart.
    tmux.line("bob", "got them");
    tmux.wait("alice", "bob's answer", |s| s.contains("[bob] got them"));

    // Ctrl-D leaves, with exit code 0, and gives the terminal back.
    tmux.keys("alice", &["C-d"]);
    tmux.keys("bob", &["C-d"]);
    tmux.wait("alice", "the exit", |s| s.contains("EXITED=0"));
    tmux.wait("bob", "the exit", |s| s.contains("EXITED=0"));
    tmux.wait("alice", "the terminal's mode", |s| s.contains("TTY=cooked"));
    tmux.wait("bob", "the terminal's mode", |s| s.contains("TTY=cooked"));
}

/// A user who types nothing while the server is killed (SIGKILL, then SIGTERM) and
/// started again on the same port: the screen keeps working, each message typed
/// after the restart arrives once, `/quit` leaves with 0 and gives the terminal back;
/// a client stopped by SIGTERM says so on the normal screen.
#[test]
fn an_idle_receiver_survives_server_kills_and_restarts() {
    let Some(tmux) = tmux_or_skip() else {
        return;
    };
    let dir = TempDir::new("tmux-idle");
    let mut server = Server::start(&dir, &[]);
    let port = server.port();
    let bind = format!("127.0.0.1:{port}");
    tmux.session("alice", 120, 40, &client(&dir, "alice", port));
    tmux.session("bob", 120, 40, &client(&dir, "bob", port));
    let connected = "| connected |";
    tmux.wait("alice", "connection", |s| s.contains(connected));
    tmux.wait("bob", "connection", |s| s.contains(connected));
    tmux.wait("alice", "bob in the directory", |s| {
        s.contains("bob joined") || s.contains("  bob  fp ")
    });
    tmux.line("alice", "/q bob");
    tmux.line("bob", "/q alice");
    tmux.wait("bob", "alice's conversation", |s| s.contains("alice>"));
    tmux.wait("alice", "bob's conversation", |s| s.contains("bob>"));
    tmux.line("alice", "before the outage");
    tmux.wait("bob", "the first message", |s| {
        s.contains("[alice] before the outage")
    });

    for (round, sig) in ["KILL", "TERM"].into_iter().enumerate() {
        signal(server.child.id(), sig);
        let _ = server.child.wait();
        tmux.wait("bob", "the outage", |s| {
            s.contains("reconnecting in") || s.contains("still offline")
        });
        // alice types while the server is down; bob types nothing.
        let down = format!("typed while down {sig}");
        tmux.line("alice", &down);
        tmux.wait("alice", "the pending message", |s| {
            s.contains(&format!("[alice] {down} (pending)"))
        });
        // Long enough for bob's backoff to grow past its first steps.
        std::thread::sleep(Duration::from_secs(3 + 2 * round as u64));
        server = Server::start(&dir, &["--bind", &bind]);
        tmux.wait("bob", "the reconnection", |s| s.contains(connected));
        tmux.wait("alice", "the reconnection", |s| {
            s.contains(connected) && !s.contains("(pending)")
        });
        let after = format!("after the {sig} restart");
        tmux.line("alice", &after);
        let s = tmux.wait("bob", "the message after the restart", |s| {
            s.contains(&format!("[alice] {after}")) && s.contains(&format!("[alice] {down}"))
        });
        for m in [&down, &after] {
            let needle = format!("[alice] {m}");
            assert_eq!(count(&s, &needle), 1, "{m} once:\n{s}");
            assert!(stamped(&s, &needle), "{m} with its time:\n{s}");
        }
        // The screen is drawn and reads keys: bob's answer goes out.
        assert!(s.contains("alice>") && s.contains("| v2 |"), "{s}");
        let reply = format!("bob is here after {sig}");
        tmux.line("bob", &reply);
        tmux.wait("alice", "bob's answer", |s| {
            s.contains(&format!("[bob] {reply}"))
        });
    }

    // SIGTERM to alice's client: it leaves with 0 and says why on the normal screen.
    signal(client_pid(&dir, "alice"), "TERM");
    let s = tmux.wait("alice", "the exit", |s| s.contains("TTY="));
    assert!(s.contains("EXITED=0") && s.contains("TTY=cooked"), "{s}");
    assert!(s.contains("stopped by a signal"), "{s}");
    assert!(!s.contains("| v2 |"), "the full screen is gone:\n{s}");

    tmux.line("bob", "/quit");
    let s = tmux.wait("bob", "the exit", |s| s.contains("TTY="));
    assert!(s.contains("EXITED=0") && s.contains("TTY=cooked"), "{s}");
    assert!(!s.contains("| v2 |"), "the full screen is gone:\n{s}");
}

/// The server comes back with another certificate while the client waits to
/// reconnect: the client stops with the TLS exit code, and the reason stays on the
/// normal screen (not only on the full screen it leaves).
#[test]
fn a_fatal_error_after_connecting_stays_on_the_normal_screen() {
    let Some(tmux) = tmux_or_skip() else {
        return;
    };
    let dir = TempDir::new("tmux-fatal");
    let mut server = Server::start(&dir, &[]);
    let port = server.port();
    tmux.session("bob", 120, 40, &client(&dir, "bob", port));
    tmux.wait("bob", "connection", |s| s.contains("| connected |"));
    let _ = server.child.kill();
    let _ = server.child.wait();
    tmux.wait("bob", "the outage", |s| s.contains("reconnecting in"));
    let bind = format!("127.0.0.1:{port}");
    let _other = Server::start_with(
        &dir.path("other.crt"),
        &dir.path("other.key"),
        &["--bind", &bind],
    );
    let s = tmux.wait("bob", "the exit", |s| s.contains("TTY="));
    assert!(s.contains("EXITED=3") && s.contains("TTY=cooked"), "{s}");
    assert!(
        s.contains("does not match the pinned certificate"),
        "the reason is left on the screen:\n{s}"
    );
    assert!(s.contains("connection lost"), "and what led to it:\n{s}");
    assert!(!s.contains("| v1"), "the full screen is gone:\n{s}");
}

/// The input history is kept per user for the next session (mode 0600, in order),
/// and neither read nor written with `--no-history`.
#[test]
fn the_input_history_is_kept_for_the_next_session() {
    let Some(tmux) = tmux_or_skip() else {
        return;
    };
    let dir = TempDir::new("tmux-history");
    let server = Server::start(&dir, &[]);
    let port = server.port();
    let state = seguro::state::StateDir::locate(Some(&dir.path("alice").join("seguro"))).unwrap();
    let file = seguro::history::path(&state, "alice");
    let connected = "| connected |";

    tmux.session("first", 100, 30, &client(&dir, "alice", port));
    tmux.wait("first", "connection", |s| s.contains(connected));
    tmux.line("first", "/list");
    tmux.line("first", "the first line typed");
    tmux.line("first", "the second line typed");
    // Saved as typed, not only at the end.
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&file).is_ok_and(|t| t.contains("the second line typed")) {
        assert!(
            Instant::now() < deadline,
            "no history in {}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    tmux.keys("first", &["C-d"]);
    tmux.wait("first", "the exit", |s| s.contains("EXITED=0"));
    let text = std::fs::read_to_string(&file).unwrap();
    let entries: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(
        entries,
        ["/list", "the first line typed", "the second line typed"],
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");

    // The next session: Up shows the last line typed, then the one before.
    tmux.session("second", 100, 30, &client(&dir, "alice", port));
    tmux.wait("second", "connection", |s| s.contains(connected));
    tmux.keys("second", &["Up"]);
    tmux.wait("second", "the last line in the input", |s| {
        s.lines().any(|l| l.trim_end() == "> the second line typed")
    });
    tmux.keys("second", &["Up"]);
    tmux.wait("second", "the line before", |s| {
        s.lines().any(|l| l.trim_end() == "> the first line typed")
    });
    tmux.keys("second", &["C-d"]);
    tmux.wait("second", "the exit", |s| s.contains("EXITED=0"));

    // --no-history: nothing read, nothing written.
    let before = std::fs::read(&file).unwrap();
    tmux.session(
        "third",
        100,
        30,
        &client_with(&dir, "alice", port, "--no-history"),
    );
    tmux.wait("third", "connection", |s| s.contains(connected));
    tmux.line("third", "not to be kept");
    tmux.wait("third", "the answer", |s| s.contains("commands start with"));
    tmux.keys("third", &["Up", "Up"]);
    let s = tmux.wait("third", "this session's line only", |s| {
        s.lines().any(|l| l.trim_end() == "> not to be kept")
    });
    assert!(!s.contains("> the second line typed"), "{s}");
    tmux.keys("third", &["C-c", "C-d"]);
    tmux.wait("third", "the exit", |s| s.contains("EXITED=0"));
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

/// A v2 client's message to a v1 peer (here a raw v1 client) goes with core's v1
/// relay plus an id, which the Seguro server acknowledges (protocol v2 §11): the line
/// gets its `✓` as a v2 message does, the conversation says v1, and the peer receives
/// a plain v1 relay without the id.
#[test]
fn a_message_to_a_v1_peer_gets_its_tick_from_the_servers_acknowledgement() {
    let Some(tmux) = tmux_or_skip() else {
        return;
    };
    let dir = TempDir::new("tmux-v1-ack");
    let server = Server::start(&dir, &[]);
    let port = server.port();
    let mut bob = Raw::register(port, server.pinned(), "bob");
    tmux.session("alice", 100, 30, &client(&dir, "alice", port));
    tmux.wait("alice", "bob in the directory", |s| {
        s.contains("| connected |") && s.contains("  bob  fp ")
    });
    tmux.line("alice", "/q bob");
    tmux.wait("alice", "bob's conversation", |s| s.contains("bob>"));
    for text in ["first to a v1 peer", "second to a v1 peer"] {
        tmux.line("alice", text);
        let relay = bob.read_until("\"relay\"", WAIT);
        assert!(relay.contains("\"from\":\"alice\""), "{relay}");
        assert!(
            !relay.contains("\"id\""),
            "the id reached the peer: {relay}"
        );
        let s = tmux.wait("alice", "the tick", |s| {
            s.contains(&format!("[alice] {text} ✓"))
        });
        assert_eq!(count(&s, &format!("[alice] {text}")), 1, "{s}");
        assert!(s.contains("| v1 (peer speaks v1) |"), "the protocol:\n{s}");
    }
    tmux.line("alice", "/quit");
    let s = tmux.wait("alice", "the exit", |s| s.contains("TTY="));
    assert!(s.contains("EXITED=0"), "{s}");
}
