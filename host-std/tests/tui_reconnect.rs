//! Real processes: a server killed and restarted on the same port; what alice types
//! meanwhile waits in her outbox and reaches bob, in order and once, after both are
//! back. The retries are prompt (capped at a few seconds) and do not print a warning
//! each.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn messages_typed_while_the_server_is_down_arrive_in_order_after_it_returns() {
    let dir = TempDir::new("outbox");
    let cert = dir.path("server.crt");
    let mut server = Server::start(&dir, &[]);
    let port = server.port();
    let mut alice = Chat::connect("alice", port, &cert);
    let bob = Chat::connect("bob", port, &cert);
    alice.out.wait("bob listed", T, |l| {
        l.starts_with("[SYS]   bob  fp ") || l.starts_with("[SYS] bob joined")
    });

    let _ = server.child.kill();
    let _ = server.child.wait();
    alice.out.wait_for("[WARN] connection lost");
    bob.out.wait_for("[WARN] connection lost");
    let down = Instant::now();
    for i in 0..10 {
        alice.send(&format!("/to bob offline {i}"));
    }
    alice.send("/fp alice");
    alice.out.wait_for("kept in the outbox (10 waiting)");
    alice.out.wait_for("[SYS] fp alice: ");

    let bind = format!("127.0.0.1:{port}");
    let _server2 = Server::start(&dir, &["--bind", &bind]);
    let connected = format!("[SYS] connected to 127.0.0.1:{port} as alice");
    alice
        .out
        .wait_count("alice back", 2, Duration::from_secs(60), |l| l == connected);
    bob.out
        .wait_count("bob back", 2, Duration::from_secs(60), |l| {
            l == format!("[SYS] connected to 127.0.0.1:{port} as bob")
        });
    bob.out.wait_exact("[alice] offline 9");
    let got: Vec<String> = bob
        .out
        .all()
        .into_iter()
        .filter(|l| l.starts_with("[alice] "))
        .collect();
    let want: Vec<String> = (0..10).map(|i| format!("[alice] offline {i}")).collect();
    assert_eq!(got, want, "every message once, in order");
    // Typing while disconnected made alice retry at once: no long backoff, and one
    // warning for the outage, not one per attempt.
    let warns = alice
        .out
        .all()
        .iter()
        .filter(|l| l.starts_with("[WARN] connection lost"))
        .count();
    assert_eq!(warns, 1, "{:?}", alice.out.all());
    println!("back after {:?}", down.elapsed());
    let _ = alice.finish();
}

#[test]
fn input_that_ends_while_the_server_is_down_is_still_delivered() {
    let dir = TempDir::new("outbox-eof");
    let cert = dir.path("server.crt");
    let mut server = Server::start(&dir, &[]);
    let port = server.port();
    let mut alice = Chat::connect("alice", port, &cert);
    let bob = Chat::connect("bob", port, &cert);
    alice.out.wait("bob listed", T, |l| {
        l.starts_with("[SYS]   bob  fp ") || l.starts_with("[SYS] bob joined")
    });
    let _ = server.child.kill();
    let _ = server.child.wait();
    alice.out.wait_for("[WARN] connection lost");
    alice.send("/to bob sent after the end of input");
    alice.out.wait_for("kept in the outbox (1 waiting)");
    let stdin_closed = std::thread::spawn(move || alice.finish());
    let bind = format!("127.0.0.1:{port}");
    let _server2 = Server::start(&dir, &["--bind", &bind]);
    bob.out
        .wait_count("bob back", 2, Duration::from_secs(60), |l| {
            l == format!("[SYS] connected to 127.0.0.1:{port} as bob")
        });
    bob.out.wait_exact("[alice] sent after the end of input");
    let (code, out) = stdin_closed.join().unwrap();
    assert_eq!(code, Some(0), "{:?}", out.all());
    assert!(out.contains("trying to deliver them"), "{:?}", out.all());
    assert!(!out.contains("NOT sent"), "{:?}", out.all());
}
