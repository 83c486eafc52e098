//! Process limits of `seguro serve`.

mod common;

use common::*;

/// The soft and hard "Max open files" of a running process, from /proc.
#[cfg(target_os = "linux")]
fn open_files_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open files line in {limits}"));
    let mut fields = line["Max open files".len()..].split_whitespace();
    let soft = fields.next().unwrap().to_owned();
    let hard = fields.next().unwrap().to_owned();
    (soft, hard)
}

#[cfg(target_os = "linux")]
#[test]
fn serve_raises_its_open_files_limit_to_the_hard_limit() {
    let dir = TempDir::new("nofile");
    // Started with a soft limit of 64, below any hard limit a test machine has.
    let server = Server::start_soft_nofile(&dir, 64);
    let (soft, hard) = open_files_limits(server.child.id());
    assert_eq!(soft, hard, "soft limit not raised to the hard limit");
    let l = server.err.wait_for("open files limit: ");
    assert!(l.contains(&format!("open files limit: {soft} ")), "{l}");
}

/// Resident memory of a process, in KiB, from /proc.
#[cfg(target_os = "linux")]
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The nonce of relay number `i`, in base64.
fn nonce_of(i: usize) -> String {
    use base64ct::{Base64, Encoding};
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
    Base64::encode_string(&nonce)
}

/// Relay number `i` to `to`, with well-formed fields (the server never decrypts).
fn relay_to(to: &str, i: usize) -> String {
    use base64ct::{Base64, Encoding};
    format!(
        "{{\"type\": \"relay\", \"to\": \"{to}\", \"alg\": \"X25519+AESGCM\", \"nonce\": \"{}\", \"cipher\": \"{}\"}}\n",
        nonce_of(i),
        Base64::encode_string(&[0x5a; 48])
    )
}

#[test]
fn a_burst_of_400_relays_is_delivered_whole_with_default_flags() {
    let dir = TempDir::new("burst");
    let mut server = Server::start(&dir, &[]);
    let mut sink = Raw::register(server.port(), server.pinned(), "sink");
    let mut sender = Raw::register(server.port(), server.pinned(), "sender");
    let mut burst = String::new();
    for i in 0..400 {
        burst.push_str(&relay_to("sink", i));
    }
    // All at once, far over the rate (50/s) and the burst (100): read more slowly, not lost.
    sender.send_bytes(burst.as_bytes()).unwrap();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    while got.len() < 400 && std::time::Instant::now() < deadline {
        if let Some(l) = sink.read_line(T)
            && l.contains("\"relay\"")
        {
            got.push(l);
        }
    }
    assert_eq!(got.len(), 400, "relays delivered");
    // In order, each once.
    for (i, l) in got.iter().enumerate() {
        assert!(
            l.contains(&format!("\"nonce\":\"{}\"", nonce_of(i)))
                && l.contains("\"from\":\"sender\""),
            "relay {i}: {l}"
        );
    }
    // The sender was told nothing bad.
    while let Some(l) = sender.read_line(std::time::Duration::from_millis(500)) {
        assert!(!l.contains("\"error\""), "{l}");
    }
    server.assert_alive();
}

/// Runs `n` connections that never read and keep sending `chat` lines of `text_len`
/// bytes (each answered by an echo as long) against a server with `flags`, while a
/// healthy pair keeps chatting; samples the server's RSS. Returns (RSS with everyone
/// registered before the flood, highest RSS during it), in KiB.
#[cfg(target_os = "linux")]
fn non_reading_flood(flags: &[&str], n: usize, text_len: usize, secs: u64) -> (u64, u64) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    let dir = TempDir::new("flood");
    let mut server = Server::start(&dir, flags);
    let pid = server.child.id();
    let port = server.port();
    let mut alice = Raw::register(port, server.pinned(), "alice");
    let mut bob = Raw::register(port, server.pinned(), "bob");
    let flooders: Vec<Raw> = (0..n)
        .map(|i| Raw::register(port, server.pinned(), &format!("flood{i}")))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let line = format!(
        "{{\"type\": \"chat\", \"text\": \"{}\"}}\n",
        "x".repeat(text_len)
    );
    let threads: Vec<_> = flooders
        .into_iter()
        .map(|mut f| {
            let stop = stop.clone();
            let line = line.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // Blocks once the server stops reading; fails once it cuts us off.
                    if f.send_bytes(line.as_bytes()).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    let mut peak = before;
    let end = Instant::now() + Duration::from_secs(secs);
    let mut i = 0;
    while Instant::now() < end {
        peak = peak.max(rss_kib(pid));
        // The healthy pair is served throughout.
        if i % 10 == 0 {
            alice.send_line(relay_to("bob", i).trim_end());
            bob.read_until(&nonce_of(i), T);
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    server.assert_alive();
    // Stop the server, so that flooders blocked in a write return.
    drop(server);
    for t in threads {
        let _ = t.join();
    }
    (before, peak)
}

#[cfg(target_os = "linux")]
#[test]
fn connections_that_never_read_stay_within_their_queue_bound() {
    // 20 flooders, 16 KB lines, 64 KiB queues: the attack at a smaller bound.
    let (before, peak) = non_reading_flood(&["--queue-bytes", "65536"], 20, 16_000, 6);
    let growth = peak.saturating_sub(before);
    eprintln!(
        "non-reading flood, 20 × 64 KiB queues: RSS {before} KiB before, peak {peak} KiB (+{growth} KiB)"
    );
    // Each connection may pin its queue (64 KiB), its reader (one line) and TLS and
    // socket buffers; 20 of them stay far below what an unbounded queue reaches
    // (tens of MiB in seconds). A memory bound, not a timing one.
    assert!(growth < 24 * 1024, "RSS grew by {growth} KiB");
}

#[cfg(target_os = "linux")]
#[test]
fn a_peer_that_reads_nothing_is_cut_off_after_the_write_timeout_with_the_reason() {
    let dir = TempDir::new("cutoff");
    let mut server = Server::start(&dir, &["--queue-bytes", "65536", "--write-timeout", "2"]);
    let mut sloth = Raw::register(server.port(), server.pinned(), "sloth");
    let line = format!(
        "{{\"type\": \"chat\", \"text\": \"{}\"}}\n",
        "y".repeat(16_000)
    );
    let t = std::thread::spawn(move || {
        for _ in 0..2000 {
            if sloth.send_bytes(line.as_bytes()).is_err() {
                return true;
            }
        }
        false
    });
    let l = server
        .err
        .wait("sloth cut off", std::time::Duration::from_secs(60), |l| {
            l.contains("user=sloth") && l.contains("left: write timed out")
        });
    assert!(l.contains("the peer read nothing"), "{l}");
    assert!(t.join().unwrap(), "the flooder's writes never failed");
    server.assert_alive();
}

#[test]
fn a_relay_to_a_recipient_that_does_not_read_waits_then_is_refused_naming_it() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = TempDir::new("fullrecipient");
    let server = Server::start(
        &dir,
        &[
            "--rate",
            "0",
            "--queue-bytes",
            "65536",
            "--write-timeout",
            "9",
        ],
    );
    let _sloth = Raw::register(server.port(), server.pinned(), "sloth");
    let mut sender = Raw::register(server.port(), server.pinned(), "sender");
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let line = {
        use base64ct::{Base64, Encoding};
        format!(
            "{{\"type\": \"relay\", \"to\": \"sloth\", \"alg\": \"X25519+AESGCM\", \"nonce\": \"{}\", \"cipher\": \"{}\"}}\n",
            nonce_of(0),
            Base64::encode_string(&[0x33; 12_000])
        )
    };
    let t = std::thread::spawn(move || {
        // Fills sloth's queue and the socket buffers behind it, then is slowed down.
        while !stop2.load(Ordering::Relaxed) {
            if sender.send_bytes(line.as_bytes()).is_err() {
                break;
            }
        }
        sender
    });
    server
        .err
        .wait("a refused relay", std::time::Duration::from_secs(60), |l| {
            l.contains("relay refused: recipient's queue full")
        });
    stop.store(true, Ordering::Relaxed);
    let mut sender = t.join().unwrap();
    let l = sender.read_until("not delivered", T);
    assert_eq!(
        error_text(&l).as_deref(),
        Some(
            "not delivered to sloth: sloth is not reading (its queue is full); send it again later"
        )
    );
}

/// The figures of BENCHMARKS.md (not a test of speed: run it by hand with
/// `cargo test -p seguro --release --test limits -- --ignored --nocapture`).
#[cfg(target_os = "linux")]
#[test]
#[ignore = "a measurement for BENCHMARKS.md"]
fn measure_the_non_reading_flood_with_default_flags() {
    for n in [1, 20] {
        let (before, peak) = non_reading_flood(&[], n, 16_000, 8);
        let growth = peak.saturating_sub(before);
        eprintln!(
            "non-reading flood, {n} connection(s), default flags, 8 s: RSS {before} KiB registered, peak {peak} KiB, +{growth} KiB in all, {} KiB per connection",
            growth / n as u64
        );
    }
}
