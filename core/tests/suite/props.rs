//! Property tests of framing and messages: any chunking yields the same lines, overlong
//! lines are reported once, emit → parse round-trips any text, and no input panics.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use proptest::prelude::*;
use seguro_core::client::Client;
use seguro_core::frame::{FeedResult, LineAccumulator};
use seguro_core::msg::{self, Message, Relay, UserList};

const CAP: usize = 64;

#[derive(Debug, PartialEq)]
enum Item {
    Line(Vec<u8>),
    Overlong,
}

fn frame_all(data: &[u8], cuts: &[usize]) -> Vec<Item> {
    let mut acc = LineAccumulator::new([0u8; CAP]);
    let mut out = Vec::new();
    let mut rest = data;
    let mut cuts = cuts.iter().cycle();
    while !rest.is_empty() {
        let n = (*cuts.next().unwrap()).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut w = chunk;
        loop {
            match acc.feed(w) {
                FeedResult::Consumed => break,
                FeedResult::Line { line, remaining } => {
                    out.push(Item::Line(line.to_vec()));
                    w = remaining;
                }
                FeedResult::Overlong { remaining } => {
                    out.push(Item::Overlong);
                    w = remaining;
                }
            }
        }
    }
    out
}

/// What framing must produce, computed the obvious way.
fn model(data: &[u8]) -> Vec<Item> {
    let mut out = Vec::new();
    let mut parts: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let last = parts.pop().unwrap_or(&[]); // no '\n' after it: not a line yet
    for p in parts {
        if p.len() > CAP {
            out.push(Item::Overlong);
            continue;
        }
        let p = p.strip_suffix(b"\r").unwrap_or(p);
        if !p.is_empty() {
            out.push(Item::Line(p.to_vec()));
        }
    }
    if last.len() > CAP {
        out.push(Item::Overlong);
    }
    out
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,40}",
        "\\PC{0,20}",
        prop::collection::vec(any::<char>(), 0..20).prop_map(|v| v.into_iter().collect()),
    ]
}

proptest! {
    #[test]
    fn framing_is_independent_of_chunking(
        lines in prop::collection::vec(prop::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..100), 0..10),
        cuts in prop::collection::vec(1usize..50, 1..10),
    ) {
        let data: Vec<u8> = lines.concat();
        prop_assert_eq!(frame_all(&data, &cuts), model(&data));
        prop_assert_eq!(frame_all(&data, &[1]), model(&data));
    }

    #[test]
    fn chat_round_trips(t in text()) {
        let m = Message::Chat { text: &t };
        let mut out = vec![0u8; m.line_len()];
        let n = m.emit_line(&mut out).unwrap();
        // Our output is JSON that a standard decoder reads back to the same text.
        let v: serde_json::Value = serde_json::from_slice(&out[..n - 1]).unwrap();
        prop_assert_eq!(v["text"].as_str().unwrap(), t.as_str());
        let mut scratch = vec![0u8; n];
        prop_assert_eq!(msg::parse(&out[..n - 1], &mut scratch).unwrap(), m);
    }

    #[test]
    fn python_style_escapes_parse(t in text()) {
        // serde_json with ASCII-only output stands in for Python's ensure_ascii form.
        let line = format!("{{\"type\": \"server\", \"text\": {}}}", ascii_json(&t));
        let mut scratch = vec![0u8; line.len()];
        prop_assert_eq!(msg::parse(line.as_bytes(), &mut scratch).unwrap(), Message::Server { text: &t });
    }

    #[test]
    fn relay_and_users_round_trip(to in text(), from in text(), names in prop::collection::vec(text(), 0..5)) {
        let r = Message::Relay(Relay { to: &to, from: Some(&from), alg: Some(msg::ALG_V1), nonce: "AAAA", cipher: "QUJD" });
        let mut out = vec![0u8; r.line_len()];
        let n = r.emit_line(&mut out).unwrap();
        let mut scratch = vec![0u8; n];
        prop_assert_eq!(msg::parse(&out[..n - 1], &mut scratch).unwrap(), r);

        let keys: Vec<[u8; 32]> = (0..names.len()).map(|i| [i as u8; 32]).collect();
        let mut packed = vec![0u8; 4096];
        let list = UserList::pack(names.iter().map(String::as_str).zip(&keys), &mut packed).unwrap();
        let u = Message::Users { users: list };
        let mut out = vec![0u8; u.line_len()];
        let n = u.emit_line(&mut out).unwrap();
        let mut scratch = vec![0u8; n];
        let back = msg::parse(&out[..n - 1], &mut scratch).unwrap();
        let Message::Users { users } = back else { panic!() };
        let got: Vec<_> = users.iter().map(|(n, k)| (n.to_string(), *k)).collect();
        let want: Vec<_> = names.iter().cloned().zip(keys.iter().copied()).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut scratch = vec![0u8; data.len()];
        let _ = msg::parse(&data, &mut scratch);
        let mut small = [0u8; 8];
        let _ = msg::parse(&data, &mut small);
        let mut rng = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(1);
        let mut c: Client<4, 64, 1> = Client::new("a", seguro_core::e2ee::KeyPair::generate(&mut rng)).unwrap();
        let _ = c.handle_line(&data, &mut scratch);
        while c.poll_event().is_some() {}
    }

    #[test]
    fn chat_output_never_hides_characters(
        name in "\\PC{1,12}|[a\\]\\u{202e}\\u{200d}\\x1b\\n ]{1,8}",
        text in "\\PC{0,40}|[\\x00-\\x1f\\x7f-\\u{9f}\\u{200b}-\\u{200f}\\u{202a}-\\u{202e}\\u{2066}-\\u{2069}a\\]\\[ ]{0,20}",
        typed in "\\PC{0,30}",
    ) {
        use seguro_core::chat::{Chat, RecentKeys, escape::is_hidden};
        let mut rng = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(2);
        let client: Client<4, 128, 1> = Client::new("me", seguro_core::e2ee::KeyPair::generate(&mut rng)).unwrap();
        let mut chat = Chat::new(client, RecentKeys::<4>::new());
        let mut out = [0u8; 1024];
        while chat.poll_transmit(&mut out).unwrap().is_some() {}
        let key = [9u8; 32];
        let mut packed = [0u8; 512];
        let list = UserList::pack([(name.as_str(), &key)], &mut packed).unwrap();
        let lines = [
            Message::Welcome { users: list },
            Message::Server { text: &text },
            Message::Error { text: &text },
            Message::Relay(Relay { to: "me", from: Some(&name), alg: None, nonce: "AAAAAAAAAAAAAAAA", cipher: "QUJD" }),
            Message::Users { users: UserList::EMPTY },
        ];
        let mut shown = 0;
        for m in &lines {
            let mut buf = vec![0u8; m.line_len()];
            let n = m.emit_line(&mut buf).unwrap();
            let mut scratch = vec![0u8; n];
            chat.handle_line(&buf[..n - 1], &mut scratch, 0);
            while let Some(l) = chat.poll_line() {
                let r = l.to_string();
                prop_assert!(r.starts_with('['), "{:?}", r);
                prop_assert!(!r.chars().any(is_hidden), "{:?}", r);
                shown += 1;
                prop_assert!(shown < 64);
            }
        }
        let _ = chat.input(&typed, &mut rng);
        while let Some(l) = chat.poll_line() {
            prop_assert!(!l.to_string().chars().any(is_hidden));
        }
    }

    #[test]
    fn json_like_garbage_never_panics(s in "[{}\\[\\]\":,a-z0-9 \\\\u.+-]{0,80}") {
        let line = format!("{{\"type\":\"users\",\"users\":{s}}}");
        let mut scratch = vec![0u8; line.len()];
        let _ = msg::parse(line.as_bytes(), &mut scratch);
    }
}

fn ascii_json(s: &str) -> String {
    let mut out = String::from("\"");
    for u in s.encode_utf16() {
        match u {
            0x22 => out.push_str("\\\""),
            0x5c => out.push_str("\\\\"),
            0x20..=0x7e => out.push(u as u8 as char),
            _ => out.push_str(&format!("\\u{u:04x}")),
        }
    }
    out.push('"');
    out
}

#[test]
fn sizes_of_the_client_state() {
    use std::mem::size_of;
    let default = size_of::<Client>();
    let small = size_of::<Client<8, 272, 1>>();
    println!("size_of::<Client>() with default capacities = {default} bytes");
    println!("size_of::<Client<8, 272, 1>>() = {small} bytes");
    // Budget for the defaults documented in limits.rs: under 24 KiB.
    assert!(default < 24 * 1024, "{default}");
    assert!(small < default);
    let chat = size_of::<seguro_core::chat::Chat<seguro_core::chat::RecentKeys>>();
    println!("size_of::<Chat<RecentKeys>>() with default capacities = {chat} bytes");
    assert!(chat < default + 3 * 1024, "{chat}");
}
