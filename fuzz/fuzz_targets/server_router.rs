//! The server's router driven like the server drives it: `hello`, lines, disconnects
//! and directory pushes over several connections, from structured operations and raw
//! fuzzer lines. Invariants: deliveries go to registered connections only; a relay
//! goes to the connection holding the name it names, and only after that recipient has
//! been sent a directory listing the sender; no two connected names look alike or fold
//! to the same case; a name is never registered twice; the directory is the set of
//! registered names.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use seguro::server::hub;
use seguro::server::names;
use seguro::server::router::{Config, ConnId, Delivery, Input, Router};

/// Names that collide in interesting ways: case, Cyrillic look-alikes, zero-width
/// joiners, reserved names, brackets.
const NAMES: &[&str] = &[
    "alice",
    "ALICE",
    "\u{0430}lice",
    "bob",
    "b\u{200d}ob",
    "SYS",
    "[bob]",
    "carol",
    "caro1",
    "d\u{e9}",
    "de\u{301}",
];

const NONCE: &str = "AAAAAAAAAAAAAAAA";
const CIPHER: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

#[derive(Default)]
struct Model {
    /// Slot → connection registered there.
    slots: HashMap<u8, ConnId>,
    /// Connection → (name, directory version it joined at, directory version sent).
    conns: HashMap<ConnId, (String, u64, u64)>,
}

fn key_of(i: usize) -> String {
    let mut k = [0u8; 32];
    k[0] = 9;
    k[1] = i as u8;
    <base64ct::Base64 as base64ct::Encoding>::encode_string(&k)
}

fn check(router: &Router<u8>, m: &Model) {
    assert_eq!(router.len(), m.conns.len());
    let dir: Vec<&str> = router.directory().map(|(n, _)| n).collect();
    let mut want: Vec<&str> = m.conns.values().map(|(n, ..)| n.as_str()).collect();
    want.sort_unstable();
    let mut sorted = dir.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, want);
    let mut skel = HashMap::new();
    let mut fold = HashMap::new();
    for n in &dir {
        let k = names::check(n).expect("a registered name passes the name policy");
        assert!(
            skel.insert(k.skeleton, *n).is_none(),
            "look-alikes both connected: {dir:?}"
        );
        assert!(
            fold.insert(k.folded, *n).is_none(),
            "case look-alikes: {dir:?}"
        );
    }
}

fn deliver(router: &mut Router<u8>, m: &mut Model, from: ConnId, input: Input<'_>) {
    let relay_to = match input {
        Input::Message(seguro_core::msg::Message::Relay(r)) => Some(r.to.to_owned()),
        _ => None,
    };
    let version = router.version();
    let joined = m.conns[&from].1;
    let out: Vec<_> = router.handle(from, input).collect();
    for d in out {
        let to = d.target();
        assert!(
            m.conns.contains_key(&to),
            "{d:?} to an unregistered connection"
        );
        match d {
            Delivery::Directory { to, version: v } | Delivery::Welcome { to, version: v } => {
                assert!(v <= version);
                let seen = &mut m.conns.get_mut(&to).unwrap().2;
                *seen = (*seen).max(v);
            }
            Delivery::Relay { to } => {
                let (name, _, seen) = &m.conns[&to];
                assert_eq!(Some(name), relay_to.as_ref(), "relay to the named user");
                assert!(
                    *seen >= joined,
                    "relay before a directory listing the sender"
                );
            }
            Delivery::Close { conn, .. } => {
                assert_eq!(conn, from);
                assert!(router.disconnect(conn, None).is_some());
                m.conns.remove(&conn);
                m.slots.retain(|_, c| *c != conn);
            }
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut router: Router<u8> = Router::new(Config {
        max_line: 200,
        max_errors: 3,
        // Every disconnect is a leave here (the reconnect grace is not fuzzed yet).
        grace: std::time::Duration::ZERO,
    });
    let mut m = Model::default();
    let mut scratch = vec![0u8; 1024];
    let mut push = Vec::new();
    let mut it = data.split(|&b| b == b'\n');
    while let Some(op) = it.next() {
        let Some((&code, rest)) = op.split_first() else {
            continue;
        };
        let slot = rest.first().copied().unwrap_or(0) % 4;
        let pick = usize::from(rest.get(1).copied().unwrap_or(0)) % NAMES.len();
        let line: Vec<u8> = match code % 8 {
            // hello as `slot`, under a name from the list (a fresh key per name).
            0 => format!(
                r#"{{"type":"hello","user":"{}","pub":"{}"}}"#,
                NAMES[pick],
                key_of(pick)
            )
            .into_bytes(),
            1 => format!(
                r#"{{"type":"relay","to":"{}","alg":"X25519+AESGCM","nonce":"{NONCE}","cipher":"{CIPHER}"}}"#,
                NAMES[pick]
            )
            .into_bytes(),
            2 => br#"{"type":"list"}"#.to_vec(),
            3 => {
                if let Some(id) = m.slots.remove(&slot) {
                    assert!(router.disconnect(id, None).is_some());
                    m.conns.remove(&id);
                }
                check(&router, &m);
                continue;
            }
            4 => {
                let v = router.push(&mut push);
                for id in &push {
                    m.conns.get_mut(id).expect("push to a registered connection").2 = v;
                }
                check(&router, &m);
                continue;
            }
            // A raw line: the rest of this piece, or the next piece.
            5 => rest.get(1..).unwrap_or(&[]).to_vec(),
            _ => it.next().unwrap_or(&[]).to_vec(),
        };
        if scratch.len() < line.len() {
            scratch.resize(line.len(), 0);
        }
        let input = if line.len() > 200 {
            Input::Overlong
        } else {
            hub::parse(&line, &mut scratch[..line.len()])
        };
        match m.slots.get(&slot).copied() {
            None => {
                let before: Vec<String> = m.conns.values().map(|c| c.0.clone()).collect();
                if let Ok(j) = router.hello(input, slot) {
                    assert!(!before.iter().any(|n| **n == *j.name), "{} twice", j.name);
                    assert_eq!(router.version(), j.welcome);
                    m.slots.insert(slot, j.id);
                    m.conns
                        .insert(j.id, (j.name.to_string(), j.welcome, j.welcome));
                }
            }
            Some(id) => deliver(&mut router, &mut m, id, input),
        }
        check(&router, &m);
    }
});
