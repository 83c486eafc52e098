//! Pinning: a rustls `ServerCertVerifier` that accepts exactly the pinned certificate,
//! or any certificate for a pinned key.
//!
//! Two kinds of pin:
//!
//! - a **certificate** (`seguro chat --cert server.crt`): the end-entity certificate the
//!   server presents must be byte-for-byte the pinned one;
//! - a **key** (an invite's `k=` and `b=`): the SHA-256 of the certificate's
//!   SubjectPublicKeyInfo must be one of the pinned hashes, so a certificate renewed
//!   with the same key is still accepted, and a backup key can be pinned ahead of a
//!   rotation.
//!
//! Either way the handshake signature must then verify with the key of the presented
//! (hence pinned) certificate; that check is the crypto provider's. Host names are not
//! checked: clients reach servers through TCP tunnels whose host never matches the
//! certificate.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use seguro_core::invite::KeyPin;

use crate::certs::sha256_colon_hex;

/// What a client accepts a server by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// Exactly this certificate.
    Certificate(CertificateDer<'static>),
    /// Any certificate for the key with this SubjectPublicKeyInfo hash.
    Key(KeyPin),
}

/// The key pin of a DER certificate, or why there is none (the certificate cannot be
/// parsed).
pub fn key_pin_of(cert: &CertificateDer<'_>) -> Result<KeyPin, String> {
    let ee = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| format!("cannot read the certificate: {e}"))?;
    let spki = ee.subject_public_key_info();
    KeyPin::of_spki(spki.as_ref()).map_err(|e| e.to_string())
}

/// What the pins expected, for [`PinMismatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// SHA-256 of the pinned certificate (colon hex).
    Certificate(String),
    /// The pinned keys (text form, `p256:...`), the primary first.
    Keys(Vec<String>),
}

/// The presented certificate is not the pinned one, or not for a pinned key.
#[derive(Debug, Clone)]
pub struct PinMismatch {
    /// What was pinned.
    pub expected: Expected,
    /// SHA-256 of the presented certificate (colon hex) for a certificate pin; the
    /// presented key's pin (or why it could not be read) for a key pin.
    pub presented: String,
}

impl PinMismatch {
    /// True when the pins were keys (an invite), false for a certificate file.
    pub fn by_key(&self) -> bool {
        matches!(self.expected, Expected::Keys(_))
    }
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.expected {
            Expected::Certificate(expected) => write!(
                f,
                "server certificate does not match the pinned certificate (expected SHA-256 \
                 {expected}, presented SHA-256 {})",
                self.presented
            ),
            Expected::Keys(keys) => {
                write!(
                    f,
                    "server key does not match the pinned key (expected key {}",
                    keys.first().map_or("none", String::as_str)
                )?;
                for backup in keys.iter().skip(1) {
                    write!(f, " or backup key {backup}")?;
                }
                write!(f, ", presented key {})", self.presented)
            }
        }
    }
}

impl std::error::Error for PinMismatch {}

/// Accepts only the pinned certificates or keys; delegates handshake signatures to the
/// provider.
#[derive(Debug)]
pub struct PinnedCertVerifier {
    pins: Vec<Pin>,
    algs: WebPkiSupportedAlgorithms,
}

impl PinnedCertVerifier {
    /// Pins `cert`, verifying signatures with `provider`'s algorithms.
    pub fn new(cert: CertificateDer<'static>, provider: &CryptoProvider) -> Self {
        Self::with_pins(vec![Pin::Certificate(cert)], provider)
    }

    /// Accepts a server that matches any of `pins` (tried in order).
    pub fn with_pins(pins: Vec<Pin>, provider: &CryptoProvider) -> Self {
        Self {
            pins,
            algs: provider.signature_verification_algorithms,
        }
    }

    /// The pins.
    pub fn pins(&self) -> &[Pin] {
        &self.pins
    }

    fn matches(&self, end_entity: &CertificateDer<'_>) -> bool {
        // The key is read only if a key is pinned (and only once).
        let mut spki: Option<Option<Vec<u8>>> = None;
        self.pins.iter().any(|pin| match pin {
            Pin::Certificate(c) => end_entity.as_ref() == c.as_ref(),
            Pin::Key(k) => spki
                .get_or_insert_with(|| {
                    webpki::EndEntityCert::try_from(end_entity)
                        .ok()
                        .map(|ee| ee.subject_public_key_info().as_ref().to_vec())
                })
                .as_deref()
                .is_some_and(|s| k.matches_spki(s)),
        })
    }

    fn mismatch(&self, end_entity: &CertificateDer<'_>) -> PinMismatch {
        let keys: Vec<String> = self
            .pins
            .iter()
            .filter_map(|p| match p {
                Pin::Key(k) => Some(k.to_string()),
                Pin::Certificate(_) => None,
            })
            .collect();
        if keys.is_empty() {
            let expected = self
                .pins
                .iter()
                .find_map(|p| match p {
                    Pin::Certificate(c) => Some(sha256_colon_hex(c)),
                    Pin::Key(_) => None,
                })
                .unwrap_or_else(|| "none".into());
            PinMismatch {
                expected: Expected::Certificate(expected),
                presented: sha256_colon_hex(end_entity),
            }
        } else {
            let presented = match key_pin_of(end_entity) {
                Ok(k) => k.to_string(),
                Err(e) => format!("unknown ({e})"),
            };
            PinMismatch {
                expected: Expected::Keys(keys),
                presented,
            }
        }
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
        if self.matches(end_entity) {
            Ok(ServerCertVerified::assertion())
        } else {
            let e = self.mismatch(end_entity);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(key: &rcgen::KeyPair, cn: &str) -> CertificateDer<'static> {
        let params = rcgen::CertificateParams::new(vec![cn.to_owned()]).unwrap();
        params.self_signed(key).unwrap().der().clone()
    }

    fn verify(v: &PinnedCertVerifier, c: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        v.verify_server_cert(
            c,
            &[],
            &ServerName::try_from("x").unwrap(),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
    }

    fn mismatch(r: Result<(), rustls::Error>) -> PinMismatch {
        match r {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(o))) => {
                o.0.downcast_ref::<PinMismatch>().unwrap().clone()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn key_pins_accept_any_certificate_for_the_key() {
        let provider = crate::tls::provider();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let first = cert(&key, "a");
        let renewed = cert(&key, "b");
        assert_ne!(first, renewed);
        let pin = key_pin_of(&first).unwrap();
        assert_eq!(pin, key_pin_of(&renewed).unwrap());
        let v = PinnedCertVerifier::with_pins(vec![Pin::Key(pin)], &provider);
        verify(&v, &first).unwrap();
        verify(&v, &renewed).unwrap();
        let m = mismatch(verify(&v, &cert(&other, "a")));
        assert!(m.by_key());
        let text = m.to_string();
        assert!(
            text.starts_with("server key does not match the pinned key"),
            "{text}"
        );
        assert!(text.contains(&pin.to_string()), "{text}");
        assert!(
            text.contains(&key_pin_of(&cert(&other, "z")).unwrap().to_string()),
            "{text}"
        );
        // A backup pin.
        let v = PinnedCertVerifier::with_pins(
            vec![
                Pin::Key(key_pin_of(&cert(&other, "x")).unwrap()),
                Pin::Key(pin),
            ],
            &provider,
        );
        verify(&v, &renewed).unwrap();
        // Not a certificate at all.
        let m = mismatch(verify(&v, &CertificateDer::from(vec![0x30, 0x00])));
        assert!(m.presented.starts_with("unknown"), "{}", m.presented);
    }

    #[test]
    fn certificate_pins_accept_only_the_certificate() {
        let provider = crate::tls::provider();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let first = cert(&key, "a");
        let v = PinnedCertVerifier::new(first.clone(), &provider);
        verify(&v, &first).unwrap();
        let m = mismatch(verify(&v, &cert(&key, "b")));
        assert!(!m.by_key());
        assert!(
            m.to_string()
                .starts_with("server certificate does not match the pinned certificate"),
            "{m}"
        );
    }
}
