//! Relay load: P sender/receiver pairs, up to W end-to-end encrypted messages in flight
//! per pair, S plaintext bytes each, for D seconds.
//!
//! The plaintext starts with the sequence number and the send time (`"<seq> <ns> "`,
//! padded with `x`), so the receiver checks that every message arrives exactly once and
//! in order and measures its one-way latency (both ends live in this process).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64ct::{Base64, Encoding as _};
use rand_core::OsRng;
use smol::Executor;
use smol::channel::{self, Sender};
use smol::future::FutureExt as _;
use smol::io::AsyncWriteExt;

use seguro_core::e2ee::{KeyPair, PeerKey};
use seguro_core::msg::{self, Message};

use crate::net::{self, Client, Got, Result, Target, now_ns};

/// Relay load settings.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Sender/receiver pairs.
    pub pairs: usize,
    /// Messages in flight per pair.
    pub window: usize,
    /// Plaintext bytes per message.
    pub size: usize,
    /// Seconds of sending.
    pub secs: f64,
    /// Longest line accepted from the server.
    pub max_line: usize,
    /// The server's process, to read its CPU time over the measured window.
    pub cpu_pid: Option<u32>,
}

/// What one relay run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Messages sent.
    pub sent: u64,
    /// Messages delivered (decrypted, in order).
    pub delivered: u64,
    /// Seconds from the first send to the last delivery.
    pub secs: f64,
    /// Latency percentiles in microseconds: p50, p99, max.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Maximum.
    pub max_us: f64,
    /// Messages out of order or duplicated.
    pub out_of_order: u64,
    /// Messages that failed to decrypt or parse.
    pub bad: u64,
    /// `error` lines from the server.
    pub server_errors: u64,
    /// CPU seconds (user + system, all threads) the server spent from the first send
    /// to the last delivery, if its process was given.
    pub server_cpu_s: Option<f64>,
    /// CPU seconds this tool (all the clients) spent over the same time.
    pub tool_cpu_s: Option<f64>,
    /// Protocol v2 only: `ack`s with status `forwarded` the senders received.
    pub acked: Option<u64>,
    /// Protocol v2 only: `ack`s with any other status (the message was not forwarded).
    pub not_acked: u64,
    /// Senders that stopped on an error (a write failed: the connection died) or were
    /// still waiting for credit 10 s after the end.
    pub failed_senders: u64,
}

impl Report {
    /// Delivered messages per second.
    pub fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.delivered as f64 / self.secs
        } else {
            0.0
        }
    }

    /// Server CPU microseconds per delivered message.
    pub fn cpu_us_per_msg(&self) -> Option<f64> {
        let cpu = self.server_cpu_s?;
        (self.delivered > 0).then(|| cpu * 1e6 / self.delivered as f64)
    }

    /// This tool's CPU microseconds per delivered message (both ends of every pair).
    pub fn tool_cpu_us_per_msg(&self) -> Option<f64> {
        let cpu = self.tool_cpu_s?;
        (self.delivered > 0).then(|| cpu * 1e6 / self.delivered as f64)
    }

    /// True if every message sent arrived exactly once and in order.
    pub fn intact(&self) -> bool {
        self.sent == self.delivered
            && self.out_of_order == 0
            && self.bad == 0
            && self.failed_senders == 0
            && self
                .acked
                .is_none_or(|a| a == self.sent && self.server_errors == 0)
            && self.not_acked == 0
    }
}

/// What one pair's receiver saw.
#[derive(Default)]
pub(crate) struct PairStats {
    pub(crate) received: u64,
    pub(crate) expected_next: u64,
    pub(crate) out_of_order: u64,
    pub(crate) bad: u64,
    pub(crate) last_ns: u64,
    pub(crate) lat_ns: Vec<u64>,
}

impl PairStats {
    /// Records message `seq` sent at `ts` (ns), delivered now.
    pub(crate) fn delivered(&mut self, seq: u64, ts: u64) {
        let now = now_ns();
        if seq != self.expected_next {
            self.out_of_order += 1;
        }
        self.expected_next = seq + 1;
        self.received += 1;
        self.last_ns = now;
        self.lat_ns.push(now.saturating_sub(ts));
    }
}

/// Adds up the pairs' deliveries, order checks and latencies into `rep` (`t0`: the first
/// send, ns).
pub(crate) fn fill_report(rep: &mut Report, stats: &[Arc<Mutex<PairStats>>], t0: u64) {
    let mut lat = Vec::new();
    let mut last = t0;
    for st in stats {
        let s = st.lock().unwrap_or_else(|e| e.into_inner());
        rep.delivered += s.received;
        rep.out_of_order += s.out_of_order;
        rep.bad += s.bad;
        last = last.max(s.last_ns);
        lat.extend_from_slice(&s.lat_ns);
    }
    rep.secs = (last - t0) as f64 / 1e9;
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat.get(i).copied().unwrap_or(0) as f64 / 1e3
    };
    rep.p50_us = pct(0.50);
    rep.p99_us = pct(0.99);
    rep.max_us = pct(1.0);
}

/// The plaintext of message `seq` sent at `ts` (ns), padded to `size` bytes.
pub fn plaintext(seq: u64, ts: u64, size: usize, out: &mut Vec<u8>) {
    use std::io::Write as _;
    out.clear();
    let _ = write!(out, "{seq} {ts} ");
    if out.len() < size {
        out.resize(size, b'x');
    }
}

/// Parses a plaintext made by [`plaintext`]: (seq, ts).
pub fn parse_plaintext(p: &[u8]) -> Option<(u64, u64)> {
    let s = std::str::from_utf8(p).ok()?;
    let mut it = s.split(' ');
    let seq = it.next()?.parse().ok()?;
    let ts = it.next()?.parse().ok()?;
    Some((seq, ts))
}

/// Seals `plain` for `key` and writes the relay line from `from` to `to` into `line`.
pub fn relay_line(
    key: &PeerKey,
    to: &str,
    from: &str,
    plain: &[u8],
    cbuf: &mut Vec<u8>,
    line: &mut Vec<u8>,
) -> Result<()> {
    cbuf.resize(plain.len() + 16, 0);
    let (nonce, n) = key.seal(&mut OsRng, plain, cbuf)?;
    let cipher = cbuf.get(..n).ok_or("seal length")?;
    line.resize(line.capacity().max(64), 0);
    let n = match msg::emit_relay_line(to, from, &nonce, cipher, line) {
        Ok(n) => n,
        Err(e) => {
            line.resize(e.needed, 0);
            msg::emit_relay_line(to, from, &nonce, cipher, line)?
        }
    };
    line.truncate(n);
    Ok(())
}

/// Decrypts a relay line; returns the plaintext in `out`.
pub fn open_relay(
    key: &PeerKey,
    line: &[u8],
    scratch: &mut [u8],
    out: &mut Vec<u8>,
) -> std::result::Result<(), &'static str> {
    let Ok(Message::Relay(r)) = msg::parse(line, scratch) else {
        return Err("not a relay line");
    };
    let mut nonce = [0u8; 12];
    let n = Base64::decode(r.nonce, &mut nonce).map_err(|_| "bad nonce")?;
    if n.len() != 12 {
        return Err("bad nonce length");
    }
    out.resize(r.cipher.len(), 0);
    let len = Base64::decode(r.cipher, out)
        .map_err(|_| "bad cipher base64")?
        .len();
    out.truncate(len);
    let plain = key.open_in_place(&nonce, out).map_err(|_| "decrypt")?;
    out.truncate(plain);
    Ok(())
}

/// Registers the pairs (sender then receiver, pair after pair), runs the load and
/// reports. `tag` makes the user names unique.
pub async fn run(ex: Arc<Executor<'static>>, target: &Target, opts: &Opts) -> Result<Report> {
    let tag = format!("{:08x}", rand_core::RngCore::next_u32(&mut OsRng));
    let mut pairs = Vec::new();
    for i in 0..opts.pairs {
        let (sn, rn) = (format!("s{i}-{tag}"), format!("r{i}-{tag}"));
        let (sk, rk) = (KeyPair::generate(&mut OsRng), KeyPair::generate(&mut OsRng));
        let s = net::timeout(
            Duration::from_secs(20),
            "sender join",
            net::join(target, &sn, &sk, opts.max_line),
        )
        .await?;
        let r = net::timeout(
            Duration::from_secs(20),
            "receiver join",
            net::join(target, &rn, &rk, opts.max_line),
        )
        .await?;
        let skey = sk.peer_key(&rk.public())?;
        let rkey = rk.peer_key(&sk.public())?;
        pairs.push((sn, rn, s, r, skey, rkey));
    }
    // Let directory pushes after the joins settle.
    smol::Timer::after(Duration::from_millis(300)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let server_errors = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    let mut stats = Vec::new();
    let mut sent_counters = Vec::new();
    let cpu0 = opts.cpu_pid.and_then(net::proc_cpu_s);
    let me0 = net::proc_cpu_s(std::process::id());
    let t0 = now_ns();
    for (sn, rn, s, r, skey, rkey) in pairs {
        let (credit_tx, credit_rx) = channel::bounded::<()>(opts.window.max(1));
        let st = Arc::new(Mutex::new(PairStats::default()));
        stats.push(st.clone());
        // Receiver: decrypt, check order, record latency, return credit.
        let Client { mut lines, wr, .. } = r;
        let size = opts.size;
        let max_line = opts.max_line;
        receivers.push(ex.spawn(async move {
            let _keep = wr;
            let mut scratch = vec![0u8; max_line];
            let mut plain = Vec::with_capacity(size + 64);
            loop {
                let now_eof = lines
                    .next_with(|g| match g {
                        Got::Line(l) => {
                            match open_relay(&rkey, l, &mut scratch, &mut plain) {
                                Ok(()) => {
                                    let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
                                    match parse_plaintext(&plain) {
                                        Some((seq, ts)) => s.delivered(seq, ts),
                                        None => s.bad += 1,
                                    }
                                    let _ = credit_rx.try_recv();
                                }
                                Err("not a relay line") => {}
                                Err(_) => {
                                    st.lock().unwrap_or_else(|e| e.into_inner()).bad += 1;
                                }
                            }
                            false
                        }
                        Got::Overlong => false,
                        Got::Eof => true,
                    })
                    .await;
                if !matches!(now_eof, Ok(false)) {
                    return;
                }
            }
        }));
        // Sender's own incoming lines: count errors.
        let Client {
            lines: mut slines,
            wr: mut swr,
            ..
        } = s;
        let errs = server_errors.clone();
        receivers.push(ex.spawn(async move {
            let mut scratch = vec![0u8; 1024];
            loop {
                let r = slines
                    .next_with(|g| match g {
                        Got::Line(l) => {
                            if net::kind_of(l, &mut scratch) == net::Kind::Error {
                                errs.fetch_add(1, Ordering::Relaxed);
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
        }));
        let stop = stop.clone();
        let size = opts.size;
        let sent_ctr = Arc::new(AtomicU64::new(0));
        sent_counters.push(sent_ctr.clone());
        senders.push(ex.spawn(async move {
            let mut seq = 0u64;
            let mut plain = Vec::with_capacity(size + 64);
            let mut cbuf = Vec::new();
            let mut line = Vec::with_capacity(size * 2 + 256);
            let send_one = |seq: u64,
                            plain: &mut Vec<u8>,
                            cbuf: &mut Vec<u8>,
                            line: &mut Vec<u8>|
             -> Result<()> {
                plaintext(seq, now_ns(), size, plain);
                relay_line(&skey, &rn, &sn, plain, cbuf, line)
            };
            let credit: &Sender<()> = &credit_tx;
            while !stop.load(Ordering::Relaxed) {
                if credit.send(()).await.is_err() {
                    break;
                }
                send_one(seq, &mut plain, &mut cbuf, &mut line)?;
                seq += 1;
                swr.write_all(&line).await?;
                sent_ctr.store(seq, Ordering::Relaxed);
                while !stop.load(Ordering::Relaxed) && credit.try_send(()).is_ok() {
                    send_one(seq, &mut plain, &mut cbuf, &mut line)?;
                    seq += 1;
                    swr.write_all(&line).await?;
                    sent_ctr.store(seq, Ordering::Relaxed);
                }
                swr.flush().await?;
            }
            Ok::<smol::io::WriteHalf<net::Tls>, net::Error>(swr)
        }));
    }
    smol::Timer::after(Duration::from_secs_f64(opts.secs)).await;
    stop.store(true, Ordering::Relaxed);
    // A sender still waiting for credit after 10 s has lost messages: stop it anyway.
    let mut writers = Vec::new();
    let stop_deadline = Instant::now() + Duration::from_secs(10);
    let mut failed_senders = 0;
    for s in senders {
        let left = stop_deadline.saturating_duration_since(Instant::now());
        let r = s
            .or(async {
                smol::Timer::after(left).await;
                Err("sender stuck".into())
            })
            .await;
        match r {
            Ok(w) => writers.push(w),
            Err(_) => failed_senders += 1,
        }
    }
    let sent: Vec<u64> = sent_counters
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    // Wait (up to 10 s) for everything sent to arrive.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let done = stats
            .iter()
            .zip(&sent)
            .all(|(st, n)| st.lock().unwrap_or_else(|e| e.into_inner()).received >= *n);
        if done || Instant::now() > deadline {
            break;
        }
        smol::Timer::after(Duration::from_millis(5)).await;
    }
    let cpu1 = opts.cpu_pid.and_then(net::proc_cpu_s);
    let me1 = net::proc_cpu_s(std::process::id());
    let mut rep = Report {
        sent: sent.iter().sum(),
        server_errors: server_errors.load(Ordering::Relaxed),
        server_cpu_s: cpu0.zip(cpu1).map(|(a, b)| b - a),
        tool_cpu_s: me0.zip(me1).map(|(a, b)| b - a),
        failed_senders,
        ..Report::default()
    };
    fill_report(&mut rep, &stats, t0);
    for mut w in writers {
        let _ = net::timeout(Duration::from_secs(2), "close", async {
            w.close().await?;
            Ok(())
        })
        .await;
    }
    for r in receivers {
        r.cancel().await;
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_round_trip_and_padding() {
        let mut p = Vec::new();
        plaintext(42, 123_456_789, 64, &mut p);
        assert_eq!(p.len(), 64);
        assert_eq!(parse_plaintext(&p), Some((42, 123_456_789)));
        // Shorter than the header: never truncated.
        plaintext(7, 8, 2, &mut p);
        assert_eq!(parse_plaintext(&p), Some((7, 8)));
        assert_eq!(parse_plaintext(b"garbage"), None);
    }

    #[test]
    fn relay_line_opens_with_the_peer_key_only() {
        let a = KeyPair::from_secret([1; 32]);
        let b = KeyPair::from_secret([2; 32]);
        let ka = a.peer_key(&b.public()).unwrap();
        let kb = b.peer_key(&a.public()).unwrap();
        let mut plain = Vec::new();
        plaintext(3, 99, 64, &mut plain);
        let (mut cbuf, mut line) = (Vec::new(), Vec::new());
        relay_line(&ka, "bob", "alice", &plain, &mut cbuf, &mut line).unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        let body = &line[..line.len() - 1];
        let mut scratch = vec![0u8; body.len()];
        let mut out = Vec::new();
        open_relay(&kb, body, &mut scratch, &mut out).unwrap();
        assert_eq!(out, plain);
        let c = KeyPair::from_secret([3; 32]);
        let kc = c.peer_key(&a.public()).unwrap();
        assert_eq!(
            open_relay(&kc, body, &mut scratch, &mut out),
            Err("decrypt")
        );
        assert_eq!(
            open_relay(&kb, b"{\"type\":\"list\"}", &mut scratch, &mut out),
            Err("not a relay line")
        );
    }
}
