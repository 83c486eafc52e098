//! The server's `hello` check: an arbitrary first line against a router where `alice`,
//! `bob` and `ZOË` are connected. Invariants: a registered name passes the protocol's
//! name rules and the name policy and looks like no connected name; the refusal text
//! (what the `error` line says) contains no character the server refuses to echo, and
//! as an `error` line it parses back to the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seguro::server::router::{Config, Input, Router, is_unsafe_char};
use seguro::server::{hub, names};
use seguro_core::msg::{Message, validate_name};

const KEY: &str = "CQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

fuzz_target!(|data: &[u8]| {
    let mut router: Router<()> = Router::new(Config {
        max_line: 16 * 1024,
        max_errors: 20,
        // Every disconnect is a leave here (the reconnect grace is not fuzzed yet).
        grace: std::time::Duration::ZERO,
    });
    let mut scratch = vec![0u8; 256];
    for user in ["alice", "bob", "ZO\u{cb}"] {
        let line = format!(r#"{{"type":"hello","user":"{user}","pub":"{KEY}"}}"#);
        let input = hub::parse(line.as_bytes(), &mut scratch);
        router
            .hello(input, ())
            .expect("the fixture's names register");
    }
    let connected: Vec<String> = router.directory().map(|(n, _)| n.to_owned()).collect();
    let mut scratch = vec![0u8; data.len()];
    let input = hub::parse(data, &mut scratch);
    let user = match input {
        Input::Message(Message::Hello { user, .. }) => Some(user.to_owned()),
        _ => None,
    };
    match router.hello(input, ()) {
        Ok(j) => {
            let name = user.expect("only a hello registers");
            assert_eq!(*j.name, *name);
            assert!(validate_name(&name).is_ok());
            let k = names::check(&name).expect("a registered name passes the policy");
            for other in &connected {
                let o = names::check(other).unwrap();
                assert_ne!(k.skeleton, o.skeleton, "{name:?} looks like {other:?}");
                assert_ne!(k.folded, o.folded, "{name:?} folds like {other:?}");
            }
            assert_eq!(router.len(), connected.len() + 1);
        }
        Err(refusal) => {
            let text = refusal.to_string();
            assert!(!text.chars().any(is_unsafe_char), "{text:?}");
            let line = hub::error_line(&text);
            assert_eq!(line.last(), Some(&b'\n'));
            let mut s = vec![0u8; line.len()];
            match seguro_core::msg::parse(&line[..line.len() - 1], &mut s) {
                Ok(Message::Error { text: back }) => assert_eq!(back, text),
                other => panic!("{other:?}"),
            }
            assert_eq!(router.len(), connected.len());
        }
    }
});
