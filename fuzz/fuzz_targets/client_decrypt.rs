//! The client's successful-decrypt path: fuzzer text (split at NUL bytes) sealed under
//! the key bob and alice share, each with its own nonce, relayed to alice's chat.
//! Invariants: every relay shows a line (nothing lost silently); a UTF-8 text that fits
//! shows as a message from bob, whose rendering has no hidden character and, for text
//! without control or format characters, shows the text exactly; a text that is not
//! UTF-8 never shows as a message.
#![no_main]

use base64ct::{Base64, Encoding};
use libfuzzer_sys::fuzz_target;
use seguro_core::chat::escape::is_hidden;
use seguro_core::chat::{Chat, Kind, Line, RecentKeys};
use seguro_core::client::{Client, Event};
use seguro_core::e2ee::KeyPair;

/// Most cipher bytes a message may have (the longest text is 16 bytes shorter).
const MSG: usize = 256;
type FuzzChat = Chat<RecentKeys<4>, 4, MSG, 2>;

fuzz_target!(|data: &[u8]| {
    let alice = KeyPair::from_secret([7; 32]);
    let bob = KeyPair::from_secret([9; 32]);
    let shared = bob.peer_key(&alice.public()).unwrap();
    let client = Client::new("alice", KeyPair::from_secret([7; 32])).unwrap();
    let mut c: FuzzChat = Chat::new(client, RecentKeys::new());
    let mut scratch = vec![0u8; 4096];
    let welcome = format!(
        r#"{{"type":"welcome","users":{{"alice":"{}","bob":"{}"}}}}"#,
        Base64::encode_string(&alice.public()),
        Base64::encode_string(&bob.public())
    );
    c.handle_line(welcome.as_bytes(), &mut scratch, 0);
    while c.poll_line().is_some() {}
    for (i, text) in data.split(|&b| b == 0).enumerate().take(16) {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let mut sealed = vec![0u8; text.len() + 16];
        let n = shared.seal_with_nonce(&nonce, text, &mut sealed).unwrap();
        let relay = format!(
            r#"{{"type":"relay","from":"bob","to":"alice","alg":"X25519+AESGCM","nonce":"{}","cipher":"{}"}}"#,
            Base64::encode_string(&nonce),
            Base64::encode_string(&sealed[..n])
        );
        c.handle_line(relay.as_bytes(), &mut scratch, i as u64 + 1);
        let fits = n <= MSG && relay.len() <= scratch.len();
        let utf8 = std::str::from_utf8(text).ok();
        let mut shown = 0;
        let mut as_message = 0;
        while let Some(line) = c.poll_line() {
            shown += 1;
            let rendered = line.to_string();
            assert!(!rendered.chars().any(is_hidden), "{rendered:?}");
            if let Line::Received(Event::Message { from, text: got }) = line {
                as_message += 1;
                assert_eq!(from, "bob");
                assert_eq!(line.kind(), Kind::Message);
                let want = utf8.expect("only UTF-8 shows as a message");
                assert_eq!(got, want);
                if !want.chars().any(|ch| ch.is_control() || is_hidden(ch)) {
                    assert_eq!(rendered, format!("[bob] {want}"));
                }
            }
            assert!(shown < 16, "lines must drain");
        }
        assert!(shown >= 1, "relay {i} showed nothing");
        if fits && utf8.is_some() {
            assert_eq!(as_message, 1, "text {i} ({} bytes) not shown", text.len());
        }
    }
});
