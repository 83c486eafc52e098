//! Directory pushes: one broadcaster task sends the changed directory (`users`) after
//! joins and leaves, paced, and the writer's rule for a reader that is behind.
//!
//! - **Debounce**: after a change, wait `users_debounce`, so a burst of joins is one push.
//! - **Byte budget**: a push costs (recipients × directory line) bytes, and the line
//!   grows with the users; the pause after a push is its cost divided by
//!   `users_push_rate`, so however fast users join, pushes average at most that many
//!   bytes per second and N joins cost O(N²) bytes in all.
//! - **Newest only**: of several `users` lines queued for a reader that is behind, only
//!   the newest is written ([`coalesce`]), unless a relay lies between them.
//! - Nobody waits for a push to chat: the router sends a recipient the directory first
//!   when a relay's sender is newer than the last directory it was sent.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smol::Timer;
use smol::channel::Receiver;

use super::State;
use super::hub::Outgoing;

/// Runs until `dirty` closes: each notification means the directory changed.
pub(super) async fn broadcaster(state: Arc<State>, dirty: Receiver<()>) {
    let mut next_push: Option<Instant> = None;
    while dirty.recv().await.is_ok() {
        if !state.cfg.users_debounce.is_zero() {
            Timer::after(state.cfg.users_debounce).await;
        }
        if let Some(t) = next_push {
            Timer::at(t).await;
        }
        // Swallow notifications that arrived during the pause: this push covers them.
        while dirty.try_recv().is_ok() {}
        let bytes = state.hub().push();
        next_push = push_gap(bytes, state.cfg.users_push_rate).map(|gap| Instant::now() + gap);
    }
}

/// The pause after a directory push of `bytes` in all, at `rate` bytes per second.
pub fn push_gap(bytes: u64, rate: u64) -> Option<Duration> {
    if rate == 0 || bytes == 0 {
        return None;
    }
    // Whole microseconds, no floating point; at most about 5.8e5 years.
    let micros = u128::from(bytes) * 1_000_000 / u128::from(rate);
    Some(Duration::from_micros(
        u64::try_from(micros).unwrap_or(u64::MAX),
    ))
}

/// Drops the `users` lines of a batch made stale by a newer one queued after them,
/// unless a relay lies between the two (its sender's key must arrive before it, and
/// the newer directory may no longer list a sender who has since left).
pub fn coalesce(batch: &mut VecDeque<Outgoing>) {
    if batch.len() < 2 {
        return;
    }
    let mut newer_ahead = false;
    // Decided from the back; `keep` is in reverse order.
    let mut keep = Vec::with_capacity(batch.len());
    for item in batch.iter().rev() {
        match item {
            Outgoing::Directory { .. } => {
                keep.push(!newer_ahead);
                newer_ahead = true;
            }
            Outgoing::Relay(_) => {
                keep.push(true);
                newer_ahead = false;
            }
            Outgoing::Welcome(_) | Outgoing::Text(_) => keep.push(true),
        }
    }
    let mut flags = keep.into_iter().rev();
    batch.retain(|_| flags.next().unwrap_or(true));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::hub::Line;

    fn users(v: u64) -> Outgoing {
        Outgoing::Directory {
            version: v,
            line: Line::from(format!("users {v}\n").into_bytes()),
        }
    }

    fn relay(n: u8) -> Outgoing {
        Outgoing::Relay(Line::from(vec![n, b'\n']))
    }

    fn text() -> Outgoing {
        Outgoing::Text(Line::from(&b"x\n"[..]))
    }

    #[test]
    fn only_the_newest_of_adjacent_directories_is_kept() {
        let mut batch = VecDeque::from([users(1), text(), users(2), users(3)]);
        coalesce(&mut batch);
        assert_eq!(batch, vec![text(), users(3)]);
    }

    #[test]
    fn a_relay_keeps_the_directory_before_it() {
        let mut batch = VecDeque::from([users(1), users(2), relay(1), users(3), users(4)]);
        coalesce(&mut batch);
        assert_eq!(batch, vec![users(2), relay(1), users(4)]);
    }

    #[test]
    fn a_welcome_is_never_dropped() {
        let w = Outgoing::Welcome(Line::from(&b"w\n"[..]));
        let mut batch = VecDeque::from([w.clone(), users(2), users(3)]);
        coalesce(&mut batch);
        assert_eq!(batch, vec![w, users(3)]);
        let mut one = VecDeque::from([users(1)]);
        coalesce(&mut one);
        assert_eq!(one, vec![users(1)]);
    }

    #[test]
    fn push_gap_follows_the_byte_budget() {
        assert_eq!(
            push_gap(10_000_000, 10_000_000),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            push_gap(5_000, 10_000_000),
            Some(Duration::from_micros(500))
        );
        assert_eq!(push_gap(0, 10_000_000), None);
        assert_eq!(push_gap(1_000, 0), None);
        assert_eq!(push_gap(u64::MAX, 1), Some(Duration::from_micros(u64::MAX)));
    }
}
