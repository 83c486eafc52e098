//! A connection's outbound queue: lines in the order the hub queued them, counted in
//! lines and bytes, holding no memory while empty (an idle connection costs the queue's
//! header only).
//!
//! The hub pushes under its lock and never waits; the connection's writer takes
//! everything queued at once ([`OutQueue::next`]) and writes it as one batch. A queue
//! over its line bound kills its connection (a reader that does not read).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use event_listener::Event;

use super::hub::Outgoing;
use super::router::Close;

/// Why a queue's connection must end now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// The queue overflowed: the peer does not read.
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
}

impl OutQueue {
    /// An empty queue that holds at most `cap` lines (at least 1).
    pub fn new(cap: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            event: Event::new(),
            cap: cap.max(1),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a line; a full queue kills its connection instead. Lines pushed after
    /// [`close`](Self::close) or a kill are dropped.
    pub fn push(&self, item: Outgoing) {
        {
            let mut s = self.state();
            if s.closed || s.kill.is_some() {
                return;
            }
            if s.items.len() >= self.cap {
                s.kill = Some(Kill::SlowReader);
            } else {
                s.bytes += item.len();
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

    /// Bytes queued now.
    pub fn bytes(&self) -> usize {
        self.state().bytes
    }

    fn try_next(&self) -> Option<Next> {
        if let Some(k) = self.take_kill() {
            return Some(Next::Killed(k));
        }
        let mut s = self.state();
        if !s.items.is_empty() {
            s.bytes = 0;
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

    fn next_now(q: &OutQueue) -> Next {
        smol::block_on(q.next())
    }

    #[test]
    fn lines_come_out_in_order_in_one_batch_and_the_queue_holds_nothing_after() {
        let q = OutQueue::new(10);
        q.push(text("a\n"));
        q.push(text("bc\n"));
        assert_eq!((q.len(), q.bytes()), (2, 5));
        match next_now(&q) {
            Next::Batch(b) => assert_eq!(b, [text("a\n"), text("bc\n")]),
            other => panic!("{other:?}"),
        }
        assert_eq!((q.len(), q.bytes()), (0, 0));
        assert_eq!(q.state().items.capacity(), 0);
    }

    #[test]
    fn a_full_queue_kills_and_keeps_what_it_had() {
        let q = OutQueue::new(2);
        q.push(text("1\n"));
        q.push(text("2\n"));
        q.push(text("3\n"));
        assert!(matches!(next_now(&q), Next::Killed(Kill::SlowReader)));
        // Lines after the kill are dropped; what was queued is still there.
        q.push(text("4\n"));
        match next_now(&q) {
            Next::Batch(b) => assert_eq!(b, [text("1\n"), text("2\n")]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn close_drains_then_ends_and_the_first_kill_wins() {
        let q = OutQueue::new(5);
        q.kill(Kill::Closed(Close::TooManyErrors));
        q.kill(Kill::SlowReader);
        assert!(matches!(
            next_now(&q),
            Next::Killed(Kill::Closed(Close::TooManyErrors))
        ));
        let q = OutQueue::new(5);
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
        let q = OutQueue::new(1);
        q.push(text("1\n"));
        q.push(text("2\n"));
        assert_eq!(smol::block_on(q.killed()), Kill::SlowReader);
        // The writer then finds the lines, not the kill again.
        assert!(matches!(next_now(&q), Next::Batch(b) if b.len() == 1));
        q.close();
        assert!(matches!(next_now(&q), Next::Closed));
    }

    #[test]
    fn a_kill_wakes_a_waiter_while_another_waits_for_lines() {
        let q = std::sync::Arc::new(OutQueue::new(5));
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
        let q = std::sync::Arc::new(OutQueue::new(5));
        let q2 = q.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            q2.push(text("late\n"));
        });
        assert!(matches!(next_now(&q), Next::Batch(b) if b.len() == 1));
        t.join().unwrap();
    }
}
