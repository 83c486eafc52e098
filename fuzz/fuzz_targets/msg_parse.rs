//! Message parsing: never panics; whatever parses emits a line that parses back to
//! the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seguro_core::msg;

fuzz_target!(|data: &[u8]| {
    let mut scratch = vec![0u8; data.len()];
    let Ok(m) = msg::parse(data, &mut scratch) else {
        // A short scratch must fail cleanly too.
        let mut small = [0u8; 4];
        let _ = msg::parse(data, &mut small);
        return;
    };
    let mut out = vec![0u8; m.line_len()];
    let n = m.emit_line(&mut out).expect("line_len is enough");
    assert_eq!(n, out.len());
    let mut scratch2 = vec![0u8; n];
    let back = msg::parse(&out[..n - 1], &mut scratch2).expect("our own output parses");
    assert_eq!(back, m);
});
