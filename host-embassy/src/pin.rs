//! Pinning for embedded-tls without a heap: the server is accepted if and only if its
//! end-entity certificate is byte-for-byte the pinned DER, or carries a pinned key (the
//! SHA-256 of its SubjectPublicKeyInfo is an invite's pin or backup pin), AND its TLS 1.3
//! CertificateVerify signature (ECDSA P-256 / SHA-256 over the handshake transcript)
//! verifies with the key of that certificate.
//!
//! A key pin keeps a board working when the server's certificate is renewed for the same
//! key (`seguro gen-cert --renew`), and a backup pin lets the server move to a new key.
//!
//! The verifier also records that both steps ran: embedded-tls 0.19.0 lets a server
//! that sends neither Certificate nor CertificateVerify complete the handshake without
//! ever calling the verifier, so [`crate::tls::open`] checks [`PinnedVerifier::verified`]
//! after the handshake and refuses the connection otherwise.

use core::fmt;

use embedded_tls::{
    Aes128GcmSha256, CertificateEntryRef, CertificateRef, CertificateVerifyRef, CryptoProvider,
    SignatureScheme, TlsError, TlsVerifier,
};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{DerSignature, Signature, VerifyingKey};
use rand_core::{CryptoRng, CryptoRngCore, RngCore};
use sha2::{Digest, Sha256};

use seguro_core::invite::{Invite, KeyAlg, KeyPin};

use crate::cert::{self, KeyKind};

/// The one cipher suite embedded-tls is used with here (and the one PROTOCOL.md §1
/// asks every server to offer): TLS_AES_128_GCM_SHA256.
pub type CipherSuite = Aes128GcmSha256;

/// Why a server (or the pinned certificate itself) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PinError {
    /// The pinned certificate is not DER that this client can read.
    PinnedMalformed,
    /// The pinned certificate has an RSA key.
    PinnedRsa,
    /// The pinned certificate has a key that is neither P-256 nor RSA.
    PinnedUnsupportedKey,
    /// The server presented an RSA certificate.
    ServerRsa,
    /// The server presented a certificate other than the pinned one.
    CertificateMismatch,
    /// The server presented a certificate for another key than the pinned ones.
    KeyMismatch,
    /// The server sent an empty or unusable Certificate message.
    NoCertificate,
    /// The server sent Certificate more than once.
    DuplicateCertificate,
    /// CertificateVerify came without a verified certificate before it.
    UnexpectedCertificateVerify,
    /// CertificateVerify used another scheme than ECDSA P-256 / SHA-256.
    UnsupportedSignatureScheme,
    /// The CertificateVerify signature does not verify with the pinned key.
    BadSignature,
    /// The handshake completed but the server never proved it holds the pinned
    /// certificate's key (no Certificate and/or no CertificateVerify message).
    NotVerified,
}

/// The advice that goes with every RSA refusal.
pub const RSA_ADVICE: &str = "boards need a P-256 certificate: seguro gen-cert";

impl fmt::Display for PinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PinnedMalformed => f.write_str("the pinned certificate is not valid DER"),
            Self::PinnedRsa => write!(
                f,
                "the pinned certificate has an RSA key, which cannot be verified without a heap; {RSA_ADVICE}"
            ),
            Self::PinnedUnsupportedKey => write!(
                f,
                "the pinned certificate's key is not ECDSA P-256; {RSA_ADVICE}"
            ),
            Self::ServerRsa => write!(
                f,
                "the server presented an RSA certificate, which cannot be verified without a heap; {RSA_ADVICE}"
            ),
            Self::CertificateMismatch => {
                f.write_str("the server's certificate is not the pinned certificate")
            }
            Self::KeyMismatch => f.write_str("the server's key is not the pinned key"),
            Self::NoCertificate => f.write_str("the server sent no usable certificate"),
            Self::DuplicateCertificate => f.write_str("the server sent two certificates"),
            Self::UnexpectedCertificateVerify => {
                f.write_str("the server sent a signature before a verified certificate")
            }
            Self::UnsupportedSignatureScheme => {
                f.write_str("the server signed with another scheme than ECDSA P-256/SHA-256")
            }
            Self::BadSignature => f.write_str("the server's handshake signature does not verify"),
            Self::NotVerified => f.write_str(
                "the server completed the handshake without proving it holds the pinned certificate",
            ),
        }
    }
}

/// What the server is pinned by, checked once: a P-256 certificate, or the hashes of one
/// or two P-256 keys.
#[derive(Clone, Copy)]
pub struct Pin<'a> {
    kind: PinKind<'a>,
}

#[derive(Clone, Copy)]
enum PinKind<'a> {
    /// This certificate, and so its key.
    Certificate { der: &'a [u8], key: VerifyingKey },
    /// SHA-256 of the SubjectPublicKeyInfo: the key, then an optional backup key.
    Keys {
        primary: [u8; 32],
        backup: Option<[u8; 32]>,
    },
}

impl fmt::Debug for Pin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            PinKind::Certificate { der, .. } => f
                .debug_struct("Pin")
                .field("der_len", &der.len())
                .finish_non_exhaustive(),
            PinKind::Keys { backup, .. } => f
                .debug_struct("Pin")
                .field("keys", &(1 + usize::from(backup.is_some())))
                .finish_non_exhaustive(),
        }
    }
}

fn check_alg(alg: KeyAlg) -> Result<(), PinError> {
    match alg {
        KeyAlg::P256 => Ok(()),
        KeyAlg::Rsa => Err(PinError::PinnedRsa),
        _ => Err(PinError::PinnedUnsupportedKey),
    }
}

impl<'a> Pin<'a> {
    /// Pins `der`, a DER-encoded X.509 certificate with an ECDSA P-256 key.
    ///
    /// An RSA certificate is refused with [`PinError::PinnedRsa`], whose message says
    /// that boards need a P-256 certificate (`seguro gen-cert`).
    pub fn new(der: &'a [u8]) -> Result<Self, PinError> {
        match cert::public_key(der) {
            Ok(KeyKind::P256(point)) => {
                let key =
                    VerifyingKey::from_sec1_bytes(point).map_err(|_| PinError::PinnedMalformed)?;
                Ok(Self {
                    kind: PinKind::Certificate { der, key },
                })
            }
            Ok(KeyKind::Rsa) => Err(PinError::PinnedRsa),
            Ok(KeyKind::OtherCurve | KeyKind::Other) => Err(PinError::PinnedUnsupportedKey),
            Err(cert::Malformed) => Err(PinError::PinnedMalformed),
        }
    }

    /// Pins a key (and optionally a backup key) by the SHA-256 of its
    /// SubjectPublicKeyInfo. Both must be P-256 keys: an RSA pin is refused with
    /// [`PinError::PinnedRsa`].
    pub fn keys(primary: KeyPin, backup: Option<KeyPin>) -> Result<Self, PinError> {
        check_alg(primary.alg)?;
        if let Some(b) = backup {
            check_alg(b.alg)?;
        }
        Ok(Self {
            kind: PinKind::Keys {
                primary: primary.sha256,
                backup: backup.map(|b| b.sha256),
            },
        })
    }

    /// Pins the key and backup key of an invite.
    pub fn from_invite(invite: &Invite<'_>) -> Result<Self, PinError> {
        Self::keys(invite.pin(), invite.backup())
    }

    /// What is pinned, for the user: "pinned certificate" or "pinned key".
    pub fn what(&self) -> &'static str {
        match self.kind {
            PinKind::Certificate { .. } => "pinned certificate",
            PinKind::Keys { .. } => "pinned key",
        }
    }

    /// The pinned certificate, DER (`None` for a key pin).
    pub fn der(&self) -> Option<&'a [u8]> {
        match self.kind {
            PinKind::Certificate { der, .. } => Some(der),
            PinKind::Keys { .. } => None,
        }
    }

    /// The key of `presented` if it is what this pin accepts.
    fn accept(&self, presented: &[u8]) -> Result<VerifyingKey, PinError> {
        let refused = |mismatch| match cert::public_key(presented) {
            Ok(KeyKind::Rsa) => PinError::ServerRsa,
            _ => mismatch,
        };
        match self.kind {
            PinKind::Certificate { der, key } => {
                if presented == der {
                    Ok(key)
                } else {
                    Err(refused(PinError::CertificateMismatch))
                }
            }
            PinKind::Keys { primary, backup } => {
                let spki = cert::spki(presented).map_err(|_| PinError::NoCertificate)?;
                let digest: [u8; 32] = Sha256::digest(spki).into();
                if digest != primary && Some(digest) != backup {
                    return Err(refused(PinError::KeyMismatch));
                }
                match cert::public_key(presented) {
                    Ok(KeyKind::P256(point)) => {
                        VerifyingKey::from_sec1_bytes(point).map_err(|_| PinError::KeyMismatch)
                    }
                    Ok(KeyKind::Rsa) => Err(PinError::ServerRsa),
                    _ => Err(PinError::KeyMismatch),
                }
            }
        }
    }
}

/// The context string of a server's TLS 1.3 CertificateVerify (RFC 8446 §4.4.3).
const SERVER_CONTEXT: &[u8] = b"TLS 1.3, server CertificateVerify\x00";

/// One handshake's pinning state. Create a fresh one for every connection.
pub struct PinnedVerifier<'a> {
    pin: Pin<'a>,
    /// The key of the accepted certificate, for CertificateVerify.
    key: Option<VerifyingKey>,
    /// Transcript hash up to and including Certificate, kept for CertificateVerify.
    transcript: Option<Sha256>,
    certificate_ok: bool,
    signature_ok: bool,
    failure: Option<PinError>,
}

impl<'a> PinnedVerifier<'a> {
    /// A verifier that has seen nothing yet.
    pub fn new(pin: Pin<'a>) -> Self {
        Self {
            pin,
            key: None,
            transcript: None,
            certificate_ok: false,
            signature_ok: false,
            failure: None,
        }
    }

    /// `Ok` only if the pinned certificate was presented AND its signature over the
    /// transcript verified. This is the guard against embedded-tls 0.19.0 completing a
    /// handshake in which the server sent neither message.
    pub fn verified(&self) -> Result<(), PinError> {
        if let Some(failure) = self.failure {
            return Err(failure);
        }
        if self.certificate_ok && self.signature_ok {
            Ok(())
        } else {
            Err(PinError::NotVerified)
        }
    }

    /// The first pinning failure seen in this handshake, if any.
    pub fn failure(&self) -> Option<PinError> {
        self.failure
    }

    fn fail(&mut self, error: PinError) -> TlsError {
        self.key = None;
        self.certificate_ok = false;
        self.signature_ok = false;
        if self.failure.is_none() {
            self.failure = Some(error);
        }
        match error {
            PinError::BadSignature
            | PinError::UnsupportedSignatureScheme
            | PinError::UnexpectedCertificateVerify => TlsError::InvalidSignature,
            _ => TlsError::InvalidCertificate,
        }
    }

    fn check_certificate(&self, cert: &CertificateRef<'_>) -> Result<VerifyingKey, PinError> {
        if self.certificate_ok || self.failure.is_some() {
            return Err(PinError::DuplicateCertificate);
        }
        let presented = match cert.entries.first() {
            Some(CertificateEntryRef::X509(der)) => *der,
            Some(CertificateEntryRef::RawPublicKey(_)) | None => {
                return Err(PinError::NoCertificate);
            }
        };
        self.pin.accept(presented)
    }

    fn check_signature(&mut self, verify: &CertificateVerifyRef<'_>) -> Result<(), PinError> {
        let (transcript, key) = match (self.transcript.take(), self.key) {
            (Some(t), Some(key)) if self.certificate_ok && !self.signature_ok => (t, key),
            _ => return Err(PinError::UnexpectedCertificateVerify),
        };
        match verify.signature_scheme {
            SignatureScheme::EcdsaSecp256r1Sha256 => {}
            SignatureScheme::RsaPkcs1Sha256
            | SignatureScheme::RsaPkcs1Sha384
            | SignatureScheme::RsaPkcs1Sha512
            | SignatureScheme::RsaPssRsaeSha256
            | SignatureScheme::RsaPssRsaeSha384
            | SignatureScheme::RsaPssRsaeSha512
            | SignatureScheme::RsaPssPssSha256
            | SignatureScheme::RsaPssPssSha384
            | SignatureScheme::RsaPssPssSha512 => return Err(PinError::ServerRsa),
            _ => return Err(PinError::UnsupportedSignatureScheme),
        }
        let signature =
            Signature::from_der(verify.signature).map_err(|_| PinError::BadSignature)?;
        // 64 spaces, the context string, then the transcript hash (RFC 8446 §4.4.3).
        // `VerifyingKey::verify` hashes the message with SHA-256 itself.
        let mut message = [0x20u8; 64 + SERVER_CONTEXT.len() + 32];
        let (context, hash) = message
            .get_mut(64..)
            .ok_or(PinError::BadSignature)?
            .split_at_mut(SERVER_CONTEXT.len());
        context.copy_from_slice(SERVER_CONTEXT);
        hash.copy_from_slice(&transcript.finalize());
        key.verify(&message, &signature)
            .map_err(|_| PinError::BadSignature)
    }
}

impl TlsVerifier<CipherSuite> for PinnedVerifier<'_> {
    fn set_hostname_verification(&mut self, _hostname: &str) -> Result<(), TlsError> {
        // Pinning replaces name checks: clients reach the server through tunnels whose
        // host name never matches the certificate (PROTOCOL.md §1).
        Ok(())
    }

    fn verify_certificate(
        &mut self,
        transcript: &Sha256,
        cert: CertificateRef<'_>,
    ) -> Result<(), TlsError> {
        match self.check_certificate(&cert) {
            Ok(key) => {
                self.key = Some(key);
                self.transcript = Some(transcript.clone());
                self.certificate_ok = true;
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef<'_>) -> Result<(), TlsError> {
        match self.check_signature(&verify) {
            Ok(()) => {
                self.signature_ok = true;
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }
}

/// The embedded-tls [`CryptoProvider`]: the caller's CSPRNG and a [`PinnedVerifier`].
pub struct PinnedProvider<'v, 'p, R> {
    rng: R,
    verifier: &'v mut PinnedVerifier<'p>,
}

impl<'v, 'p, R: RngCore + CryptoRng> PinnedProvider<'v, 'p, R> {
    /// Uses `rng` for the key exchange and `verifier` for the server's proofs.
    pub fn new(rng: R, verifier: &'v mut PinnedVerifier<'p>) -> Self {
        Self { rng, verifier }
    }
}

impl<R: RngCore + CryptoRng> CryptoProvider for PinnedProvider<'_, '_, R> {
    type CipherSuite = CipherSuite;
    type Signature = DerSignature;

    fn rng(&mut self) -> impl CryptoRngCore {
        &mut self.rng
    }

    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<Self::CipherSuite>, TlsError> {
        Ok(&mut *self.verifier)
    }
}
