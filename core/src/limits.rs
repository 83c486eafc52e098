//! Every capacity of the protocol core in one place, with what it costs in RAM.
//!
//! The server uses large values (it runs on a Raspberry Pi), a microcontroller small
//! ones: types that hold data are generic over their capacity, and the constants
//! below are the defaults and the hard protocol limits.

pub use crate::e2ee::{KEY_LEN, NONCE_LEN, TAG_LEN};

/// The longest user name, in characters (Unicode scalar values). Protocol rule.
pub const MAX_NAME_CHARS: usize = 32;

/// The longest user name, in UTF-8 bytes (`MAX_NAME_CHARS` × 4). Every stored name
/// reserves this much: 128 bytes per directory entry.
pub const MAX_NAME_BYTES: usize = MAX_NAME_CHARS * 4;

/// The server's default maximum line length: 16 KiB, one buffer of this size per
/// connection for framing.
pub const SERVER_MAX_LINE: usize = 16 * 1024;

/// Default maximum line length of a client: 4 KiB. A client holds a frame buffer
/// and a scratch buffer of this size (8 KiB).
pub const CLIENT_MAX_LINE: usize = 4 * 1024;

/// Default capacity of a client's directory: 32 users. The client keeps the
/// current and the previous directory (to report joins, leaves and key changes),
/// each entry costs `MAX_NAME_BYTES + KEY_LEN + 8` bytes ≈ 168 bytes, so the
/// default costs about 10.5 KiB.
pub const CLIENT_MAX_USERS: usize = 32;

/// Default longest plain text of one end-to-end message, in bytes: 1 KiB. The
/// client keeps a receive buffer and a send buffer (the transmission it has queued)
/// of about this size.
pub const CLIENT_MAX_TEXT: usize = 1024;

/// The number of relayed messages from not-yet-known senders that a client holds
/// while it asks the server for the directory. Each slot costs a cipher text
/// (`CLIENT_MAX_TEXT + TAG_LEN`), a nonce and a name: ≈ 1.2 KiB by default.
pub const CLIENT_PENDING: usize = 2;

/// Default number of users whose last key a chat session remembers across leave and
/// rejoin (`chat::RecentKeys`): 32. Each entry is a 16-byte hash of the name, the key
/// and a use counter (56 bytes): about 1.8 KiB. The least recently seen is forgotten
/// first.
pub const CHAT_KNOWN_KEYS: usize = 32;

/// The longest server label a chat session shows (`connected to <label> as <user>`),
/// in bytes: a DNS name (253) and a port.
pub const SERVER_LABEL_BYTES: usize = 264;

/// Default number of peers whose v1 nonces a client remembers (`replay::NonceMemory`):
/// 8. Small for boards; the desktop keeps more.
pub const REPLAY_PEERS: usize = 8;

/// Default number of nonces remembered per peer and direction: 32. With
/// [`REPLAY_PEERS`], `8 × (2 × 32 × 8 + about 150)` bytes ≈ 5.3 KiB. A message replayed
/// after 32 newer ones from the same peer is shown again (see `replay`).
pub const REPLAY_WINDOW: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented sizes are what hosts size their buffers and defaults from (the
    /// server's `--max-line`, the desktop's frame buffers, the board budgets): pin them.
    #[test]
    fn documented_sizes() {
        assert_eq!(MAX_NAME_BYTES, 128);
        assert_eq!(SERVER_MAX_LINE, 16_384);
        assert_eq!(CLIENT_MAX_LINE, 4_096);
        assert_eq!(CLIENT_MAX_USERS, 32);
        assert_eq!(CLIENT_MAX_TEXT, 1_024);
    }
}
