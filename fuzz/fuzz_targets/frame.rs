//! Framing: arbitrary bytes in arbitrary chunks. Lines never exceed the capacity, never
//! contain '\n', chunking does not change the result, and storage that grows on demand
//! (released between chunks) frames exactly as a fixed buffer does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seguro_core::frame::{FeedResult, LineAccumulator, Storage};

const CAP: usize = 64;

/// Storage that grows to what is asked, up to CAP, and gives it all back on release.
struct Grow(Vec<u8>);

impl Storage for Grow {
    fn max_len(&self) -> usize {
        CAP
    }
    fn reserve(&mut self, len: usize) -> bool {
        assert!(len <= CAP);
        if self.0.len() < len {
            self.0.resize(len, 0);
        }
        true
    }
    fn bytes(&self) -> &[u8] {
        &self.0
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
    fn release(&mut self) {
        self.0 = Vec::new();
    }
}

fn run<S: Storage>(
    acc: &mut LineAccumulator<S>,
    data: &[u8],
    chunk: usize,
) -> Vec<Option<Vec<u8>>> {
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        let mut w = piece;
        loop {
            match acc.feed(w) {
                FeedResult::Consumed => break,
                FeedResult::Line { line, remaining } => {
                    assert!(!line.is_empty() && line.len() <= CAP);
                    assert!(!line.contains(&b'\n'));
                    out.push(Some(line.to_vec()));
                    w = remaining;
                }
                FeedResult::Overlong { remaining } => {
                    out.push(None);
                    w = remaining;
                }
            }
        }
        acc.release();
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk % 32) + 1;
    let a = run(&mut LineAccumulator::new([0u8; CAP]), data, chunk);
    let b = run(
        &mut LineAccumulator::new([0u8; CAP]),
        data,
        data.len().max(1),
    );
    assert_eq!(a, b);
    let c = run(&mut LineAccumulator::new(Grow(Vec::new())), data, chunk);
    assert_eq!(a, c);
});
