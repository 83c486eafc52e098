//! TLS 1.3 over any `embedded_io_async` transport with embedded-tls, pinned to one
//! certificate, with the guard against handshakes that skip the server's proofs.

use core::fmt;

use embedded_io_async::{Read, Write};
use embedded_tls::alert::AlertDescription;
use embedded_tls::{MaxFragmentLength, TlsConfig, TlsConnection, TlsContext, TlsError};
use rand_core::{CryptoRng, RngCore};

use crate::pin::{CipherSuite, Pin, PinError, PinnedProvider, PinnedVerifier};

/// An open, verified TLS connection.
pub type Tls<'b, T> = TlsConnection<'b, T, CipherSuite>;

/// Why a TLS connection could not be opened.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum TlsOpenError {
    /// The server is not the pinned one, or did not prove it (see [`PinError`]).
    Pin(PinError),
    /// The handshake failed for another reason (I/O, alert, protocol error).
    Tls(TlsError),
}

impl fmt::Display for TlsOpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pin(e) => write!(f, "server refused: {e}"),
            Self::Tls(TlsError::HandshakeAborted(_, AlertDescription::ProtocolVersion)) => f
                .write_str(
                    "TLS handshake aborted by the server: protocol_version (the server does \
                     not speak TLS 1.3, which boards need: it is not a Seguro server)",
                ),
            Self::Tls(TlsError::HandshakeAborted(_, alert)) => {
                write!(f, "TLS handshake aborted by the server: {alert:?}")
            }
            Self::Tls(e) => write!(f, "TLS handshake failed: {e:?}"),
        }
    }
}

impl From<PinError> for TlsOpenError {
    fn from(e: PinError) -> Self {
        Self::Pin(e)
    }
}

/// Options of the handshake.
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsOptions {
    /// Ask the server for smaller records (RFC 6066 max_fragment_length). Servers may
    /// ignore it (rustls does): the server's own fragment cap is what counts.
    pub max_fragment_length: Option<MaxFragmentLength>,
}

/// Runs the TLS 1.3 handshake over `transport` and returns the connection only if the
/// server presented the pinned certificate AND signed the transcript with its key.
///
/// `read_buf` must hold the largest record the server sends (16 KiB + 256 bytes for a
/// server that does not cap its fragments); `write_buf` the largest line this client
/// writes plus 128 bytes, and at least the ClientHello (about 200 bytes).
pub async fn open<'b, T, R>(
    transport: T,
    read_buf: &'b mut [u8],
    write_buf: &'b mut [u8],
    pin: Pin<'_>,
    rng: &mut R,
    options: TlsOptions,
) -> Result<Tls<'b, T>, TlsOpenError>
where
    T: Read + Write + 'b,
    R: RngCore + CryptoRng,
{
    // RSA schemes are offered so that an RSA server gets as far as presenting its
    // certificate: the verifier then reports "RSA, boards need P-256" instead of the
    // server aborting with a bare handshake_failure alert. No RSA signature is ever
    // accepted.
    let mut config = TlsConfig::new().enable_rsa_signatures();
    if let Some(mfl) = options.max_fragment_length {
        config = config.with_max_fragment_length(mfl);
    }
    let mut verifier = PinnedVerifier::new(pin);
    let mut tls = TlsConnection::new(transport, read_buf, write_buf);
    let result = tls
        .open(TlsContext::new(
            &config,
            PinnedProvider::new(&mut *rng, &mut verifier),
        ))
        .await;
    match result {
        Ok(()) => {}
        Err(e) => {
            return Err(match verifier.failure() {
                Some(pin_error) => TlsOpenError::Pin(pin_error),
                None => TlsOpenError::Tls(e),
            });
        }
    }
    // The guard: embedded-tls 0.19.0 returns Ok from `open` for a server that sent
    // neither Certificate nor CertificateVerify, without calling the verifier.
    verifier.verified()?;
    Ok(tls)
}
