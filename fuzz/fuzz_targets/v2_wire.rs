//! v2 byte layouts and JSON: `wire::parse`, `Inner::parse`, `Session::decode`,
//! `json::parse` and `json::parse_hello_v2` never panic; whatever parses re-encodes to
//! the same bytes (binary) or to a line that parses back to the same message (JSON).
#![no_main]

use libfuzzer_sys::fuzz_target;
use seguro_core::v2::ratchet::{STATE_LEN, Session};
use seguro_core::v2::json;
use seguro_core::v2::wire::{self, Inner, PRELUDE_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(view) = wire::parse(data) {
        let mut again = view.header.to_bytes().to_vec();
        if let Some(p) = view.prelude {
            again.extend_from_slice(&p.to_bytes());
        }
        assert_eq!(again, view.authenticated);
        assert_eq!(view.authenticated.len() + view.ciphertext.len(), data.len());
        assert!(view.prelude.is_some() == (view.authenticated.len() > wire::HEADER_LEN));
        assert!(view.authenticated.len() <= wire::HEADER_LEN + PRELUDE_LEN);
    }
    if let Ok(m) = Inner::parse(data) {
        let mut out = vec![0u8; m.encoded_len()];
        assert_eq!(m.emit(&mut out), Ok(data.len()));
        assert_eq!(out, data);
    }
    let mut scratch = vec![0u8; data.len()];
    if let Ok(m) = json::parse(data, &mut scratch) {
        let mut out = vec![0u8; m.line_len()];
        let n = m.emit_line(&mut out).expect("line_len is enough");
        let mut scratch2 = vec![0u8; n];
        assert_eq!(json::parse(&out[..n - 1], &mut scratch2), Ok(m));
    }
    let mut small = [0u8; 4];
    let _ = json::parse(data, &mut small);
    if let Ok(Some(h)) = json::parse_hello_v2(data) {
        let mut out = vec![0u8; 600];
        let n = json::emit_hello_line("u", &[9; 32], &h, &mut out).expect("fits");
        assert_eq!(json::parse_hello_v2(&out[..n - 1]), Ok(Some(h)));
    }
    // Session records: fuzz a record-sized input too (pad or cut to STATE_LEN).
    let mut rec = data.to_vec();
    rec.resize(STATE_LEN, 0);
    for candidate in [data, &rec[..]] {
        if let Ok(s) = Session::decode(candidate) {
            let mut out = vec![0u8; STATE_LEN];
            assert_eq!(s.encode(&mut out), Ok(STATE_LEN));
            assert_eq!(out, candidate);
        }
    }
});
