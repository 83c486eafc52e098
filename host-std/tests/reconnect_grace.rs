//! The server's reconnect grace, end to end (a real `seguro serve`, real TLS, real
//! client processes): a user whose connection is cut and who comes back with the same
//! identity within the grace is never shown to others as having left; one who does not
//! come back leaves when the grace ends.

mod common;

use common::*;

fn count(lines: &Lines, exact: &str) -> usize {
    lines.all().iter().filter(|l| l.as_str() == exact).count()
}

#[test]
fn a_cut_connection_that_comes_back_within_the_grace_shows_no_leave_and_one_that_does_not_leaves() {
    let dir = TempDir::new("grace");
    // The default grace (10 s): no flag.
    let server = Server::start(&dir, &[]);
    let cert = dir.path("server.crt");
    let port = server.port().to_string();
    let bob_state = TempDir::new("bob-state");
    let bob_args = [
        "chat",
        "bob",
        "127.0.0.1",
        &port,
        "--cert",
        cert.to_str().unwrap(),
        "--state-dir",
        bob_state.0.to_str().unwrap(),
    ];
    let connected = format!("[SYS] connected to 127.0.0.1:{port} as bob");

    let alice = Chat::connect("alice", server.port(), &cert);
    let mut bob = Chat::start_args(&bob_args, None);
    bob.out.wait_for(&connected);
    alice.out.wait_for("[SYS] bob joined");
    let mut alice = alice;
    alice.send("/to bob first");
    bob.out.wait_exact("[alice] first");

    // Cut: the process dies, its TCP connection closes without TLS close_notify.
    bob.kill();
    server.err.wait_for("still listed for");
    // Same identity (same state directory), back within the grace.
    let mut bob = Chat::start_args(&bob_args, None);
    bob.out.wait_for(&connected);
    server.err.wait_for("reconnected");
    assert!(
        !bob.out.contains("[WARN] KEY CHANGED"),
        "{:?}",
        bob.out.all()
    );
    // Relays reach the new connection, both ways.
    alice.send("/to bob second");
    bob.out.wait_exact("[alice] second");
    bob.send("/to alice back");
    alice.out.wait_exact("[bob] back");
    assert_eq!(
        count(&alice.out, "[SYS] bob left"),
        0,
        "{:?}",
        alice.out.all()
    );
    assert_eq!(
        alice
            .out
            .all()
            .iter()
            .filter(|l| l.starts_with("[SYS] bob joined"))
            .count(),
        1,
        "{:?}",
        alice.out.all()
    );
    assert!(!alice.out.contains("[WARN]"), "{:?}", alice.out.all());

    // Cut again, and this time bob does not come back: while held, a message to bob is
    // refused naming bob; when the grace ends, alice sees bob leave.
    bob.kill();
    server
        .err
        .wait_count("held entries", 2, T, |l| l.contains("still listed for"));
    alice.send("/to bob are you there?");
    // Two Seguro clients talk protocol v2: the server's `ack` says not_connected (a v1
    // relay would get the error "bob is reconnecting: not delivered").
    alice.out.wait("the not-delivered warning", T, |l| {
        l.starts_with("[WARN] bob is not connected: your message was NOT delivered")
            && l.ends_with(": are you there?")
    });
    alice.out.wait_exact("[SYS] bob left");
    server
        .err
        .wait_for("left: not back within the reconnect grace");
    assert_eq!(count(&alice.out, "[SYS] bob left"), 1);
    // Gone now: the client refuses locally, as for anyone not online.
    let (code, out) = alice.finish();
    assert_eq!(code, Some(0), "{:?}", out.all());
}

#[test]
fn with_a_grace_of_zero_a_cut_connection_leaves_at_once_and_a_clean_quit_always_does() {
    let dir = TempDir::new("nograce");
    let server = Server::start(&dir, &["--reconnect-grace", "0"]);
    let cert = dir.path("server.crt");
    let alice = Chat::connect("alice", server.port(), &cert);
    let mut bob = Chat::connect("bob", server.port(), &cert);
    alice.out.wait_for("[SYS] bob joined");
    bob.kill();
    alice.out.wait_exact("[SYS] bob left");
    assert!(!server.err.contains("still listed for"));
    drop(server);

    // With the default grace, a clean quit (close_notify) is a leave at once too.
    let dir = TempDir::new("cleanquit");
    let server = Server::start(&dir, &[]);
    let cert = dir.path("server.crt");
    let alice = Chat::connect("alice", server.port(), &cert);
    let bob = Chat::connect("bob", server.port(), &cert);
    alice.out.wait_for("[SYS] bob joined");
    let (code, _) = bob.finish();
    assert_eq!(code, Some(0));
    server.err.wait_for("left: peer closed the connection");
    alice.out.wait_exact("[SYS] bob left");
    assert!(!server.err.contains("still listed for"));
}
