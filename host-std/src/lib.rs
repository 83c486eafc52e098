//! The `seguro` program: TLS relay server, pinned-TLS desktop client and certificate tools.
//!
//! The protocol itself lives in `seguro-core`; this crate moves bytes and time: smol for
//! I/O, rustls (ring provider) for TLS, rcgen for certificates.

pub mod admission;
pub mod certs;
pub mod cli;
pub mod client;
pub mod config;
pub mod history;
pub mod identity;
pub mod invite;
pub mod output;
pub mod pin;
pub mod server;
pub mod state;
pub mod tls;
pub mod trust;
pub mod tui;

/// Process exit codes.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// A runtime error (I/O, certificate files, bind failure).
    pub const ERROR: i32 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: i32 = 2;
    /// The server's certificate is not the pinned one, or TLS failed.
    pub const TLS: i32 = 3;
    /// The server could not be reached, or refused us (e.g. name taken).
    pub const CONNECT: i32 = 4;
    /// An identity or contacts file is unusable (corrupt, truncated, accessible to
    /// other users, from a newer Seguro, made for another name).
    pub const STATE: i32 = 5;
    /// The port answers, but not with TLS: another service (HTTP, SSH…), not a Seguro
    /// server.
    pub const NOT_SEGURO: i32 = 6;
}

/// Installs the tracing subscriber: logs to stderr, filtered by `RUST_LOG`
/// (default `default_filter`, e.g. `info`).
pub fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(output::stderr_color())
        .with_target(false)
        .try_init();
}
