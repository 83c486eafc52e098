//! The v2 JSON messages (`seguro_core::v2::json`) against the vectors Python's `json`
//! module wrote (`tools/v2vectors/gen.py`, `core/tests/vectors/v2/json.json`): core
//! emits the same bytes, reads Python's own style, and v1's `msg::parse` reads every
//! v1 line carrying a v2 addition exactly as the plain v1 line, as a reference peer
//! does. Then properties: every message round-trips, emitting never writes on failure,
//! and hostile input is refused without a panic.

use crate::v2_common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use seguro_core::identity::PublicIdentity;
use seguro_core::msg::{self, BufferTooSmall, Message, UserList};
use seguro_core::v2::json::{
    self, AckStatus, DirDelta, DirEntry, DirectoryKind, DirectoryV2, ErrorCode, HelloV2, MAX_OPKS,
    OpkList, OpkListError, V2Message, V2PackError, V2ParseError, V2UserList,
};
use seguro_core::v2::x3dh::{Bundle, PeerIdentity};
use serde_json::Value;
use v2_common::load;

fn b64<const N: usize>(v: &Value) -> [u8; N] {
    STANDARD
        .decode(v.as_str().expect("base64 string"))
        .expect("base64")
        .try_into()
        .expect("length")
}

fn num(v: &Value) -> u32 {
    v.as_str().expect("decimal string").parse().expect("u32")
}

fn parse_owned(line: &str) -> Result<String, V2ParseError> {
    let mut scratch = vec![0u8; line.len()];
    json::parse(line.as_bytes(), &mut scratch).map(|m| format!("{m:?}"))
}

/// Emits `m` and checks the line against `want`, the exact-size and the too-small cases.
fn emits_exactly(m: &V2Message<'_>, want: &str) {
    let n = m.line_len();
    assert_eq!(n, want.len() + 1, "{want}");
    let mut out = vec![0u8; n];
    assert_eq!(m.emit_line(&mut out), Ok(n));
    assert_eq!(&out[..n - 1], want.as_bytes());
    assert_eq!(out[n - 1], b'\n');
    let mut short = vec![0x5au8; n - 1];
    assert_eq!(m.emit_line(&mut short), Err(BufferTooSmall { needed: n }));
    assert!(short.iter().all(|&b| b == 0x5a), "written on failure");
}

fn check_hello_v2(got: &HelloV2<'_>, obj: &Value) {
    assert_eq!(got.caps, obj["caps"].as_str().unwrap());
    assert_eq!(got.ed, b64(&obj["ed"]));
    assert_eq!(got.bind, b64(&obj["bind"]));
}

/// The message's fields are the object's.
fn check_fields(m: &V2Message<'_>, obj: &Value) {
    match m {
        V2Message::Prekeys {
            id,
            spk_id,
            spk,
            spk_sig,
            opks,
        } => {
            assert_eq!(*id, num(&obj["id"]));
            assert_eq!(*spk_id, num(&obj["spk_id"]));
            assert_eq!(*spk, b64(&obj["spk"]));
            assert_eq!(*spk_sig, b64(&obj["spk_sig"]));
            let want: Vec<(u32, [u8; 32])> = obj["opks"]
                .as_str()
                .unwrap_or("")
                .split(' ')
                .filter(|w| !w.is_empty())
                .map(|w| {
                    let (i, k) = w.split_once(':').unwrap();
                    (i.parse().unwrap(), b64(&Value::from(k)))
                })
                .collect();
            assert_eq!(opks.iter().collect::<Vec<_>>(), want);
            assert_eq!(opks.len(), want.len());
            assert_eq!(opks.is_empty(), want.is_empty());
        }
        V2Message::Bundle(b) => {
            assert_eq!(b.peer.name, obj["user"].as_str().unwrap());
            assert_eq!(b.peer.keys.x, b64(&obj["pub"]));
            assert_eq!(b.peer.keys.ed, b64(&obj["ed"]));
            assert_eq!(b.peer.bind, b64(&obj["bind"]));
            assert_eq!(b.spk_id, num(&obj["spk_id"]));
            assert_eq!(b.spk, b64(&obj["spk"]));
            assert_eq!(b.spk_sig, b64(&obj["spk_sig"]));
            match &b.opk {
                None => assert!(obj.get("opk").is_none() && obj.get("opk_id").is_none()),
                Some((id, k)) => {
                    assert_eq!(*id, num(&obj["opk_id"]));
                    assert_eq!(*k, b64(&obj["opk"]));
                }
            }
            // Python signed them: the bundle as parsed verifies.
            b.verify().expect("the generator's bundle verifies");
        }
        V2Message::PrekeysLow { left } => assert_eq!(*left, num(&obj["left"])),
        V2Message::Dir { seq, delta } => {
            assert_eq!(*seq, num(&obj["seq"]));
            assert_eq!(delta.user(), obj["user"].as_str().unwrap());
            match (delta, obj["op"].as_str().unwrap()) {
                (DirDelta::Leave { .. }, "leave") => {}
                (DirDelta::Join(e), "join") | (DirDelta::Key(e), "key") => {
                    assert_eq!(e.x, b64(&obj["pub"]));
                    match (&e.v2, obj.get("v2")) {
                        (None, None) => assert!(e.peer().is_none()),
                        (Some(v), Some(o)) => {
                            check_hello_v2(v, o);
                            let peer = e.peer().unwrap();
                            assert_eq!(peer.name, e.user);
                            assert_eq!(peer.keys, PublicIdentity { x: e.x, ed: v.ed });
                            peer.verify().expect("the generator's binding verifies");
                        }
                        other => panic!("v2 part: {other:?}"),
                    }
                }
                other => panic!("op: {other:?}"),
            }
        }
        V2Message::Error { code, user, text } => {
            assert_eq!(code.as_str(), obj["code"].as_str().unwrap());
            assert_eq!(*user, obj.get("user").map(|u| u.as_str().unwrap()));
            assert_eq!(*text, obj["text"].as_str().unwrap());
        }
        other => panic!("unexpected message {other:?}"),
    }
}

#[test]
fn messages_match_the_python_vectors() {
    let doc = load("json");
    let cases = doc["messages"].as_array().unwrap();
    assert!(cases.len() >= 12);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let compact = c["compact"].as_str().unwrap();
        let python = c["python"].as_str().unwrap();
        let mut s1 = vec![0u8; compact.len()];
        let m = json::parse(compact.as_bytes(), &mut s1).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_fields(&m, &c["obj"]);
        emits_exactly(&m, compact);
        // Python's own style (spaces, \u escapes, sorted keys) reads the same.
        let mut s2 = vec![0u8; python.len()];
        assert_eq!(json::parse(python.as_bytes(), &mut s2), Ok(m), "{name}");
        // None of them is a v1 message; the v1 parser still reads an error's text.
        let mut s3 = vec![0u8; compact.len()];
        match msg::parse(compact.as_bytes(), &mut s3) {
            Ok(Message::Error { text }) => assert_eq!(text, c["obj"]["text"].as_str().unwrap()),
            other => assert!(other.is_err(), "{name}: v1 read {other:?}"),
        }
    }
}

/// A v1 message with its directory (if any) sorted by name.
fn v1_sorted(m: &Message<'_>) -> String {
    match m {
        Message::Welcome { users } | Message::Users { users } => {
            let mut v: Vec<_> = users.iter().collect();
            v.sort();
            format!("{} {v:?}", m.type_name())
        }
        other => format!("{other:?}"),
    }
}

#[test]
fn v1_lines_with_v2_additions_read_as_plain_v1() {
    let doc = load("json");
    let cases = doc["v1_visible"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let obj = &c["obj"];
        let v1_line = c["v1"].as_str().unwrap();
        let mut sv = vec![0u8; v1_line.len()];
        let plain = msg::parse(v1_line.as_bytes(), &mut sv).unwrap();
        // Core's v1 emitter writes the reference's line back, byte for byte.
        let mut out = vec![0u8; plain.line_len()];
        let n = plain.emit_line(&mut out).unwrap();
        assert_eq!(&out[..n - 1], v1_line.as_bytes(), "{name}");
        let mut s = vec![0u8; c["compact"].as_str().unwrap().len()];
        assert_eq!(
            msg::parse(c["compact"].as_str().unwrap().as_bytes(), &mut s),
            Ok(plain),
            "{name}"
        );
        // Python's style lists the users in another (sorted) order: the same users.
        let python = c["python"].as_str().unwrap();
        let mut s = vec![0u8; python.len()];
        let other = msg::parse(python.as_bytes(), &mut s).unwrap();
        assert_eq!(v1_sorted(&other), v1_sorted(&plain), "{name}: {python}");
        let compact = c["compact"].as_str().unwrap();
        let line = compact.as_bytes();
        let mut out = vec![0u8; compact.len() + 1];
        let mut small = vec![0x11u8; compact.len()];
        match plain {
            Message::Hello { user, key, .. } => {
                let v2 = json::parse_hello_v2(line).unwrap().unwrap();
                check_hello_v2(&v2, &obj["v2"]);
                assert_eq!(
                    json::emit_hello_line(user, &key, &v2, &mut out),
                    Ok(out.len())
                );
                assert_eq!(
                    json::emit_hello_line(user, &key, &v2, &mut small),
                    Err(BufferTooSmall { needed: out.len() })
                );
                // A v1 hello has no v2 part.
                assert_eq!(json::parse_hello_v2(v1_line.as_bytes()), Ok(None));
            }
            Message::Welcome { users } | Message::Users { users } => {
                let kind = if obj["type"] == "welcome" {
                    DirectoryKind::Welcome
                } else {
                    DirectoryKind::Users
                };
                let mut scratch = vec![0u8; line.len()];
                let dir = json::parse_directory_v2(line, &mut scratch)
                    .unwrap()
                    .unwrap();
                assert_eq!(dir.seq, num(&obj["v2"]["seq"]));
                let want = obj["v2"]["users"].as_object().unwrap();
                assert_eq!(dir.users.len(), want.len());
                assert_eq!(dir.users.is_empty(), want.is_empty());
                for (n, v) in dir.users.iter() {
                    check_hello_v2(&v, &want[n]);
                    let peer = dir.peer(&users, n).unwrap();
                    assert_eq!(peer.keys.x, *users.get(n).unwrap());
                    peer.verify().expect("the generator's binding verifies");
                }
                // carol is a v1 user: listed by v1, absent from v2.
                if !want.is_empty() {
                    assert!(users.get("carol").is_some() && dir.peer(&users, "carol").is_none());
                }
                assert!(dir.peer(&users, "nobody").is_none());
                assert_eq!(
                    json::emit_directory_line(kind, &users, &dir, &mut out),
                    Ok(out.len())
                );
                assert_eq!(
                    json::emit_directory_line(kind, &users, &dir, &mut small),
                    Err(BufferTooSmall { needed: out.len() })
                );
                let mut s = [0u8; 64];
                assert_eq!(
                    json::parse_directory_v2(v1_line.as_bytes(), &mut s),
                    Ok(None)
                );
            }
            Message::Error { .. } => {
                let mut s = vec![0u8; line.len()];
                let m = json::parse(line, &mut s).unwrap();
                check_fields(&m, obj);
                assert_eq!(m.emit_line(&mut out), Ok(out.len()));
                let mut s = vec![0u8; v1_line.len()];
                assert_eq!(
                    json::parse(v1_line.as_bytes(), &mut s),
                    Err(V2ParseError::UnknownType)
                );
            }
            Message::Relay(r) => {
                let id = json::parse_relay_id(line).unwrap().unwrap();
                assert_eq!(id, num(&obj["id"]));
                let nonce: [u8; 12] = b64(&obj["nonce"]);
                let cipher = STANDARD.decode(r.cipher).unwrap();
                let from = r.from.unwrap();
                assert_eq!(
                    json::emit_relay_line_with_id(r.to, from, &nonce, &cipher, id, &mut out),
                    Ok(out.len())
                );
                assert_eq!(
                    json::emit_relay_line_with_id(r.to, from, &nonce, &cipher, id, &mut small),
                    Err(BufferTooSmall { needed: out.len() })
                );
                assert_eq!(json::parse_relay_id(v1_line.as_bytes()), Ok(None));
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(&out[..out.len() - 1], line, "{name}: core's v2 emitter");
        assert_eq!(out[out.len() - 1], b'\n');
        assert!(
            small.iter().all(|&b| b == 0x11),
            "{name}: written on failure"
        );
    }
}

#[test]
fn malformed_and_hostile_lines_get_the_expected_error() {
    let doc = load("json");
    for c in doc["invalid"].as_array().unwrap() {
        let line = c["line"].as_str().unwrap();
        let want = c["error"].as_str().unwrap();
        let mut s = vec![0u8; line.len()];
        let got = match c["fn"].as_str().unwrap() {
            "parse" => json::parse(line.as_bytes(), &mut s).map(|_| ()),
            "directory" => json::parse_directory_v2(line.as_bytes(), &mut s).map(|_| ()),
            "relay_id" => json::parse_relay_id(line.as_bytes()).map(|_| ()),
            "hello" => json::parse_hello_v2(line.as_bytes()).map(|_| ()),
            f => panic!("{f}"),
        };
        assert_eq!(format!("{:?}", got.unwrap_err()), want, "{line}");
    }
}

#[test]
fn scratch_and_type_errors() {
    // Escaped strings need scratch; a short scratch is reported, not a panic.
    let line = br#"{"type":"error","code":"no_prekeys","user":"b\u006fb","text":"n\u006f"}"#;
    let mut s = [0u8; 3];
    assert_eq!(
        json::parse(line, &mut s),
        Err(V2ParseError::ScratchTooSmall { needed: line.len() })
    );
    let mut s = [0u8; 4];
    assert_eq!(
        json::parse(line, &mut s),
        Err(V2ParseError::ScratchTooSmall { needed: line.len() })
    );
    // "bob" and "no": five bytes are enough.
    let mut s = [0u8; 5];
    assert!(matches!(
        json::parse(line, &mut s),
        Ok(V2Message::Error {
            user: Some("bob"),
            text: "no",
            ..
        })
    ));
    let dir = br#"{"type":"users","v2":{"seq":"0","users":{"\u0061lice":{"caps":"v2","ed":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","bind":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="}}}}"#;
    for short in [0, 1, 2, 6, 7, 101, 102] {
        let mut s = vec![0u8; short];
        assert_eq!(
            json::parse_directory_v2(dir, &mut s),
            Err(V2ParseError::ScratchTooSmall { needed: dir.len() }),
            "{short}"
        );
    }
    let mut s = vec![0u8; 2 + 5 + 32 + 64 + 2 + 2];
    let d = json::parse_directory_v2(dir, &mut s).unwrap().unwrap();
    assert_eq!(
        d.users.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        ["alice"]
    );
    assert_eq!(d.users.get("alice").unwrap().caps, "v2");
    // The type of the v1 line carrying the addition is checked.
    let mut s = [0u8; 64];
    for (line, want) in [
        (
            &br#"{"type":"hello","v2":{}}"#[..],
            V2ParseError::UnknownType,
        ),
        (br#"{"v2":{}}"#, V2ParseError::MissingType),
        (br#"{"type":7,"v2":{}}"#, V2ParseError::WrongType("type")),
        (
            br#"{"type":"users","v2":[]}"#,
            V2ParseError::WrongType("v2"),
        ),
        (
            br#"{"type":"users","v2":{"seq":1,"users":{}}}"#,
            V2ParseError::WrongType("seq"),
        ),
        (
            br#"{"type":"users","v2":{"seq":"1"}}"#,
            V2ParseError::MissingField("users"),
        ),
    ] {
        assert_eq!(
            json::parse_directory_v2(line, &mut s),
            Err(want),
            "{line:?}"
        );
    }
    assert_eq!(
        json::parse_relay_id(br#"{"type":"relay2","id":"1"}"#),
        Err(V2ParseError::UnknownType)
    );
    assert_eq!(
        json::parse_relay_id(br#"{"id":"1"}"#),
        Err(V2ParseError::MissingType)
    );
    assert_eq!(
        json::parse_relay_id(b"{\"type\":\"relay\",\"id\":\"\xc0\"}"),
        Err(V2ParseError::NotUtf8)
    );
    assert_eq!(
        json::parse_relay_id(br#"{"type":"relay","id":"4294967295"}"#),
        Ok(Some(u32::MAX))
    );
}

#[test]
fn opk_lists_are_bounded_and_unique() {
    let mut buf = [0u8; 2048];
    let keys: Vec<(u32, [u8; 32])> = (0..=MAX_OPKS as u32)
        .map(|i| (i * 1000, [i as u8; 32]))
        .collect();
    assert_eq!(OpkList::encode(&keys, &mut buf), Err(OpkListError::TooMany));
    assert_eq!(
        OpkList::encode(&[(1, [0; 32]), (2, [0; 32]), (1, [1; 32])], &mut buf),
        Err(OpkListError::DuplicateId)
    );
    let l = OpkList::encode(&keys[..MAX_OPKS], &mut buf).unwrap();
    assert_eq!(l.len(), MAX_OPKS);
    assert_eq!(l.iter().collect::<Vec<_>>(), keys[..MAX_OPKS]);
    let text = l.as_str().to_owned();
    assert_eq!(text.split(' ').count(), MAX_OPKS);
    assert!(
        text.starts_with("0:AAAA") && text.contains(" 15000:Dw8P"),
        "{text}"
    );
    let mut small = [0x33u8; 10];
    assert_eq!(
        OpkList::encode(&keys[..1], &mut small),
        Err(OpkListError::BufferTooSmall { needed: 46 })
    );
    assert_eq!(small, [0x33; 10]);
    assert_eq!(
        format!("{:?}", OpkList::encode(&keys[1..3], &mut buf).unwrap()),
        "[1000, 2000]"
    );
    assert!(OpkList::EMPTY.is_empty());
    assert_eq!(OpkList::EMPTY.len(), 0);
    assert_eq!(OpkList::encode(&[], &mut []), Ok(OpkList::EMPTY));
    for e in [
        OpkListError::TooMany,
        OpkListError::DuplicateId,
        OpkListError::BufferTooSmall { needed: 3 },
    ] {
        assert!(!e.to_string().is_empty());
    }
    // "opks":"" is no one-time prekeys, like no field at all.
    let line = r#"{"type":"prekeys","id":"1","spk_id":"2","spk":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","spk_sig":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==","opks":""}"#;
    assert!(parse_owned(line).unwrap().contains("opks: []"));
}

#[test]
fn v2_user_lists_refuse_duplicates_and_report_sizes() {
    let a = HelloV2 {
        caps: "v2",
        ed: [1; 32],
        bind: [2; 64],
    };
    let b = HelloV2 {
        caps: "v2 sas",
        ed: [3; 32],
        bind: [4; 64],
    };
    let need =
        json::packed_v2_entry_len("alice", "v2") + json::packed_v2_entry_len("bob", "v2 sas");
    assert_eq!(need, 2 + 5 + 96 + 2 + 2 + 2 + 3 + 96 + 2 + 6);
    let mut buf = vec![0u8; need];
    let list = V2UserList::pack([("alice", &a), ("bob", &b)], &mut buf).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list.get("bob"), Some(b));
    assert_eq!(list.get("alice"), Some(a));
    assert_eq!(list.get("carol"), None);
    assert_eq!(format!("{list:?}"), r#"["alice", "bob"]"#);
    let mut short = vec![0u8; need - 1];
    assert_eq!(
        V2UserList::pack([("alice", &a), ("bob", &b)], &mut short),
        Err(V2PackError::BufferTooSmall { needed: need })
    );
    let mut buf2 = vec![0u8; 2 * need];
    assert_eq!(
        V2UserList::pack([("alice", &a), ("bob", &b), ("alice", &b)], &mut buf2),
        Err(V2PackError::Duplicate)
    );
    assert!(V2UserList::EMPTY.is_empty() && V2UserList::EMPTY.iter().next().is_none());
    for e in [
        V2PackError::Duplicate,
        V2PackError::BufferTooSmall { needed: 1 },
    ] {
        assert!(!e.to_string().is_empty());
    }
    // A directory line with them: v1 sees only its users.
    let xs = [[7u8; 32], [8u8; 32], [9u8; 32]];
    let mut ubuf = [0u8; 256];
    let users = UserList::pack(
        [("alice", &xs[0]), ("bob", &xs[1]), ("carol", &xs[2])],
        &mut ubuf,
    )
    .unwrap();
    let dir = DirectoryV2 {
        seq: 5,
        users: list,
    };
    let mut out = [0u8; 1024];
    let n = json::emit_directory_line(DirectoryKind::Users, &users, &dir, &mut out).unwrap();
    let mut s = [0u8; 1024];
    assert_eq!(
        msg::parse(&out[..n - 1], &mut s),
        Ok(Message::Users { users })
    );
    let mut s = [0u8; 1024];
    let back = json::parse_directory_v2(&out[..n - 1], &mut s)
        .unwrap()
        .unwrap();
    assert_eq!(back, dir);
    assert_eq!(
        back.peer(&users, "bob"),
        Some(PeerIdentity {
            name: "bob",
            keys: PublicIdentity { x: xs[1], ed: b.ed },
            bind: b.bind,
        })
    );
}

#[test]
fn errors_display_something_for_every_variant() {
    for e in [
        V2ParseError::NotUtf8,
        V2ParseError::InvalidJson {
            offset: 3,
            what: "x",
        },
        V2ParseError::MissingType,
        V2ParseError::UnknownType,
        V2ParseError::MissingField("f"),
        V2ParseError::WrongType("f"),
        V2ParseError::BadBase64("f"),
        V2ParseError::BadLength { field: "f", len: 2 },
        V2ParseError::BadNumber("f"),
        V2ParseError::TooMany("f"),
        V2ParseError::Duplicate("f"),
        V2ParseError::ScratchTooSmall { needed: 9 },
    ] {
        let s = e.to_string();
        assert!(s.len() > 8, "{e:?}: {s}");
    }
    assert!(V2ParseError::TooMany("opks").to_string().contains("opks"));
    assert!(
        V2ParseError::Duplicate("users")
            .to_string()
            .contains("users")
    );
}

// ---- properties ----

/// An owned message, from which a borrowed [`V2Message`] is built.
#[derive(Debug, Clone)]
enum Owned {
    Challenge([u8; 32], [u8; 32], String),
    Proof([u8; 32], [u8; 32]),
    Relay2(Option<String>, Option<String>, Option<u32>, String),
    Ack(u32, u8),
    Ping(u32),
    Pong(u32),
    BundleReq(String),
    Prekeys(u32, u32, [u8; 32], [u8; 32], Vec<(u32, [u8; 32])>),
    Bundle(String, [u8; 32], u32, Option<(u32, [u8; 32])>),
    PrekeysLow(u32),
    Dir(u32, u8, String, [u8; 32], Option<(String, [u8; 32])>),
    Error(Option<String>, Option<String>, String),
}

const CODES: [ErrorCode<'static>; 9] = [
    ErrorCode::BadHello,
    ErrorCode::BadProof,
    ErrorCode::ProofTimeout,
    ErrorCode::NameTaken,
    ErrorCode::ProofRequired,
    ErrorCode::NoPrekeys,
    ErrorCode::UnknownUser,
    ErrorCode::BadMessage,
    ErrorCode::TooLarge,
];

fn sig(a: &[u8; 32]) -> [u8; 64] {
    let mut s = [0u8; 64];
    s[..32].copy_from_slice(a);
    s[32..].copy_from_slice(&a.map(|b| !b));
    s
}

fn with_message<R>(o: &Owned, f: impl FnOnce(V2Message<'_>) -> R) -> R {
    let mut buf = [0u8; 1024];
    let m = match o {
        Owned::Challenge(nonce, eph, caps) => V2Message::Challenge {
            nonce: *nonce,
            eph: *eph,
            caps,
        },
        Owned::Proof(a, mac) => V2Message::Proof {
            sig: sig(a),
            mac: *mac,
        },
        Owned::Relay2(to, from, id, body) => V2Message::Relay2 {
            to: to.as_deref(),
            from: from.as_deref(),
            id: *id,
            body,
        },
        Owned::Ack(id, st) => V2Message::Ack {
            id: *id,
            status: [
                AckStatus::Forwarded,
                AckStatus::NotConnected,
                AckStatus::Stored,
                AckStatus::Refused,
                AckStatus::Full,
            ][usize::from(*st) % 5],
        },
        Owned::Ping(id) => V2Message::Ping { id: *id },
        Owned::Pong(id) => V2Message::Pong { id: *id },
        Owned::BundleReq(user) => V2Message::BundleReq { user },
        Owned::Prekeys(id, spk_id, spk, s, opks) => V2Message::Prekeys {
            id: *id,
            spk_id: *spk_id,
            spk: *spk,
            spk_sig: sig(s),
            opks: OpkList::encode(opks, &mut buf).unwrap(),
        },
        Owned::Bundle(user, k, spk_id, opk) => V2Message::Bundle(Bundle {
            peer: PeerIdentity {
                name: user,
                keys: PublicIdentity {
                    x: *k,
                    ed: k.map(|b| b ^ 1),
                },
                bind: sig(k),
            },
            spk_id: *spk_id,
            spk: k.map(|b| b ^ 2),
            spk_sig: sig(&k.map(|b| b ^ 3)),
            opk: *opk,
        }),
        Owned::PrekeysLow(left) => V2Message::PrekeysLow { left: *left },
        Owned::Dir(seq, op, user, x, v2) => {
            let v2 = v2.as_ref().map(|(caps, ed)| HelloV2 {
                caps,
                ed: *ed,
                bind: sig(ed),
            });
            let e = DirEntry { user, x: *x, v2 };
            V2Message::Dir {
                seq: *seq,
                delta: match op % 3 {
                    0 => DirDelta::Join(e),
                    1 => DirDelta::Key(e),
                    _ => DirDelta::Leave { user },
                },
            }
        }
        Owned::Error(code, user, text) => V2Message::Error {
            code: match code {
                Some(c) => ErrorCode::Other(c),
                None => CODES[text.len() % CODES.len()],
            },
            user: user.as_deref(),
            text,
        },
    };
    f(m)
}

fn caps() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z0-9-]{1,16}", 1..=16).prop_map(|w| w.join(" "))
}

fn key() -> impl Strategy<Value = [u8; 32]> {
    prop::array::uniform32(any::<u8>())
}

fn owned() -> impl Strategy<Value = Owned> {
    // Any characters, control characters, quotes and backslashes included.
    let name = "(?s).{0,12}";
    prop_oneof![
        (key(), key(), name).prop_map(|(a, b, c)| Owned::Challenge(a, b, c)),
        (key(), key()).prop_map(|(a, b)| Owned::Proof(a, b)),
        (
            prop::option::of(name),
            prop::option::of(name),
            prop::option::of(any::<u32>()),
            "[A-Za-z0-9+/=]{0,80}"
        )
            .prop_map(|(a, b, c, d)| Owned::Relay2(a, b, c, d)),
        (any::<u32>(), any::<u8>()).prop_map(|(a, b)| Owned::Ack(a, b)),
        any::<u32>().prop_map(Owned::Ping),
        any::<u32>().prop_map(Owned::Pong),
        name.prop_map(Owned::BundleReq),
        (
            any::<u32>(),
            any::<u32>(),
            key(),
            key(),
            prop::collection::hash_map(any::<u32>(), key(), 0..=MAX_OPKS)
        )
            .prop_map(|(a, b, c, d, m)| Owned::Prekeys(
                a,
                b,
                c,
                d,
                m.into_iter().collect()
            )),
        (
            name,
            key(),
            any::<u32>(),
            prop::option::of((any::<u32>(), key()))
        )
            .prop_map(|(a, b, c, d)| Owned::Bundle(a, b, c, d)),
        any::<u32>().prop_map(Owned::PrekeysLow),
        (
            any::<u32>(),
            any::<u8>(),
            name,
            key(),
            prop::option::of((caps(), key()))
        )
            .prop_map(|(a, b, c, d, e)| Owned::Dir(a, b, c, d, e)),
        (
            prop::option::of(
                "[a-z0-9_]{1,32}"
                    .prop_filter("a known code", |c| CODES.iter().all(|k| k.as_str() != c))
            ),
            prop::option::of(name),
            name
        )
            .prop_map(|(a, b, c)| Owned::Error(a, b, c)),
    ]
}

/// Valid lines to mutate: the vectors' lines.
fn vector_lines() -> Vec<String> {
    let doc = load("json");
    let mut lines = Vec::new();
    for group in ["messages", "v1_visible"] {
        for c in doc[group].as_array().unwrap() {
            lines.push(c["compact"].as_str().unwrap().to_owned());
            lines.push(c["python"].as_str().unwrap().to_owned());
        }
    }
    for c in doc["invalid"].as_array().unwrap() {
        lines.push(c["line"].as_str().unwrap().to_owned());
    }
    lines
}

/// Every reader on `line`, with a scratch as long as the line and a tiny one: no panic,
/// and whatever parses re-emits to a line that parses to the same thing.
fn every_reader(line: &[u8]) {
    let mut scratch = vec![0u8; line.len()];
    if let Ok(m) = json::parse(line, &mut scratch) {
        let mut out = vec![0u8; m.line_len()];
        let n = m.emit_line(&mut out).unwrap();
        let mut s2 = vec![0u8; n];
        assert_eq!(json::parse(&out[..n - 1], &mut s2), Ok(m));
    }
    let mut tiny = [0u8; 3];
    let _ = json::parse(line, &mut tiny);
    if let Ok(Some(h)) = json::parse_hello_v2(line) {
        let mut out = vec![0u8; 1024];
        let n = json::emit_hello_line("u", &[1; 32], &h, &mut out).unwrap();
        assert_eq!(json::parse_hello_v2(&out[..n - 1]), Ok(Some(h)));
    }
    let mut scratch = vec![0u8; line.len()];
    if let Ok(Some(d)) = json::parse_directory_v2(line, &mut scratch) {
        let mut out = vec![0u8; line.len() * 2 + 64];
        let n = json::emit_directory_line(DirectoryKind::Welcome, &UserList::EMPTY, &d, &mut out)
            .unwrap();
        let mut s2 = vec![0u8; n];
        assert_eq!(
            json::parse_directory_v2(&out[..n - 1], &mut s2),
            Ok(Some(d))
        );
    }
    let _ = json::parse_directory_v2(line, &mut tiny);
    let _ = json::parse_relay_id(line);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_message_round_trips(o in owned()) {
        with_message(&o, |m| {
            let n = m.line_len();
            let mut out = vec![0u8; n + 7];
            prop_assert_eq!(m.emit_line(&mut out), Ok(n));
            prop_assert_eq!(out[n - 1], b'\n');
            prop_assert!(!out[..n - 1].contains(&b'\n'), "one line");
            // A scratch as long as the line is always enough.
            let mut scratch = vec![0u8; n - 1];
            prop_assert_eq!(json::parse(&out[..n - 1], &mut scratch), Ok(m));
            let mut short = vec![0xa5u8; n - 1];
            prop_assert_eq!(m.emit_line(&mut short), Err(BufferTooSmall { needed: n }));
            prop_assert!(short.iter().all(|&b| b == 0xa5));
            // v1 never mistakes a v2 message for one of its own, except error's text.
            let mut s = vec![0u8; n];
            match msg::parse(&out[..n - 1], &mut s) {
                Ok(Message::Error { text }) => {
                    let same = matches!(m, V2Message::Error { text: t, .. } if t == text);
                    prop_assert!(same, "v1 read an error text the message does not have");
                }
                other => prop_assert!(other.is_err(), "{:?}", other),
            }
            Ok(())
        })?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..400)) {
        every_reader(&data);
    }

    #[test]
    fn mutated_vector_lines_never_panic(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let lines = vector_lines();
        let mut line = lines[pick.index(lines.len())].clone().into_bytes();
        for (at, byte, kind) in edits {
            if line.is_empty() {
                break;
            }
            let i = at.index(line.len());
            match kind {
                0 => line[i] = byte,
                1 => line.truncate(i),
                _ => line.insert(i, byte),
            }
        }
        every_reader(&line);
    }

    #[test]
    fn directory_lines_read_as_plain_v1(
        users in prop::collection::btree_map("[^\\s]{1,8}", key(), 0..8),
        v2 in prop::collection::vec((caps(), key()), 0..8),
        seq in any::<u32>(),
        welcome in any::<bool>(),
    ) {
        let mut ubuf = vec![0u8; 4096];
        let list = UserList::pack(users.iter().map(|(n, k)| (n.as_str(), k)), &mut ubuf).unwrap();
        let infos: Vec<(String, HelloV2<'_>)> = users
            .keys()
            .zip(&v2)
            .map(|(n, (c, ed))| (n.clone(), HelloV2 { caps: c, ed: *ed, bind: sig(ed) }))
            .collect();
        let mut vbuf = vec![0u8; 8192];
        let v2users = V2UserList::pack(infos.iter().map(|(n, h)| (n.as_str(), h)), &mut vbuf).unwrap();
        let dir = DirectoryV2 { seq, users: v2users };
        let (kind, plain) = if welcome {
            (DirectoryKind::Welcome, Message::Welcome { users: list })
        } else {
            (DirectoryKind::Users, Message::Users { users: list })
        };
        let mut out = vec![0u8; 16384];
        let n = json::emit_directory_line(kind, &list, &dir, &mut out).unwrap();
        let mut s = vec![0u8; n];
        prop_assert_eq!(msg::parse(&out[..n - 1], &mut s), Ok(plain));
        let mut s = vec![0u8; n];
        prop_assert_eq!(json::parse_directory_v2(&out[..n - 1], &mut s), Ok(Some(dir)));
        for (name, info) in &infos {
            let peer = dir.peer(&list, name).unwrap();
            prop_assert_eq!(peer.keys, PublicIdentity { x: users[name], ed: info.ed });
        }
    }
}

#[test]
fn deep_and_long_lines_are_refused_cleanly() {
    let deep = format!(
        r#"{{"type":"dir","seq":"1","op":"join","user":"x","pub":"AAAA","v2":{}{}}}"#,
        "{\"a\":".repeat(40),
        "}".repeat(40)
    );
    let mut s = vec![0u8; deep.len()];
    assert!(matches!(
        json::parse(deep.as_bytes(), &mut s),
        Err(V2ParseError::InvalidJson { .. })
    ));
    let long_caps = format!(
        r#"{{"type":"hello","v2":{{"caps":"{}","ed":"","bind":""}}}}"#,
        ["v2"; 17].join(" ")
    );
    assert_eq!(
        json::parse_hello_v2(long_caps.as_bytes()),
        Err(V2ParseError::WrongType("caps"))
    );
    let long_word = r#"{"type":"hello","v2":{"caps":"abcdefghijklmnopq","ed":"","bind":""}}"#;
    assert_eq!(
        json::parse_hello_v2(long_word.as_bytes()),
        Err(V2ParseError::WrongType("caps"))
    );
    let ok16 = format!(
        r#"{{"type":"hello","v2":{{"caps":"{} abcdefghijklmnop","ed":"{}","bind":"{}"}}}}"#,
        ["v2"; 15].join(" "),
        STANDARD.encode([0u8; 32]),
        STANDARD.encode([0u8; 64])
    );
    assert!(
        json::parse_hello_v2(ok16.as_bytes())
            .unwrap()
            .unwrap()
            .has_cap("abcdefghijklmnop")
    );
    let huge_key = format!(
        r#"{{"type":"bundle_req","user":"{}"}}"#,
        "A".repeat(100_000)
    );
    let mut s = vec![0u8; huge_key.len()];
    assert!(matches!(
        json::parse(huge_key.as_bytes(), &mut s),
        Ok(V2Message::BundleReq { user }) if user.len() == 100_000
    ));
    let huge_b64 = format!(r#"{{"type":"prekeys_low","left":"{}"}}"#, "9".repeat(11));
    let mut s = vec![0u8; huge_b64.len()];
    assert_eq!(
        json::parse(huge_b64.as_bytes(), &mut s),
        Err(V2ParseError::BadNumber("left"))
    );
    let big_spk = format!(
        r#"{{"type":"prekeys","id":"1","spk_id":"1","spk":"{}","spk_sig":""}}"#,
        "A".repeat(4000)
    );
    let mut s = vec![0u8; big_spk.len()];
    assert_eq!(
        json::parse(big_spk.as_bytes(), &mut s),
        Err(V2ParseError::BadLength {
            field: "spk",
            len: 3000
        })
    );
}
