//! The board client's certificate parser (it parses what the server presents, before
//! anything is verified): arbitrary DER never panics, the SPKI it finds lies inside the
//! input, starts with a SEQUENCE, and public_key agrees with spki on what parses; a
//! P-256 point is 65 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seguro_embassy::cert::{KeyKind, public_key, spki};

fuzz_target!(|data: &[u8]| {
    let s = spki(data);
    let k = public_key(data);
    if let Ok(s) = s {
        assert_eq!(s.first(), Some(&0x30));
        let start = s.as_ptr() as usize - data.as_ptr() as usize;
        assert!(start + s.len() <= data.len());
    } else {
        assert!(k.is_err(), "public_key found a key where spki found none");
    }
    if let Ok(KeyKind::P256(point)) = k {
        assert_eq!(point.len(), 65);
        // The point is inside the SPKI.
        let s = s.unwrap();
        let (p, q) = (point.as_ptr() as usize, s.as_ptr() as usize);
        assert!(p >= q && p + point.len() <= q + s.len());
    }
});
