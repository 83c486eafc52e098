//! The storage format as hosts see it (`seguro_core::store`): the messages they show
//! for each error, record sizes they allocate from, and the name bounds of records.

use seguro_core::limits::MAX_NAME_BYTES;
use seguro_core::store::{
    self, Cursor, RECORD_OVERHEAD, Reader, Record, StoreError, Writer, file_type, kind,
};

#[test]
fn every_error_has_its_own_message_with_its_details() {
    let cases: [(StoreError, &[&str]); 12] = [
        (StoreError::BufferTooSmall { needed: 4711 }, &["4711"]),
        (StoreError::Truncated, &["truncated"]),
        (StoreError::Checksum, &["checksum"]),
        (StoreError::NotSeguro, &["not a Seguro"]),
        (
            StoreError::WrongFileType { found: 9 },
            &["another type", "9"],
        ),
        (
            StoreError::UnsupportedVersion {
                kind: 0x10,
                version: 7,
            },
            &["newer", "0x10", "7"],
        ),
        (StoreError::Malformed { kind: 0x12 }, &["malformed", "0x12"]),
        (StoreError::TrailingData, &["after the end"]),
        (StoreError::Missing { kind: 0x01 }, &["0x01"]),
        (StoreError::Duplicate { kind: 0x02 }, &["duplicate", "0x02"]),
        (StoreError::KeyMismatch, &["public key"]),
        (StoreError::TooLarge, &["too large"]),
    ];
    let mut seen = Vec::new();
    for (e, parts) in cases {
        let s = e.to_string();
        for p in parts {
            assert!(s.contains(p), "{e:?}: {s:?} lacks {p:?}");
        }
        assert!(!seen.contains(&s), "{s}");
        seen.push(s);
    }
}

#[test]
fn a_record_is_its_body_and_eight_bytes() {
    let mut out = [0u8; 64];
    for body in [&b""[..], b"x", b"0123456789abcdef"] {
        let n = store::write_record(&mut out, 0x42, 1, body).unwrap();
        let (rec, _) = store::read_record(&out[..n]).unwrap();
        assert_eq!(rec.encoded_len(), n);
        assert_eq!(rec.encoded_len(), RECORD_OVERHEAD + body.len());
        // Writing a record as read gives the same bytes (hosts keep unknown kinds).
        let mut again = [0u8; 64];
        let mut w = Writer::new(&mut again, file_type::TRUST);
        w.raw(&rec);
        let m = w.finish().unwrap();
        let mut r = Reader::new(&again[..m], file_type::TRUST).unwrap();
        assert_eq!(r.next().unwrap(), Some(rec));
        assert_eq!(r.next().unwrap(), None);
    }
}

fn name_record(name: &[u8], buf: &mut [u8]) -> usize {
    let mut body = vec![u8::try_from(name.len()).unwrap()];
    body.extend_from_slice(name);
    store::write_record(buf, kind::CONTACT, 1, &body).unwrap()
}

#[test]
fn names_in_records_are_one_to_128_bytes_of_utf8() {
    let mut buf = [0u8; 512];
    for len in [1, 2, MAX_NAME_BYTES - 1, MAX_NAME_BYTES] {
        let name = "n".repeat(len);
        let n = name_record(name.as_bytes(), &mut buf);
        let (rec, _) = store::read_record(&buf[..n]).unwrap();
        let mut c = Cursor::new(&rec);
        assert_eq!(c.name().unwrap().as_str(), name, "{len}");
        c.end().unwrap();
    }
    for len in [0, MAX_NAME_BYTES + 1, 255] {
        let name = "n".repeat(len);
        let n = name_record(name.as_bytes(), &mut buf);
        let (rec, _) = store::read_record(&buf[..n]).unwrap();
        assert_eq!(
            Cursor::new(&rec).name(),
            Err(StoreError::Malformed {
                kind: kind::CONTACT
            }),
            "{len}"
        );
    }
    // Not UTF-8; a length byte that runs past the body.
    for body in [&[2u8, 0xc3, 0x28][..], &[9, b'a', b'b']] {
        let n = store::write_record(&mut buf, kind::CONTACT, 1, body).unwrap();
        let (rec, _) = store::read_record(&buf[..n]).unwrap();
        assert!(Cursor::new(&rec).name().is_err(), "{body:?}");
    }
    let rec = Record {
        kind: kind::SEED,
        version: 1,
        body: &[1, 2, 3, 4, 5, 6, 7, 8, 9],
    };
    let mut c = Cursor::new(&rec);
    assert_eq!(
        c.u64().unwrap(),
        u64::from_le_bytes([1, 2, 3, 4, 5, 6, 7, 8])
    );
    assert_eq!(c.u32(), Err(StoreError::Malformed { kind: kind::SEED }));
    assert_eq!(c.bytes(1).unwrap(), &[9]);
    c.end().unwrap();
}
