//! Trust in the chat session: `/verify`, `/trust`, `/accept`, strict mode, and the
//! replay and reflection memories, with two real sessions exchanging real relays
//! through a scripted (lying) server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use seguro_core::chat::{Action, Chat, Contacts, KeyMemory, Kind, RecentKeys};
use seguro_core::client::Client;
use seguro_core::e2ee::KeyPair;
use seguro_core::fingerprint;
use seguro_core::msg::{Message, UserList};

type Mem = Contacts<8, 4, 4>;
type TestChat<K = Mem> = Chat<K, 8, 256, 2>;

fn directory(welcome: bool, users: &[(&str, [u8; 32])]) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let list = UserList::pack(users.iter().map(|(n, k)| (*n, k)), &mut buf).unwrap();
    let m = if welcome {
        Message::Welcome { users: list }
    } else {
        Message::Users { users: list }
    };
    let mut out = vec![0u8; m.line_len()];
    let n = m.emit_line(&mut out).unwrap();
    out.truncate(n - 1);
    out
}

fn fp(key: &[u8; 32]) -> String {
    fingerprint::short(key).as_str().to_owned()
}

struct Peer<K: KeyMemory = Mem> {
    chat: TestChat<K>,
    rng: ChaCha20Rng,
    key: [u8; 32],
    name: &'static str,
    sent: Vec<String>,
    now: u64,
}

impl<K: KeyMemory> Peer<K> {
    fn new(name: &'static str, seed: u64, memory: K) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let keys = KeyPair::generate(&mut rng);
        let key = keys.public();
        let mut chat = Chat::new(Client::new(name, keys).unwrap(), memory);
        chat.set_server(&"test");
        Self {
            chat,
            rng,
            key,
            name,
            sent: Vec::new(),
            now: 100,
        }
    }

    fn drain(&mut self) -> Vec<String> {
        let mut shown = Vec::new();
        while let Some(l) = self.chat.poll_line() {
            shown.push(l.to_string());
        }
        let mut buf = [0u8; 4096];
        while let Some(n) = self.chat.poll_transmit(&mut buf).unwrap() {
            self.sent
                .push(String::from_utf8(buf[..n - 1].to_vec()).unwrap());
        }
        shown
    }

    fn kinds(&mut self, l: &[u8]) -> Vec<(Kind, String)> {
        self.chat
            .handle_line(l, &mut vec![0u8; l.len().max(1)], self.now);
        let mut out = Vec::new();
        while let Some(l) = self.chat.poll_line() {
            out.push((l.kind(), l.to_string()));
        }
        out
    }

    fn server(&mut self, l: &[u8]) -> Vec<String> {
        let mut scratch = vec![0u8; l.len().max(1)];
        self.chat.handle_line(l, &mut scratch, self.now);
        self.drain()
    }

    fn typed(&mut self, l: &str) -> (Action, Vec<String>) {
        let a = self.chat.input(l, &mut self.rng);
        (a, self.drain())
    }

    /// Sends `text` to `to` and returns the relay as the server forwards it (with
    /// `from`), and as it was sent.
    fn relay_to(&mut self, to: &str, text: &str) -> (Vec<u8>, serde_json::Value) {
        self.sent.clear();
        let (a, shown) = self.typed(&format!("/to {to} {text}"));
        assert_eq!(a, Action::Sent, "{shown:?}");
        let mut v: serde_json::Value = serde_json::from_str(self.sent.last().unwrap()).unwrap();
        let sent = v.clone();
        v["from"] = self.name.into();
        (serde_json::to_vec(&v).unwrap(), sent)
    }
}

/// The same relay addressed back to its sender, as if `as_from` had sent it.
fn reflect(sent: &serde_json::Value, as_from: &str, to: &str) -> Vec<u8> {
    let mut v = sent.clone();
    v["to"] = to.into();
    v["from"] = as_from.into();
    serde_json::to_vec(&v).unwrap()
}

fn pair() -> (Peer, Peer) {
    let mut a = Peer::new("alice", 1, Mem::new());
    let mut b = Peer::new("bob", 2, Mem::new());
    let users = [("alice", a.key), ("bob", b.key)];
    a.drain();
    b.drain();
    a.server(&directory(true, &users));
    b.server(&directory(true, &users));
    (a, b)
}

#[test]
fn both_sides_see_the_same_pair_code_and_yes_marks_verified() {
    let (mut a, mut b) = pair();
    let (_, sa) = a.typed("/verify bob");
    let (_, sb) = b.typed("/verify alice");
    let code = fingerprint::pair_code(&a.key, &b.key);
    assert_eq!(sa[0], format!("[SYS] safety code of you and bob: {code}"));
    assert_eq!(sb[0], format!("[SYS] safety code of you and alice: {code}"));
    assert!(
        sa[1].contains("if they match, type /verify bob yes"),
        "{sa:?}"
    );
    assert_eq!(sa.len(), 2);
    let (_, t) = a.typed("/trust");
    assert_eq!(
        t,
        [
            "[SYS] contacts (1):".to_string(),
            format!("[SYS]   bob  fp {}  not verified", fp(&b.key)),
        ]
    );
    let (_, v) = a.typed("/verify bob yes");
    assert_eq!(
        v,
        [format!(
            "[SYS] bob is verified (fp {}); a change of this key will be reported loudly",
            fp(&b.key)
        )]
    );
    assert!(a.chat.memory().trust.get("bob").unwrap().verified());
    let (_, t) = a.typed("/trust");
    assert_eq!(t[1], format!("[SYS]   bob  fp {}  verified", fp(&b.key)));
    // A second "yes" needs a code shown again.
    let (_, again) = a.typed("/verify bob yes");
    assert!(again[0].starts_with("[ERROR] no safety code shown for bob's current key"));
}

#[test]
fn yes_without_a_code_or_for_another_key_is_refused() {
    let (mut a, b) = pair();
    let (_, v) = a.typed("/verify bob yes");
    assert!(v[0].starts_with("[ERROR] no safety code shown"), "{v:?}");
    let _ = a.typed("/verify bob");
    // The key changes between the code and the confirmation.
    let other = [77; 32];
    a.server(&directory(false, &[("alice", a.key), ("bob", other)]));
    let (_, v) = a.typed("/verify bob yes");
    assert!(v[0].starts_with("[ERROR] no safety code shown"), "{v:?}");
    assert!(!a.chat.memory().trust.get("bob").unwrap().verified());
    let (_, u) = a.typed("/verify nobody");
    assert_eq!(u, ["[ERROR] unknown user: nobody (try /list)"]);
    let (_, me) = a.typed("/verify alice");
    assert!(me[0].starts_with("[ERROR] usage: /verify"), "{me:?}");
    let (_, bad) = a.typed("/verify bob maybe");
    assert_eq!(bad, ["[ERROR] usage: /verify <user> [yes]"]);
    let _ = b;
}

#[test]
fn verified_change_is_an_alert_strict_refuses_until_verify_or_accept() {
    let (mut a, b) = pair();
    let _ = a.typed("/verify bob");
    let _ = a.typed("/verify bob yes");
    a.chat.set_strict(true);
    let eve = [66; 32];
    let seen = a.kinds(&directory(false, &[("alice", a.key), ("bob", eve)]));
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, Kind::Alert);
    assert!(seen[0].1.contains("WHOSE KEY YOU VERIFIED"));
    assert!(seen[0].1.contains("/verify bob"), "{}", seen[0].1);
    assert!(seen[0].1.contains("/accept bob"), "{}", seen[0].1);
    let (_, t) = a.typed("/trust");
    assert_eq!(
        t[1],
        format!(
            "[SYS]   bob  fp {}  verified; KEY CHANGED, now fp {}: /verify bob or /accept bob",
            fp(&b.key),
            fp(&eve)
        )
    );
    a.sent.clear();
    let (act, r) = a.typed("/to bob secret");
    assert_eq!(act, Action::Shown);
    assert!(
        r[0].starts_with(
            "[ERROR] not sent: the key of bob changed since you verified it (strict mode)"
        ),
        "{r:?}"
    );
    assert!(a.sent.is_empty(), "nothing reached the wire: {:?}", a.sent);
    // Accept takes the new key, unverified; sending works again.
    let (_, acc) = a.typed("/accept bob");
    assert!(acc[0].starts_with(&format!(
        "[WARN] accepted the new key of bob (fp {})",
        fp(&eve)
    )));
    let (act, _) = a.typed("/to bob hello");
    assert_eq!(act, Action::Sent);
    let (_, again) = a.typed("/accept bob");
    assert_eq!(
        again,
        ["[ERROR] bob: no changed key is waiting for this contact"]
    );
    // Without strict mode a changed verified key warns but does not block.
    let _ = a.typed("/verify bob");
    let _ = a.typed("/verify bob yes");
    a.chat.set_strict(false);
    a.server(&directory(false, &[("alice", a.key), ("bob", [67; 32])]));
    let (act, _) = a.typed("/to bob hi");
    assert_eq!(act, Action::Sent);
    // Verifying the new key also unblocks strict mode.
    a.chat.set_strict(true);
    assert_eq!(a.typed("/to bob x").0, Action::Shown);
    let _ = a.typed("/verify bob");
    let (_, v) = a.typed("/verify bob yes");
    assert!(v[0].starts_with("[SYS] bob is verified"), "{v:?}");
    assert_eq!(a.typed("/to bob x").0, Action::Sent);
}

#[test]
fn replays_are_not_shown_again_and_warned_once_a_minute() {
    let (mut a, mut b) = pair();
    let (relay, _) = b.relay_to("alice", "same text");
    assert_eq!(a.server(&relay), ["[bob] same text"]);
    let copy = a.kinds(&relay);
    assert_eq!(copy.len(), 1, "{copy:?}");
    assert_eq!(copy[0].0, Kind::Warn);
    assert!(
        copy[0]
            .1
            .starts_with("[WARN] a message from bob was delivered again; the copy is not shown")
    );
    // More copies within the minute: silent; the next warning counts them.
    assert!(a.server(&relay).is_empty());
    assert!(a.server(&relay).is_empty());
    // A genuine message that repeats its text (new nonce) is shown.
    let (again, _) = b.relay_to("alice", "same text");
    assert_eq!(a.server(&again), ["[bob] same text"]);
    a.now += 60;
    let w = a.server(&relay);
    assert_eq!(w.len(), 1);
    assert!(
        w[0].ends_with("(2 more copies since the last warning)"),
        "{w:?}"
    );
}

#[test]
fn own_message_handed_back_is_refused() {
    let (mut a, mut b) = pair();
    let (to_bob, sent) = a.relay_to("bob", "my words");
    assert_eq!(b.server(&to_bob), ["[alice] my words"]);
    let back = a.kinds(&reflect(&sent, "bob", "alice"));
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0].0, Kind::Alert);
    assert_eq!(
        back[0].1,
        "[WARN] the server handed back one of your own messages to bob as if bob had sent \
         it; refused. The server is tampering with messages"
    );
}

#[test]
fn a_message_to_ourselves_is_shown_and_its_copy_is_not() {
    let (mut a, _b) = pair();
    let (mine, _) = a.relay_to("alice", "note to self");
    assert_eq!(a.server(&mine), ["[alice] note to self"]);
    let copy = a.kinds(&mine);
    assert_eq!(copy.len(), 1, "{copy:?}");
    assert!(
        copy[0]
            .1
            .starts_with("[WARN] a message from alice was delivered again")
    );
}

#[test]
fn window_overflow_shows_an_old_replay_again() {
    // Windows of 4: the fifth newer message pushes the first out.
    let (mut a, mut b) = pair();
    let (first, _) = b.relay_to("alice", "m0");
    a.server(&first);
    for i in 1..=4 {
        let (r, _) = b.relay_to("alice", &format!("m{i}"));
        a.server(&r);
    }
    assert_eq!(
        a.server(&first),
        ["[bob] m0"],
        "beyond the window, as documented"
    );
}

#[test]
fn without_a_contact_list_the_trust_commands_say_so() {
    let mut a = Peer::new("alice", 1, RecentKeys::<4>::new());
    a.drain();
    a.server(&directory(true, &[("alice", a.key), ("bob", [2; 32])]));
    let (_, t) = a.typed("/trust");
    assert_eq!(
        t,
        ["[ERROR] /trust: this client does not keep a contact list"]
    );
    let _ = a.typed("/verify bob");
    let (_, v) = a.typed("/verify bob yes");
    assert_eq!(v, ["[ERROR] bob: this client does not keep a contact list"]);
    let (_, acc) = a.typed("/accept bob");
    assert_eq!(
        acc,
        ["[ERROR] bob: this client does not keep a contact list"]
    );
}

#[test]
fn trust_lists_every_contact() {
    let mut a = Peer::new("alice", 1, Mem::new());
    a.drain();
    let (bob, carol, dave) = ([2; 32], [3; 32], [4; 32]);
    a.server(&directory(
        true,
        &[
            ("alice", a.key),
            ("bob", bob),
            ("carol", carol),
            ("dave", dave),
        ],
    ));
    let (_, t) = a.typed("/trust");
    assert_eq!(t.len(), 4, "{t:?}");
    assert_eq!(t[0], "[SYS] contacts (3):", "{t:?}");
    for (name, key) in [("bob", bob), ("carol", carol), ("dave", dave)] {
        assert!(
            t.contains(&format!("[SYS]   {name}  fp {}  not verified", fp(&key))),
            "{name} missing from {t:?}"
        );
    }
}

#[test]
fn a_listing_that_leaves_us_out_is_not_shown_as_our_leaving() {
    let (mut a, _) = pair();
    let shown = a.server(&directory(false, &[("bob", [2; 32])]));
    assert!(!shown.iter().any(|l| l.contains("alice left")), "{shown:?}");
}

#[test]
fn list_online_shows_the_directory_the_server_sends_back() {
    let (mut a, b) = pair();
    let (_, typed) = a.typed("/list");
    assert_eq!(
        typed,
        Vec::<String>::new(),
        "the listing waits for the server"
    );
    assert!(a.sent.last().unwrap().contains("\"list\""), "{:?}", a.sent);
    let shown = a.server(&directory(false, &[("alice", a.key), ("bob", b.key)]));
    assert_eq!(
        shown,
        [
            "[SYS] users online (2):".to_string(),
            format!("[SYS]   alice  fp {} (you)", fp(&a.key)),
            format!("[SYS]   bob  fp {}", fp(&b.key)),
        ]
    );
}

#[test]
fn strict_mode_and_the_user_name_read_back() {
    let (mut a, _) = pair();
    assert_eq!(a.chat.user(), "alice");
    assert!(!a.chat.strict());
    a.chat.set_strict(true);
    assert!(a.chat.strict());
    a.chat.set_strict(false);
    assert!(!a.chat.strict());
}

#[test]
fn a_rendered_line_is_cut_at_a_character_boundary() {
    use seguro_core::chat::render_into;
    let mut a = Peer::new("alice", 1, Mem::new());
    a.drain();
    a.chat
        .handle_line(&directory(true, &[("alice", a.key)]), &mut [0u8; 4096], 1);
    let line = a.chat.poll_line().unwrap();
    let full = line.to_string();
    let mut big = heapless::String::<256>::new();
    render_into(&line, &mut big);
    assert_eq!(big.as_str(), full);
    // "[SYS] connected to test as alice": 10 bytes keep "[SYS] conn".
    let mut small = heapless::String::<10>::new();
    small.push_str("stale").unwrap();
    render_into(&line, &mut small);
    assert_eq!(small.as_str(), &full[..10]);
}

#[test]
fn strict_mode_still_refuses_a_changed_verified_contact_after_it_left() {
    let (mut a, _) = pair();
    let _ = a.typed("/verify bob");
    let _ = a.typed("/verify bob yes");
    a.chat.set_strict(true);
    let _ = a.server(&directory(false, &[("alice", a.key), ("bob", [66; 32])]));
    let _ = a.server(&directory(false, &[("alice", a.key)]));
    // The pending change alone keeps the refusal (bob is not listed now): the user is
    // told why, not merely that bob is offline.
    let (_, r) = a.typed("/to bob secret");
    assert!(
        r[0].starts_with(
            "[ERROR] not sent: the key of bob changed since you verified it (strict mode)"
        ),
        "{r:?}"
    );
    let debug = format!("{:?}", a.chat);
    assert!(
        debug.starts_with("Chat {") && debug.contains("\"test\""),
        "{debug}"
    );
}

#[test]
fn a_borrowed_memory_answers_as_the_memory_itself() {
    use seguro_core::chat::Status;
    use seguro_core::trust::{TrustError, TrustStore};
    let mut store = TrustStore::<4>::new();
    let mut m: &mut TrustStore<4> = &mut store;
    let (k1, k2) = ([5; 32], [6; 32]);
    let _ = KeyMemory::observe(&mut m, "bob", &k1, 1);
    let status = |m: &&mut TrustStore<4>| KeyMemory::status(m, "bob");
    assert_eq!(
        status(&m),
        Some(Status {
            key: k1,
            verified: false,
            pending: None
        })
    );
    assert_eq!(
        KeyMemory::verify(&mut m, "nobody", &k1),
        Err(TrustError::Unknown)
    );
    assert_eq!(KeyMemory::verify(&mut m, "bob", &k1), Ok(()));
    assert!(status(&m).unwrap().verified);
    let _ = KeyMemory::observe(&mut m, "bob", &k2, 2);
    assert_eq!(status(&m).unwrap().pending, Some(k2));
    assert_eq!(KeyMemory::accept(&mut m, "bob"), Ok(k2));
    assert_eq!(
        KeyMemory::accept(&mut m, "bob"),
        Err(TrustError::NothingPending)
    );
    assert_eq!(store.get("bob").unwrap().key(), &k2);
}

#[test]
fn a_memory_that_only_remembers_keys_reports_them_unverified() {
    struct LastOnly(Option<[u8; 32]>);
    impl KeyMemory for LastOnly {
        fn observe(&mut self, _: &str, key: &[u8; 32], _: u64) -> seguro_core::chat::Verdict {
            self.0 = Some(*key);
            seguro_core::chat::Verdict::FirstContact
        }
        fn last_key(&self, _: &str) -> Option<[u8; 32]> {
            self.0
        }
    }
    let mut m = LastOnly(None);
    assert_eq!(m.status("bob"), None);
    let _ = m.observe("bob", &[9; 32], 1);
    assert_eq!(
        m.status("bob"),
        Some(seguro_core::chat::Status {
            key: [9; 32],
            verified: false,
            pending: None
        })
    );
}
