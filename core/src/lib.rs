//! Seguro's protocol core: a pure, allocation-free state machine shared by every host.
//!
//! `seguro-core` never opens a socket, reads a clock, allocates or draws randomness on
//! its own. Hosts move bytes in and out and show lines: [`chat::Chat`] is the session
//! every host runs (commands, wording, escaping, the memory of keys) around
//! [`client::Client`] (the protocol machine), [`frame::LineAccumulator`] (framing) and
//! [`msg`] (the messages); randomness is passed in as a [`rand_core::CryptoRngCore`],
//! time as a number of seconds.
//!
//! Panic contract: nothing in this crate panics on input from the network or the user,
//! whatever its content or length; capacities are const generics or caller buffers,
//! and what does not fit is reported (an error, a truncation event) or cut at a
//! character boundary, never indexed out of bounds. `unwrap`, `expect`, `panic!` and
//! slice indexing are denied outside tests.
//!
//! Wire compatibility: version 1 of the Seguro protocol, i.e. the protocol of the
//! Python reference implementation (newline-delimited JSON, X25519 → HKDF-SHA256 →
//! AES-256-GCM for end-to-end encrypted `relay` messages).
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod chat;
pub mod client;
pub mod command;
pub mod directory;
pub mod e2ee;
pub mod fingerprint;
pub mod frame;
pub mod identity;
pub mod invite;
mod json;
pub mod limits;
pub mod link;
pub mod msg;
pub mod replay;
pub mod store;
pub mod trust;
pub mod v2;

pub use rand_core;
