//! Per-source limits, in the spirit of OpenSSH's `MaxStartups` and
//! `PerSourcePenalties`: connections at once from one source, and new connections
//! (TLS handshakes) per second from one source, counted against the real client
//! address (the PROXY protocol's, behind a tunnel).
//!
//! A source is an IPv4 address, or the /64 prefix of an IPv6 address (one host's
//! usual allocation; IPv4-mapped IPv6 addresses count as IPv4). Every new connection
//! takes a token from its source's bucket, handshakes that fail included, so a source
//! that keeps failing is slowed like any other. The table holds only sources that have
//! a connection open or a bucket not yet refilled, and is pruned as it grows: a flood
//! from many sources costs at most one small entry per source with a connection or a
//! recent handshake.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::bucket::TokenBucket;

/// The limits (zero: no limit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Connections open at once from one source (from accept to close).
    pub connections: usize,
    /// New connections per second from one source, on average.
    pub handshake_rate: f64,
    /// New connections one source may open in a burst above the rate.
    pub handshake_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connections: 16,
            handshake_rate: 4.0,
            handshake_burst: 16,
        }
    }
}

/// Why a connection from a source was refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refused {
    /// The source already has this many connections open.
    TooMany(usize),
    /// The source is over this many new connections per second.
    TooFast(f64),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooMany(n) => write!(
                f,
                "refused: {n} connection(s) from this source already open (--max-per-source)"
            ),
            Self::TooFast(r) => write!(
                f,
                "refused: more than {r} new connection(s) per second from this source \
                 (--handshakes-per-source)"
            ),
        }
    }
}

/// The source an address counts as: IPv4 as is, IPv6 by its /64 prefix.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

#[derive(Debug)]
struct Entry {
    open: usize,
    bucket: Option<TokenBucket>,
    last: Instant,
}

/// Prune the table when it holds more than this many sources.
const PRUNE_ABOVE: usize = 1024;

/// The table of sources.
#[derive(Debug)]
pub struct Sources {
    limits: Limits,
    table: Mutex<HashMap<IpAddr, Entry>>,
}

impl Sources {
    /// An empty table.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Sources in the table now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True if the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long an idle source's bucket takes to refill (its entry can go after that).
    fn refill(&self) -> Duration {
        if self.limits.handshake_rate > 0.0 {
            Duration::from_secs_f64(
                f64::from(self.limits.handshake_burst.max(1)) / self.limits.handshake_rate,
            )
        } else {
            Duration::ZERO
        }
    }

    /// Counts a new connection from `ip` at `now`: a guard that counts it open until
    /// dropped, or why it is refused.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<SourceGuard, Refused> {
        let src = source_of(ip);
        let mut table = self.lock();
        if table.len() > PRUNE_ABOVE {
            let refill = self.refill();
            table.retain(|_, e| e.open > 0 || now.saturating_duration_since(e.last) < refill);
        }
        let limits = self.limits;
        let e = table.entry(src).or_insert_with(|| Entry {
            open: 0,
            bucket: (limits.handshake_rate > 0.0).then(|| {
                TokenBucket::new(
                    limits.handshake_rate,
                    f64::from(limits.handshake_burst.max(1)),
                    now,
                )
            }),
            last: now,
        });
        e.last = now;
        if limits.connections > 0 && e.open >= limits.connections {
            return Err(Refused::TooMany(e.open));
        }
        if let Some(b) = e.bucket.as_mut()
            && !b.take(now)
        {
            return Err(Refused::TooFast(limits.handshake_rate));
        }
        e.open += 1;
        Ok(SourceGuard {
            sources: self.clone(),
            src,
        })
    }

    fn release(&self, src: IpAddr) {
        let refill = self.refill();
        let mut table = self.lock();
        if let Some(e) = table.get_mut(&src) {
            e.open = e.open.saturating_sub(1);
            if e.open == 0 && refill.is_zero() {
                table.remove(&src);
            }
        }
    }
}

/// One open connection of a source; dropping it closes the count.
#[derive(Debug)]
pub struct SourceGuard {
    sources: Arc<Sources>,
    src: IpAddr,
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        self.sources.release(self.src);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_n_plus_first_connection_of_a_source_is_refused_and_others_get_in() {
        let s = Arc::new(Sources::new(Limits {
            connections: 2,
            handshake_rate: 0.0,
            handshake_burst: 1,
        }));
        let t = Instant::now();
        let a = s.admit(ip("203.0.113.1"), t).unwrap();
        let _b = s.admit(ip("203.0.113.1"), t).unwrap();
        assert_eq!(
            s.admit(ip("203.0.113.1"), t).unwrap_err(),
            Refused::TooMany(2)
        );
        let _c = s.admit(ip("203.0.113.2"), t).unwrap();
        drop(a);
        let _d = s.admit(ip("203.0.113.1"), t).unwrap();
    }

    #[test]
    fn handshakes_per_second_refill() {
        let s = Arc::new(Sources::new(Limits {
            connections: 0,
            handshake_rate: 2.0,
            handshake_burst: 3,
        }));
        let t = Instant::now();
        for _ in 0..3 {
            drop(s.admit(ip("198.51.100.7"), t).unwrap());
        }
        assert_eq!(
            s.admit(ip("198.51.100.7"), t).unwrap_err(),
            Refused::TooFast(2.0)
        );
        // Another source is not affected.
        drop(s.admit(ip("198.51.100.8"), t).unwrap());
        // Half a second later one token is back.
        let t1 = t + Duration::from_millis(500);
        drop(s.admit(ip("198.51.100.7"), t1).unwrap());
        assert!(s.admit(ip("198.51.100.7"), t1).is_err());
    }

    #[test]
    fn ipv6_counts_by_its_64_prefix_and_mapped_ipv4_as_ipv4() {
        assert_eq!(source_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            source_of(ip("2001:db8:1:2:ffff::9")),
            source_of(ip("2001:db8:1:2::1"))
        );
        assert_ne!(
            source_of(ip("2001:db8:1:3::1")),
            source_of(ip("2001:db8:1:2::1"))
        );
        assert_eq!(source_of(ip("::ffff:192.0.2.9")), ip("192.0.2.9"));
    }

    #[test]
    fn the_table_forgets_idle_sources() {
        let s = Arc::new(Sources::new(Limits {
            connections: 4,
            handshake_rate: 10.0,
            handshake_burst: 10,
        }));
        let t = Instant::now();
        let kept = s.admit(ip("192.0.2.1"), t).unwrap();
        for i in 0..(PRUNE_ABOVE as u32 + 10) {
            let a = IpAddr::V4((0x0a00_0000 + i).into());
            drop(s.admit(a, t).unwrap());
        }
        assert!(s.len() > PRUNE_ABOVE);
        // Once their buckets have refilled, idle sources go; the open one stays.
        let later = t + Duration::from_secs(2);
        drop(s.admit(ip("192.0.2.2"), later).unwrap());
        assert_eq!(s.len(), 2);
        drop(kept);
    }

    #[test]
    fn without_a_rate_a_closed_source_leaves_the_table() {
        let s = Arc::new(Sources::new(Limits {
            connections: 1,
            handshake_rate: 0.0,
            handshake_burst: 1,
        }));
        let g = s.admit(ip("192.0.2.1"), Instant::now()).unwrap();
        assert_eq!(s.len(), 1);
        drop(g);
        assert!(s.is_empty());
    }
}
