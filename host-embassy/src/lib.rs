//! Seguro's client for microcontrollers: embassy-net TCP, TLS 1.3 with embedded-tls,
//! and the `seguro-core` client state machine, with no allocator.
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

pub mod cert;
pub mod output;
pub mod pin;
pub mod rng;
pub mod session;
pub mod tls;

pub use embedded_tls;
pub use rand_core;
pub use seguro_core;
