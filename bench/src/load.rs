//! Idle and churn loads: many registered clients that only read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand_core::OsRng;
use smol::Executor;
use smol::channel;
use smol::io::AsyncWriteExt;

use seguro_core::e2ee::KeyPair;

use crate::net::{self, Target};

/// A joined client kept open: its reader drains in a task; `close` leaves.
pub struct Held {
    wr: smol::io::WriteHalf<net::Tls>,
    reader: smol::Task<()>,
}

impl Held {
    /// Sends close_notify and closes the write side, then waits (up to `wait`) for the
    /// server to close its side.
    pub async fn leave(mut self, wait: Duration) {
        let _ = net::timeout(wait, "close", async {
            self.wr.close().await?;
            Ok(())
        })
        .await;
        let reader = self.reader;
        let _ = net::timeout(wait, "server close", async {
            reader.await;
            Ok(())
        })
        .await;
    }
}

/// Outcome of a join wave.
pub struct Joined {
    /// Clients that were welcomed, in completion order.
    pub held: Vec<Held>,
    /// Failures (error text, count).
    pub failures: Vec<String>,
    /// Wall time of the wave.
    pub secs: f64,
    /// Raw bytes received by all the clients, live.
    pub bytes: Arc<AtomicU64>,
}

/// Joins `n` clients named `<prefix><i>`, at most `concurrency` handshakes at a time;
/// every welcomed client keeps draining what the server sends.
pub async fn join_many(
    ex: &Arc<Executor<'static>>,
    target: &Target,
    prefix: &str,
    n: usize,
    concurrency: usize,
    max_line: usize,
) -> Joined {
    let bytes = Arc::new(AtomicU64::new(0));
    let (tx, rx) = channel::unbounded();
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1).min(n.max(1)) {
        let tx = tx.clone();
        let next = next.clone();
        let target = target.clone();
        let prefix = prefix.to_owned();
        let bytes = bytes.clone();
        let ex2 = ex.clone();
        workers.push(ex.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n as u64 {
                    return;
                }
                let keys = KeyPair::generate(&mut OsRng);
                let name = format!("{prefix}{i}");
                let res = net::timeout(
                    Duration::from_secs(60),
                    "join",
                    net::join(&target, &name, &keys, max_line),
                )
                .await;
                let out = match res {
                    Ok(c) => {
                        let net::Client {
                            mut lines,
                            wr,
                            read,
                            ..
                        } = c;
                        let b = bytes.clone();
                        b.fetch_add(read.load(Ordering::Relaxed), Ordering::Relaxed);
                        let reader = ex2.spawn(async move {
                            // Count raw socket bytes after the welcome as they arrive.
                            let mut seen = read.load(Ordering::Relaxed);
                            while let Ok(false) =
                                lines.next_with(|g| matches!(g, net::Got::Eof)).await
                            {
                                let now = read.load(Ordering::Relaxed);
                                b.fetch_add(now - seen, Ordering::Relaxed);
                                seen = now;
                            }
                            let now = read.load(Ordering::Relaxed);
                            b.fetch_add(now - seen, Ordering::Relaxed);
                        });
                        Ok(Held { wr, reader })
                    }
                    Err(e) => Err(e.to_string()),
                };
                if tx.send(out).await.is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);
    let mut held = Vec::new();
    let mut failures = Vec::new();
    while let Ok(r) = rx.recv().await {
        match r {
            Ok(h) => held.push(h),
            Err(e) => failures.push(e),
        }
    }
    for w in workers {
        w.await;
    }
    Joined {
        held,
        failures,
        secs: start.elapsed().as_secs_f64(),
        bytes,
    }
}

/// Waits until `counter` has not changed for `quiet`, or `max` has passed.
pub async fn settle(counter: &AtomicU64, quiet: Duration, max: Duration) {
    let start = Instant::now();
    let mut last = counter.load(Ordering::Relaxed);
    let mut since = Instant::now();
    while start.elapsed() < max {
        smol::Timer::after(Duration::from_millis(50)).await;
        let now = counter.load(Ordering::Relaxed);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return;
        }
    }
}

/// Closes every held client, `concurrency` at a time.
pub async fn leave_all(ex: &Arc<Executor<'static>>, held: Vec<Held>, concurrency: usize) {
    let (tx, rx) = channel::unbounded::<Held>();
    for h in held {
        let _ = tx.try_send(h);
    }
    drop(tx);
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let rx = rx.clone();
        workers.push(ex.spawn(async move {
            while let Ok(h) = rx.recv().await {
                h.leave(Duration::from_secs(10)).await;
            }
        }));
    }
    for w in workers {
        w.await;
    }
}

/// Sums failure messages by text.
pub fn failure_summary(failures: &[String]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for f in failures {
        match counts.iter_mut().find(|(t, _)| t == f) {
            Some((_, c)) => *c += 1,
            None => counts.push((f.clone(), 1)),
        }
    }
    counts
        .iter()
        .map(|(t, c)| format!("{c} x {t}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Least-squares slope of ln(y) against ln(x).
pub fn loglog_slope(points: &[(f64, f64)]) -> f64 {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .filter(|(x, y)| *x > 0.0 && *y > 0.0)
        .map(|(x, y)| (x.ln(), y.ln()))
        .collect();
    let n = pts.len() as f64;
    if n < 2.0 {
        return f64::NAN;
    }
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let num: f64 = pts.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = pts.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    num / den
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loglog_slope_recovers_exponents() {
        let sq: Vec<(f64, f64)> = [100.0, 300.0, 1000.0]
            .iter()
            .map(|&n| (n, 30.0 * n * n))
            .collect();
        assert!((loglog_slope(&sq) - 2.0).abs() < 1e-9);
        let cube: Vec<(f64, f64)> = [10.0, 20.0].iter().map(|&n| (n, n * n * n)).collect();
        assert!((loglog_slope(&cube) - 3.0).abs() < 1e-9);
        assert!(loglog_slope(&[(1.0, 1.0)]).is_nan());
    }

    #[test]
    fn failures_are_counted_by_text() {
        let f = vec!["a".to_owned(), "b".to_owned(), "a".to_owned()];
        assert_eq!(failure_summary(&f), "2 x a; 1 x b");
    }
}
