//! Certificate pinning: a rustls `ServerCertVerifier` that accepts exactly one certificate.
//!
//! The server is accepted if and only if the end-entity certificate it presents is
//! byte-for-byte the pinned one AND its handshake signature verifies with that
//! certificate's key (checked by the crypto provider). Host names are not checked:
//! clients reach servers through TCP tunnels whose host never matches the certificate.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};

use crate::certs::sha256_colon_hex;

/// The presented certificate is not the pinned one.
#[derive(Debug, Clone)]
pub struct PinMismatch {
    /// SHA-256 of the pinned certificate.
    pub expected: String,
    /// SHA-256 of the presented certificate.
    pub presented: String,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server certificate does not match the pinned certificate (expected SHA-256 {}, \
             presented SHA-256 {})",
            self.expected, self.presented
        )
    }
}

impl std::error::Error for PinMismatch {}

/// Accepts only the pinned certificate; delegates handshake signatures to the provider.
#[derive(Debug)]
pub struct PinnedCertVerifier {
    pinned: CertificateDer<'static>,
    pinned_sha256: String,
    algs: WebPkiSupportedAlgorithms,
}

impl PinnedCertVerifier {
    /// Pins `cert`, verifying signatures with `provider`'s algorithms.
    pub fn new(cert: CertificateDer<'static>, provider: &CryptoProvider) -> Self {
        Self {
            pinned_sha256: sha256_colon_hex(&cert),
            pinned: cert,
            algs: provider.signature_verification_algorithms,
        }
    }

    /// SHA-256 of the pinned certificate.
    pub fn pinned_sha256(&self) -> &str {
        &self.pinned_sha256
    }
}

impl ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.pinned.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            let e = PinMismatch {
                expected: self.pinned_sha256.clone(),
                presented: sha256_colon_hex(end_entity),
            };
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(e)),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
