//! Framing: splits a byte stream into `\n`-terminated lines inside caller-provided storage.
//!
//! [`LineAccumulator::feed`] takes whatever chunk the transport delivered (one byte,
//! half a line, many lines) and yields one complete line at a time together with the
//! input it has not looked at yet. A line longer than the maximum is reported once, as
//! soon as it overflows, and everything up to its `\n` is then discarded, so a peer that
//! sends an overlong line can be answered with an error while the connection survives.
//!
//! A trailing `\r` is removed (`\r\n` line ends are tolerated) and empty lines are never
//! yielded. A line that arrives whole inside one chunk is handed out from the chunk
//! itself; only the start of a line split across chunks is copied into the storage.
//!
//! The storage is any [`Storage`]: a fixed buffer (a `[u8; N]`, a `&mut [u8]` or, on
//! std, a `Vec<u8>`), whose length is the longest line, or storage a host with an
//! allocator implements to grow on demand up to a maximum and to shrink back when no
//! partial line is held ([`LineAccumulator::release`]). The accumulator itself never
//! allocates and never panics.

/// Where a [`LineAccumulator`] keeps the start of a line split across chunks.
///
/// Every fixed buffer (anything `AsRef<[u8]> + AsMut<[u8]>`) is a `Storage` whose
/// length is both its maximum and what is available. A host with an allocator
/// implements it for storage that grows on demand: [`reserve`](Storage::reserve) is
/// called before each copy, [`release`](Storage::release) when no partial line is held.
pub trait Storage {
    /// The longest line this storage can ever hold, in bytes (not counting the `\n`).
    fn max_len(&self) -> usize;

    /// Makes at least `len` bytes available through [`bytes_mut`](Storage::bytes_mut),
    /// keeping what the first bytes hold. `len` never exceeds
    /// [`max_len`](Storage::max_len). Returns false if the storage cannot provide them
    /// (the accumulator then treats the line as overlong).
    fn reserve(&mut self, len: usize) -> bool;

    /// The bytes available now.
    fn bytes(&self) -> &[u8];

    /// The bytes available now, writable.
    fn bytes_mut(&mut self) -> &mut [u8];

    /// Called through [`LineAccumulator::release`] when no partial line is held: storage
    /// that grew may give memory back. Fixed storage does nothing.
    fn release(&mut self) {}
}

impl<B: AsRef<[u8]> + AsMut<[u8]> + ?Sized> Storage for B {
    fn max_len(&self) -> usize {
        self.as_ref().len()
    }

    /// A fixed buffer always has its [`max_len`](Storage::max_len) bytes.
    fn reserve(&mut self, _len: usize) -> bool {
        true
    }

    fn bytes(&self) -> &[u8] {
        self.as_ref()
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.as_mut()
    }
}

/// What one call to [`LineAccumulator::feed`] produced.
#[derive(Debug, PartialEq, Eq)]
pub enum FeedResult<'s, 'i> {
    /// All input was consumed and no line is complete yet.
    Consumed,
    /// A complete line (without its `\n` or `\r\n`), never empty, and the input not yet consumed.
    Line {
        /// The line's bytes.
        line: &'s [u8],
        /// Input after the line's `\n`; feed it next.
        remaining: &'i [u8],
    },
    /// A line exceeded the maximum. It is reported once, when the overflow happens;
    /// the rest of it, up to and including its `\n`, is skipped by later feeds.
    Overlong {
        /// Input not yet consumed; feed it next.
        remaining: &'i [u8],
    },
}

/// Accumulates bytes into lines in caller-provided [`Storage`].
#[derive(Debug, Clone)]
pub struct LineAccumulator<B> {
    buf: B,
    len: usize,
    skipping: bool,
}

impl<B: Storage> LineAccumulator<B> {
    /// Creates an accumulator whose maximum line length is `buf`'s
    /// [`max_len`](Storage::max_len) (for a fixed buffer, its length), not counting the `\n`.
    pub fn new(buf: B) -> Self {
        Self {
            buf,
            len: 0,
            skipping: false,
        }
    }

    /// The longest line this accumulator can hold, in bytes.
    pub fn capacity(&self) -> usize {
        self.buf.max_len()
    }

    /// Bytes of an incomplete line currently held.
    pub fn pending(&self) -> usize {
        self.len
    }

    /// The storage, for example to see how much memory it holds.
    pub fn storage(&self) -> &B {
        &self.buf
    }

    /// Forgets any partial line (for example after a reconnect).
    pub fn clear(&mut self) {
        self.len = 0;
        self.skipping = false;
    }

    /// Lets storage that grew give memory back, if no partial line is held. Hosts call
    /// it before waiting for more input.
    pub fn release(&mut self) {
        if self.len == 0 {
            self.buf.release();
        }
    }

    /// Consumes input up to the end of the next complete line, or all of it.
    ///
    /// Call again with `remaining` until [`FeedResult::Consumed`] is returned.
    pub fn feed<'s, 'i: 's>(&'s mut self, input: &'i [u8]) -> FeedResult<'s, 'i> {
        let mut input = input;
        loop {
            let newline = input.iter().position(|&b| b == b'\n');
            if self.skipping {
                match newline {
                    None => return FeedResult::Consumed,
                    Some(i) => {
                        self.skipping = false;
                        let (_, rest) = input.split_at(i);
                        input = rest.get(1..).unwrap_or(&[]);
                        continue;
                    }
                }
            }
            let Some(i) = newline else {
                return self.store_partial(input);
            };
            let (head, rest) = input.split_at(i);
            let remaining = rest.get(1..).unwrap_or(&[]);
            let total = self.len + head.len();
            if total > self.capacity() {
                // The line is complete in this chunk but too long: it has already been
                // read to its end, so nothing remains to skip.
                self.len = 0;
                return FeedResult::Overlong { remaining };
            }
            if self.len == 0 {
                // The whole line is in the input: hand it out without copying.
                let line = trim_cr(head);
                if line.is_empty() {
                    input = remaining;
                    continue;
                }
                return FeedResult::Line { line, remaining };
            }
            let start = self.len;
            self.len = 0;
            if !self.buf.reserve(total) {
                return FeedResult::Overlong { remaining };
            }
            let Some(dst) = self.buf.bytes_mut().get_mut(start..total) else {
                return FeedResult::Overlong { remaining };
            };
            dst.copy_from_slice(head);
            // Measured with a short borrow first: a line returned from inside the loop
            // keeps its borrow to the end of `feed`.
            let end = trim_cr(self.buf.bytes().get(..total).unwrap_or(&[])).len();
            if end == 0 {
                input = remaining;
                continue;
            }
            let line = self.buf.bytes().get(..end).unwrap_or(&[]);
            return FeedResult::Line { line, remaining };
        }
    }

    fn store_partial<'s, 'i>(&mut self, input: &'i [u8]) -> FeedResult<'s, 'i> {
        let start = self.len;
        let end = start + input.len();
        let stored = end <= self.capacity()
            && self.buf.reserve(end)
            && match self.buf.bytes_mut().get_mut(start..end) {
                Some(dst) => {
                    dst.copy_from_slice(input);
                    true
                }
                None => false,
            };
        if stored {
            self.len = end;
            FeedResult::Consumed
        } else {
            self.len = 0;
            self.skipping = true;
            FeedResult::Overlong { remaining: &[] }
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    match line.split_last() {
        Some((b'\r', rest)) => rest,
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    #[derive(Debug, PartialEq)]
    enum Item {
        Line(Vec<u8>),
        Overlong,
    }

    /// Storage that grows to what is asked (up to `max`), counts its growths and
    /// gives everything back on release; `limit` makes `reserve` fail above it.
    #[derive(Debug, Default)]
    struct Grow {
        v: Vec<u8>,
        max: usize,
        limit: Option<usize>,
        grew: usize,
        released: usize,
    }

    impl Grow {
        fn new(max: usize) -> Self {
            Self {
                max,
                ..Self::default()
            }
        }
    }

    impl Storage for Grow {
        fn max_len(&self) -> usize {
            self.max
        }
        fn reserve(&mut self, len: usize) -> bool {
            assert!(len <= self.max, "reserve({len}) above max {}", self.max);
            if self.limit.is_some_and(|l| len > l) {
                return false;
            }
            if self.v.len() < len {
                self.v.resize(len, 0);
                self.grew += 1;
            }
            true
        }
        fn bytes(&self) -> &[u8] {
            &self.v
        }
        fn bytes_mut(&mut self) -> &mut [u8] {
            &mut self.v
        }
        fn release(&mut self) {
            self.released += 1;
            self.v = Vec::new();
        }
    }

    fn feed_all<S: Storage>(acc: &mut LineAccumulator<S>, chunks: &[&[u8]]) -> Vec<Item> {
        let mut out = Vec::new();
        for chunk in chunks {
            let mut w: &[u8] = chunk;
            loop {
                match acc.feed(w) {
                    FeedResult::Consumed => break,
                    FeedResult::Line { line, remaining } => {
                        out.push(Item::Line(line.to_vec()));
                        w = remaining;
                    }
                    FeedResult::Overlong { remaining } => {
                        out.push(Item::Overlong);
                        w = remaining;
                    }
                }
            }
        }
        out
    }

    /// Frames `chunks` with a fixed `[u8; N]` and with growable storage of maximum `N`
    /// (released after every chunk), checks both agree, and returns the result.
    fn run<const N: usize>(chunks: &[&[u8]]) -> Vec<Item> {
        let fixed = feed_all(&mut LineAccumulator::new([0u8; N]), chunks);
        let mut grow = LineAccumulator::new(Grow::new(N));
        let mut grown = Vec::new();
        for chunk in chunks {
            grown.extend(feed_all(&mut grow, &[chunk]));
            grow.release();
        }
        assert_eq!(fixed, grown, "fixed and growable storage disagree");
        fixed
    }

    fn line(s: &str) -> Item {
        Item::Line(s.as_bytes().to_vec())
    }

    #[test]
    fn lines_in_one_chunk() {
        assert_eq!(
            run::<16>(&[b"a\nbb\r\n\n\r\nccc\n"]),
            [line("a"), line("bb"), line("ccc")]
        );
    }

    #[test]
    fn split_across_chunks() {
        assert_eq!(
            run::<16>(&[b"he", b"llo\nwor", b"ld", b"\r", b"\n"]),
            [line("hello"), line("world")]
        );
        // A lone "\r" completed by a later "\n" is an empty line.
        assert_eq!(run::<16>(&[b"\r", b"\nx\n"]), [line("x")]);
    }

    #[test]
    fn exact_capacity_fits() {
        assert_eq!(run::<4>(&[b"abcd\n"]), [line("abcd")]);
        assert_eq!(run::<4>(&[b"ab", b"cd\n"]), [line("abcd")]);
        assert_eq!(run::<4>(&[b"abcd", b"\n"]), [line("abcd")]);
        // The \r counts while the line is stored, since it may not be followed by \n.
        assert_eq!(run::<4>(&[b"abcd\r\n"]), [Item::Overlong]);
        assert_eq!(run::<4>(&[b"abc", b"d\r\n"]), [Item::Overlong]);
    }

    #[test]
    fn overlong_reported_once_and_skipped() {
        assert_eq!(
            run::<4>(&[b"abcdefgh", b"ijkl", b"mn\nok\n"]),
            [Item::Overlong, line("ok")]
        );
        assert_eq!(run::<4>(&[b"abcdefgh\nok\n"]), [Item::Overlong, line("ok")]);
        assert_eq!(
            run::<4>(&[b"ab", b"cdefgh\nok\n"]),
            [Item::Overlong, line("ok")]
        );
        assert_eq!(
            run::<4>(&[b"abc", b"de", b"fg\nok\n"]),
            [Item::Overlong, line("ok")]
        );
    }

    #[test]
    fn partial_line_is_kept_until_newline() {
        let mut acc = LineAccumulator::new([0u8; 8]);
        assert_eq!(acc.feed(b"abc"), FeedResult::Consumed);
        assert_eq!(acc.pending(), 3);
        assert_eq!(acc.capacity(), 8);
        acc.clear();
        assert_eq!(acc.pending(), 0);
        // After clear the old bytes are gone.
        assert_eq!(
            acc.feed(b"x\n"),
            FeedResult::Line {
                line: b"x",
                remaining: b""
            }
        );
    }

    #[test]
    fn clear_ends_skipping() {
        let mut acc = LineAccumulator::new([0u8; 2]);
        assert_eq!(acc.feed(b"abc"), FeedResult::Overlong { remaining: b"" });
        acc.clear();
        assert_eq!(
            acc.feed(b"ok\n"),
            FeedResult::Line {
                line: b"ok",
                remaining: b""
            }
        );
    }

    #[test]
    fn zero_capacity_never_panics() {
        assert_eq!(run::<0>(&[b"a\n\nb"]), [Item::Overlong, Item::Overlong]);
    }

    #[test]
    fn growable_storage_grows_only_for_split_lines_and_shrinks_when_idle() {
        let mut acc = LineAccumulator::new(Grow::new(1000));
        assert_eq!(acc.capacity(), 1000);
        // Whole lines are handed out from the input: the storage stays empty.
        assert_eq!(
            feed_all(&mut acc, &[b"one\ntwo\n"]),
            [line("one"), line("two")]
        );
        assert_eq!(acc.storage().grew, 0);
        assert!(acc.storage().v.is_empty());
        // A split line grows it to the size of the line, no more.
        assert_eq!(feed_all(&mut acc, &[b"abc"]), []);
        assert_eq!(acc.storage().v.len(), 3);
        // Release while a partial line is held keeps it.
        acc.release();
        assert_eq!(acc.storage().released, 0);
        assert_eq!(feed_all(&mut acc, &[b"def\n"]), [line("abcdef")]);
        assert_eq!(acc.storage().v.len(), 6);
        acc.release();
        assert_eq!(acc.storage().released, 1);
        assert!(acc.storage().v.is_empty());
    }

    #[test]
    fn storage_that_cannot_grow_makes_the_line_overlong() {
        let mut s = Grow::new(100);
        s.limit = Some(5);
        let mut acc = LineAccumulator::new(s);
        // Stored part refused: reported once, skipped to its end.
        assert_eq!(
            feed_all(&mut acc, &[b"abcdefgh", b"ij\nok\n"]),
            [Item::Overlong, line("ok")]
        );
        // Completion refused: reported, the next line is fine.
        assert_eq!(
            feed_all(&mut acc, &[b"abc", b"def\nok\n"]),
            [Item::Overlong, line("ok")]
        );
        assert_eq!(acc.pending(), 0);
        // Whole lines in one chunk never need the storage, however long.
        assert_eq!(feed_all(&mut acc, &[b"0123456789\n"]), [line("0123456789")]);
    }
}
