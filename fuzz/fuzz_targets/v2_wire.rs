//! v2 byte layouts and JSON: `wire::parse`, `Inner::parse`, `Session::decode`,
//! `json::parse` (every v2 message: challenge … bundle, prekeys, dir, error with code),
//! `json::parse_hello_v2`, `json::parse_directory_v2` and `json::parse_relay_id` never
//! panic; whatever parses re-encodes to the same bytes (binary) or to a line that parses
//! back to the same message (JSON), and the v1 parser reads the v1 part of an extended
//! line exactly as the plain v1 line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seguro_core::msg::{self, Message, UserList};
use seguro_core::v2::json::{self, DirDelta, DirectoryKind, V2Message};
use seguro_core::v2::ratchet::{STATE_LEN, Session};
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
        let mut short = vec![0u8; n - 1];
        assert!(m.emit_line(&mut short).is_err());
        assert!(short.iter().all(|&b| b == 0), "written on failure");
        match m {
            V2Message::Prekeys { opks, .. } => {
                // Iterating a parsed list yields every entry, and re-encoding it gives
                // the same text.
                let entries: Vec<_> = opks.iter().collect();
                assert_eq!(
                    entries.len(),
                    opks.as_str().split(' ').filter(|w| !w.is_empty()).count()
                );
                let mut buf = vec![0u8; opks.as_str().len()];
                assert_eq!(
                    json::OpkList::encode(&entries, &mut buf).map(|l| l.as_str()),
                    Ok(opks.as_str())
                );
            }
            V2Message::Bundle(b) => {
                let _ = b.verify();
            }
            V2Message::Dir {
                delta: DirDelta::Join(e) | DirDelta::Key(e),
                ..
            } => {
                if let Some(p) = e.peer() {
                    let _ = p.verify();
                }
            }
            _ => {}
        }
    }
    let mut small = [0u8; 4];
    let _ = json::parse(data, &mut small);
    let mut scratch = vec![0u8; data.len()];
    if let Ok(Some(d)) = json::parse_directory_v2(data, &mut scratch) {
        let mut v1s = vec![0u8; data.len()];
        let users = match msg::parse(data, &mut v1s) {
            Ok(Message::Welcome { users } | Message::Users { users }) => users,
            _ => UserList::EMPTY,
        };
        let mut out = vec![0u8; 2 * data.len() + 64];
        let n =
            json::emit_directory_line(DirectoryKind::Users, &users, &d, &mut out).expect("fits");
        let mut s2 = vec![0u8; n];
        assert_eq!(
            json::parse_directory_v2(&out[..n - 1], &mut s2),
            Ok(Some(d))
        );
        let mut s3 = vec![0u8; n];
        assert_eq!(
            msg::parse(&out[..n - 1], &mut s3),
            Ok(Message::Users { users })
        );
        for (name, _) in d.users.iter() {
            let _ = d.peer(&users, name);
        }
    }
    let _ = json::parse_directory_v2(data, &mut small);
    if let Ok(Some(id)) = json::parse_relay_id(data) {
        let mut v1s = vec![0u8; data.len()];
        if let Ok(Message::Relay(r)) = msg::parse(data, &mut v1s) {
            let mut out = vec![0u8; 2 * data.len() + 64];
            let n = json::emit_relay_line_with_id(
                r.to,
                r.from.unwrap_or(""),
                &[0; 12],
                b"",
                id,
                &mut out,
            )
            .expect("fits");
            assert_eq!(json::parse_relay_id(&out[..n - 1]), Ok(Some(id)));
        }
    }
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
