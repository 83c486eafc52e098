//! The chat session alone, fed scripted server lines and typed lines: the wording, the
//! commands online and offline, the key memory and its verdicts, the escaping of
//! hostile names and texts, and the transmission queue.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use seguro_core::chat::{Action, Chat, KeyMemory, Kind, RecentKeys, Verdict};
use seguro_core::client::{Client, SendError, TransmitError};
use seguro_core::e2ee::KeyPair;
use seguro_core::fingerprint;
use seguro_core::frame::LineAccumulator;
use seguro_core::msg::{Message, UserList};

type TestChat<K = RecentKeys<8>> = Chat<K, 8, 256, 2>;

fn line(m: &Message<'_>) -> Vec<u8> {
    let mut out = vec![0u8; m.line_len()];
    let n = m.emit_line(&mut out).unwrap();
    out.truncate(n - 1);
    out
}

fn directory(welcome: bool, users: &[(&str, [u8; 32])]) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let list = UserList::pack(users.iter().map(|(n, k)| (*n, k)), &mut buf).unwrap();
    line(&if welcome {
        Message::Welcome { users: list }
    } else {
        Message::Users { users: list }
    })
}

fn fp(key: &[u8; 32]) -> String {
    fingerprint::short(key).as_str().to_owned()
}

struct Session<K: KeyMemory = RecentKeys<8>> {
    chat: TestChat<K>,
    rng: ChaCha20Rng,
    key: [u8; 32],
    sent: Vec<String>,
}

impl Session {
    fn new() -> Self {
        Self::with_memory(RecentKeys::new())
    }
}

impl<K: KeyMemory> Session<K> {
    fn with_memory(memory: K) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(42);
        let keys = KeyPair::generate(&mut rng);
        let key = keys.public();
        let mut chat = Chat::new(Client::new("alice", keys).unwrap(), memory);
        chat.set_server(&format_args!("{}:{}", "example.org", 5000));
        Self {
            chat,
            rng,
            key,
            sent: Vec::new(),
        }
    }

    /// Every line to show, rendered, with transmissions collected in `sent`.
    fn drain(&mut self) -> Vec<String> {
        let mut shown = Vec::new();
        while let Some(l) = self.chat.poll_line() {
            shown.push(l.to_string());
        }
        let mut buf = [0u8; 2048];
        while let Some(n) = self.chat.poll_transmit(&mut buf).unwrap() {
            self.sent
                .push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
        shown
    }

    fn server(&mut self, l: &[u8]) -> Vec<String> {
        let mut scratch = vec![0u8; l.len()];
        self.chat.handle_line(l, &mut scratch, 7);
        self.drain()
    }

    fn typed(&mut self, l: &str) -> (Action, Vec<String>) {
        let action = self.chat.input(l, &mut self.rng);
        (action, self.drain())
    }

    fn welcome(&mut self, others: &[(&str, [u8; 32])]) -> Vec<String> {
        let mut users = vec![("alice", self.key)];
        users.extend_from_slice(others);
        self.drain();
        self.server(&directory(true, &users))
    }
}

#[test]
fn first_welcome_is_a_listing_then_changes_are_joins_and_leaves() {
    let mut s = Session::new();
    assert_eq!(s.drain(), Vec::<String>::new());
    assert!(s.sent[0].starts_with("{\"type\":\"hello\",\"user\":\"alice\""));
    let bob = [2; 32];
    let me = fp(&s.key);
    assert_eq!(
        s.welcome(&[("bob", bob)]),
        [
            "[SYS] connected to example.org:5000 as alice".to_string(),
            "[SYS] users online (2):".into(),
            format!("[SYS]   alice  fp {me} (you)"),
            format!("[SYS]   bob  fp {}", fp(&bob)),
            format!(
                "[SYS] new contact bob, fp {}; to check it is really bob: /verify bob",
                fp(&bob)
            ),
        ]
    );
    let carol = [3; 32];
    let users = directory(false, &[("alice", s.key), ("carol", carol)]);
    assert_eq!(
        s.server(&users),
        [
            format!("[SYS] carol joined, fp {}", fp(&carol)),
            format!(
                "[SYS] new contact carol, fp {}; to check it is really carol: /verify carol",
                fp(&carol)
            ),
            "[SYS] bob left".to_string(),
        ]
    );
}

#[test]
fn a_user_back_with_another_key_is_a_loud_warning_and_with_the_same_key_is_not() {
    let mut s = Session::new();
    let (bob, bob2) = ([2; 32], [9; 32]);
    s.welcome(&[("bob", bob)]);
    let alone = directory(false, &[("alice", s.key)]);
    assert_eq!(s.server(&alone), ["[SYS] bob left"]);
    let back = directory(false, &[("alice", s.key), ("bob", bob)]);
    assert_eq!(
        s.server(&back),
        [format!("[SYS] bob joined, fp {}", fp(&bob))]
    );
    s.server(&alone);
    let other = directory(false, &[("alice", s.key), ("bob", bob2)]);
    let seen = s.server(&other);
    assert_eq!(seen[0], format!("[SYS] bob joined, fp {}", fp(&bob2)));
    assert_eq!(
        seen[1],
        format!(
            "[WARN] KEY CHANGED for bob: fp was {}, now {}. Either bob restarted their \
             client or someone (the server?) is substituting keys: verify the new \
             fingerprint with bob over another channel before trusting messages \
             (/verify bob).",
            fp(&bob),
            fp(&bob2)
        )
    );
    assert_eq!(seen.len(), 2);
    // Within one connection: the directory itself changes bob's key.
    let third = directory(false, &[("alice", s.key), ("bob", [7; 32])]);
    let seen = s.server(&third);
    assert_eq!(seen.len(), 1);
    assert!(seen[0].starts_with(&format!(
        "[WARN] KEY CHANGED for bob: fp was {}, now {}.",
        fp(&bob2),
        fp(&[7; 32])
    )));
}

/// A memory standing in for a persistent trust store: it knew bob (verified) and
/// carol before this session started.
struct Store;

impl KeyMemory for Store {
    fn observe(&mut self, name: &str, key: &[u8; 32], now: u64) -> Verdict {
        assert_eq!(now, 7, "the host's time reaches the memory");
        match (name, key) {
            ("bob", [1, ..]) => Verdict::Unchanged,
            ("bob", _) => Verdict::ChangedVerified { old: [1; 32] },
            ("carol", [3, ..]) => Verdict::Unchanged,
            ("carol", _) => Verdict::Changed { old: [3; 32] },
            _ => Verdict::FirstContact,
        }
    }

    fn last_key(&self, name: &str) -> Option<[u8; 32]> {
        (name == "zed").then_some([5; 32])
    }
}

#[test]
fn a_stored_verdict_warns_even_inside_the_first_listing() {
    let mut s = Session::with_memory(Store);
    let seen = s.welcome(&[("bob", [1; 32]), ("carol", [4; 32]), ("dave", [6; 32])]);
    assert_eq!(seen.len(), 2 + 4 + 1 + 1, "{seen:?}");
    assert!(
        seen[7].starts_with("[SYS] new contact dave, fp "),
        "{seen:?}"
    );
    assert!(seen[6].starts_with(&format!(
        "[WARN] KEY CHANGED for carol: fp was {}, now {}.",
        fp(&[3; 32]),
        fp(&[4; 32])
    )));
    // carol's key changes again within the connection: the warning names the key the
    // memory remembered ([3]), not the one the directory held a moment ago ([4]).
    let users = directory(
        false,
        &[
            ("alice", s.key),
            ("bob", [1; 32]),
            ("carol", [9; 32]),
            ("dave", [6; 32]),
        ],
    );
    s.chat.handle_line(&users, &mut vec![0u8; users.len()], 7);
    let mut lines = Vec::new();
    while let Some(l) = s.chat.poll_line() {
        lines.push(l.to_string());
    }
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!(
            "[WARN] KEY CHANGED for carol: fp was {}, now {}.",
            fp(&[3; 32]),
            fp(&[9; 32])
        )),
        "{lines:?}"
    );
    let users = directory(false, &[("alice", s.key), ("bob", [8; 32])]);
    let mut kinds = Vec::new();
    s.chat.handle_line(&users, &mut vec![0u8; users.len()], 7);
    while let Some(l) = s.chat.poll_line() {
        kinds.push((l.kind(), l.peer().map(str::to_owned), l.to_string()));
    }
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert_eq!(kinds[0].0, Kind::Alert);
    assert_eq!(kinds[0].1.as_deref(), Some("bob"));
    assert!(kinds[0].2.starts_with(&format!(
        "[WARN] KEY CHANGED for bob, WHOSE KEY YOU VERIFIED: fp was {}, now {}.",
        fp(&[1; 32]),
        fp(&[8; 32])
    )));
    assert_eq!(kinds[1].2, "[SYS] carol left");
    assert_eq!(kinds[2].2, "[SYS] dave left");
    // /fp falls back to the memory for someone not in the directory.
    let (_, seen) = s.typed("/fp zed");
    assert_eq!(seen[0], format!("[SYS] fp zed: {}", fp(&[5; 32])));
}

#[test]
fn a_server_that_lists_us_with_another_key_is_reported() {
    let mut s = Session::new();
    s.drain();
    let seen = s.server(&directory(true, &[("alice", [4; 32])]));
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(seen[3].starts_with(&format!(
        "[WARN] the server lists you (alice) with a key that is not yours: fp {}, yours is {}.",
        fp(&[4; 32]),
        fp(&s.key)
    )));
}

#[test]
fn local_commands_work_offline_and_messages_are_offline() {
    let mut s = Session::new();
    let (a, help) = s.typed("/help");
    assert_eq!(a, Action::Shown);
    assert_eq!(
        help,
        [
            "[SYS] commands:",
            "[SYS]   /list                 show who is connected, with fingerprints",
            "[SYS]   /fp <user>            show a user's key fingerprint and safety code",
            "[SYS]   /to <user> <text>     send an end-to-end encrypted message",
            "[SYS]   /verify <user> [yes]  compare your pair's safety code with <user>; 'yes' marks it verified",
            "[SYS]   /trust                list known contacts: verified, unverified, key changed",
            "[SYS]   /accept <user>        take a verified contact's new key without verifying it",
            "[SYS]   /server <text>        send text to the server (it answers)",
            "[SYS]   /help                 show this help",
            "[SYS]   /quit                 leave",
        ]
    );
    let (_, me) = s.typed("/fp alice");
    assert_eq!(me[0], format!("[SYS] fp alice: {}", fp(&s.key)));
    assert_eq!(
        me[1],
        format!(
            "[SYS] safety code alice: {}",
            fingerprint::safety_code(&s.key).as_str()
        )
    );
    assert_eq!(
        s.typed("/fp bob"),
        (
            Action::Shown,
            vec!["[ERROR] unknown user: bob (try /list)".to_string()]
        )
    );
    assert_eq!(s.typed("/to bob hi"), (Action::Offline, vec![]));
    assert_eq!(s.typed("/server hi"), (Action::Offline, vec![]));
    assert_eq!(s.typed("   "), (Action::Nothing, vec![]));
    assert_eq!(s.typed("/quit"), (Action::Quit, vec![]));

    // Connected, then the connection drops: the directory is kept for /list and /fp.
    s.welcome(&[("bob", [2; 32])]);
    s.chat.reset();
    s.sent.clear();
    assert!(!s.chat.is_registered());
    let (a, list) = s.typed("/list");
    assert_eq!(a, Action::Shown);
    assert_eq!(
        list[0],
        "[SYS] not connected; users online when last connected (2):"
    );
    assert_eq!(list.len(), 3);
    let (_, bob) = s.typed("/fp bob");
    assert_eq!(bob[0], format!("[SYS] fp bob: {}", fp(&[2; 32])));
    assert_eq!(s.typed("/to bob hi").0, Action::Offline);
    // After the reset the only transmission is the hello again.
    assert_eq!(s.sent.len(), 1, "{:?}", s.sent);
    assert!(s.sent[0].contains("\"hello\""));
}

#[test]
fn mistakes_get_their_usage_or_a_suggestion() {
    let mut s = Session::new();
    s.welcome(&[("bob", [2; 32])]);
    for (typed, shown) in [
        (
            "/lsit",
            "[ERROR] unknown command; did you mean /list? /help lists the commands",
        ),
        (
            "/frobnicate",
            "[ERROR] unknown command; /help lists the commands",
        ),
        ("/to bob", "[ERROR] usage: /to <user> <text>"),
        ("/list now", "[ERROR] usage: /list (it takes no arguments)"),
        (
            "hola",
            "[ERROR] commands start with '/': use /to <user> <text> to send a message, /help for more",
        ),
    ] {
        assert_eq!(
            s.typed(typed),
            (Action::Shown, vec![shown.to_string()]),
            "{typed}"
        );
    }
    let long = format!("/server {}", "x".repeat(300));
    assert_eq!(
        s.typed(&long).1,
        ["[ERROR] message too long (at most 256 bytes)"]
    );
}

#[test]
fn text_in_a_conversation_goes_to_its_peer() {
    let mut s = Session::new();
    s.welcome(&[("bob", [2; 32])]);
    s.sent.clear();
    assert_eq!(
        s.chat.input_in(Some("bob"), "hola bob", &mut s.rng),
        Action::Sent
    );
    s.drain();
    assert_eq!(s.sent.len(), 1);
    assert!(s.sent[0].starts_with("{\"type\":\"relay\",\"to\":\"bob\",\"from\":\"alice\""));
    // Commands still work there.
    assert_eq!(
        s.chat.input_in(Some("bob"), "/list", &mut s.rng),
        Action::Sent
    );
    assert_eq!(
        s.chat.input_in(Some("nadie"), "hi", &mut s.rng),
        Action::Shown
    );
    assert_eq!(s.drain(), ["[ERROR] unknown user: nadie (try /list)"]);
}

#[test]
fn hostile_names_and_texts_are_shown_escaped() {
    let mut s = Session::new();
    let evil = "eve\u{202e}bob";
    let seen = s.welcome(&[(evil, [2; 32]), ("SYS", [3; 32])]);
    assert_eq!(
        seen[2 + 1],
        format!("[SYS]   eve\\u{{202e}}bob  fp {}", fp(&[2; 32]))
    );
    assert_eq!(
        seen[2 + 2],
        format!("[SYS]   \\u{{53}}YS  fp {}", fp(&[3; 32]))
    );
    let text = "ok\n[SYS] forged \u{1b}[31m\u{2067}";
    assert_eq!(
        s.server(&line(&Message::Server { text })),
        ["[SERVER] ok\\u{a}[SYS] forged \\u{1b}[31m\\u{2067}"]
    );
    assert_eq!(
        s.server(&line(&Message::Error {
            text: "bad\r\u{200b}"
        })),
        ["[ERROR] bad\\u{d}\\u{200b}"]
    );
    // Every line shown starts with a known prefix and holds no hidden character.
    for l in seen {
        assert!(
            !l.chars().any(seguro_core::chat::escape::is_hidden),
            "{l:?}"
        );
    }
}

#[test]
fn bad_and_overlong_server_lines_are_reported_and_the_session_goes_on() {
    let mut s = Session::new();
    s.welcome(&[]);
    assert_eq!(
        s.server(b"not json"),
        ["[ERROR] bad line from the server: invalid JSON at byte 0: expected an object"]
    );
    let mut acc = LineAccumulator::new([0u8; 64]);
    let mut scratch = [0u8; 64];
    let mut input: &[u8] = &[b'x'; 100];
    let mut shown = Vec::new();
    while !input.is_empty() {
        input = s.chat.receive(&mut acc, input, &mut scratch, 0);
        shown.extend(s.drain());
    }
    let mut rest: &[u8] = b"yyy\n{\"type\":\"server\",\"text\":\"after\"}\n";
    while !rest.is_empty() {
        rest = s.chat.receive(&mut acc, rest, &mut scratch, 0);
        shown.extend(s.drain());
    }
    assert_eq!(
        shown,
        [
            "[ERROR] the server sent a line longer than 64 bytes; skipped",
            "[SERVER] after"
        ]
    );
}

#[test]
fn transmissions_are_queued_and_survive_a_small_buffer() {
    let mut s = Session::new();
    s.welcome(&[("bob", [2; 32])]);
    s.sent.clear();
    assert_eq!(s.chat.input("/to bob hola", &mut s.rng), Action::Sent);
    // A second message before draining is refused, not lost silently.
    assert_eq!(s.chat.input("/to bob again", &mut s.rng), Action::Shown);
    let shown: Vec<String> =
        std::iter::from_fn(|| s.chat.poll_line().map(|l| l.to_string())).collect();
    assert_eq!(
        shown,
        ["[ERROR] the previous line has not been transmitted yet"]
    );
    let mut small = [0u8; 16];
    assert!(matches!(
        s.chat.poll_transmit(&mut small),
        Err(TransmitError::BufferTooSmall { needed }) if needed > 16
    ));
    s.drain();
    assert_eq!(s.sent.len(), 1);
    assert!(s.sent[0].contains("\"to\":\"bob\""));
    assert!(!s.sent[0].contains("hola"));
    // Undrained lines are discarded by the next input.
    assert_eq!(s.chat.input("/help", &mut s.rng), Action::Shown);
    assert_eq!(s.chat.input("/fp alice", &mut s.rng), Action::Shown);
    assert_eq!(s.drain().len(), 2);
}

#[test]
fn errors_carry_what_the_host_needs() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut c: Client<4, 64, 1> = Client::new("alice", KeyPair::generate(&mut rng)).unwrap();
    assert_eq!(
        c.send_to("bob", "hi", &mut rng),
        Err(SendError::NotRegistered)
    );
    let mut out = [0u8; 512];
    c.poll_transmit(&mut out).unwrap();
    let k = c.public_key();
    let w = directory(true, &[("alice", k)]);
    c.handle_line(&w, &mut vec![0u8; w.len()]).unwrap();
    assert_eq!(
        c.send_to("nadie", "hi", &mut rng),
        Err(SendError::UnknownUser { user: "nadie" })
    );
    assert_eq!(
        c.send_to("alice", &"x".repeat(49), &mut rng),
        Err(SendError::TextTooLong { max: 48 })
    );
    let weak = directory(false, &[("alice", k), ("zero", [0; 32])]);
    c.handle_line(&weak, &mut vec![0u8; weak.len()]).unwrap();
    assert_eq!(
        c.send_to("zero", "hi", &mut rng),
        Err(SendError::WeakKey { user: "zero" })
    );
}

#[test]
fn a_relay_without_a_sender_belongs_to_no_conversation() {
    use seguro_core::chat::Line;
    use seguro_core::client::{Event, Undeliverable};
    let anon = Line::Received(Event::Undeliverable {
        from: "",
        reason: Undeliverable::NoSender,
    });
    assert_eq!(
        anon.peer(),
        None,
        "shown in the system pane, not in a tab named ''"
    );
    let bob = Line::Received(Event::Undeliverable {
        from: "bob",
        reason: Undeliverable::TooLong,
    });
    assert_eq!(bob.peer(), Some("bob"));
}

#[test]
fn after_the_help_lines_the_next_event_is_shown() {
    let mut s = Session::new();
    s.welcome(&[]);
    let (_, help) = s.typed("/help");
    assert!(help.len() > 4, "{help:?}");
    let bob = [2; 32];
    let join = format!("[SYS] bob joined, fp {}", fp(&bob));
    let shown = s.server(&directory(false, &[("alice", s.key), ("bob", bob)]));
    assert_eq!(shown[0], join, "{shown:?}");
    // An event not yet shown when /help is typed comes right after the help, in the
    // same drain.
    let carol = [3; 32];
    let users = directory(false, &[("alice", s.key), ("bob", bob), ("carol", carol)]);
    s.chat.handle_line(&users, &mut vec![0u8; users.len()], 8);
    let _ = s.chat.input("/help", &mut s.rng);
    let both = s.drain();
    assert_eq!(both[..help.len()], help[..], "{both:?}");
    assert_eq!(
        both.get(help.len()),
        Some(&format!("[SYS] carol joined, fp {}", fp(&carol))),
        "{both:?}"
    );
}
