//! Reading lines from a connection: core's [`LineAccumulator`] (the project's one
//! framer) over storage that grows on demand.
//!
//! Bytes are read into a buffer of [`READ_BUF`] bytes that exists only while bytes are
//! arriving: it is freed whenever a read finds nothing to read (an idle connection holds
//! none); complete lines are handed out straight from it, as many as one read delivered ([`LineReader::next_line`] until `None`, then
//! [`LineReader::fill`]). Only the start of a line split across reads is copied, into a
//! [`GrowBuf`] that grows up to the maximum line length and is given back before the
//! reader waits for more input, as is the parser's scratch buffer: an idle connection
//! that once sent a long line does not keep it.

use std::io;
use std::pin::Pin;
use std::task::Poll;

use seguro_core::frame::{FeedResult, LineAccumulator, Storage};
use smol::io::AsyncRead;

/// Bytes read at a time (one buffer per connection while it is reading, freed while it
/// waits for input).
pub const READ_BUF: usize = 4096;

/// Buffers that grew above this are freed when the reader goes idle.
pub const KEEP_BUF: usize = 4096;

/// [`Storage`] that grows on demand up to a maximum and shrinks back when released.
#[derive(Debug, Default)]
pub struct GrowBuf {
    v: Vec<u8>,
    max: usize,
}

impl GrowBuf {
    /// Empty storage for lines of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self { v: Vec::new(), max }
    }

    /// Bytes of memory held now.
    pub fn held(&self) -> usize {
        self.v.capacity()
    }
}

impl Storage for GrowBuf {
    fn max_len(&self) -> usize {
        self.max
    }

    fn reserve(&mut self, len: usize) -> bool {
        if len > self.max {
            return false;
        }
        if self.v.len() < len {
            self.v.resize(len, 0);
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
        self.v.clear();
        if self.v.capacity() > KEEP_BUF {
            self.v = Vec::new();
        }
    }
}

/// One item from [`LineReader::next_line`].
#[derive(Debug)]
pub enum Got<'a> {
    /// A complete line (without `\n` or `\r\n`, never empty) and a scratch buffer as
    /// long as it, for the parser.
    Line {
        /// The line.
        line: &'a [u8],
        /// Scratch for [`seguro_core::msg::parse`].
        scratch: &'a mut [u8],
    },
    /// A line longer than the maximum: reported once, the rest of it is skipped.
    Overlong,
}

/// Splits what a connection sends into lines.
#[derive(Debug)]
pub struct LineReader {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    acc: LineAccumulator<GrowBuf>,
    scratch: Vec<u8>,
}

impl LineReader {
    /// A reader for lines of at most `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Self {
            buf: Box::default(),
            start: 0,
            end: 0,
            acc: LineAccumulator::new(GrowBuf::new(max_line)),
            scratch: Vec::new(),
        }
    }

    /// The next line among the bytes already read (no I/O), or `None` once they are all
    /// consumed.
    pub fn next_line(&mut self) -> Option<Got<'_>> {
        let input = self.buf.get(self.start..self.end).unwrap_or(&[]);
        if input.is_empty() {
            return None;
        }
        match self.acc.feed(input) {
            FeedResult::Consumed => {
                self.start = self.end;
                None
            }
            FeedResult::Overlong { remaining } => {
                self.start = self.end - remaining.len();
                Some(Got::Overlong)
            }
            FeedResult::Line { line, remaining } => {
                self.start = self.end - remaining.len();
                if self.scratch.len() < line.len() {
                    self.scratch.resize(line.len(), 0);
                }
                let scratch = self.scratch.get_mut(..line.len()).unwrap_or(&mut []);
                Some(Got::Line { line, scratch })
            }
        }
    }

    /// Gives back the memory a long line took, then reads more bytes (unless some are
    /// still unconsumed). `Ok(false)` at the end of the stream.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, rd: &mut R) -> io::Result<bool> {
        if self.start < self.end {
            return Ok(true);
        }
        self.release();
        self.start = 0;
        self.end = 0;
        let buf = &mut self.buf;
        let n = std::future::poll_fn(|cx| {
            if buf.is_empty() {
                *buf = vec![0u8; READ_BUF].into_boxed_slice();
            }
            match Pin::new(&mut *rd).poll_read(cx, buf) {
                Poll::Pending => {
                    // Nothing was read: the buffer is not needed while waiting.
                    *buf = Box::default();
                    Poll::Pending
                }
                ready => ready,
            }
        })
        .await?;
        self.end = n;
        Ok(n > 0)
    }

    /// Gives back buffers that grew above [`KEEP_BUF`] (a partial line is kept).
    pub fn release(&mut self) {
        self.acc.release();
        if self.scratch.capacity() > KEEP_BUF {
            self.scratch = Vec::new();
        }
    }

    /// Bytes of the read buffer held now ([`READ_BUF`] while reading, 0 while waiting).
    pub fn read_buf_held(&self) -> usize {
        self.buf.len()
    }

    /// True while part of a line has been read and not yet its end.
    pub fn in_line(&self) -> bool {
        self.acc.pending() > 0 || self.start < self.end
    }

    /// Bytes of memory held beyond the read buffer (partial line and scratch).
    pub fn held(&self) -> usize {
        self.acc.storage().held() + self.scratch.capacity()
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    /// Reads `data` through `fill` in pieces of `chunk` bytes; lines as strings,
    /// overlong ones as "!".
    fn lines(data: &[u8], chunk: usize, max: usize) -> (Vec<String>, LineReader) {
        let mut r = LineReader::new(max);
        let mut out = Vec::new();
        smol::block_on(async {
            for mut piece in data.chunks(chunk) {
                // A piece longer than the read buffer takes several reads.
                while !piece.is_empty() {
                    assert!(r.fill(&mut piece).await.unwrap());
                    while let Some(got) = r.next_line() {
                        out.push(match got {
                            Got::Line { line, scratch } => {
                                assert_eq!(scratch.len(), line.len());
                                String::from_utf8_lossy(line).into_owned()
                            }
                            Got::Overlong => "!".into(),
                        });
                    }
                }
            }
            let mut empty: &[u8] = &[];
            assert!(!r.fill(&mut empty).await.unwrap());
        });
        (out, r)
    }

    #[test]
    fn many_lines_per_read_and_lines_across_reads() {
        let data = b"a\nbb\r\n\nccc\n";
        for chunk in [1, 2, 3, 100] {
            assert_eq!(
                lines(data, chunk, 16).0,
                ["a", "bb", "ccc"],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn a_long_line_is_kept_whole_and_its_memory_given_back() {
        let long = "x".repeat(3 * READ_BUF);
        let data = format!("{long}\nshort\n");
        let (out, r) = lines(data.as_bytes(), 700, 4 * READ_BUF);
        assert_eq!(out, [long.as_str(), "short"]);
        assert_eq!(r.held(), 0, "buffers kept after the long line");
    }

    #[test]
    fn an_overlong_line_is_reported_once() {
        let data = format!("{}\nok\n", "y".repeat(5000));
        for chunk in [1, 999, 10_000] {
            let (out, _) = lines(data.as_bytes(), chunk, 100);
            assert_eq!(out, ["!", "ok"], "chunk {chunk}");
        }
    }

    /// A source that has nothing the first time it is polled, then `data`.
    struct Later {
        data: &'static [u8],
        polled: bool,
    }

    impl AsyncRead for Later {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            out: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            if !self.polled {
                self.polled = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = self.data.len().min(out.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Poll::Ready(Ok(n))
        }
    }

    #[test]
    fn no_read_buffer_is_held_while_waiting_for_input() {
        let mut r = LineReader::new(100);
        assert_eq!(r.read_buf_held(), 0);
        let mut src = Later {
            data: b"hi\n",
            polled: false,
        };
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        {
            let mut fill = std::pin::pin!(r.fill(&mut src));
            assert!(fill.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(r.read_buf_held(), 0, "a buffer held while nothing arrived");
        assert!(smol::block_on(r.fill(&mut src)).unwrap());
        assert_eq!(r.read_buf_held(), READ_BUF);
        match r.next_line() {
            Some(Got::Line { line, .. }) => assert_eq!(line, b"hi"),
            other => panic!("{other:?}"),
        }
        assert!(r.next_line().is_none());
    }

    #[test]
    fn a_small_partial_line_is_kept_while_idle() {
        let mut r = LineReader::new(100);
        smol::block_on(async {
            let mut piece: &[u8] = b"abc";
            assert!(r.fill(&mut piece).await.unwrap());
            assert!(r.next_line().is_none());
            r.release();
            let mut piece: &[u8] = b"d\n";
            assert!(r.fill(&mut piece).await.unwrap());
            match r.next_line() {
                Some(Got::Line { line, .. }) => assert_eq!(line, b"abcd"),
                other => panic!("{other:?}"),
            }
        });
    }
}
