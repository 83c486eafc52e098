//! Heartbeats of a v2 client's link to its server (protocol v2 §11), sans-IO in
//! quinn-proto's shape: the host passes the time in (milliseconds of a monotonic
//! clock, any origin), asks [`Link::next_deadline`] when to wake up, and calls
//! [`Link::poll`] then.
//!
//! After `interval` without sending anything the client sends a `ping`; if nothing at
//! all arrives within [`ALLOWANCE_MS`] of that ping, the link is stalled and the host
//! reconnects. A link that is not started (a v1 server, or not connected) never asks
//! for a ping and never stalls.

/// Default time without sending before a ping (§11): 20 s.
pub const DEFAULT_INTERVAL_MS: u32 = 20_000;
/// Shortest interval a user may choose (§11): 15 s.
pub const MIN_INTERVAL_MS: u32 = 15_000;
/// Longest interval a user may choose (§11): 30 s.
pub const MAX_INTERVAL_MS: u32 = 30_000;
/// Time after a ping within which some line must arrive (§11): 10 s.
pub const ALLOWANCE_MS: u32 = 10_000;

/// What the link wants done now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAction {
    /// Send `{"type":"ping","id":…}` with this id.
    Ping(u32),
    /// Nothing arrived within the allowance after a ping: report it and reconnect.
    Stalled,
}

/// The heartbeat state of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    interval: u32,
    allowance: u32,
    started: bool,
    stalled: bool,
    last_sent: u64,
    /// When the unanswered ping went out, if one is waiting for any line.
    ping_at: Option<u64>,
    next_id: u32,
    /// A server ping to answer with a pong.
    pong: Option<u32>,
}

impl Default for Link {
    fn default() -> Self {
        Self::new(DEFAULT_INTERVAL_MS, ALLOWANCE_MS)
    }
}

impl Link {
    /// A stopped link with these timings (milliseconds; a zero interval or allowance
    /// counts as 1 ms). Hosts pass [`DEFAULT_INTERVAL_MS`] and [`ALLOWANCE_MS`], or a
    /// user's choice within [`MIN_INTERVAL_MS`]..=[`MAX_INTERVAL_MS`].
    pub const fn new(interval_ms: u32, allowance_ms: u32) -> Self {
        Self {
            interval: if interval_ms == 0 { 1 } else { interval_ms },
            allowance: if allowance_ms == 0 { 1 } else { allowance_ms },
            started: false,
            stalled: false,
            last_sent: 0,
            ping_at: None,
            next_id: 1,
            pong: None,
        }
    }

    /// Changes the timings; takes effect from the next deadline.
    pub fn set_timings(&mut self, interval_ms: u32, allowance_ms: u32) {
        let fresh = Self::new(interval_ms, allowance_ms);
        self.interval = fresh.interval;
        self.allowance = fresh.allowance;
    }

    /// The time without sending before a ping, in milliseconds.
    pub fn interval_ms(&self) -> u32 {
        self.interval
    }

    /// The connection speaks v2 and is registered, at `now`: heartbeats start.
    pub fn start(&mut self, now: u64) {
        *self = Self {
            started: true,
            last_sent: now,
            next_id: self.next_id,
            ..Self::new(self.interval, self.allowance)
        };
    }

    /// The connection ended (or speaks v1): no pings, no stall, no pong due.
    pub fn stop(&mut self) {
        *self = Self {
            next_id: self.next_id,
            ..Self::new(self.interval, self.allowance)
        };
    }

    /// True between [`Link::start`] and [`Link::stop`].
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// True once [`Link::poll`] reported [`LinkAction::Stalled`], until a restart.
    pub fn is_stalled(&self) -> bool {
        self.stalled
    }

    /// A line was written at `now`.
    pub fn on_sent(&mut self, now: u64) {
        if self.started {
            self.last_sent = self.last_sent.max(now);
        }
    }

    /// A line (any line) arrived at `now`: an unanswered ping is answered. (A
    /// stopped link has no ping waiting, and a stalled one stays stalled until
    /// [`Link::start`]: neither reads `ping_at` again before resetting it.)
    pub fn on_received(&mut self, _now: u64) {
        self.ping_at = None;
    }

    /// The server sent `ping` with `id`: a pong is due (the latest id wins).
    pub fn on_ping(&mut self, id: u32) {
        if self.started {
            self.pong = Some(id);
        }
    }

    /// The id of the pong to send now, if any (taken: asked once per ping).
    pub fn take_pong(&mut self) -> Option<u32> {
        self.pong.take()
    }

    /// What to do at `now`: a ping when the interval passed without sending, a stall
    /// when the allowance after a ping passed without any line received. A ping
    /// returned here counts as sent at `now`.
    pub fn poll(&mut self, now: u64) -> Option<LinkAction> {
        if !self.started || self.stalled {
            return None;
        }
        if let Some(at) = self.ping_at {
            if now >= at.saturating_add(u64::from(self.allowance)) {
                self.stalled = true;
                return Some(LinkAction::Stalled);
            }
            return None;
        }
        if now >= self.last_sent.saturating_add(u64::from(self.interval)) {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1).max(1);
            self.ping_at = Some(now);
            self.last_sent = now;
            return Some(LinkAction::Ping(id));
        }
        None
    }

    /// When [`Link::poll`] next has something to do, if ever (a stopped or stalled
    /// link has no deadline).
    pub fn next_deadline(&self) -> Option<u64> {
        if !self.started || self.stalled {
            return None;
        }
        Some(match self.ping_at {
            Some(at) => at.saturating_add(u64::from(self.allowance)),
            None => self.last_sent.saturating_add(u64::from(self.interval)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(now: u64) -> Link {
        let mut l = Link::default();
        l.start(now);
        l
    }

    #[test]
    fn a_stopped_link_never_pings_nor_stalls() {
        let mut l = Link::default();
        assert_eq!(l.next_deadline(), None);
        assert_eq!(l.poll(u64::MAX), None);
        l.on_ping(3);
        assert_eq!(l.take_pong(), None);
        assert!(!l.is_started());
    }

    #[test]
    fn a_ping_after_the_interval_without_sending() {
        let mut l = started(1000);
        assert_eq!(l.next_deadline(), Some(21_000));
        assert_eq!(l.poll(20_999), None);
        assert_eq!(l.poll(21_000), Some(LinkAction::Ping(1)));
        assert_eq!(l.next_deadline(), Some(31_000));
        assert_eq!(l.poll(30_999), None);
    }

    #[test]
    fn sending_postpones_the_ping() {
        let mut l = started(0);
        l.on_sent(15_000);
        assert_eq!(l.next_deadline(), Some(35_000));
        assert_eq!(l.poll(34_999), None);
        // Time passed in out of order does not move the deadline back.
        l.on_sent(10_000);
        assert_eq!(l.next_deadline(), Some(35_000));
        assert_eq!(l.poll(35_000), Some(LinkAction::Ping(1)));
    }

    #[test]
    fn receiving_alone_does_not_postpone_the_ping() {
        let mut l = started(0);
        l.on_received(19_000);
        assert_eq!(l.poll(20_000), Some(LinkAction::Ping(1)));
    }

    #[test]
    fn silence_after_a_ping_is_a_stall_reported_once() {
        let mut l = started(0);
        assert_eq!(l.poll(20_000), Some(LinkAction::Ping(1)));
        assert_eq!(l.poll(29_999), None);
        assert_eq!(l.poll(30_000), Some(LinkAction::Stalled));
        assert!(l.is_stalled());
        assert_eq!(l.next_deadline(), None);
        assert_eq!(l.poll(40_000), None);
        // A late line does not undo a stall: the host reconnects.
        l.on_received(40_001);
        assert!(l.is_stalled());
        assert_eq!(l.poll(90_000), None);
    }

    #[test]
    fn any_line_after_a_ping_clears_it_and_ids_go_up() {
        let mut l = started(0);
        assert_eq!(l.poll(20_000), Some(LinkAction::Ping(1)));
        l.on_received(25_000);
        assert!(!l.is_stalled());
        // The ping counted as sent at 20 s: the next one is due at 40 s.
        assert_eq!(l.next_deadline(), Some(40_000));
        assert_eq!(l.poll(39_999), None);
        assert_eq!(l.poll(40_000), Some(LinkAction::Ping(2)));
    }

    #[test]
    fn a_restart_clears_the_stall_and_keeps_counting_ids() {
        let mut l = started(0);
        assert_eq!(l.poll(20_000), Some(LinkAction::Ping(1)));
        assert_eq!(l.poll(30_000), Some(LinkAction::Stalled));
        l.stop();
        assert!(!l.is_stalled());
        assert!(!l.is_started());
        assert_eq!(l.poll(100_000), None);
        l.start(100_000);
        assert_eq!(l.next_deadline(), Some(120_000));
        assert_eq!(l.poll(120_000), Some(LinkAction::Ping(2)));
    }

    #[test]
    fn a_server_ping_gets_one_pong() {
        let mut l = started(0);
        l.on_ping(7);
        l.on_ping(9);
        assert_eq!(l.take_pong(), Some(9));
        assert_eq!(l.take_pong(), None);
        l.stop();
        l.start(0);
        assert_eq!(l.take_pong(), None);
    }

    #[test]
    fn timings_are_the_spec_and_zero_is_clamped() {
        let l = Link::default();
        assert_eq!(l.interval_ms(), 20_000);
        let mut z = Link::new(0, 0);
        z.start(5);
        assert_eq!(z.next_deadline(), Some(6));
        assert_eq!(z.poll(6), Some(LinkAction::Ping(1)));
        assert_eq!(z.poll(7), Some(LinkAction::Stalled));
        let mut s = Link::default();
        s.set_timings(15_000, 2_000);
        s.start(0);
        assert_eq!(s.poll(15_000), Some(LinkAction::Ping(1)));
        assert_eq!(s.next_deadline(), Some(17_000));
        s.set_timings(0, 0);
        assert_eq!(s.interval_ms(), 1);
    }

    #[test]
    fn ids_wrap_past_zero() {
        let mut l = started(0);
        l.next_id = u32::MAX;
        assert_eq!(l.poll(20_000), Some(LinkAction::Ping(u32::MAX)));
        l.on_received(20_001);
        assert_eq!(l.poll(40_000), Some(LinkAction::Ping(1)));
    }

    #[test]
    fn the_machine_is_small() {
        assert!(core::mem::size_of::<Link>() <= 48);
    }
}
