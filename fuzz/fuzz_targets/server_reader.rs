//! The server's line reader (core's framer over storage that grows on demand, fed by
//! reads): arbitrary bytes in arbitrary read sizes give the same lines as one big read
//! would, lines never exceed the maximum nor contain '\n', every scratch buffer is as
//! long as its line, and an idle reader keeps at most the small buffers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seguro::server::reader::{Got, KEEP_BUF, LineReader};

const MAX: usize = 300;

/// A reader over `data` that hands out at most `chunk` bytes per read.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl smol::io::AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let n = self.chunk.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        std::task::Poll::Ready(Ok(n))
    }
}

fn lines(data: &[u8], chunk: usize) -> Vec<Option<Vec<u8>>> {
    let mut r = LineReader::new(MAX);
    let mut src = Chunked { data, chunk };
    let mut out = Vec::new();
    smol::block_on(async {
        while r.fill(&mut src).await.unwrap() {
            while let Some(got) = r.next_line() {
                match got {
                    Got::Line { line, scratch } => {
                        assert!(!line.is_empty() && line.len() <= MAX);
                        assert!(!line.contains(&b'\n'));
                        assert_eq!(scratch.len(), line.len());
                        out.push(Some(line.to_vec()));
                    }
                    Got::Overlong => out.push(None),
                }
            }
            assert!(r.held() <= MAX + 2 * KEEP_BUF, "held {}", r.held());
        }
    });
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk % 64) + 1;
    let small = lines(data, chunk);
    let whole = lines(data, usize::MAX);
    assert_eq!(small, whole);
    // Every non-empty line is there: as many items as '\n'-ended non-empty pieces, plus
    // one for an unended piece already longer than the maximum (reported overlong as
    // soon as it is; at exactly one byte over, a final '\r' may still be a line end).
    let pieces: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let (tail, ended) = pieces.split_last().unwrap();
    let complete = ended
        .iter()
        .filter(|l| !l.is_empty() && **l != b"\r")
        .count();
    match tail.len() {
        n if n == MAX + 1 => assert!(small.len() == complete || small.len() == complete + 1),
        n if n > MAX => assert_eq!(small.len(), complete + 1),
        _ => assert_eq!(small.len(), complete),
    }
});
