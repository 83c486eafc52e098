//! rustls configurations for the server and the pinned client (ring provider).

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};

use crate::certs::CertPair;
use crate::pin::{Pin, PinnedCertVerifier};

/// The SNI the reference client sends; servers accept any SNI or none.
pub const SNI: &str = "servidor-local";

/// The crypto provider everywhere: ring (cross-compiles to aarch64/armv7 with plain gcc).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Server configuration: TLS 1.3 and 1.2, every ring suite and group (including
/// TLS13_AES_128_GCM_SHA256 with secp256r1, what microcontroller clients speak).
///
/// `max_fragment_size` caps the plaintext per TLS record, for clients with a small TLS
/// read buffer (rustls accepts 32..=16389).
///
/// TLS 1.3 session resumption uses stateless tickets (ring's ticketer: ChaCha20-Poly1305
/// under a random key that rotates every 6 hours, kept only in memory, so a restart
/// invalidates every ticket). The server keeps nothing per client, so every client that
/// reconnects while the server runs can resume, however many there are (rustls's
/// default, a cache of 256 sessions, would resume only the last 256). A resumed session
/// still makes a fresh X25519/P-256 exchange (rustls offers only `psk_dhe_ke`), so it
/// keeps forward secrecy; it skips the certificate's signature, which is what it saves
/// (`BENCHMARKS.md` §16). A ticket only helps a client that completed a pinned handshake
/// with this very server: another server cannot open it and falls back to a full
/// handshake, where the pin is checked.
pub fn server_config(
    pair: CertPair,
    max_fragment_size: Option<usize>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_no_client_auth()
        .with_single_cert(pair.chain, pair.key)?;
    cfg.max_fragment_size = max_fragment_size;
    cfg.ignore_client_order = false;
    cfg.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(Arc::new(cfg))
}

/// Client configuration that trusts exactly `pinned`. It keeps the TLS 1.3 tickets the
/// server sends (rustls's in-memory store), so a client that reconnects with the same
/// configuration resumes its session.
pub fn client_config(
    pinned: CertificateDer<'static>,
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    client_config_pins(vec![Pin::Certificate(pinned)])
}

/// Client configuration that trusts a server matching any of `pins` (a certificate, or
/// a key: an invite's pin and backup pin).
pub fn client_config_pins(pins: Vec<Pin>) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = provider();
    let verifier = Arc::new(PinnedCertVerifier::with_pins(pins, &provider));
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// The server name the client sends (the reference's SNI; not verified).
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from(SNI).expect("the SNI constant is a valid DNS name")
}
