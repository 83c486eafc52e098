//! A connection's outbound queue: lines in the order the hub queued them, counted in
//! lines and bytes, holding no memory while empty (an idle connection costs the queue's
//! header only).
//!
//! The hub pushes under its lock and never waits; the connection's writer takes
//! everything queued at once ([`OutQueue::next`]) and writes it as one batch. Bytes
//! count from the push until the writer has written them ([`OutQueue::written`]), so
//! the bound covers what a peer that does not read pins in memory.
//!
//! The bound is enforced by those who fill the queue, without losing anything: a
//! connection's own task stops reading while its queue is full, senders of relays wait
//! for room ([`OutQueue::room`]) and a relay that still does not fit is refused
//! ([`OutQueue::offer`]). A queue twice over its bound (which those rules never let
//! happen) kills its connection as a last resort. Every queue also draws on one global
//! [`Budget`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use event_listener::Event;

use super::hub::Outgoing;
use super::router::Close;

/// The bytes all queues may hold together.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Bytes held now, by all queues.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn fits(&self, n: usize) -> bool {
        self.used().saturating_add(n) <= self.limit
    }

    fn add(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Why a queue's connection must end now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// The queue went twice over its bound: the peer does not read.
    SlowReader,
    /// The router closed the connection.
    Closed(Close),
}

/// What the writer gets next.
#[derive(Debug)]
pub enum Next {
    /// Everything queued, in order.
    Batch(VecDeque<Outgoing>),
    /// The queue is closed and drained.
    Closed,
    /// The connection must end (what is queued is kept for a last flush).
    Killed(Kill),
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Outgoing>,
    /// Bytes queued or handed to the writer and not yet written.
    bytes: usize,
    closed: bool,
    kill: Option<Kill>,
    /// The kill has been handed to the writer.
    kill_seen: bool,
}

/// The queue.
#[derive(Debug)]
pub struct OutQueue {
    state: Mutex<State>,
    event: Event,
    /// Lines it may hold.
    cap: usize,
    /// Bytes it may hold.
    max_bytes: usize,
    budget: Arc<Budget>,
}

impl Drop for OutQueue {
    fn drop(&mut self) {
        let bytes = self.state().bytes;
        self.budget.sub(bytes);
    }
}

impl OutQueue {
    /// An empty queue that holds at most `cap` lines (at least 1) and `max_bytes` bytes,
    /// drawing on `budget`.
    pub fn new(cap: usize, max_bytes: usize, budget: Arc<Budget>) -> Self {
        Self {
            state: Mutex::new(State::default()),
            event: Event::new(),
            cap: cap.max(1),
            max_bytes: max_bytes.max(1),
            budget,
        }
    }

    /// True if a line of `n` bytes fits now (a line always fits an empty queue, if the
    /// global budget allows it).
    fn fits(&self, s: &State, n: usize) -> bool {
        s.items.len() < self.cap
            && (s.bytes == 0 || s.bytes.saturating_add(n) <= self.max_bytes)
            && self.budget.fits(n)
    }

    /// True if a line of `n` bytes would fit now.
    pub fn has_room(&self, n: usize) -> bool {
        let s = self.state();
        s.closed || s.kill.is_some() || self.fits(&s, n)
    }

    /// Waits until a line of `n` bytes would fit (or the queue is closed or killed).
    pub async fn room(&self, n: usize) {
        loop {
            if self.has_room(n) {
                return;
            }
            let listener = self.event.listen();
            if self.has_room(n) {
                return;
            }
            listener.await;
        }
    }

    /// Queues `item` if it fits; gives it back if not.
    pub fn offer(&self, item: Outgoing) -> Result<(), Outgoing> {
        {
            let mut s = self.state();
            if s.closed || s.kill.is_some() {
                return Ok(());
            }
            if !self.fits(&s, item.len()) {
                return Err(item);
            }
            s.bytes += item.len();
            self.budget.add(item.len());
            s.items.push_back(item);
        }
        self.event.notify(usize::MAX);
        Ok(())
    }

    /// The writer has written (or dropped) `n` bytes of what [`next`](Self::next) gave.
    pub fn written(&self, n: usize) {
        {
            let mut s = self.state();
            let n = n.min(s.bytes);
            s.bytes -= n;
            self.budget.sub(n);
        }
        self.event.notify(usize::MAX);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a line. A directory replaces a directory queued last (only the newest is
    /// worth sending); a queue twice over its bounds kills its connection instead. Lines
    /// pushed after [`close`](Self::close) or a kill are dropped.
    pub fn push(&self, item: Outgoing) {
        {
            let mut s = self.state();
            if s.closed || s.kill.is_some() {
                return;
            }
            if let (Outgoing::Directory { .. }, Some(last @ Outgoing::Directory { .. })) =
                (&item, s.items.back_mut())
            {
                let old = std::mem::replace(last, item);
                let new_len = s.items.back().map_or(0, Outgoing::len);
                s.bytes = s.bytes - old.len() + new_len;
                self.budget.sub(old.len());
                self.budget.add(new_len);
            } else if s.items.len() >= self.cap.saturating_mul(2)
                || s.bytes > self.max_bytes.saturating_mul(2)
            {
                s.kill = Some(Kill::SlowReader);
            } else {
                s.bytes += item.len();
                self.budget.add(item.len());
                s.items.push_back(item);
            }
        }
        self.event.notify(usize::MAX);
    }

    /// Ends the connection for `why` (the first reason given wins; later lines are
    /// dropped).
    pub fn kill(&self, why: Kill) {
        {
            let mut s = self.state();
            if s.kill.is_none() && !s.closed {
                s.kill = Some(why);
            }
        }
        self.event.notify(usize::MAX);
    }

    /// No more lines: the writer sends what is queued, then ends.
    pub fn close(&self) {
        self.state().closed = true;
        self.event.notify(usize::MAX);
    }

    /// Lines queued now.
    pub fn len(&self) -> usize {
        self.state().items.len()
    }

    /// True if nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes queued or being written now.
    pub fn bytes(&self) -> usize {
        self.state().bytes
    }

    fn try_next(&self) -> Option<Next> {
        if let Some(k) = self.take_kill() {
            return Some(Next::Killed(k));
        }
        let mut s = self.state();
        if !s.items.is_empty() {
            return Some(Next::Batch(std::mem::take(&mut s.items)));
        }
        s.closed.then_some(Next::Closed)
    }

    /// Waits for a kill (and marks it seen), even while the writer is stuck writing.
    pub async fn killed(&self) -> Kill {
        loop {
            if let Some(k) = self.take_kill() {
                return k;
            }
            let listener = self.event.listen();
            if let Some(k) = self.take_kill() {
                return k;
            }
            listener.await;
        }
    }

    fn take_kill(&self) -> Option<Kill> {
        let mut s = self.state();
        if let (Some(k), false) = (s.kill, s.kill_seen) {
            s.kill_seen = true;
            return Some(k);
        }
        None
    }

    /// Waits for lines (all of them, at once), the close, or a kill.
    pub async fn next(&self) -> Next {
        loop {
            if let Some(n) = self.try_next() {
                return n;
            }
            let listener = self.event.listen();
            if let Some(n) = self.try_next() {
                return n;
            }
            listener.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::hub::Line;

    fn text(s: &str) -> Outgoing {
        Outgoing::Text(Line::from(s.as_bytes()))
    }

    fn queue(cap: usize) -> OutQueue {
        OutQueue::new(cap, 1 << 20, Arc::new(Budget::new(usize::MAX)))
    }

    fn next_now(q: &OutQueue) -> Next {
        smol::block_on(q.next())
    }

    #[test]
    fn lines_come_out_in_order_in_one_batch_and_the_queue_holds_nothing_after() {
        let q = queue(10);
        q.push(text("a\n"));
        q.push(text("bc\n"));
        assert_eq!((q.len(), q.bytes()), (2, 5));
        match next_now(&q) {
            Next::Batch(b) => assert_eq!(b, [text("a\n"), text("bc\n")]),
            other => panic!("{other:?}"),
        }
        // Being written: still counted until the writer says so.
        assert_eq!((q.len(), q.bytes()), (0, 5));
        q.written(5);
        assert_eq!((q.len(), q.bytes()), (0, 0));
        assert_eq!(q.state().items.capacity(), 0);
    }

    #[test]
    fn a_queue_twice_over_its_bound_kills_and_keeps_what_it_had() {
        let q = queue(2);
        for l in ["1\n", "2\n", "3\n", "4\n"] {
            q.push(text(l));
        }
        assert!(!q.has_room(2));
        assert!(q.offer(text("x\n")).is_err());
        q.push(text("5\n"));
        assert!(matches!(next_now(&q), Next::Killed(Kill::SlowReader)));
        // Lines after the kill are dropped; what was queued is still there.
        q.push(text("6\n"));
        match next_now(&q) {
            Next::Batch(b) => assert_eq!(b.len(), 4),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn offers_respect_the_byte_bound_and_the_global_budget() {
        let budget = Arc::new(Budget::new(25));
        let a = OutQueue::new(100, 10, budget.clone());
        let b = OutQueue::new(100, 100, budget.clone());
        // One line always fits an empty queue, however long (within the budget).
        assert!(a.offer(text("0123456789ab\n")).is_ok());
        assert_eq!(budget.used(), 13);
        assert!(a.offer(text("x\n")).is_err());
        // b has room of its own, but the budget has 12 bytes left.
        assert!(b.offer(text("0123456789\n")).is_ok());
        assert!(!b.has_room(2));
        assert!(b.offer(text("y\n")).is_err());
        // Written bytes come back to the queue and to the budget.
        let Next::Batch(batch) = next_now(&a) else {
            panic!()
        };
        assert!(!a.has_room(2), "a batch being written still counts");
        a.written(batch.iter().map(Outgoing::len).sum());
        assert_eq!(budget.used(), 11);
        assert!(a.has_room(2) && b.has_room(2));
        // A dropped queue gives back what it held.
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_directory_replaces_the_directory_queued_last() {
        let q = queue(10);
        let dir = |v: u64, l: &str| Outgoing::Directory {
            version: v,
            line: Line::from(l.as_bytes()),
        };
        q.push(dir(1, "one\n"));
        q.push(dir(2, "two!\n"));
        assert_eq!((q.len(), q.bytes()), (1, 5));
        q.push(text("r\n"));
        q.push(dir(3, "3\n"));
        assert_eq!((q.len(), q.bytes()), (3, 9));
    }

    #[test]
    fn a_waiter_for_room_wakes_when_bytes_are_written() {
        let q = Arc::new(OutQueue::new(100, 4, Arc::new(Budget::new(usize::MAX))));
        q.push(text("abc\n"));
        assert!(!q.has_room(2));
        let q2 = q.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let _ = smol::block_on(q2.next());
            q2.written(4);
        });
        smol::block_on(q.room(2));
        assert!(q.has_room(2));
        t.join().unwrap();
    }

    #[test]
    fn close_drains_then_ends_and_the_first_kill_wins() {
        let q = queue(5);
        q.kill(Kill::Closed(Close::TooManyErrors));
        q.kill(Kill::SlowReader);
        assert!(matches!(
            next_now(&q),
            Next::Killed(Kill::Closed(Close::TooManyErrors))
        ));
        let q = queue(5);
        q.push(text("last\n"));
        q.close();
        q.push(text("dropped\n"));
        q.kill(Kill::SlowReader);
        assert!(matches!(next_now(&q), Next::Batch(b) if b.len() == 1));
        assert!(matches!(next_now(&q), Next::Closed));
        assert!(matches!(next_now(&q), Next::Closed));
    }

    #[test]
    fn a_kill_is_seen_once_by_whoever_waits_first() {
        let q = queue(1);
        q.push(text("1\n"));
        q.push(text("2\n"));
        q.push(text("3\n"));
        assert_eq!(smol::block_on(q.killed()), Kill::SlowReader);
        // The writer then finds the lines, not the kill again.
        assert!(matches!(next_now(&q), Next::Batch(b) if b.len() == 2));
        q.close();
        assert!(matches!(next_now(&q), Next::Closed));
    }

    #[test]
    fn a_kill_wakes_a_waiter_while_another_waits_for_lines() {
        let q = std::sync::Arc::new(queue(5));
        let q2 = q.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            q2.kill(Kill::SlowReader);
        });
        // Both wait in one task, as a connection's writer and kill branch do: either
        // may report it, neither may sleep through it.
        let writer = async {
            match q.next().await {
                Next::Killed(k) => k,
                other => panic!("{other:?}"),
            }
        };
        let got = smol::block_on(smol::future::or(writer, q.killed()));
        assert_eq!(got, Kill::SlowReader);
        t.join().unwrap();
    }

    #[test]
    fn a_waiting_writer_is_woken_by_a_push_from_another_thread() {
        let q = std::sync::Arc::new(queue(5));
        let q2 = q.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            q2.push(text("late\n"));
        });
        assert!(matches!(next_now(&q), Next::Batch(b) if b.len() == 1));
        t.join().unwrap();
    }
}
