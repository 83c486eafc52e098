//! Replays `../shared/vectors/messages-v1.json`: every message as the reference writes it
//! and in compact UTF-8 parses to the same message, which emits and parses back unchanged.

use seguro_core::msg::{self, Message};
use serde_json::Value;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/vectors/messages-v1.json"
);

fn load() -> Vec<Value> {
    let text = std::fs::read_to_string(VECTORS)
        .unwrap_or_else(|e| panic!("cannot read the shared vectors at {VECTORS}: {e}"));
    let v: Value = serde_json::from_str(&text).expect("vector file is JSON");
    v["messages"].as_array().expect("messages array").clone()
}

/// The message as a serde_json value with the same shape as the vector's `decoded`.
fn to_value(m: &Message<'_>) -> Value {
    use base64::Engine as _;
    let b64 = |k: &[u8]| base64::engine::general_purpose::STANDARD.encode(k);
    let mut o = serde_json::Map::new();
    o.insert("type".into(), m.type_name().into());
    match m {
        Message::Hello { user, key, token } => {
            assert_eq!(*token, None);
            o.insert("user".into(), (*user).into());
            o.insert("pub".into(), b64(key).into());
        }
        Message::Welcome { users } | Message::Users { users } => {
            let mut u = serde_json::Map::new();
            for (name, key) in users.iter() {
                u.insert(name.into(), b64(key).into());
            }
            o.insert("users".into(), u.into());
        }
        Message::List => {}
        Message::Chat { text } | Message::Server { text } | Message::Error { text } => {
            o.insert("text".into(), (*text).into());
        }
        Message::Relay(r) => {
            o.insert("to".into(), r.to.into());
            if let Some(f) = r.from {
                o.insert("from".into(), f.into());
            }
            if let Some(a) = r.alg {
                o.insert("alg".into(), a.into());
            }
            o.insert("nonce".into(), r.nonce.into());
            o.insert("cipher".into(), r.cipher.into());
        }
    }
    Value::Object(o)
}

#[test]
fn every_vector_parses_in_both_forms_and_round_trips() {
    let vectors = load();
    assert!(vectors.len() >= 8, "too few vectors: {}", vectors.len());
    let mut types = std::collections::BTreeSet::new();
    for v in &vectors {
        let python = v["python_default"].as_str().unwrap();
        let compact = v["compact_utf8"].as_str().unwrap();
        let decoded = &v["decoded"];
        let mut s1 = vec![0u8; python.len()];
        let mut s2 = vec![0u8; compact.len()];
        let a = msg::parse(python.as_bytes(), &mut s1)
            .unwrap_or_else(|e| panic!("python form {python}: {e}"));
        let b = msg::parse(compact.as_bytes(), &mut s2)
            .unwrap_or_else(|e| panic!("compact form {compact}: {e}"));
        assert_eq!(a, b, "{python}");
        assert_eq!(&to_value(&a), decoded, "{python}");
        types.insert(a.type_name());

        // Emit → parse round-trip; our emission is the compact form.
        let mut out = vec![0u8; a.line_len()];
        let n = a.emit_line(&mut out).unwrap();
        assert_eq!(n, out.len());
        assert_eq!(out.last(), Some(&b'\n'));
        let line = &out[..n - 1];
        let reparsed: Value = serde_json::from_slice(line).expect("emitted line is JSON");
        assert_eq!(&reparsed, decoded);
        let mut s3 = vec![0u8; line.len()];
        assert_eq!(msg::parse(line, &mut s3).unwrap(), a);
        // A line with \r\n and CRLF variants is handled by the framer, not the parser;
        // a scratch exactly as long as the line is enough.
        let mut tight = vec![0u8; python.len()];
        assert!(msg::parse(python.as_bytes(), &mut tight).is_ok());
    }
    for t in [
        "hello", "welcome", "users", "list", "chat", "server", "relay", "error",
    ] {
        assert!(types.contains(t), "no vector of type {t}");
    }
}

#[test]
fn relay_lines_of_the_e2ee_vectors_parse() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/e2ee-v1.json"
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for vec in v["vectors"].as_array().unwrap() {
        let a = vec["relay_line_python"].as_str().unwrap();
        let b = vec["relay_line_compact"].as_str().unwrap();
        let (mut s1, mut s2) = (vec![0u8; a.len()], vec![0u8; b.len()]);
        let ma = msg::parse(a.as_bytes(), &mut s1).unwrap();
        let mb = msg::parse(b.as_bytes(), &mut s2).unwrap();
        assert_eq!(ma, mb);
        let Message::Relay(r) = ma else {
            panic!("not a relay")
        };
        assert_eq!(r.nonce, vec["nonce"].as_str().unwrap());
        assert_eq!(r.cipher, vec["cipher"].as_str().unwrap());
        assert_eq!(r.alg, Some(msg::ALG_V1));
        // Our compact emission equals the reference's compact form byte for byte.
        let mut out = vec![0u8; mb.line_len()];
        let n = mb.emit_line(&mut out).unwrap();
        assert_eq!(&out[..n - 1], b.as_bytes());
    }
}

#[test]
fn extra_fields_any_order_and_spacing() {
    let line = br#" { "cipher" : "Y2k=", "extra": [1, {"x": null}], "nonce":"bm9uY2U=", "type" : "relay", "to": "b\u00f6b" } "#;
    let mut s = [0u8; 256];
    let m = msg::parse(line, &mut s).unwrap();
    let Message::Relay(r) = m else { panic!() };
    assert_eq!(r.to, "böb");
    assert_eq!(r.from, None);
}

#[test]
fn a_user_list_packs_into_exactly_the_bytes_it_needs_and_refuses_unpackable_names() {
    use seguro_core::msg::{BufferTooSmall, UserList, packed_entry_len};
    let (ka, kb) = ([1u8; 32], [2u8; 32]);
    let entries = [("ana", &ka), ("beto", &kb)];
    let needed = packed_entry_len("ana") + packed_entry_len("beto");
    let mut exact = vec![0u8; needed];
    let list = UserList::pack(entries, &mut exact).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list.get("beto"), Some(&kb));
    assert_eq!(format!("{list:?}"), r#"["ana", "beto"]"#);
    let mut short = vec![0u8; needed - 1];
    let e = UserList::pack(entries, &mut short).unwrap_err();
    assert_eq!(e, BufferTooSmall { needed });
    assert_eq!(
        e.to_string(),
        format!("buffer too small: {needed} bytes needed")
    );

    // A name's length is two bytes on the packed form: 65,535 bytes fit, one more is
    // refused however large the buffer (it would be written with a wrong length).
    let longest = "n".repeat(usize::from(u16::MAX));
    let mut big = vec![0u8; packed_entry_len(&longest) + 64];
    let list = UserList::pack([(longest.as_str(), &ka)], &mut big).unwrap();
    assert_eq!(list.iter().next(), Some((longest.as_str(), &ka)));
    let over = "n".repeat(usize::from(u16::MAX) + 1);
    let mut big = vec![0u8; packed_entry_len(&over) + 64];
    assert!(UserList::pack([(over.as_str(), &ka)], &mut big).is_err());
}

#[test]
fn an_empty_list_is_empty_and_a_full_one_is_not() {
    use seguro_core::msg::UserList;
    assert!(UserList::EMPTY.is_empty());
    assert_eq!(UserList::EMPTY.len(), 0);
    let k = [7u8; 32];
    let mut buf = [0u8; 128];
    let list = UserList::pack([("ana", &k)], &mut buf).unwrap();
    assert!(!list.is_empty());
    assert_eq!(list.len(), 1);
}

#[test]
fn an_overlong_key_is_refused_with_the_length_it_would_decode_to() {
    // 200 base64 characters: far more than a key's 44, more than the decoder's room.
    let line = format!(
        r#"{{"type":"hello","user":"ana","pub":"{}"}}"#,
        "A".repeat(200)
    );
    let mut scratch = vec![0u8; line.len()];
    assert_eq!(
        msg::parse(line.as_bytes(), &mut scratch),
        Err(msg::ParseError::BadKeyLength {
            field: "pub",
            len: 150
        })
    );
}

#[test]
fn names_with_invisible_characters_are_refused_and_every_name_error_says_why() {
    use seguro_core::msg::{NameError, validate_name};
    // A zero-width space and a byte-order mark are neither white space nor control
    // characters, and make two names look the same.
    assert_eq!(validate_name("a\u{200b}b"), Err(NameError::BadCharacter));
    assert_eq!(validate_name("a\u{feff}b"), Err(NameError::BadCharacter));
    assert_eq!(validate_name("ana"), Ok(()));
    assert_eq!(NameError::Empty.to_string(), "user name is empty");
    assert_eq!(
        NameError::TooLong.to_string(),
        "user name is longer than 32 characters"
    );
    assert_eq!(
        NameError::BadCharacter.to_string(),
        "user name contains white space or a control character"
    );
}
