//! Helpers the client tests share: a small client type, directory lines as a server
//! sends them, and draining what a client has to send.
#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use seguro_core::client::Client;
use seguro_core::msg::{Message, UserList};

/// 8 users, 256-byte messages, 2 held relays.
pub type C = Client<8, 256, 2>;

/// A `welcome` (or `users`) line listing `users`, without its `\n`.
pub fn directory(welcome: bool, users: &[(&str, [u8; 32])]) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let list = UserList::pack(users.iter().map(|(n, k)| (*n, k)), &mut buf).unwrap();
    let m = if welcome {
        Message::Welcome { users: list }
    } else {
        Message::Users { users: list }
    };
    let mut line = vec![0u8; m.line_len()];
    let n = m.emit_line(&mut line).unwrap();
    line.truncate(n - 1);
    line
}

/// Everything `c` has to send, lines with their `\n`.
pub fn drain_transmit(c: &mut C) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    while let Some(n) = c.poll_transmit(&mut buf).unwrap() {
        out.extend_from_slice(&buf[..n]);
    }
    out
}
