//! `seguro-bench`: load, soak and fault tools for Seguro servers. It speaks protocol v1
//! on the wire, so it drives any v1 server (the Rust one or the Python reference);
//! `relay --v2` adds real protocol v2 clients (a Seguro server only).
//!
//! ```text
//! seguro-bench relay --spawn target/release/seguro     # relay vs bare forwarder
//! seguro-bench relay --v2 --spawn target/release/seguro # v1 clients vs v2 clients
//! seguro-bench handshake --spawn target/release/seguro # new sessions/s, storm latency
//! seguro-bench idle  --spawn target/release/seguro -n 10000
//! seguro-bench churn --spawn target/release/seguro -n 100,300,1000
//! seguro-bench soak  --spawn target/debug/seguro       # fault suite, non-zero on failure
//! ```

mod dir;
mod forwarder;
mod handshake;
mod load;
mod net;
mod relay;
mod relay2;
mod soak;
mod tlsmem;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use crate::net::{Result, Spawned, Target, TempDir};

/// Load, soak and fault tools for Seguro servers (protocol v1 on the wire).
#[derive(Debug, Parser)]
#[command(name = "seguro-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// P pairs relaying end-to-end encrypted messages: throughput, latency, order check;
    /// with --spawn, the same load against the bare forwarder in the same run (or, with
    /// --v2, with protocol v2 clients).
    Relay(RelayArgs),
    /// N TLS connections that say hello and stay: welcomed, handshakes/s, server RSS.
    Idle(IdleArgs),
    /// New TLS sessions per second up to `welcome` (RSA-2048 and P-256 certificates, 1
    /// and 2 server threads), and relay latency of established pairs during such a storm.
    Handshake(HandshakeArgs),
    /// N clients join then leave: total bytes the server sent, time (several N, fitted).
    Churn(ChurnArgs),
    /// The directory bytes one watcher is sent while N users join: a v1 watcher (full
    /// `users`) against a v2 watcher (`dir` deltas), on the server's hub in process.
    Dir(DirArgs),
    /// The memory rustls holds per idle server connection, measured in process (N
    /// in-memory TLS sessions, no sockets): RSS growth per connection.
    TlsMem(TlsMemArgs),
    /// The bare TLS line forwarder (the floor the relay is compared with).
    Forwarder(ForwarderArgs),
    /// Bounded soak and fault suite against a spawned server; exits 1 on any failure.
    Soak(soak::Args),
    /// A connection storm against a running server (`handshake` runs it as a separate,
    /// lower-priority process); prints one `storm:` line.
    #[command(hide = true)]
    Storm(StormArgs),
}

/// The server under test: spawned by the tool, or already running.
#[derive(Debug, Args, Clone)]
struct ServerArgs {
    /// Start this `seguro` binary on a loopback port (with a fresh certificate).
    #[arg(long, value_name = "SEGURO")]
    spawn: Option<PathBuf>,
    /// Address of a running server (with --cert).
    #[arg(long, conflicts_with = "spawn")]
    addr: Option<SocketAddr>,
    /// The running server's certificate to pin.
    #[arg(long, requires = "addr")]
    cert: Option<PathBuf>,
    /// Process id of the running server, to read its memory from /proc.
    #[arg(long, requires = "addr")]
    pid: Option<u32>,
    /// Server worker threads (--threads of `seguro serve`; 0 = one per CPU).
    #[arg(long, default_value_t = 0)]
    server_threads: usize,
    /// Worker threads of this tool (0 = one per CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Longest line accepted from the server.
    #[arg(long, default_value_t = 1 << 20)]
    max_line: usize,
}

#[derive(Debug, Args)]
struct DirArgs {
    /// Users who join.
    #[arg(short = 'n', long, default_value_t = 1000)]
    joins: usize,
    /// The joiners are v1 clients (default: v2, listed with their v2 entry).
    #[arg(long)]
    v1_joiners: bool,
}

#[derive(Debug, Args)]
struct TlsMemArgs {
    /// Server connections to keep.
    #[arg(short = 'n', long, default_value_t = 10_000)]
    conns: usize,
}

#[derive(Debug, Args)]
struct RelayArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Sender/receiver pairs.
    #[arg(short = 'p', long, default_value_t = 50)]
    pairs: usize,
    /// Messages in flight per pair.
    #[arg(short = 'w', long, default_value_t = 16)]
    window: usize,
    /// Plaintext bytes per message.
    #[arg(short = 's', long, default_value_t = 64)]
    size: usize,
    /// Seconds of sending per measurement.
    #[arg(short = 'd', long, default_value_t = 10.0)]
    secs: f64,
    /// Server/forwarder measurements, back to back (with --spawn).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Skip the forwarder.
    #[arg(long)]
    no_forwarder: bool,
    /// Another `seguro` binary (e.g. an earlier build) measured in every round beside
    /// --spawn, for before/after ratios in one run.
    #[arg(long, value_name = "SEGURO", requires = "spawn")]
    baseline: Option<PathBuf>,
    /// Run the spawned servers and the forwarder under `taskset -c CPUS` (run this tool
    /// itself on other CPUs, e.g. `taskset -c 1 seguro-bench relay --server-cpus 0`).
    #[arg(long, value_name = "CPUS")]
    server_cpus: Option<String>,
    /// Protocol v1 clients against protocol v2 clients instead of the server against the
    /// forwarder: each round measures the same P/W/S/D load with v1 clients (`relay`)
    /// and with real v2 clients (v2 hello and proof, prekeys, bundles, X3DH, every
    /// message sealed with the Double Ratchet and sent as `relay2`, each answered with
    /// an `ack`), a fresh --spawn server for each, in alternating order; session setup
    /// happens before the measured window; the window counts messages not yet
    /// delivered, as with v1. Prints the medians of the per-round v2/v1 ratios. With
    /// --addr, one measurement of each on that server.
    #[arg(long, conflicts_with = "baseline")]
    v2: bool,
}

#[derive(Debug, Args)]
struct IdleArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Connections.
    #[arg(short = 'n', long, default_value_t = 10_000)]
    n: usize,
    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Extra arguments for the spawned server (repeat, e.g. --serve-arg=--users-debounce-ms=50).
    #[arg(long, allow_hyphen_values = true)]
    serve_arg: Vec<String>,
    /// Milliseconds without traffic after the last welcome before measuring (keep it
    /// above the server's --users-debounce-ms so the last push is included).
    #[arg(long, default_value_t = 2000)]
    quiet_ms: u64,
}

#[derive(Debug, Args)]
struct HandshakeArgs {
    /// Start this `seguro` binary (a fresh one per key type and thread count).
    #[arg(long, value_name = "SEGURO")]
    spawn: PathBuf,
    /// Server certificate key types, comma separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [handshake::KeyType::P256, handshake::KeyType::Rsa2048])]
    keys: Vec<handshake::KeyType>,
    /// Server worker thread counts, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2])]
    server_threads: Vec<usize>,
    /// Run the spawned servers under `taskset -c CPUS`.
    #[arg(long, value_name = "CPUS")]
    server_cpus: Option<String>,
    /// Worker threads of this tool (0 = one per CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Sessions being opened at once.
    #[arg(long, default_value_t = 32)]
    workers: usize,
    /// Niceness of the storm's process (it runs beside this tool's relay clients: a
    /// storm that starved them would measure the tool, not the server).
    #[arg(long, default_value_t = 10)]
    storm_nice: i32,
    /// Extra arguments for the spawned servers (repeat, e.g. --serve-arg=--users-debounce-ms=5000).
    #[arg(long, allow_hyphen_values = true)]
    serve_arg: Vec<String>,
    /// Seconds per measurement.
    #[arg(short = 'd', long, default_value_t = 5.0)]
    secs: f64,
    /// Established sender/receiver pairs relaying during the storm.
    #[arg(short = 'p', long, default_value_t = 10)]
    pairs: usize,
    /// Messages in flight per pair.
    #[arg(short = 'w', long, default_value_t = 4)]
    window: usize,
    /// Plaintext bytes per message.
    #[arg(short = 's', long, default_value_t = 64)]
    size: usize,
    /// Longest line accepted from the server.
    #[arg(long, default_value_t = 1 << 20)]
    max_line: usize,
}

#[derive(Debug, Args)]
struct StormArgs {
    /// Address of the server.
    #[arg(long)]
    addr: SocketAddr,
    /// Its certificate to pin.
    #[arg(long)]
    cert: PathBuf,
    /// Sessions being opened at once.
    #[arg(long, default_value_t = 32)]
    workers: usize,
    /// Seconds of storm.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Worker threads (0 = one per CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Longest line accepted from the server.
    #[arg(long, default_value_t = 1 << 20)]
    max_line: usize,
    /// Resume TLS sessions with the tickets of earlier ones (each worker its own).
    #[arg(long)]
    resume: bool,
}

#[derive(Debug, Args)]
struct ChurnArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Client counts, comma separated; a fresh server for each with --spawn.
    #[arg(short = 'n', long, value_delimiter = ',', default_values_t = [100usize, 300, 1000])]
    n: Vec<usize>,
    /// Joins (and leaves) in progress at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Extra arguments for the spawned server.
    #[arg(long, allow_hyphen_values = true)]
    serve_arg: Vec<String>,
    /// Milliseconds without traffic that end the join and the leave phases (keep it
    /// above the server's --users-debounce-ms so the last push is counted).
    #[arg(long, default_value_t = 1500)]
    quiet_ms: u64,
}

#[derive(Debug, Args)]
struct ForwarderArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    /// Certificate (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// Private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// Worker threads (0 = one per CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Lines queued per connection.
    #[arg(long, default_value_t = 256)]
    queue: usize,
    /// Longest line.
    #[arg(long, default_value_t = seguro_core::limits::SERVER_MAX_LINE)]
    max_line: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    net::epoch();
    let res = match cli.cmd {
        Cmd::Relay(a) => relay_cmd(a),
        Cmd::Idle(a) => idle_cmd(a),
        Cmd::Handshake(a) => handshake_cmd(a),
        Cmd::Churn(a) => churn_cmd(a),
        Cmd::Dir(a) => dir::run(a.joins, !a.v1_joiners),
        Cmd::TlsMem(a) => tlsmem::run(a.conns),
        Cmd::Forwarder(a) => forwarder::run(
            forwarder::Opts {
                bind: a.bind,
                threads: a.threads,
                queue: a.queue,
                max_line: a.max_line,
            },
            &a.cert,
            &a.key,
        ),
        Cmd::Soak(a) => soak::run(a),
        Cmd::Storm(a) => storm_cmd(a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn threads(n: usize) -> usize {
    match n {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// The arguments of `seguro serve` on a loopback port with the pair in `dir`.
fn serve_args(dir: &Path, threads: usize) -> Vec<String> {
    vec![
        "serve".into(),
        "--bind".into(),
        "127.0.0.1:0".into(),
        "--cert".into(),
        dir.join("server.crt").display().to_string(),
        "--key".into(),
        dir.join("server.key").display().to_string(),
        "--threads".into(),
        threads.to_string(),
    ]
}

/// Starts `seguro serve` on a loopback port with the pair in `dir`.
fn spawn_server(
    bin: &Path,
    dir: &Path,
    threads: usize,
    extra: &[String],
    env: &[(&str, &str)],
) -> Result<Spawned> {
    let mut args = serve_args(dir, threads);
    args.extend(extra.iter().cloned());
    net::spawn_listening(bin, &args, env, &dir.join("server.stderr"))
}

/// The arguments of this tool's bare forwarder with the pair in `dir`.
fn forwarder_args(dir: &Path, threads: usize) -> Vec<String> {
    vec![
        "forwarder".into(),
        "--cert".into(),
        dir.join("server.crt").display().to_string(),
        "--key".into(),
        dir.join("server.key").display().to_string(),
        "--threads".into(),
        threads.to_string(),
    ]
}

fn print_relay(label: &str, r: &relay::Report) {
    let cpu = r
        .cpu_us_per_msg()
        .map(|c| format!("  cpu {c:.2} us/msg"))
        .unwrap_or_default();
    let tool = r
        .tool_cpu_us_per_msg()
        .map(|c| format!(" (tool {c:.2})"))
        .unwrap_or_default();
    println!(
        "{label:<10} {:>9.0} msg/s  p50 {:>7.0} us  p99 {:>7.0} us  max {:>7.0} us{cpu}{tool}  \
         sent {} delivered {} out-of-order {} bad {} server-errors {}{}{} {}",
        r.rate(),
        r.p50_us,
        r.p99_us,
        r.max_us,
        r.sent,
        r.delivered,
        r.out_of_order,
        r.bad,
        r.server_errors,
        r.acked
            .map(|n| format!(" acked {n} not-forwarded {}", r.not_acked))
            .unwrap_or_default(),
        if r.failed_senders > 0 {
            format!(" failed-senders {}", r.failed_senders)
        } else {
            String::new()
        },
        if r.intact() {
            "(all in order, exactly once)"
        } else {
            "(NOT INTACT: loss, disorder or a failure)"
        }
    );
}

fn relay2_load(target: &Target, opts: &relay::Opts, tool_threads: usize) -> Result<relay::Report> {
    let target = target.clone();
    let opts = opts.clone();
    net::block_on_threads(tool_threads, move |ex| {
        Box::pin(async move { relay2::run(ex, &target, &opts).await })
    })
}

/// `label` throughput, p99 and cpu per message of `x` as ratios to `y`.
fn print_ratios(label: &str, x: &relay::Report, y: &relay::Report) {
    let cpu = match (x.cpu_us_per_msg(), y.cpu_us_per_msg()) {
        (Some(a), Some(b)) => format!(", cpu per message {:.2}", a / b.max(1e-9)),
        _ => String::new(),
    };
    println!(
        "{label:<17} throughput {:.3}, p99 {:.2}{cpu}",
        x.rate() / y.rate().max(1e-9),
        x.p99_us / y.p99_us.max(1e-9),
    );
}

fn relay_load(target: &Target, opts: &relay::Opts, tool_threads: usize) -> Result<relay::Report> {
    let target = target.clone();
    let opts = opts.clone();
    net::block_on_threads(tool_threads, move |ex| {
        Box::pin(async move { relay::run(ex, &target, &opts).await })
    })
}

/// `program args` run under `taskset -c cpus` when `cpus` is given (taskset execs it:
/// the process id stays the program's).
fn pinned(program: &Path, args: Vec<String>, cpus: Option<&str>) -> (PathBuf, Vec<String>) {
    match cpus {
        None => (program.to_owned(), args),
        Some(c) => {
            let mut v = vec!["-c".to_owned(), c.to_owned(), program.display().to_string()];
            v.extend(args);
            (PathBuf::from("taskset"), v)
        }
    }
}

/// Median of `v` (0 if empty).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// One measured thing of a relay round.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Subject {
    Baseline,
    Server,
    Forwarder,
    /// The --spawn server with protocol v2 clients.
    V2,
}

fn relay_cmd(a: RelayArgs) -> Result<()> {
    let (soft, _) = net::raise_nofile();
    let mut opts = relay::Opts {
        pairs: a.pairs,
        window: a.window,
        size: a.size,
        secs: a.secs,
        max_line: a.server.max_line,
        cpu_pid: a.server.pid,
    };
    if a.v2 && a.size > seguro_core::v2::MAX_TEXT {
        return Err(format!(
            "protocol v2 texts hold at most {} bytes (--size {})",
            seguro_core::v2::MAX_TEXT,
            a.size
        )
        .into());
    }
    let tt = threads(a.server.threads);
    println!(
        "relay: {} pairs x window {} x {} B for {} s; tool threads {tt}, nofile {soft}{}",
        a.pairs,
        a.window,
        a.size,
        a.secs,
        a.server_cpus
            .as_deref()
            .map(|c| format!(", servers on CPUs {c}"))
            .unwrap_or_default()
    );
    if let (Some(addr), Some(cert)) = (a.server.addr, &a.server.cert) {
        let t = Target::new(addr, cert)?;
        let r = relay_load(&t, &opts, tt)?;
        print_relay("server", &r);
        let mut intact = r.intact();
        if a.v2 {
            let r2 = relay2_load(&t, &opts, tt)?;
            print_relay("v2", &r2);
            print_ratios("v2/v1:", &r2, &r);
            intact &= r2.intact();
        }
        return if intact {
            Ok(())
        } else {
            Err("messages lost or out of order".into())
        };
    }
    let bin = a
        .server
        .spawn
        .clone()
        .ok_or("give --spawn SEGURO or --addr and --cert")?;
    let dir = TempDir::new("relay")?;
    let (cert, _) = net::make_cert(&dir.0)?;
    let cpus = a.server_cpus.as_deref();
    let serve_extra: Vec<String> = ["--rate", "0", "--max-connections", "4096"]
        .into_iter()
        .map(String::from)
        .collect();
    let mut subjects = Vec::new();
    if a.baseline.is_some() {
        subjects.push(Subject::Baseline);
    }
    subjects.push(Subject::Server);
    if a.v2 {
        subjects.push(Subject::V2);
    } else if !a.no_forwarder {
        subjects.push(Subject::Forwarder);
    }
    // Per subject: (throughput, p99, cpu per message) of every round.
    let mut results: Vec<(Subject, relay::Report)> = Vec::new();
    let mut all_intact = true;
    for round in 1..=a.rounds.max(1) {
        println!("round {round}:");
        // Alternate the order from round to round, so a drift of the machine's load
        // does not favour whoever goes first.
        let mut order = subjects.clone();
        if round % 2 == 0 {
            order.reverse();
        }
        for subject in order {
            let (label, spawned) = match subject {
                Subject::Baseline | Subject::Server | Subject::V2 => {
                    let b = match subject {
                        Subject::Baseline => a.baseline.as_deref().unwrap_or(&bin),
                        _ => &bin,
                    };
                    let mut args = serve_args(&dir.0, a.server.server_threads);
                    args.extend(serve_extra.iter().cloned());
                    let (prog, args) = pinned(b, args, cpus);
                    let s = net::spawn_listening(&prog, &args, &[], &dir.0.join("server.stderr"))?;
                    let label = match subject {
                        Subject::Baseline => "baseline",
                        Subject::V2 => "v2",
                        _ if a.v2 => "v1",
                        _ => "server",
                    };
                    (label, s)
                }
                Subject::Forwarder => {
                    let me = std::env::current_exe()?;
                    let (prog, args) =
                        pinned(&me, forwarder_args(&dir.0, a.server.server_threads), cpus);
                    let s =
                        net::spawn_listening(&prog, &args, &[], &dir.0.join("forwarder.stderr"))?;
                    ("forwarder", s)
                }
            };
            let mut spawned = spawned;
            opts.cpu_pid = Some(spawned.pid());
            let t = Target::new(spawned.addr, &cert)?;
            let r = if subject == Subject::V2 {
                relay2_load(&t, &opts, tt)?
            } else {
                relay_load(&t, &opts, tt)?
            };
            let rss = net::proc_status_kib(spawned.pid(), "VmHWM").unwrap_or(0);
            spawned.stop(Duration::from_secs(5));
            print_relay(label, &r);
            println!("           {label} peak RSS {rss} KiB");
            all_intact &= r.intact();
            results.push((subject, r));
        }
    }
    let of = |s: Subject, f: &dyn Fn(&relay::Report) -> f64| -> Vec<f64> {
        results
            .iter()
            .filter(|(x, _)| *x == s)
            .map(|(_, r)| f(r))
            .collect()
    };
    let rate = |r: &relay::Report| r.rate();
    let p99 = |r: &relay::Report| r.p99_us;
    let cpu = |r: &relay::Report| r.cpu_us_per_msg().unwrap_or(0.0);
    println!("summary over {} round(s) (medians):", a.rounds.max(1));
    for s in &subjects {
        let label = match s {
            Subject::Baseline => "baseline",
            Subject::Server if a.v2 => "v1",
            Subject::Server => "server",
            Subject::Forwarder => "forwarder",
            Subject::V2 => "v2",
        };
        println!(
            "  {label:<10} {:>9.0} msg/s  p99 {:>7.0} us  cpu {:.2} us/msg (tool {:.2})",
            median(of(*s, &rate)),
            median(of(*s, &p99)),
            median(of(*s, &cpu)),
            median(of(*s, &|r: &relay::Report| r
                .tool_cpu_us_per_msg()
                .unwrap_or(0.0))),
        );
    }
    // Ratios within each round, then their median.
    let per_round = |x: Subject, y: Subject, f: &dyn Fn(&relay::Report) -> f64| -> f64 {
        let xs = of(x, f);
        let ys = of(y, f);
        median(xs.iter().zip(&ys).map(|(a, b)| a / b.max(1e-9)).collect())
    };
    if subjects.contains(&Subject::Forwarder) {
        println!(
            "  server/forwarder: throughput {:.3}, p99 {:.2}, cpu per message {:.2} \
             (target: throughput >= 0.90)",
            per_round(Subject::Server, Subject::Forwarder, &rate),
            per_round(Subject::Server, Subject::Forwarder, &p99),
            per_round(Subject::Server, Subject::Forwarder, &cpu),
        );
    }
    if subjects.contains(&Subject::V2) {
        println!(
            "  v2/v1:            throughput {:.3}, p99 {:.2}, cpu per message {:.2}",
            per_round(Subject::V2, Subject::Server, &rate),
            per_round(Subject::V2, Subject::Server, &p99),
            per_round(Subject::V2, Subject::Server, &cpu),
        );
    }
    if subjects.contains(&Subject::Baseline) {
        println!(
            "  server/baseline:  throughput {:.3}, p99 {:.2}, cpu per message {:.3} \
             (target: cpu per message <= 0.5)",
            per_round(Subject::Server, Subject::Baseline, &rate),
            per_round(Subject::Server, Subject::Baseline, &p99),
            per_round(Subject::Server, Subject::Baseline, &cpu),
        );
    }
    if all_intact {
        Ok(())
    } else {
        Err("messages lost or out of order".into())
    }
}

fn print_storm(label: &str, s: &handshake::Storm) {
    println!(
        "{label:<26} {:>8.0} sessions/s  ({} welcomed in {:.1} s, {} of them resumed, {} \
         failed{})",
        s.rate(),
        s.welcomed,
        s.secs,
        s.resumed,
        s.failed,
        s.first_error
            .as_deref()
            .map(|e| format!("; first: {e}"))
            .unwrap_or_default()
    );
}

fn storm_cmd(a: StormArgs) -> Result<()> {
    net::raise_nofile();
    let t = Target::new(a.addr, &a.cert)?;
    let (workers, max_line, resume, secs) = (a.workers, a.max_line, a.resume, a.secs);
    let s = net::block_on_threads(threads(a.threads), move |ex| {
        Box::pin(async move {
            handshake::storm_for(ex.clone(), t, workers, max_line, resume, secs).await
        })
    });
    println!(
        "storm: welcomed {} failed {} secs {:.3} resumed {} first-error {}",
        s.welcomed,
        s.failed,
        s.secs,
        s.resumed,
        s.first_error.as_deref().unwrap_or("-")
    );
    Ok(())
}

/// Starts this tool's `storm` against `t` as a child process under `nice -n <nice>`.
fn start_storm(
    addr: SocketAddr,
    cert: &Path,
    a: &HandshakeArgs,
    secs: f64,
    resume: bool,
) -> Result<std::process::Child> {
    let me = std::env::current_exe()?;
    let mut cmd = std::process::Command::new("nice");
    cmd.arg("-n")
        .arg(a.storm_nice.to_string())
        .arg(me)
        .arg("storm")
        .arg("--addr")
        .arg(addr.to_string())
        .arg("--cert")
        .arg(cert)
        .arg("--workers")
        .arg(a.workers.to_string())
        .arg("--secs")
        .arg(secs.to_string())
        .arg("--threads")
        .arg(a.threads.to_string());
    if resume {
        cmd.arg("--resume");
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the storm process: {e}").into())
}

/// Waits for a storm process and reads its report.
fn finish_storm(child: std::process::Child) -> Result<handshake::Storm> {
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("storm: "))
        .ok_or_else(|| format!("the storm process reported nothing ({})", out.status))?;
    let f: Vec<&str> = line.splitn(10, ' ').collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Ok(handshake::Storm {
        welcomed: num(1) as u64,
        failed: num(3) as u64,
        secs: num(5),
        resumed: num(7) as u64,
        first_error: f.get(9).filter(|e| **e != "-").map(|e| (*e).to_owned()),
    })
}

fn handshake_cmd(a: HandshakeArgs) -> Result<()> {
    let (soft, _) = net::raise_nofile();
    let tt = threads(a.threads);
    println!(
        "handshake: {} workers, {} s per measurement; relay beside the storm: {} pairs x \
         window {} x {} B; tool threads {tt}, nofile {soft}{}",
        a.workers,
        a.secs,
        a.pairs,
        a.window,
        a.size,
        a.server_cpus
            .as_deref()
            .map(|c| format!(", servers on CPUs {c}"))
            .unwrap_or_default()
    );
    let dir = TempDir::new("handshake")?;
    let opts = relay::Opts {
        pairs: a.pairs,
        window: a.window,
        size: a.size,
        secs: a.secs,
        max_line: a.max_line,
        cpu_pid: None,
    };
    let mut all_intact = true;
    let mut rates: Vec<(String, f64)> = Vec::new();
    for &kind in &a.keys {
        let (cert, _) = handshake::make_cert(&dir.0, kind)?;
        for &st in &a.server_threads {
            let label = format!("{} / {st} thread(s)", kind.name());
            println!("{label}:");
            let mut args = serve_args(&dir.0, st);
            args.extend(
                ["--rate", "0", "--max-connections", "4096"]
                    .into_iter()
                    .map(String::from),
            );
            args.extend(a.serve_arg.iter().cloned());
            let (prog, args) = pinned(&a.spawn, args, a.server_cpus.as_deref());
            let mut srv = net::spawn_listening(
                &prog,
                &args,
                &[("RUST_LOG", "warn")],
                &dir.0.join("server.stderr"),
            )?;
            let t = Target::new(srv.addr, &cert)?;
            // 1. The storm alone: full handshakes, then resumed ones, with the server's
            // CPU time per welcomed session.
            let alone_cpu = |resume: bool| -> Result<(handshake::Storm, Option<f64>)> {
                let cpu0 = net::proc_cpu_s(srv.pid());
                let s = finish_storm(start_storm(srv.addr, &cert, &a, a.secs, resume)?)?;
                let cpu1 = net::proc_cpu_s(srv.pid());
                let per = match (cpu0, cpu1) {
                    (Some(c0), Some(c1)) if s.welcomed > 0 => {
                        Some((c1 - c0) * 1e6 / s.welcomed as f64)
                    }
                    _ => None,
                };
                Ok((s, per))
            };
            let cpu_text = |c: Option<f64>| {
                c.map(|c| format!("{c:.0} us"))
                    .unwrap_or_else(|| "unknown".into())
            };
            let (alone, full_cpu) = alone_cpu(false)?;
            print_storm("  storm alone", &alone);
            let (resumed, resumed_cpu) = alone_cpu(true)?;
            print_storm("  storm alone, resuming", &resumed);
            println!(
                "  server CPU per session: full {}, resumed {}{}",
                cpu_text(full_cpu),
                cpu_text(resumed_cpu),
                match (full_cpu, resumed_cpu) {
                    (Some(f), Some(r)) => format!(" ({:.2} of full)", r / f.max(1e-9)),
                    _ => String::new(),
                }
            );
            // 2. The relay alone.
            let quiet = relay_load(&t, &opts, tt)?;
            print_relay("  relay", &quiet);
            // 3. Both at once: the storm outlasts the relay's joins and its window.
            let storm = start_storm(srv.addr, &cert, &a, a.secs + 3.0, false)?;
            std::thread::sleep(Duration::from_millis(500));
            let busy = relay_load(&t, &opts, tt);
            let during = finish_storm(storm)?;
            let busy = busy?;
            print_relay("  relay+storm", &busy);
            print_storm("  storm beside the relay", &during);
            srv.stop(Duration::from_secs(5));
            all_intact &= quiet.intact() && busy.intact();
            println!(
                "  relay during the storm / without: p50 {:.2}, p99 {:.2}, throughput {:.2}; \
                 storm beside the relay / alone: {:.2}; resuming / full handshakes: {:.2}",
                busy.p50_us / quiet.p50_us.max(1e-9),
                busy.p99_us / quiet.p99_us.max(1e-9),
                busy.rate() / quiet.rate().max(1e-9),
                during.rate() / alone.rate().max(1e-9),
                resumed.rate() / alone.rate().max(1e-9),
            );
            if alone.resumed > 0 || resumed.resumed == 0 {
                all_intact = false;
                println!(
                    "  resumption did not behave: {} of the full storm's sessions resumed, {} \
                     of the resuming storm's",
                    alone.resumed, resumed.resumed
                );
            }
            rates.push((label.clone(), alone.rate()));
            rates.push((format!("{label}, resuming"), resumed.rate()));
        }
    }
    if let Some((base_label, base)) = rates.first().cloned() {
        println!("summary: sessions/s (storm alone) as a ratio to {base_label}:");
        for (label, r) in &rates {
            println!("  {label:<32} {r:>8.0}  {:.2}", r / base.max(1e-9));
        }
    }
    if all_intact {
        Ok(())
    } else {
        Err("messages lost or out of order, or resumption not as asked".into())
    }
}

fn idle_cmd(a: IdleArgs) -> Result<()> {
    let (soft, hard) = net::raise_nofile();
    println!(
        "idle: {} connections, {} handshakes at once; tool nofile {soft} (hard {hard})",
        a.n, a.concurrency
    );
    let dir = TempDir::new("idle")?;
    let (target, mut spawned, pid) = match (&a.server.spawn, a.server.addr, &a.server.cert) {
        (Some(bin), _, _) => {
            let (cert, _) = net::make_cert(&dir.0)?;
            let mut extra = vec![
                "--max-connections".into(),
                (a.n + 64).to_string(),
                "--hello-timeout".into(),
                "120".into(),
            ];
            extra.extend(a.serve_arg.iter().cloned());
            let s = spawn_server(
                bin,
                &dir.0,
                a.server.server_threads,
                &extra,
                &[("RUST_LOG", "warn")],
            )?;
            let pid = s.pid();
            (Target::new(s.addr, &cert)?, Some(s), Some(pid))
        }
        (None, Some(addr), Some(cert)) => (Target::new(addr, cert)?, None, a.server.pid),
        _ => return Err("give --spawn SEGURO or --addr and --cert".into()),
    };
    std::thread::sleep(Duration::from_millis(300));
    let base = pid.and_then(|p| net::proc_status_kib(p, "VmRSS"));
    let tt = threads(a.server.threads);
    let n = a.n;
    let conc = a.concurrency;
    let max_line = a.server.max_line;
    let quiet = Duration::from_millis(a.quiet_ms);
    let out = net::block_on_threads(tt, move |ex| {
        Box::pin(async move {
            let j = load::join_many(&ex, &target, "idle", n, conc, max_line).await;
            println!(
                "welcomed {} of {} in {:.2} s: {:.0} handshakes+hellos/s{}",
                j.held.len(),
                n,
                j.secs,
                j.held.len() as f64 / j.secs,
                if j.failures.is_empty() {
                    String::new()
                } else {
                    format!("; failures: {}", load::failure_summary(&j.failures))
                }
            );
            let t = Instant::now();
            load::settle(&j.bytes, quiet, Duration::from_secs(300)).await;
            println!(
                "directory traffic settled {:.1} s after the last welcome; clients received {} bytes in all",
                t.elapsed().as_secs_f64(),
                j.bytes.load(Ordering::Relaxed)
            );
            let rss = pid.and_then(|p| net::proc_status_kib(p, "VmRSS"));
            let hwm = pid.and_then(|p| net::proc_status_kib(p, "VmHWM"));
            let welcomed = j.held.len();
            load::leave_all(&ex, j.held, 256).await;
            (welcomed, rss, hwm)
        })
    });
    let (welcomed, rss, hwm) = out;
    if let (Some(b), Some(r)) = (base, rss) {
        let per = (r.saturating_sub(b)) as f64 / welcomed.max(1) as f64;
        println!(
            "server RSS: {b} KiB before, {r} KiB with {welcomed} connections (peak {} KiB): \
             {per:.1} KiB per connection (target <= 32 KiB)",
            hwm.unwrap_or(0)
        );
    } else {
        println!("server RSS: unknown (give --pid for a running server)");
    }
    if let Some(s) = spawned.as_mut() {
        s.stop(Duration::from_secs(10));
        let log = std::fs::read_to_string(&s.stderr_path).unwrap_or_default();
        let warnings: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .take(5)
            .collect();
        for w in warnings {
            println!("server: {w}");
        }
    }
    Ok(())
}

fn churn_cmd(a: ChurnArgs) -> Result<()> {
    net::raise_nofile();
    let dir = TempDir::new("churn")?;
    let tt = threads(a.server.threads);
    let mut points = Vec::new();
    let cert = match (&a.server.spawn, &a.server.cert) {
        (Some(_), _) => net::make_cert(&dir.0)?.0,
        (None, Some(c)) => c.clone(),
        _ => return Err("give --spawn SEGURO or --addr and --cert".into()),
    };
    println!("churn: joins then leaves, {} at a time", a.concurrency);
    for (k, &n) in a.n.iter().enumerate() {
        let mut spawned = match &a.server.spawn {
            Some(bin) => {
                let mut extra = vec!["--max-connections".into(), (n + 64).to_string()];
                extra.extend(a.serve_arg.iter().cloned());
                Some(spawn_server(
                    bin,
                    &dir.0,
                    a.server.server_threads,
                    &extra,
                    &[("RUST_LOG", "warn")],
                )?)
            }
            None => None,
        };
        let addr = match (&spawned, a.server.addr) {
            (Some(s), _) => s.addr,
            (None, Some(x)) => x,
            _ => return Err("no server address".into()),
        };
        let pid = spawned.as_ref().map(Spawned::pid).or(a.server.pid);
        let target = Target::new(addr, &cert)?;
        let w0 = pid.and_then(|p| net::proc_io(p, "wchar"));
        let conc = a.concurrency;
        let max_line = a.server.max_line;
        let prefix = format!("c{k}-");
        let quiet = Duration::from_millis(a.quiet_ms);
        let (welcomed, bytes, join_s, total_s) = net::block_on_threads(tt, move |ex| {
            Box::pin(async move {
                let t = Instant::now();
                let j = load::join_many(&ex, &target, &prefix, n, conc, max_line).await;
                if !j.failures.is_empty() {
                    println!("  failures: {}", load::failure_summary(&j.failures));
                }
                load::settle(&j.bytes, quiet, Duration::from_secs(300)).await;
                let join_s = j.secs;
                let welcomed = j.held.len();
                let bytes = j.bytes.clone();
                load::leave_all(&ex, j.held, conc).await;
                load::settle(&bytes, quiet, Duration::from_secs(120)).await;
                (
                    welcomed,
                    bytes.load(Ordering::Relaxed),
                    join_s,
                    t.elapsed().as_secs_f64(),
                )
            })
        });
        let w1 = pid.and_then(|p| net::proc_io(p, "wchar"));
        let wchar = match (w0, w1) {
            (Some(a), Some(b)) => format!("{}", b.saturating_sub(a)),
            _ => "?".into(),
        };
        println!(
            "N={n:>5}: welcomed {welcomed}, clients received {bytes} bytes (server wrote {wchar}), \
             {:.1} bytes/N^2, joins {join_s:.2} s, total {total_s:.2} s",
            bytes as f64 / (n as f64 * n as f64)
        );
        points.push((n as f64, bytes as f64));
        if let Some(s) = spawned.as_mut() {
            s.stop(Duration::from_secs(10));
        }
    }
    if points.len() >= 2 {
        let slope = load::loglog_slope(&points);
        println!(
            "fit: bytes ~ N^{slope:.2} (target: exponent <= 2; a full directory to everyone on \
             every join would be ~3)"
        );
    }
    Ok(())
}
