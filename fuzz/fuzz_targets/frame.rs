//! Framing: arbitrary bytes in arbitrary chunks. Lines never exceed the capacity, never
//! contain '\n', and chunking does not change the result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seguro_core::frame::{FeedResult, LineAccumulator};

fn run(data: &[u8], chunk: usize) -> Vec<Option<Vec<u8>>> {
    let mut acc = LineAccumulator::new([0u8; 64]);
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        let mut w = piece;
        loop {
            match acc.feed(w) {
                FeedResult::Consumed => break,
                FeedResult::Line { line, remaining } => {
                    assert!(!line.is_empty() && line.len() <= 64);
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
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else { return };
    let a = run(data, usize::from(chunk % 32) + 1);
    let b = run(data, data.len().max(1));
    assert_eq!(a, b);
});
