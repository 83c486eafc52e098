//! The server's name registry file (`name-registry`, read at start): any bytes give a
//! registry or an error naming the line, never a panic; a registry that was read writes
//! out a text that reads back to the same registry, and writes the same text again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seguro::server::registry::Registry;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(reg) = Registry::parse(text, 90 * 86_400) else {
        return;
    };
    let out = reg.to_text();
    let back = Registry::parse(&out, 90 * 86_400).expect("our own text reads back");
    assert_eq!(back, reg);
    assert_eq!(back.to_text(), out);
});
