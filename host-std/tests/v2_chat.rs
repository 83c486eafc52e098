//! Protocol v2 conversations between real `seguro chat` processes on a real `seguro
//! serve`, over real TLS (`docs/protocol-v2.md` §2.3, §5.5, §6–§8, §11, §12.1): each
//! client publishes its prekeys after the v2 welcome (and keeps them in its state
//! directory), the first message fetches the peer's bundle and goes as `relay2`, texts
//! flow both ways and each side says `conversation with …: protocol v2`; a restarted
//! client keeps its session (no second bundle is taken); a message to a peer who left
//! waits in the outbox and goes as v2 when they are back; damaged stored sessions and
//! prekeys are reported and dropped, and the conversation recovers when the peer
//! writes.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// The one-time prekeys the server holds for `user` (its prekey file).
fn opks_on_server(dir: &TempDir, user: &str) -> Option<usize> {
    let text = std::fs::read_to_string(dir.path("prekeys")).ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("user {user} ")))?;
    let opks = line.rsplit(' ').next()?;
    Some(if opks == "-" {
        0
    } else {
        opks.split(',').count()
    })
}

fn wait_opks(dir: &TempDir, user: &str, want: usize) {
    let deadline = std::time::Instant::now() + T;
    while opks_on_server(dir, user) != Some(want) {
        assert!(
            std::time::Instant::now() < deadline,
            "{user}: {:?} one-time prekeys on the server, not {want}",
            opks_on_server(dir, user)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn chat(user: &str, server: &Server, state: &Path) -> Chat {
    let c = Chat::start(
        user,
        server.port(),
        &server.cert,
        &["--state-dir", state.to_str().unwrap()],
    );
    c.out.wait_for(&format!(
        "[SYS] connected to 127.0.0.1:{} as {user}",
        server.port()
    ));
    c
}

#[test]
fn two_clients_talk_v2_both_ways_and_a_restart_keeps_the_session() {
    let dir = TempDir::new("v2-chat");
    let server = Server::start(&dir, &[]);
    let (sa, sb) = (TempDir::new("v2-chat-a"), TempDir::new("v2-chat-b"));
    let mut alice = chat("alice", &server, &sa.0);
    // Published after the v2 welcome: 16 one-time prekeys on the server.
    wait_opks(&dir, "alice", 16);
    let mut bob = chat("bob", &server, &sb.0);
    wait_opks(&dir, "bob", 16);
    alice.out.wait_for("[SYS] bob joined");

    alice.send("/to bob hello over v2");
    alice
        .out
        .wait_exact("[SYS] conversation with bob: protocol v2");
    bob.out
        .wait_exact("[SYS] conversation with alice: protocol v2");
    bob.out.wait_exact("[alice] hello over v2");
    // One bundle taken from bob's prekeys, none from alice's.
    wait_opks(&dir, "bob", 15);
    bob.send("/to alice and back");
    alice.out.wait_exact("[bob] and back");
    alice.send("/to bob third");
    bob.out
        .wait_exact("[bob] third".replace("[bob]", "[alice]").as_str());
    assert_eq!(
        opks_on_server(&dir, "alice"),
        Some(16),
        "bob answered in the session"
    );
    // Nothing was sent as v1 and nothing was refused.
    for c in [&alice, &bob] {
        assert!(!c.out.contains("[WARN]"), "{:?}", c.out.all());
        assert!(!c.out.contains("protocol v1"), "{:?}", c.out.all());
    }
    // The state directory holds the prekeys and the session, owner-only.
    for (s, user, peer) in [(&sa, "alice", "bob"), (&sb, "bob", "alice")] {
        let udir = s.0.join("users").join(user);
        for f in ["v2-prekeys".to_owned(), format!("v2-session.{peer}")] {
            let m = std::fs::metadata(udir.join(&f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(m.permissions().mode() & 0o077, 0, "{f}");
        }
    }

    // bob restarts: the stored session goes on, no new bundle is taken from either.
    let (code, _) = bob.finish();
    assert_eq!(code, Some(0));
    alice.out.wait_for("[SYS] bob left");
    let mut bob = chat("bob", &server, &sb.0);
    alice.out.wait_for("[SYS] bob joined");
    // The restarted client did not publish the same one-time prekeys again.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(opks_on_server(&dir, "bob"), Some(15));
    bob.send("/to alice after my restart");
    alice.out.wait_exact("[bob] after my restart");
    alice.send("/to bob still the same session");
    bob.out.wait_exact("[alice] still the same session");
    assert_eq!(opks_on_server(&dir, "alice"), Some(16));
    assert_eq!(opks_on_server(&dir, "bob"), Some(15));
    assert!(
        !bob.out.contains("setting up a protocol v2 session"),
        "{:?}",
        bob.out.all()
    );
    assert!(!bob.out.contains("[WARN]"), "{:?}", bob.out.all());
    assert!(!alice.out.contains("[WARN]"), "{:?}", alice.out.all());
    alice.kill();
    bob.kill();
}

#[test]
fn a_message_to_a_peer_who_left_waits_and_goes_as_v2_when_they_are_back() {
    let dir = TempDir::new("v2-chat-away");
    let server = Server::start(&dir, &[]);
    let (sa, sb) = (
        TempDir::new("v2-chat-away-a"),
        TempDir::new("v2-chat-away-b"),
    );
    let mut alice = chat("alice", &server, &sa.0);
    let bob = chat("bob", &server, &sb.0);
    alice.out.wait_for("[SYS] bob joined");
    let (code, _) = bob.finish();
    assert_eq!(code, Some(0));
    alice.out.wait_for("[SYS] bob left");
    // No session yet and bob is away: the text waits (in the outbox), not lost.
    alice.send("/to bob are you there");
    alice.out.wait_for("bob is not online: kept in the outbox");
    let mut bob = chat("bob", &server, &sb.0);
    bob.out
        .wait_exact("[SYS] conversation with alice: protocol v2");
    bob.out.wait_exact("[alice] are you there");
    alice
        .out
        .wait_exact("[SYS] conversation with bob: protocol v2");
    wait_opks(&dir, "bob", 15);
    assert!(!alice.out.contains("[WARN]"), "{:?}", alice.out.all());
    alice.kill();
    bob.kill();
}

#[test]
fn damaged_v2_state_files_are_reported_and_dropped_never_a_crash_or_a_message() {
    let dir = TempDir::new("v2-chat-corrupt");
    let server = Server::start(&dir, &[]);
    let (sa, sb) = (
        TempDir::new("v2-chat-corrupt-a"),
        TempDir::new("v2-chat-corrupt-b"),
    );
    let mut alice = chat("alice", &server, &sa.0);
    let bob = chat("bob", &server, &sb.0);
    alice.out.wait_for("[SYS] bob joined");
    alice.send("/to bob one");
    bob.out.wait_exact("[alice] one");
    alice.out.wait_exact("[SYS] bob received your message: one");
    let (code, _) = bob.finish();
    assert_eq!(code, Some(0));
    alice.out.wait_for("[SYS] bob left");
    // One byte of bob's stored session and of his prekeys flipped.
    let udir = sb.0.join("users").join("bob");
    for f in ["v2-session.alice", "v2-prekeys"] {
        let p = udir.join(f);
        let mut data = std::fs::read(&p).unwrap();
        data[20] ^= 0x40;
        std::fs::write(&p, &data).unwrap();
    }
    let mut bob = chat("bob", &server, &sb.0);
    bob.out.wait("the damaged session warning", T, |l| {
        l.starts_with("[WARN] ")
            && l.contains("v2-session.alice")
            && l.contains("the stored protocol v2 session with alice is unusable")
            && l.contains("dropped")
    });
    bob.out.wait("the damaged prekeys warning", T, |l| {
        l.starts_with("[WARN] ") && l.contains("v2-prekeys") && l.contains("damaged")
    });
    // The damaged session file is gone; new prekeys are stored and published.
    assert!(!udir.join("v2-session.alice").exists());
    assert!(prekeys_record_valid(&udir.join("v2-prekeys")));
    alice.out.wait_for("[SYS] bob joined");
    // alice still has her session: bob cannot open it any more, and says so (a
    // [WARN] naming alice), never as a message.
    alice.send("/to bob two");
    bob.out.wait("the refusal", T, |l| {
        l.starts_with("[WARN] a protocol v2 message from alice was refused: ")
    });
    // bob's client sets up a new session at once (a new bundle of alice's) and says in
    // it that the old one was lost (§8 session_lost): alice takes it as the peer
    // starting over and is told what bob did not read (what had no receipt).
    bob.out.wait_exact(
        "[SYS] this client has no protocol v2 session with alice (it was lost): setting up \
         a new one and telling alice's client, so that alice knows what was not read",
    );
    alice
        .out
        .wait_for("[WARN] bob started a new protocol v2 session");
    alice.out.wait_exact(
        "[WARN] bob's client lost its protocol v2 session with you and started a new one; \
         this one without a receipt from bob may NOT have been read: \"two\" (send again what \
         matters)",
    );
    alice.send("/to bob three");
    bob.out.wait_exact("[alice] three");
    bob.send("/to alice fresh start");
    alice.out.wait_exact("[bob] fresh start");
    assert!(!bob.out.contains("[alice] two"), "{:?}", bob.out.all());
    // Once: no second new session.
    assert_eq!(
        alice
            .out
            .all()
            .iter()
            .filter(|l| l.contains("started a new protocol v2 session"))
            .count(),
        1,
        "{:?}",
        alice.out.all()
    );
    alice.kill();
    bob.kill();
}

/// The file holds a prekeys record core reads back.
fn prekeys_record_valid(p: &Path) -> bool {
    let d = std::fs::read(p).unwrap_or_default();
    seguro_core::chat::sessions::OwnPrekeys::decode(&d).is_ok()
}

/// bob's signed prekey id on the server (its prekey file).
fn spk_on_server(dir: &TempDir, user: &str) -> Option<u32> {
    let text = std::fs::read_to_string(dir.path("prekeys")).ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("user {user} ")))?;
    line.split(' ').nth(5)?.parse().ok()
}

/// Rewrites the date of the signed prekey in a stored prekeys record (format 2: the
/// date follows magic, format, spk id and secret), with a valid checksum.
fn backdate_spk(path: &Path, since: u64) {
    use sha2::Digest as _;
    let mut rec = std::fs::read(path).unwrap();
    assert_eq!(rec[4], 2, "the record format with a date");
    rec[41..49].copy_from_slice(&since.to_be_bytes());
    let body = rec.len() - 8;
    let sum = sha2::Sha256::digest(&rec[..body]);
    rec[body..].copy_from_slice(&sum[..8]);
    std::fs::write(path, &rec).unwrap();
}

/// §5.1: a signed prekey 7 days old is replaced when its client connects: the server
/// hands out the new one (id + 1) from then on, the state directory keeps the old one
/// beside it (first messages on their way to it still open), and new conversations
/// work. A younger one is left as it is.
#[test]
fn a_signed_prekey_seven_days_old_is_replaced_at_the_next_connection() {
    use seguro_core::chat::sessions::{OwnPrekeys, SPK_LIFETIME_S};
    let dir = TempDir::new("v2-spk");
    let server = Server::start(&dir, &[]);
    let (sa, sb) = (TempDir::new("v2-spk-a"), TempDir::new("v2-spk-b"));
    let file = sb.0.join("users").join("bob").join("v2-prekeys");
    let read = || OwnPrekeys::decode(&std::fs::read(&file).unwrap()).unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let bob = chat("bob", &server, &sb.0);
    wait_opks(&dir, "bob", 16);
    let first = spk_on_server(&dir, "bob").unwrap();
    // Made now: dated at its first publication.
    let own = read();
    assert_eq!(own.spk().id(), first);
    assert!(now() - own.spk_since() < 60, "{}", own.spk_since());
    assert!(own.prev_spk().is_none());
    let (code, _) = bob.finish();
    assert_eq!(code, Some(0));

    // Six days old: kept.
    backdate_spk(&file, now() - SPK_LIFETIME_S + 86_400);
    let bob = chat("bob", &server, &sb.0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(spk_on_server(&dir, "bob"), Some(first));
    assert_eq!(read().spk().id(), first);
    assert!(read().prev_spk().is_none());
    let (code, _) = bob.finish();
    assert_eq!(code, Some(0));

    // Eight days old: replaced at the connection, stored, published.
    backdate_spk(&file, now() - SPK_LIFETIME_S - 86_400);
    let mut bob = chat("bob", &server, &sb.0);
    let deadline = std::time::Instant::now() + T;
    while spk_on_server(&dir, "bob") != Some(first.wrapping_add(1)) {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            spk_on_server(&dir, "bob")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let own = read();
    assert_eq!(own.spk().id(), first.wrapping_add(1));
    assert_eq!(own.prev_spk().map(|k| k.id()), Some(first));
    assert!(now() - own.spk_since() < 60);
    assert_eq!(
        opks_on_server(&dir, "bob"),
        Some(16),
        "one-time prekeys untouched"
    );
    // A new conversation uses the new signed prekey.
    let mut alice = chat("alice", &server, &sa.0);
    alice.out.wait_for("[SYS]   bob  fp ");
    alice.send("/to bob to your new prekey");
    bob.out.wait_exact("[alice] to your new prekey");
    bob.send("/to alice got it");
    alice.out.wait_exact("[bob] got it");
    for c in [&alice, &bob] {
        assert!(!c.out.contains("[WARN]"), "{:?}", c.out.all());
        assert!(!c.out.contains("[ERROR]"), "{:?}", c.out.all());
    }
    alice.kill();
    bob.kill();
}

/// §8 session_lost when the side that lost its session had started it: the other
/// side's messages are flagged as the responder's, and without any session they are
/// reported as "no session", not as a reflection; the new session goes on.
#[test]
fn a_lost_session_started_by_the_side_that_lost_it_is_set_up_again() {
    let dir = TempDir::new("v2-lost");
    let server = Server::start(&dir, &[]);
    let (sa, sb) = (TempDir::new("v2-lost-a"), TempDir::new("v2-lost-b"));
    let mut alice = chat("alice", &server, &sa.0);
    let mut bob = chat("bob", &server, &sb.0);
    alice.out.wait_for("[SYS] bob joined");
    bob.send("/to alice hola");
    alice.out.wait_exact("[bob] hola");
    alice.send("/to bob buenas");
    bob.out.wait_exact("[alice] buenas");
    bob.out
        .wait_exact("[SYS] alice received your message: hola");
    let (code, _) = bob.finish();
    assert_eq!(code, Some(0));
    alice.out.wait_for("[SYS] bob left");
    std::fs::remove_file(sb.0.join("users").join("bob").join("v2-session.alice")).unwrap();
    let mut bob = chat("bob", &server, &sb.0);
    alice.out.wait_for("[SYS] bob joined");
    alice.send("/to bob se perdió");
    bob.out.wait_exact(
        "[WARN] a protocol v2 message from alice was refused: this client has no protocol v2 \
         session with alice; not shown",
    );
    alice
        .out
        .wait_for("[WARN] bob started a new protocol v2 session");
    alice.out.wait_for(
        "[WARN] bob's client lost its protocol v2 session with you and started a new one; ",
    );
    alice
        .out
        .wait_for("\"se perdió\" (send again what matters)");
    alice.send("/to bob otra vez");
    bob.out.wait_exact("[alice] otra vez");
    bob.send("/to alice bien");
    alice.out.wait_exact("[bob] bien");
    assert!(!bob.out.contains("reflected"), "{:?}", bob.out.all());
    alice.kill();
    bob.kill();
}

/// A message to a v1 peer goes as v1 with an id the server acknowledges (§11): a peer
/// whose connection was cut (held during the reconnect grace, so still listed) is
/// reported as not connected, naming the text that was NOT delivered — not a bare
/// server error — and the peer that is connected gets a plain v1 relay, without the
/// id, and the sender no warning.
#[test]
fn a_v1_peer_not_connected_is_reported_with_the_text_that_was_not_delivered() {
    let dir = TempDir::new("v2-chat-v1-ack");
    let server = Server::start(&dir, &["--reconnect-grace", "60"]);
    let sa = TempDir::new("v2-chat-v1-ack-a");
    let mut bob = Raw::register(server.port(), server.pinned(), "bob");
    let mut alice = chat("alice", &server, &sa.0);
    alice.send("/to bob hello v1 bob");
    alice
        .out
        .wait_exact("[SYS] conversation with bob: protocol v1 (bob's client speaks v1)");
    let relay = bob.read_until("\"relay\"", T);
    assert!(
        !relay.contains("\"id\""),
        "the id reached the peer: {relay}"
    );
    // Cut without a TLS close: the server holds bob's name for the grace.
    drop(bob);
    alice.send("/to bob are you still there");
    alice.out.wait_exact(
        "[WARN] bob is not connected: your message was NOT delivered (the server keeps no \
         mailbox; send it again when they are back): are you still there",
    );
    let all = alice.out.all();
    assert!(!all.iter().any(|l| l.starts_with("[ERR]")), "{all:?}");
    assert_eq!(
        all.iter().filter(|l| l.starts_with("[WARN]")).count(),
        1,
        "{all:?}"
    );
    alice.kill();
}
