//! The bounded soak and fault suite: a real server process, real TLS, loopback only.
//!
//! Healthy pairs exchange sequence-numbered end-to-end encrypted messages the whole
//! time, while misbehaving clients come and go: disconnects in the middle of a line or
//! of the TLS handshake, a reader that never reads (and a sender flooding it), garbage
//! and oversized-line flooders, garbage instead of `hello`, half-open handshakes,
//! handshake-then-silence and half-closed connections, look-alikes of connected names,
//! relays of the wrong form, and a flood of connections from one source. Every
//! connection comes through a PROXY protocol header (the server runs with
//! `--proxy-protocol`), each from its own made-up source except the flood's. Then the
//! server is restarted on the same port and the healthy clients reconnect and carry on.
//!
//! Assertions (any failure makes the command exit non-zero): the server never panics
//! and exits cleanly on SIGTERM; its RSS stays under a bound; every message between
//! healthy clients arrives exactly once and in order (across the restart too); healthy
//! clients get no errors; every misbehaving client is cut off, and the server's log
//! names the reason for that very connection.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};
use smol::future::FutureExt as _;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;

use seguro_core::e2ee::{KeyPair, PeerKey};

use crate::net::{self, Got, Result, Spawned, Target, TempDir};
use crate::relay;

/// `seguro-bench soak` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `seguro` binary to test.
    #[arg(long, value_name = "SEGURO")]
    spawn: PathBuf,
    /// Seconds of faults before the restart.
    #[arg(long, default_value_t = 30)]
    secs: u64,
    /// Seconds of traffic after the restart.
    #[arg(long, default_value_t = 10)]
    after_restart_secs: u64,
    /// Healthy pairs (each client both sends and receives).
    #[arg(long, default_value_t = 12)]
    pairs: usize,
    /// Milliseconds between two messages of one healthy client.
    #[arg(long, default_value_t = 50)]
    interval_ms: u64,
    /// Largest server RSS allowed at any time, in MiB.
    #[arg(long, default_value_t = 256)]
    max_rss_mib: u64,
    /// Keep the server logs in this directory.
    #[arg(long)]
    keep_logs: Option<PathBuf>,
}

// Server limits for the suite (small, so that misbehaviour is cut quickly).
const MAX_LINE: usize = 4096;
const HELLO_TIMEOUT_S: u64 = 2;
const QUEUE: usize = 64;
const MAX_ERRORS: u32 = 10;
/// Seconds the flood towards the never-reading client may last before that is a failure.
const SLOTH_DEADLINE_S: u64 = 40;
/// The server's `--write-timeout`: a peer that reads nothing this long is cut off (and
/// relays to it wait a third of it, then are refused naming it).
const WRITE_TIMEOUT_S: u64 = 12;
/// The server's `--max-per-source`: connections open at once from one source (every
/// connection comes with a PROXY header, each from its own made-up source, except the
/// per-source flood's, which share one).
const PER_SOURCE: usize = 4;

/// A misbehaving connection the server's log must account for.
struct Expect {
    what: String,
    local: SocketAddr,
    reasons: &'static [&'static str],
}

#[derive(Default)]
struct Shared {
    failures: Mutex<Vec<String>>,
    expects: Mutex<Vec<Expect>>,
    clients: AtomicUsize,
    /// Look-alike names refused with a name reason.
    impostors: AtomicUsize,
}

impl Shared {
    fn fail(&self, what: String) {
        eprintln!("FAIL: {what}");
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what);
    }
    fn expect(&self, what: String, local: SocketAddr, reasons: &'static [&'static str]) {
        self.expects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Expect {
                what,
                local,
                reasons,
            });
    }
}

/// One healthy client's counters.
struct Healthy {
    name: String,
    keys: KeyPair,
    /// Shared key with the partner.
    key: PeerKey,
    partner: usize,
    sent: AtomicU64,
    received: AtomicU64,
    expected_next: AtomicU64,
    disorder: AtomicU64,
    bad: AtomicU64,
    errors: Mutex<Vec<String>>,
    welcomes: AtomicU64,
}

struct Control {
    paused: AtomicBool,
    stopping: AtomicBool,
    in_write: AtomicUsize,
    phase_over: AtomicBool,
}

fn spawn_server(
    bin: &std::path::Path,
    dir: &std::path::Path,
    bind: &str,
    n: u32,
) -> Result<Spawned> {
    let args: Vec<String> = [
        "serve",
        "--bind",
        bind,
        "--cert",
        &dir.join("server.crt").display().to_string(),
        "--key",
        &dir.join("server.key").display().to_string(),
        "--hello-timeout",
        &HELLO_TIMEOUT_S.to_string(),
        "--max-line",
        &MAX_LINE.to_string(),
        "--queue",
        &QUEUE.to_string(),
        "--max-errors",
        &MAX_ERRORS.to_string(),
        "--rate",
        "200",
        "--burst",
        "400",
        "--write-timeout",
        &WRITE_TIMEOUT_S.to_string(),
        "--threads",
        "2",
        "--proxy-protocol",
        "--max-per-source",
        &PER_SOURCE.to_string(),
        // The checks expect a dropped connection to be gone at once ("user not
        // connected"), not held for a reconnect.
        "--reconnect-grace",
        "0",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    // Debug level: handshake failures and hello timeouts are logged at debug.
    net::spawn_listening(
        bin,
        &args,
        &[("RUST_LOG", "debug")],
        &dir.join(format!("server-{n}.stderr")),
    )
}

/// Runs the suite.
pub fn run(a: Args) -> Result<()> {
    net::raise_nofile();
    let dir = TempDir::new("soak")?;
    net::make_cert(&dir.0)?;
    let cert = dir.0.join("server.crt");
    let mut server = spawn_server(&a.spawn, &dir.0, "127.0.0.1:0", 1)?;
    let addr = server.addr;
    let mut target = Target::new(addr, &cert)?;
    target.proxy = true;
    println!(
        "soak: server {} (pid {}) on {addr}",
        a.spawn.display(),
        server.pid()
    );
    let shared = Arc::new(Shared::default());
    let start = Instant::now();

    // RSS sampler: follows whichever server process is current.
    let pid = Arc::new(AtomicU64::new(u64::from(server.pid())));
    let peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (pid, peak, sampling) = (pid.clone(), peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while sampling.load(SeqCst) {
                let p = u32::try_from(pid.load(SeqCst)).unwrap_or(0);
                if let Some(kib) = net::proc_status_kib(p, "VmRSS") {
                    peak.fetch_max(kib, SeqCst);
                    samples.push(kib);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            samples
        })
    };

    let ctl = Arc::new(Control {
        paused: AtomicBool::new(true),
        stopping: AtomicBool::new(false),
        in_write: AtomicUsize::new(0),
        phase_over: AtomicBool::new(false),
    });
    let mut healthy = Vec::new();
    let tag = format!("{:06x}", OsRng.next_u32() & 0xff_ffff);
    for i in 0..a.pairs * 2 {
        healthy.push(KeyPair::generate(&mut OsRng));
        let _ = i;
    }
    let pubs: Vec<[u8; 32]> = healthy.iter().map(KeyPair::public).collect();
    let healthy: Vec<Arc<Healthy>> = healthy
        .into_iter()
        .enumerate()
        .map(|(i, keys)| {
            let partner = i ^ 1;
            let key = keys
                .peer_key(pubs.get(partner).unwrap_or(&[9u8; 32]))
                .unwrap_or_else(|_| PeerKey::from_bytes([0; 32]));
            Arc::new(Healthy {
                name: format!("ok{i}-{tag}"),
                keys,
                key,
                partner,
                sent: AtomicU64::new(0),
                received: AtomicU64::new(0),
                expected_next: AtomicU64::new(0),
                disorder: AtomicU64::new(0),
                bad: AtomicU64::new(0),
                errors: Mutex::new(Vec::new()),
                welcomes: AtomicU64::new(0),
            })
        })
        .collect();

    let a_secs = a.secs;
    let after_secs = a.after_restart_secs;
    let interval = Duration::from_millis(a.interval_ms.max(1));
    let spawn_bin = a.spawn.clone();
    let dir_path = dir.0.clone();
    let outcome = net::block_on_threads(2, {
        let shared = shared.clone();
        let healthy = healthy.clone();
        let ctl = ctl.clone();
        let pid = pid.clone();
        move |ex| {
            Box::pin(async move {
                let mut tasks = Vec::new();
                for h in &healthy {
                    tasks.push(ex.spawn(healthy_client(
                        target.clone(),
                        h.clone(),
                        healthy.clone(),
                        ctl.clone(),
                        shared.clone(),
                        interval,
                    )));
                }
                if !wait_welcomes(&healthy, 1, Duration::from_secs(20)).await {
                    shared.fail("healthy clients did not all join".into());
                }
                ctl.paused.store(false, SeqCst);
                println!(
                    "phase 1: {} healthy clients talking; faults for {a_secs} s",
                    healthy.len()
                );

                // Faults, concurrently, until the phase ends.
                let faults = vec![
                    ex.spawn(sloth_and_blaster(
                        target.clone(),
                        shared.clone(),
                        tag.clone(),
                    )),
                    ex.spawn(every(Duration::from_millis(250), ctl.clone(), {
                        let (t, s, tag) = (target.clone(), shared.clone(), tag.clone());
                        move |k| cut_mid_line(t.clone(), s.clone(), format!("cut{k}-{tag}"), k)
                    })),
                    ex.spawn(every(Duration::from_millis(700), ctl.clone(), {
                        let (t, s, tag) = (target.clone(), shared.clone(), tag.clone());
                        move |k| flooder(t.clone(), s.clone(), format!("junk{k}-{tag}"), false)
                    })),
                    ex.spawn(every(Duration::from_millis(900), ctl.clone(), {
                        let (t, s, tag) = (target.clone(), shared.clone(), tag.clone());
                        move |k| flooder(t.clone(), s.clone(), format!("big{k}-{tag}"), true)
                    })),
                    ex.spawn(every(Duration::from_millis(800), ctl.clone(), {
                        let (t, s) = (target.clone(), shared.clone());
                        move |k| silent_after_handshake(t.clone(), s.clone(), k)
                    })),
                    ex.spawn(every(Duration::from_millis(800), ctl.clone(), {
                        let (t, s) = (target.clone(), shared.clone());
                        move |_| half_open_handshake(t.clone(), s.clone())
                    })),
                    ex.spawn(every(Duration::from_millis(1000), ctl.clone(), {
                        let (t, s) = (target.clone(), shared.clone());
                        move |_| garbage_hello(t.clone(), s.clone())
                    })),
                    ex.spawn(every(Duration::from_millis(1000), ctl.clone(), {
                        let (t, s, tag) = (target.clone(), shared.clone(), tag.clone());
                        move |k| half_close(t.clone(), s.clone(), format!("hc{k}-{tag}"))
                    })),
                    ex.spawn(every(Duration::from_millis(1500), ctl.clone(), {
                        let (t, s) = (target.clone(), shared.clone());
                        move |k| per_source_flood(t.clone(), s.clone(), k)
                    })),
                    ex.spawn(every(Duration::from_millis(600), ctl.clone(), {
                        let (t, s) = (target.clone(), shared.clone());
                        let names: Vec<String> = healthy.iter().map(|h| h.name.clone()).collect();
                        move |k| {
                            let victim = names.get(k as usize % names.len().max(1));
                            name_impostor(
                                t.clone(),
                                s.clone(),
                                victim.cloned().unwrap_or_default(),
                                k,
                            )
                        }
                    })),
                    ex.spawn(every(Duration::from_millis(900), ctl.clone(), {
                        let (t, s, tag) = (target.clone(), shared.clone(), tag.clone());
                        let names: Vec<String> = healthy.iter().map(|h| h.name.clone()).collect();
                        move |k| {
                            let to = names.get(k as usize % names.len().max(1));
                            bad_relayer(
                                t.clone(),
                                s.clone(),
                                format!("br{k}-{tag}"),
                                to.cloned().unwrap_or_default(),
                            )
                        }
                    })),
                ];
                smol::Timer::after(Duration::from_secs(a_secs)).await;
                ctl.phase_over.store(true, SeqCst);
                for f in faults {
                    let _ = net::timeout(Duration::from_secs(30), "fault task", async {
                        f.await;
                        Ok(())
                    })
                    .await;
                }
                quiesce(&healthy, &ctl, &shared, "before the restart").await;

                // Restart on the same port.
                println!("restart: SIGTERM, then a new server on {addr}");
                let (status, server) = smol::unblock(move || {
                    let st = server.stop(Duration::from_secs(10));
                    (st, server)
                })
                .await;
                check_exit(&shared, status, "first server");
                let first_log = std::fs::read_to_string(&server.stderr_path).unwrap_or_default();
                drop(server);
                let bind = addr.to_string();
                let mut server2 = None;
                for _ in 0..50 {
                    match spawn_server(&spawn_bin, &dir_path, &bind, 2) {
                        Ok(s) => {
                            server2 = Some(s);
                            break;
                        }
                        Err(_) => {
                            smol::Timer::after(Duration::from_millis(100)).await;
                        }
                    }
                }
                let Some(mut server2) = server2 else {
                    shared.fail("the server could not be restarted on the same port".into());
                    ctl.stopping.store(true, SeqCst);
                    return (first_log, String::new());
                };
                pid.store(u64::from(server2.pid()), SeqCst);
                if !wait_welcomes(&healthy, 2, Duration::from_secs(20)).await {
                    shared.fail("healthy clients did not all reconnect after the restart".into());
                }
                ctl.paused.store(false, SeqCst);
                println!("phase 2: {after_secs} s of traffic after the restart");
                smol::Timer::after(Duration::from_secs(after_secs)).await;
                quiesce(&healthy, &ctl, &shared, "at the end").await;
                ctl.stopping.store(true, SeqCst);
                for t in tasks {
                    let _ = net::timeout(Duration::from_secs(10), "healthy client stop", async {
                        t.await;
                        Ok(())
                    })
                    .await;
                }
                let status = smol::unblock(move || {
                    let st = server2.stop(Duration::from_secs(10));
                    (st, server2)
                })
                .await;
                check_exit(&shared, status.0, "restarted server");
                let second_log = std::fs::read_to_string(&status.1.stderr_path).unwrap_or_default();
                (first_log, second_log)
            })
        }
    });
    sampling.store(false, SeqCst);
    let samples = sampler.join().unwrap_or_default();
    let (log1, log2) = outcome;
    if let Some(keep) = &a.keep_logs {
        let _ = std::fs::create_dir_all(keep);
        let _ = std::fs::write(keep.join("server-1.stderr"), &log1);
        let _ = std::fs::write(keep.join("server-2.stderr"), &log2);
    }

    // Panics.
    for (n, log) in [(1, &log1), (2, &log2)] {
        if let Some(l) = log.lines().find(|l| l.contains("panicked")) {
            shared.fail(format!("server {n} panicked: {l}"));
        }
    }
    // Memory.
    let peak_kib = peak.load(SeqCst);
    let first = samples.first().copied().unwrap_or(0);
    let last = samples.last().copied().unwrap_or(0);
    println!(
        "server RSS: first {first} KiB, peak {peak_kib} KiB, last {last} KiB ({} samples; bound {} MiB)",
        samples.len(),
        a.max_rss_mib
    );
    if peak_kib > a.max_rss_mib * 1024 {
        shared.fail(format!(
            "server RSS reached {peak_kib} KiB, above {} MiB",
            a.max_rss_mib
        ));
    }
    // Healthy traffic.
    let mut total = 0;
    for h in &healthy {
        let p = healthy.get(h.partner);
        let partner_sent = p.map_or(0, |p| p.sent.load(SeqCst));
        let got = h.received.load(SeqCst);
        total += got;
        if got != partner_sent || h.disorder.load(SeqCst) != 0 || h.bad.load(SeqCst) != 0 {
            shared.fail(format!(
                "{}: partner sent {partner_sent}, received {got}, out of order {}, undecryptable {}",
                h.name,
                h.disorder.load(SeqCst),
                h.bad.load(SeqCst)
            ));
        }
        let errs = h.errors.lock().unwrap_or_else(|e| e.into_inner());
        if !errs.is_empty() {
            shared.fail(format!(
                "{}: got errors: {:?}",
                h.name,
                errs.iter().take(3).collect::<Vec<_>>()
            ));
        }
    }
    println!(
        "healthy: {} clients, {total} messages delivered exactly once and in order unless reported above",
        healthy.len()
    );
    // Reasons for cutting misbehaving clients.
    let logs = format!("{log1}\n{log2}");
    let expects = std::mem::take(&mut *shared.expects.lock().unwrap_or_else(|e| e.into_inner()));
    let mut by_kind: Vec<(String, usize)> = Vec::new();
    for e in &expects {
        let needle = format!("addr={} ", e.local);
        let needle_end = format!("addr={}", e.local);
        let found = logs.lines().any(|l| {
            (l.contains(&needle) || l.ends_with(&needle_end))
                && e.reasons.iter().any(|r| l.contains(r))
        });
        if !found {
            shared.fail(format!(
                "{} from {}: no log line with any of {:?}",
                e.what, e.local, e.reasons
            ));
        }
        let kind = e.what.split(' ').next().unwrap_or("").to_owned();
        match by_kind.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, c)) => *c += 1,
            None => by_kind.push((kind, 1)),
        }
    }
    println!(
        "misbehaving connections checked against the log: {} ({})",
        expects.len(),
        by_kind
            .iter()
            .map(|(k, c)| format!("{k} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "look-alike names refused with the reason: {}",
        shared.impostors.load(SeqCst)
    );
    println!(
        "clients in all: {}; elapsed {:.1} s",
        shared.clients.load(SeqCst) + healthy.len(),
        start.elapsed().as_secs_f64()
    );
    let failures = shared.failures.lock().unwrap_or_else(|e| e.into_inner());
    if failures.is_empty() {
        println!("soak: PASS");
        Ok(())
    } else {
        Err(format!(
            "soak: {} failure(s): {}",
            failures.len(),
            failures.join("; ")
        )
        .into())
    }
}

fn check_exit(shared: &Shared, st: Option<std::process::ExitStatus>, what: &str) {
    match st {
        Some(s) if s.success() => {}
        Some(s) => shared.fail(format!("{what} exited with {s} on SIGTERM")),
        None => shared.fail(format!("{what} did not exit within 10 s of SIGTERM")),
    }
}

async fn wait_welcomes(healthy: &[Arc<Healthy>], n: u64, max: Duration) -> bool {
    let deadline = Instant::now() + max;
    while Instant::now() < deadline {
        if healthy.iter().all(|h| h.welcomes.load(SeqCst) >= n) {
            return true;
        }
        smol::Timer::after(Duration::from_millis(20)).await;
    }
    false
}

/// Stops the healthy senders and waits until everything sent has arrived.
async fn quiesce(healthy: &[Arc<Healthy>], ctl: &Control, shared: &Shared, when: &str) {
    ctl.paused.store(true, SeqCst);
    let deadline = Instant::now() + Duration::from_secs(15);
    while ctl.in_write.load(SeqCst) > 0 && Instant::now() < deadline {
        smol::Timer::after(Duration::from_millis(5)).await;
    }
    loop {
        let done = healthy.iter().all(|h| {
            let sent = healthy.get(h.partner).map_or(0, |p| p.sent.load(SeqCst));
            h.received.load(SeqCst) >= sent
        });
        if done {
            return;
        }
        if Instant::now() > deadline {
            shared.fail(format!(
                "healthy messages still missing 15 s after the senders paused ({when})"
            ));
            return;
        }
        smol::Timer::after(Duration::from_millis(10)).await;
    }
}

/// A healthy client: joins (again after any disconnect), sends to its partner every
/// `interval` unless paused, checks what arrives.
async fn healthy_client(
    target: Target,
    me: Arc<Healthy>,
    all: Vec<Arc<Healthy>>,
    ctl: Arc<Control>,
    shared: Arc<Shared>,
    interval: Duration,
) {
    let partner_name = all
        .get(me.partner)
        .map(|p| p.name.clone())
        .unwrap_or_default();
    while !ctl.stopping.load(SeqCst) {
        let c = match net::timeout(
            Duration::from_secs(5),
            "join",
            net::join(&target, &me.name, &me.keys, 1 << 20),
        )
        .await
        {
            Ok(c) => c,
            Err(_) => {
                smol::Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        me.welcomes.fetch_add(1, SeqCst);
        let net::Client {
            mut lines, mut wr, ..
        } = c;
        let reading = async {
            let mut scratch = vec![0u8; 1 << 20];
            let mut plain = Vec::new();
            loop {
                let r = lines
                    .next_with(|g| match g {
                        Got::Line(l) => {
                            match net::kind_of(l, &mut scratch) {
                                net::Kind::Relay => {
                                    match relay::open_relay(&me.key, l, &mut scratch, &mut plain)
                                        .ok()
                                        .and_then(|()| relay::parse_plaintext(&plain))
                                    {
                                        Some((seq, _)) => {
                                            let exp = me.expected_next.load(SeqCst);
                                            if seq != exp {
                                                me.disorder.fetch_add(1, SeqCst);
                                            }
                                            me.expected_next.store(seq + 1, SeqCst);
                                            me.received.fetch_add(1, SeqCst);
                                        }
                                        None => {
                                            me.bad.fetch_add(1, SeqCst);
                                        }
                                    }
                                }
                                net::Kind::Error => {
                                    let text = String::from_utf8_lossy(l).into_owned();
                                    if !text.contains("shutting down") {
                                        me.errors
                                            .lock()
                                            .unwrap_or_else(|e| e.into_inner())
                                            .push(text);
                                    }
                                }
                                _ => {}
                            }
                            false
                        }
                        Got::Overlong => false,
                        Got::Eof => true,
                    })
                    .await;
                if !matches!(r, Ok(false)) {
                    return;
                }
            }
        };
        let writing = async {
            let mut plain = Vec::new();
            let mut cbuf = Vec::new();
            let mut line = Vec::new();
            loop {
                if ctl.stopping.load(SeqCst) {
                    let _ = wr.close().await;
                    return;
                }
                ctl.in_write.fetch_add(1, SeqCst);
                if !ctl.paused.load(SeqCst) {
                    let seq = me.sent.load(SeqCst);
                    relay::plaintext(seq, net::now_ns(), 48, &mut plain);
                    let ok = relay::relay_line(
                        &me.key,
                        &partner_name,
                        &me.name,
                        &plain,
                        &mut cbuf,
                        &mut line,
                    )
                    .is_ok()
                        && wr.write_all(&line).await.is_ok()
                        && wr.flush().await.is_ok();
                    if ok {
                        me.sent.fetch_add(1, SeqCst);
                    } else {
                        ctl.in_write.fetch_sub(1, SeqCst);
                        // Wait for the reader to see the connection end.
                        smol::Timer::after(Duration::from_secs(3600)).await;
                        return;
                    }
                }
                ctl.in_write.fetch_sub(1, SeqCst);
                smol::Timer::after(interval).await;
            }
        };
        reading.or(writing).await;
        if !ctl.stopping.load(SeqCst) && !ctl.paused.load(SeqCst) {
            shared.fail(format!(
                "{}: disconnected while traffic was flowing",
                me.name
            ));
        }
    }
}

/// Runs `f(k)` for k = 0, 1, … every `period` until the phase is over, and waits for all.
async fn every<F, Fut>(period: Duration, ctl: Arc<Control>, f: F)
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut k = 0;
    let mut running = Vec::new();
    while !ctl.phase_over.load(SeqCst) {
        running.push(smol::spawn(f(k)));
        k += 1;
        smol::Timer::after(period).await;
    }
    for r in running {
        r.await;
    }
}

/// Reads until the peer closes (Ok(true)) or `max` passes (Ok(false)).
async fn closed_within<R: smol::io::AsyncRead + Unpin>(rd: &mut R, max: Duration) -> bool {
    let mut buf = vec![0u8; 16384];
    let reading = async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    };
    reading
        .or(async {
            smol::Timer::after(max).await;
            false
        })
        .await
}

/// Joins, writes part of a line (or of the TLS handshake), and drops the connection.
async fn cut_mid_line(t: Target, s: Arc<Shared>, name: String, k: u64) {
    s.clients.fetch_add(1, SeqCst);
    if k % 3 == 2 {
        // Mid-handshake: a TLS record header and part of a ClientHello, then gone.
        let Ok((mut tcp, local)) = net::tcp_connect(&t).await else {
            s.fail("cut: connect failed".into());
            return;
        };
        let local = Some(local);
        let _ = tcp
            .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03])
            .await;
        drop(tcp);
        if let Some(l) = local {
            s.expect(
                "mid-handshake-disconnect".into(),
                l,
                &["TLS handshake failed"],
            );
        }
        return;
    }
    let keys = KeyPair::generate(&mut OsRng);
    let Ok((c, local)) = net::join_local(&t, &name, &keys, 1 << 20).await else {
        s.fail(format!("{name}: could not join"));
        return;
    };
    let net::Client { lines, mut wr, .. } = c;
    let line = format!(
        "{{\"type\":\"relay\",\"to\":\"nobody\",\"nonce\":\"AAAAAAAAAAAAAAAA\",\"cipher\":\"{}\"}}\n",
        "A".repeat(400)
    );
    let cut = 1 + (OsRng.next_u32() as usize) % (line.len() - 2);
    let _ = wr
        .write_all(line.as_bytes().get(..cut).unwrap_or_default())
        .await;
    let _ = wr.flush().await;
    smol::Timer::after(Duration::from_millis(20)).await;
    drop(lines);
    drop(wr);
    s.expect(
        "mid-line-disconnect".into(),
        local,
        &["left: peer closed the connection", "left: I/O error"],
    );
}

/// Joins and floods garbage lines (or lines longer than the server's maximum) without
/// reading; the server must cut it off.
async fn flooder(t: Target, s: Arc<Shared>, name: String, oversized: bool) {
    s.clients.fetch_add(1, SeqCst);
    let keys = KeyPair::generate(&mut OsRng);
    let Ok((c, local)) = net::join_local(&t, &name, &keys, 1 << 20).await else {
        s.fail(format!("{name}: could not join"));
        return;
    };
    let net::Client {
        mut lines, mut wr, ..
    } = c;
    let mut junk = vec![0u8; if oversized { MAX_LINE * 3 } else { 200 }];
    let flood = async {
        for _ in 0..10_000 {
            OsRng.fill_bytes(&mut junk);
            for b in junk.iter_mut() {
                if *b == b'\n' {
                    *b = b'x';
                }
            }
            if let Some(last) = junk.last_mut() {
                *last = b'\n';
            }
            if wr.write_all(&junk).await.is_err() || wr.flush().await.is_err() {
                break;
            }
        }
        // Sent everything without being cut: wait for the reader's verdict.
        smol::Timer::after(Duration::from_secs(3600)).await;
        false
    };
    let watch = async {
        let cut = net::timeout(Duration::from_secs(10), "cut", async {
            while let Ok(false) = lines.next_with(|g| matches!(g, Got::Eof)).await {}
            Ok(())
        })
        .await;
        cut.is_ok()
    };
    let what = if oversized {
        "oversized-line-flooder"
    } else {
        "garbage-flooder"
    };
    if !watch.or(flood).await {
        s.fail(format!("{what} {name} was not cut off within 10 s"));
    }
    s.expect(
        format!("{what} {name}"),
        local,
        &["too many consecutive bad messages"],
    );
}

/// A flood from one source: PER_SOURCE connections complete TLS, the next one from the
/// same source is closed before TLS (and logged), while every other source carries on.
async fn per_source_flood(t: Target, s: Arc<Shared>, k: u64) {
    let ip = [192, 0, 2, u8::try_from(k % 250).unwrap_or(0) + 1];
    let mut held = Vec::new();
    for i in 0..=PER_SOURCE {
        s.clients.fetch_add(1, SeqCst);
        let src = SocketAddr::from((ip, 1000 + u16::try_from(i).unwrap_or(0)));
        let Ok(mut tcp) = TcpStream::connect(t.addr).await else {
            s.fail("per-source flood: connect failed".into());
            return;
        };
        if tcp.write_all(&net::proxy_v1(src, t.addr)).await.is_err() {
            s.fail("per-source flood: header not sent".into());
            return;
        }
        let tls = futures_rustls::TlsConnector::from(t.tls.clone())
            .connect(seguro::tls::server_name(), tcp)
            .await;
        if i < PER_SOURCE {
            match tls {
                Ok(c) => held.push(c),
                Err(e) => {
                    s.fail(format!(
                        "per-source flood: connection {i} of {PER_SOURCE} from {src} refused: {e}"
                    ));
                    return;
                }
            }
        } else {
            if tls.is_ok() {
                s.fail(format!(
                    "per-source flood: connection {} from one source got TLS",
                    i + 1
                ));
            }
            s.expect(
                "per-source-flood".into(),
                src,
                &["connection(s) from this source already open"],
            );
        }
    }
    drop(held);
}

/// A look-alike of a connected healthy client's name (case, a Cyrillic letter, a
/// zero-width joiner): refused with the reason.
async fn name_impostor(t: Target, s: Arc<Shared>, victim: String, k: u64) {
    s.clients.fetch_add(1, SeqCst);
    let fake = match k % 3 {
        0 => victim.to_uppercase(),
        1 => victim.replacen('o', "\u{043e}", 1),
        _ => format!("{victim}\u{200d}"),
    };
    let keys = KeyPair::generate(&mut OsRng);
    match net::join_local(&t, &fake, &keys, 1 << 20).await {
        Ok(_) => s.fail(format!("name impostor {fake:?} of {victim} was admitted")),
        Err(e) if e.to_string().contains("invalid user name") => {
            s.impostors.fetch_add(1, SeqCst);
        }
        Err(e) => s.fail(format!(
            "name impostor {fake:?}: refused without a name reason: {e}"
        )),
    }
}

/// Joins and sends relays of the wrong form to a healthy client (short nonce, cipher
/// not base64, unknown alg): each is answered with `bad relay`, none is forwarded (the
/// healthy client would count it as bad), and the sender is cut off at --max-errors.
async fn bad_relayer(t: Target, s: Arc<Shared>, name: String, to: String) {
    s.clients.fetch_add(1, SeqCst);
    let keys = KeyPair::generate(&mut OsRng);
    let Ok((c, local)) = net::join_local(&t, &name, &keys, 1 << 20).await else {
        s.fail(format!("{name}: could not join"));
        return;
    };
    let net::Client {
        mut lines, mut wr, ..
    } = c;
    let good_cipher = "A".repeat(44);
    for i in 0..MAX_ERRORS {
        let line = match i % 3 {
            0 => {
                format!(r#"{{"type":"relay","to":"{to}","nonce":"AAAA","cipher":"{good_cipher}"}}"#)
            }
            1 => format!(
                r#"{{"type":"relay","to":"{to}","nonce":"AAAAAAAAAAAAAAAA","cipher":"!!!!"}}"#
            ),
            _ => format!(
                r#"{{"type":"relay","to":"{to}","alg":"ROT13","nonce":"AAAAAAAAAAAAAAAA","cipher":"{good_cipher}"}}"#
            ),
        };
        if wr.write_all(format!("{line}\n").as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = wr.flush().await;
    let mut answered = 0u32;
    let done = net::timeout(Duration::from_secs(10), "cut", async {
        loop {
            let (eof, bad) = lines
                .next_with(|g| match g {
                    Got::Line(l) => (false, l.windows(9).any(|w| w == b"bad relay")),
                    Got::Overlong => (false, false),
                    Got::Eof => (true, false),
                })
                .await?;
            answered += u32::from(bad);
            if eof {
                return Ok(());
            }
        }
    })
    .await;
    if done.is_err() {
        s.fail(format!("bad-relayer {name} was not cut off within 10 s"));
    }
    if answered != MAX_ERRORS {
        s.fail(format!(
            "bad-relayer {name}: {answered} of {MAX_ERRORS} bad relays answered"
        ));
    }
    s.expect(
        format!("bad-relayer {name}"),
        local,
        &["too many consecutive bad messages"],
    );
}

/// Completes the TLS handshake, then says nothing: cut at the hello deadline.
async fn silent_after_handshake(t: Target, s: Arc<Shared>, _k: u64) {
    s.clients.fetch_add(1, SeqCst);
    let Ok((tls, local)) = net::connect_tls_local(&t, Arc::new(AtomicU64::new(0))).await else {
        s.fail("silent: TLS handshake failed".into());
        return;
    };
    let (mut rd, _wr) = smol::io::split(tls);
    if !closed_within(&mut rd, Duration::from_secs(HELLO_TIMEOUT_S + 5)).await {
        s.fail("handshake-then-silence was not cut off at the hello deadline".into());
    }
    s.expect(
        "handshake-then-silence".into(),
        local,
        &["no TLS handshake and hello before the deadline"],
    );
}

/// Starts a TLS handshake and stops half way, keeping the TCP connection open.
async fn half_open_handshake(t: Target, s: Arc<Shared>) {
    s.clients.fetch_add(1, SeqCst);
    let Ok((mut tcp, local)) = net::tcp_connect(&t).await else {
        s.fail("half-open: connect failed".into());
        return;
    };
    let _ = tcp
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc])
        .await;
    if !closed_within(&mut tcp, Duration::from_secs(HELLO_TIMEOUT_S + 5)).await {
        s.fail("half-open TLS handshake was not cut off at the deadline".into());
    }
    s.expect(
        "half-open-handshake".into(),
        local,
        &["no TLS handshake and hello before the deadline"],
    );
}

/// TLS, then garbage instead of `hello`: refused with an error, then closed.
async fn garbage_hello(t: Target, s: Arc<Shared>) {
    s.clients.fetch_add(1, SeqCst);
    let Ok((tls, local)) = net::connect_tls_local(&t, Arc::new(AtomicU64::new(0))).await else {
        s.fail("garbage-hello: TLS handshake failed".into());
        return;
    };
    let (mut rd, mut wr) = smol::io::split(tls);
    let _ = wr
        .write_all(b"{\"type\":\"chat\",\"text\":\"let me in\"}\n")
        .await;
    let _ = wr.flush().await;
    if !closed_within(&mut rd, Duration::from_secs(5)).await {
        s.fail("garbage instead of hello: connection not closed".into());
    }
    s.expect("garbage-hello".into(), local, &["refused hello"]);
}

/// Joins, then closes its sending side (TLS close_notify and TCP FIN) but keeps
/// reading: the server must notice and close its side too.
async fn half_close(t: Target, s: Arc<Shared>, name: String) {
    s.clients.fetch_add(1, SeqCst);
    let keys = KeyPair::generate(&mut OsRng);
    let Ok((c, local)) = net::join_local(&t, &name, &keys, 1 << 20).await else {
        s.fail(format!("{name}: could not join"));
        return;
    };
    let net::Client {
        mut lines, mut wr, ..
    } = c;
    let _ = wr.close().await;
    let closed = net::timeout(Duration::from_secs(5), "close", async {
        while let Ok(false) = lines.next_with(|g| matches!(g, Got::Eof)).await {}
        Ok(())
    })
    .await;
    if closed.is_err() {
        s.fail(format!(
            "half-closed {name}: the server did not close its side"
        ));
    }
    s.expect(
        "half-close".into(),
        local,
        &["left: peer closed the connection"],
    );
}

/// A reader that never reads, and a sender flooding it: the sender is slowed down and
/// told its relays are not delivered, the reader is dropped at the write timeout, and
/// the sender told it is gone.
async fn sloth_and_blaster(t: Target, s: Arc<Shared>, tag: String) {
    s.clients.fetch_add(2, SeqCst);
    let sloth_name = format!("sloth-{tag}");
    let sk = KeyPair::generate(&mut OsRng);
    let Ok((sloth, local)) = net::join_with(&t, &sloth_name, &sk, 1 << 20, Some(4096)).await else {
        s.fail("sloth could not join".into());
        return;
    };
    let bk = KeyPair::generate(&mut OsRng);
    let Ok(blaster) = net::join(&t, &format!("blaster-{tag}"), &bk, 1 << 20).await else {
        s.fail("blaster could not join".into());
        return;
    };
    let net::Client {
        mut lines, mut wr, ..
    } = blaster;
    let Ok(key) = bk.peer_key(&sk.public()) else {
        return;
    };
    let told = Arc::new(AtomicBool::new(false));
    let watch = {
        let told = told.clone();
        let sloth_name = sloth_name.clone();
        async move {
            let mut scratch = vec![0u8; 1 << 20];
            loop {
                let r = lines
                    .next_with(|g| match g {
                        Got::Line(l) => {
                            // Refusals name the sloth while it is connected but
                            // full ("not delivered to …"); once it is cut off, the
                            // next relay is answered "user not connected: …".
                            let text = String::from_utf8_lossy(l);
                            if net::kind_of(l, &mut scratch) == net::Kind::Error
                                && text.contains(&sloth_name)
                                && text.contains("not connected")
                            {
                                told.store(true, SeqCst);
                                return true;
                            }
                            false
                        }
                        Got::Overlong => false,
                        Got::Eof => true,
                    })
                    .await;
                if !matches!(r, Ok(false)) {
                    return;
                }
            }
        }
    };
    let blast = async {
        let mut plain = Vec::new();
        let mut cbuf = Vec::new();
        let mut line = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(SLOTH_DEADLINE_S);
        let mut seq = 0;
        while !told.load(SeqCst) && Instant::now() < deadline {
            relay::plaintext(seq, 0, 2500, &mut plain);
            seq += 1;
            if relay::relay_line(&key, &sloth_name, "blaster", &plain, &mut cbuf, &mut line)
                .is_err()
                || wr.write_all(&line).await.is_err()
                || wr.flush().await.is_err()
            {
                break;
            }
            // Stay under the server's rate limit (200/s).
            smol::Timer::after(Duration::from_millis(6)).await;
        }
        smol::Timer::after(Duration::from_secs(3)).await;
    };
    let started = Instant::now();
    watch.or(blast).await;
    if told.load(SeqCst) {
        println!(
            "non-reading client dropped after {:.1} s of flooding",
            started.elapsed().as_secs_f64()
        );
    } else {
        s.fail(format!(
            "the reader that never reads was not dropped within {SLOTH_DEADLINE_S} s"
        ));
    }
    drop(sloth);
    s.expect(
        "never-reading-client".into(),
        local,
        &["outbound queue full", "write timed out"],
    );
}
