//! The join token of a private server's invite travels in every `hello`, and only there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use seguro_core::client::Client;
use seguro_core::e2ee::KeyPair;
use seguro_core::invite::Token;
use seguro_core::msg::{self, Message};

type C = Client<8, 256, 2>;

fn first_line(c: &mut C) -> Vec<u8> {
    let mut buf = [0u8; 512];
    let n = c.poll_transmit(&mut buf).unwrap().unwrap();
    buf[..n].to_vec()
}

fn hello_token(line: &[u8]) -> Option<String> {
    let mut scratch = vec![0u8; line.len()];
    match msg::parse(&line[..line.len() - 1], &mut scratch).unwrap() {
        Message::Hello { token, .. } => token.map(str::to_owned),
        other => panic!("not a hello: {other:?}"),
    }
}

#[test]
fn the_token_is_in_every_hello_and_absent_by_default() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut c = C::new("ana", KeyPair::generate(&mut rng)).unwrap();
    assert_eq!(c.token(), None);
    let plain = first_line(&mut c);
    assert!(!plain.windows(5).any(|w| w == b"token"));
    assert_eq!(hello_token(&plain), None);

    let longest = "a".repeat(64);
    for t in [
        "abcdefghijklmnop",
        "mfrggzdfmztwq2lknnwg23tpobyxe43u",
        longest.as_str(),
    ] {
        c.set_token(Some(Token::new(t).unwrap()));
        c.reset();
        let line = first_line(&mut c);
        assert_eq!(hello_token(&line).as_deref(), Some(t));
        assert_eq!(c.token(), Some(t));
        // The rest of the line is the plain hello's.
        assert!(line.starts_with(&plain[..plain.len() - 2]));
    }
    // After a reconnection too.
    c.reset();
    assert_eq!(hello_token(&first_line(&mut c)).as_deref(), Some(&*longest));
    c.set_token(None);
    c.reset();
    assert_eq!(first_line(&mut c), plain);
}
