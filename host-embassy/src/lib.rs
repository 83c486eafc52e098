//! Seguro's client for microcontrollers: embassy-net TCP, TLS 1.3 with embedded-tls,
//! and the `seguro-core` chat session (the client state machine, the wording, the key
//! memory), with no allocator.
//!
//! The same code runs on a board and on Linux (the `seguro-embassy-linux` runner,
//! feature `std`, over a TAP device), which is how it is tested against the real
//! server.
//!
//! # Using it on a board
//!
//! The board brings up its network (Wi-Fi or Ethernet) as an embassy-net [`Stack`],
//! then hands everything else in:
//!
//! ```rust,ignore
//! static COMMANDS: Commands<CriticalSectionRawMutex, 2> = Commands::new();
//! static EVENTS: Events<CriticalSectionRawMutex, 4> = Events::new();
//! static STORAGE: StaticCell<Storage> = StaticCell::new();
//!
//! let mut seeder = Seeder::new();
//! seeder.absorb_rng(&mut board_rng, 256);             // see `rng` for weak RNGs
//! let mut rng = seeder.finish();
//! let pin = Pin::new(include_bytes!(env!("SEGURO_SERVER_DER")))?;  // P-256 only
//! let client = Client::<8>::new("board", KeyPair::generate(&mut rng))?;
//! let mut chat = Chat::new(client, RecentKeys::<8>::new());
//! let config = Config::new(IpEndpoint::new(server_ip, 5000), pin);
//! Session::new(&config, STORAGE.init(Storage::new()).buffers(), &mut chat, &mut rng,
//!              (&COMMANDS, &EVENTS)).run(stack).await;   // returns on /quit
//! ```
//!
//! Another task sends typed lines (`/to bob hi`, `/list`, `/server hi`, `/fp bob`) into
//! `COMMANDS` and takes [`output::Output`] lines (`[SYS] ...`, `[bob] hi`, ...) out of
//! `EVENTS`; their [`output::Kind`] lets a display or an LED tell messages from
//! notices. The lines are core's ([`seguro_core::chat::Line`]): the same words as the
//! desktop client's, including the `[WARN] KEY CHANGED` for a user who comes back with
//! another key. After a drop, [`session::Session::run`] reconnects with exponential
//! backoff (1 s doubling to 60 s, with jitter) and registers again with the same key.
//!
//! The library enables no critical-section implementation, no embassy-time driver or
//! tick rate and no embassy-net logging: the board chooses those.
//!
//! # The server's certificate must be ECDSA P-256
//!
//! The client pins the server certificate ([`pin`]): the presented certificate must be
//! the pinned DER, and the TLS 1.3 CertificateVerify signature must verify with its key.
//! Verifying RSA signatures needs big-integer arithmetic that embedded-tls only offers
//! with a heap, so **boards need a P-256 certificate: `seguro gen-cert`** (or let
//! `seguro serve` generate one on first run). The reference implementation's RSA-2048
//! certificate is refused, at [`pin::Pin::new`] when it is the pinned one, and at the
//! handshake when the server presents one, both with that advice.
//!
//! embedded-tls 0.19.0 completes a handshake in which the server sends neither
//! Certificate nor CertificateVerify without calling the verifier; [`tls::open`]
//! refuses such a connection (tested against a TLS 1.3 server in `tests/pinning.rs`
//! that skips those messages). The socket under embedded-tls follows the TLS record
//! boundaries (module `transport`), so the session loop never waits inside a record
//! that carries no application data.
//!
//! # Memory
//!
//! Buffers come from the caller ([`session::Buffers`], or [`session::Storage`] as
//! arrays), and so does the [`seguro_core::chat::Chat`]. With a server that does not cap its TLS fragments:
//!
//! | buffer | bytes | why |
//! |---|---|---|
//! | `tls_read` | 16 640 | one whole TLS record (16 KiB of plain text + type + tag + slack) |
//! | `tls_write` | 2 176 | the longest line written (`out`) + 128 bytes of record overhead |
//! | `tcp_rx`, `tcp_tx` | 2 048 each | smoltcp windows |
//! | `line`, `scratch` | 4 096 each | the longest line accepted from the server, and its decoded strings |
//! | `out` | 2 048 | the longest line written: a relay of 1 KiB of text |
//!
//! A server started with `seguro serve --max-fragment-size F` sends no record larger
//! than F bytes of plain text; `tls_read` then needs only F + 17 bytes (F + 128 leaves
//! slack): 4 224 for F = 4096, 640 for F = 512. The TLS handshake messages of a P-256
//! server (its certificate is about 400 bytes) fit in any of these.
//!
//! The core [`seguro_core::client::Client`] costs about 6 KiB with 8 directory entries
//! (`Client<8>`) and 17.5 KiB with the default 32 (a receive and a send buffer of 1 KiB
//! each included); the [`seguro_core::chat::Chat`] around it adds the key memory (56
//! bytes per remembered user, 32 by default) and about 0.6 KiB; each channel slot costs
//! about 1.2 KiB.
//!
//! Measured for `thumbv7em-none-eabihf` (opt-level "s", LTO; `size-probe/`, a whole
//! firmware with the executor, embassy-net, a `Chat` of 8 users (`Client<8>`,
//! `RecentKeys<8>`), the buffers above and two channels of two slots): about 157 KiB of
//! flash and 54 KiB of static RAM, of which 32 KiB are the buffers; the same firmware
//! without the client takes 12 KiB of flash and 1 KiB of RAM. Stack is extra: the
//! frames along the deepest path (the task's poll, the session, embedded-tls's server
//! verification, the P-256 multiplication) add up to about 20 KiB
//! (`-Z emit-stack-sizes`), so give the executor's stack 24–32 KiB.
//!
//! [`Stack`]: embassy_net::Stack
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
pub mod store;
pub mod tls;
mod transport;

pub use embedded_tls;
pub use rand_core;
pub use seguro_core;
