//! Framing: splits a byte stream into `\n`-terminated lines inside a caller-owned buffer.
//!
//! [`LineAccumulator::feed`] takes whatever chunk the transport delivered (one byte,
//! half a line, many lines) and yields one complete line at a time together with the
//! input it has not looked at yet. A line longer than the buffer is reported once, as
//! soon as it overflows, and everything up to its `\n` is then discarded, so a peer that
//! sends an overlong line can be answered with an error while the connection survives.
//!
//! A trailing `\r` is removed (`\r\n` line ends are tolerated) and empty lines are never
//! yielded. The accumulator never allocates and never panics; its capacity is the length
//! of the buffer it is given (a `[u8; N]`, a `&mut [u8]` or, on std, a `Vec<u8>`).

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
    /// A line exceeded the capacity. It is reported once, when the overflow happens;
    /// the rest of it, up to and including its `\n`, is skipped by later feeds.
    Overlong {
        /// Input not yet consumed; feed it next.
        remaining: &'i [u8],
    },
}

/// Accumulates bytes into lines in a fixed, caller-provided buffer.
#[derive(Debug, Clone)]
pub struct LineAccumulator<B> {
    buf: B,
    len: usize,
    skipping: bool,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> LineAccumulator<B> {
    /// Creates an accumulator whose maximum line length is `buf.len()` bytes
    /// (not counting the `\n`).
    pub fn new(buf: B) -> Self {
        Self {
            buf,
            len: 0,
            skipping: false,
        }
    }

    /// The longest line this accumulator can hold, in bytes.
    pub fn capacity(&self) -> usize {
        self.buf.as_ref().len()
    }

    /// Bytes of an incomplete line currently held.
    pub fn pending(&self) -> usize {
        self.len
    }

    /// True while the rest of an overlong line is being discarded.
    pub fn is_skipping(&self) -> bool {
        self.skipping
    }

    /// Forgets any partial line (for example after a reconnect).
    pub fn clear(&mut self) {
        self.len = 0;
        self.skipping = false;
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
                        input = input.get(i + 1..).unwrap_or(&[]);
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
            let Some(dst) = self.buf.as_mut().get_mut(start..total) else {
                return FeedResult::Overlong { remaining };
            };
            dst.copy_from_slice(head);
            let stored = self.buf.as_ref();
            let end = match stored.get(..total) {
                Some([.., b'\r']) => total - 1,
                _ => total,
            };
            if end == 0 {
                input = remaining;
                continue;
            }
            let line = self.buf.as_ref().get(..end).unwrap_or(&[]);
            return FeedResult::Line { line, remaining };
        }
    }

    fn store_partial<'s, 'i>(&mut self, input: &'i [u8]) -> FeedResult<'s, 'i> {
        let start = self.len;
        let end = start + input.len();
        match self.buf.as_mut().get_mut(start..end) {
            Some(dst) => {
                dst.copy_from_slice(input);
                self.len = end;
                FeedResult::Consumed
            }
            None => {
                self.len = 0;
                self.skipping = true;
                FeedResult::Overlong { remaining: &[] }
            }
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

    fn run<const N: usize>(chunks: &[&[u8]]) -> Vec<Item> {
        let mut acc = LineAccumulator::new([0u8; N]);
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
    }

    #[test]
    fn exact_capacity_fits() {
        assert_eq!(run::<4>(&[b"abcd\n"]), [line("abcd")]);
        assert_eq!(run::<4>(&[b"ab", b"cd\n"]), [line("abcd")]);
        // The \r counts while the line is stored, since it may not be followed by \n.
        assert_eq!(run::<4>(&[b"abcd\r\n"]), [Item::Overlong]);
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
    }

    #[test]
    fn partial_line_is_kept_until_newline() {
        let mut acc = LineAccumulator::new([0u8; 8]);
        assert_eq!(acc.feed(b"abc"), FeedResult::Consumed);
        assert_eq!(acc.pending(), 3);
        acc.clear();
        assert_eq!(acc.pending(), 0);
    }

    #[test]
    fn zero_capacity_never_panics() {
        assert_eq!(run::<0>(&[b"a\n\nb"]), [Item::Overlong, Item::Overlong]);
    }
}
