//! The token bucket: `rate` tokens per second, at most `burst` saved up. The one rate
//! limiter of the server (per-connection messages, and the log lines about connections
//! cut off before `hello`). Time is passed in.

use std::time::{Duration, Instant};

/// A token bucket that starts full.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl TokenBucket {
    /// `rate` tokens per second, `burst` at most (at least 1), full at `now`.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        let burst = burst.max(1.0);
        Self {
            tokens: burst,
            last: now,
            rate: rate.max(0.0),
            burst,
        }
    }

    /// Takes one token at `now`, if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    /// Takes one token at `now` (`None`), or says how long until there is one.
    pub fn wait(&mut self, now: Instant) -> Option<Duration> {
        if self.take(now) {
            return None;
        }
        if self.rate <= 0.0 {
            // Never refills: wait for good (in hours, so the caller still wakes up).
            return Some(Duration::from_secs(3600));
        }
        let secs = ((1.0 - self.tokens) / self.rate).max(0.0);
        // At least a millisecond, so a rounding error cannot spin.
        Some(Duration::from_secs_f64(secs).max(Duration::from_millis(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_says_how_long_until_the_next_token() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(4.0, 2.0, t0);
        assert_eq!(b.wait(t0), None);
        assert_eq!(b.wait(t0), None);
        let w = b.wait(t0).unwrap();
        assert!(
            w > Duration::from_millis(240) && w <= Duration::from_millis(250),
            "{w:?}"
        );
        // After that wait the token is there.
        assert_eq!(b.wait(t0 + w + Duration::from_millis(1)), None);
        let mut never = TokenBucket::new(0.0, 1.0, t0);
        assert_eq!(never.wait(t0), None);
        assert_eq!(never.wait(t0), Some(Duration::from_secs(3600)));
    }

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 3.0, t0);
        assert_eq!((0..5).filter(|_| b.take(t0)).count(), 3);
        // Half a second buys one token at 2 per second, not two.
        let t1 = t0 + Duration::from_millis(500);
        assert!(b.take(t1));
        assert!(!b.take(t1));
        // A long pause refills to the burst, no more.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.take(t2)).count(), 3);
    }

    #[test]
    fn time_going_backwards_is_ignored() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(1.0, 1.0, t0);
        assert!(b.take(t0));
        assert!(!b.take(t0 - Duration::from_secs(5)));
        // The bucket still refills from t0, not from the earlier instant.
        assert!(!b.take(t0 + Duration::from_millis(900)));
        assert!(b.take(t0 + Duration::from_millis(1100)));
    }

    #[test]
    fn zero_rate_never_refills_and_burst_is_at_least_one() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0.0, 0.0, t0);
        assert!(b.take(t0));
        assert!(!b.take(t0 + Duration::from_secs(3600)));
    }
}
