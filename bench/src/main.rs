//! `seguro-bench`: load, soak and fault tools for Seguro servers. It speaks only protocol
//! v1 on the wire, so it drives any v1 server (the Rust one or the Python reference).
//!
//! ```text
//! seguro-bench relay --spawn target/release/seguro     # relay vs bare forwarder
//! seguro-bench idle  --spawn target/release/seguro -n 10000
//! seguro-bench churn --spawn target/release/seguro -n 100,300,1000
//! seguro-bench soak  --spawn target/debug/seguro       # fault suite, non-zero on failure
//! ```

mod forwarder;
mod load;
mod net;
mod relay;
mod soak;

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
    /// with --spawn, the same load against the bare forwarder in the same run.
    Relay(RelayArgs),
    /// N TLS connections that say hello and stay: welcomed, handshakes/s, server RSS.
    Idle(IdleArgs),
    /// N clients join then leave: total bytes the server sent, time (several N, fitted).
    Churn(ChurnArgs),
    /// The bare TLS line forwarder (the floor the relay is compared with).
    Forwarder(ForwarderArgs),
    /// Bounded soak and fault suite against a spawned server; exits 1 on any failure.
    Soak(soak::Args),
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
        Cmd::Churn(a) => churn_cmd(a),
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

/// Starts `seguro serve` on a loopback port with the pair in `dir`.
fn spawn_server(
    bin: &Path,
    dir: &Path,
    threads: usize,
    extra: &[String],
    env: &[(&str, &str)],
) -> Result<Spawned> {
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--bind".into(),
        "127.0.0.1:0".into(),
        "--cert".into(),
        dir.join("server.crt").display().to_string(),
        "--key".into(),
        dir.join("server.key").display().to_string(),
        "--threads".into(),
        threads.to_string(),
    ];
    args.extend(extra.iter().cloned());
    net::spawn_listening(bin, &args, env, &dir.join("server.stderr"))
}

fn spawn_forwarder(dir: &Path, threads: usize) -> Result<Spawned> {
    let me = std::env::current_exe()?;
    let args: Vec<String> = vec![
        "forwarder".into(),
        "--cert".into(),
        dir.join("server.crt").display().to_string(),
        "--key".into(),
        dir.join("server.key").display().to_string(),
        "--threads".into(),
        threads.to_string(),
    ];
    net::spawn_listening(&me, &args, &[], &dir.join("forwarder.stderr"))
}

fn print_relay(label: &str, r: &relay::Report) {
    println!(
        "{label:<10} {:>9.0} msg/s  p50 {:>7.0} us  p99 {:>7.0} us  max {:>7.0} us  \
         sent {} delivered {} out-of-order {} bad {} server-errors {} {}",
        r.rate(),
        r.p50_us,
        r.p99_us,
        r.max_us,
        r.sent,
        r.delivered,
        r.out_of_order,
        r.bad,
        r.server_errors,
        if r.intact() {
            "(all in order, exactly once)"
        } else {
            "(LOSS OR DISORDER)"
        }
    );
}

fn relay_load(target: &Target, opts: &relay::Opts, tool_threads: usize) -> Result<relay::Report> {
    let target = target.clone();
    let opts = opts.clone();
    net::block_on_threads(tool_threads, move |ex| {
        Box::pin(async move { relay::run(ex, &target, &opts).await })
    })
}

fn relay_cmd(a: RelayArgs) -> Result<()> {
    let (soft, _) = net::raise_nofile();
    let opts = relay::Opts {
        pairs: a.pairs,
        window: a.window,
        size: a.size,
        secs: a.secs,
        max_line: a.server.max_line,
    };
    let tt = threads(a.server.threads);
    println!(
        "relay: {} pairs x window {} x {} B for {} s; tool threads {tt}, nofile {soft}",
        a.pairs, a.window, a.size, a.secs
    );
    if let (Some(addr), Some(cert)) = (a.server.addr, &a.server.cert) {
        let t = Target::new(addr, cert)?;
        let r = relay_load(&t, &opts, tt)?;
        print_relay("server", &r);
        return if r.intact() {
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
    let mut ratios = Vec::new();
    let mut all_intact = true;
    for round in 1..=a.rounds.max(1) {
        println!("round {round}:");
        let mut srv = spawn_server(
            &bin,
            &dir.0,
            a.server.server_threads,
            &[
                "--rate".into(),
                "0".into(),
                "--max-connections".into(),
                "4096".into(),
            ],
            &[],
        )?;
        let t = Target::new(srv.addr, &cert)?;
        let rs = relay_load(&t, &opts, tt)?;
        let rss = net::proc_status_kib(srv.pid(), "VmHWM").unwrap_or(0);
        srv.stop(Duration::from_secs(5));
        print_relay("server", &rs);
        println!("           server peak RSS {rss} KiB");
        all_intact &= rs.intact();
        if a.no_forwarder {
            continue;
        }
        let mut fwd = spawn_forwarder(&dir.0, a.server.server_threads)?;
        let t = Target::new(fwd.addr, &cert)?;
        let rf = relay_load(&t, &opts, tt)?;
        fwd.stop(Duration::from_secs(5));
        print_relay("forwarder", &rf);
        all_intact &= rf.intact();
        let ratio = rs.rate() / rf.rate().max(1e-9);
        println!(
            "           ratio server/forwarder: throughput {:.3}, p50 {:.2}, p99 {:.2}",
            ratio,
            rs.p50_us / rf.p50_us.max(1e-9),
            rs.p99_us / rf.p99_us.max(1e-9)
        );
        ratios.push((ratio, rs.p99_us, rf.p99_us));
    }
    if !ratios.is_empty() {
        let mut r: Vec<f64> = ratios.iter().map(|x| x.0).collect();
        r.sort_by(f64::total_cmp);
        let median = r.get(r.len() / 2).copied().unwrap_or(0.0);
        let mut p99: Vec<f64> = ratios.iter().map(|x| x.1).collect();
        p99.sort_by(f64::total_cmp);
        println!(
            "summary: median throughput ratio server/forwarder {median:.3} over {} round(s); \
             server p99 median {:.0} us (target: ratio >= 0.80, p99 <= 5000 us)",
            r.len(),
            p99.get(p99.len() / 2).copied().unwrap_or(0.0)
        );
    }
    if all_intact {
        Ok(())
    } else {
        Err("messages lost or out of order".into())
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
