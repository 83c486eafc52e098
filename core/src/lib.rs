//! Seguro's protocol core: a pure, allocation-free state machine shared by every host.
//!
//! `seguro-core` never opens a socket, reads a clock, allocates or draws randomness on
//! its own. Hosts move bytes in (through [`frame::LineAccumulator`]) and lines out
//! (through [`client::Client`] or [`msg::Message::emit_line`]); randomness is passed in
//! as a [`rand_core::CryptoRngCore`].
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

pub mod client;
pub mod command;
pub mod directory;
pub mod e2ee;
pub mod fingerprint;
pub mod frame;
pub mod identity;
mod json;
pub mod limits;
pub mod msg;
pub mod store;
pub mod trust;
pub mod v2;

pub use rand_core;
