//! A minimal, allocation-free DER walk over an X.509 certificate: just far enough to
//! find the subject public key and tell which kind of key it is.
//!
//! The pinned certificate is compared byte for byte with the one the server
//! presents, or the SubjectPublicKeyInfo's hash with a pinned key's, so nothing else in
//! it (names, validity, extensions) matters here.

/// `id-ecPublicKey` (1.2.840.10045.2.1), DER content octets.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// `prime256v1` / secp256r1 (1.2.840.10045.3.1.7).
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// PKCS #1 arc (1.2.840.113549.1.1): `rsaEncryption` (.1), `id-RSASSA-PSS` (.10).
const OID_PKCS1_ARC: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];

const TAG_SEQUENCE: u8 = 0x30;
const TAG_OID: u8 = 0x06;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_EXPLICIT_0: u8 = 0xa0;

/// Length of an uncompressed SEC1 P-256 point (`04 || x || y`).
pub const P256_POINT_LEN: usize = 65;

/// The kind of public key a certificate carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind<'a> {
    /// An ECDSA P-256 key: the SEC1 encoded point.
    P256(&'a [u8]),
    /// An RSA key (`rsaEncryption` or RSASSA-PSS). Verifying RSA signatures needs
    /// big-integer arithmetic that embedded-tls only offers with a heap.
    Rsa,
    /// An elliptic-curve key on another curve than P-256.
    OtherCurve,
    /// Any other algorithm (Ed25519, ...).
    Other,
}

/// The certificate is not well-formed DER (as far as this walk looks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// One DER element: its tag, its content, and what follows it.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    rest: &'a [u8],
}

fn tlv(input: &[u8]) -> Result<Tlv<'_>, Malformed> {
    let (&tag, after_tag) = input.split_first().ok_or(Malformed)?;
    let (&first, mut after_len) = after_tag.split_first().ok_or(Malformed)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        // Definite lengths up to 4 bytes: far more than any certificate needs.
        if count == 0 || count > 4 {
            return Err(Malformed);
        }
        let (bytes, rest) = after_len.split_at_checked(count).ok_or(Malformed)?;
        after_len = rest;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let (content, rest) = after_len.split_at_checked(len).ok_or(Malformed)?;
    Ok(Tlv { tag, content, rest })
}

fn expect(input: &[u8], tag: u8) -> Result<Tlv<'_>, Malformed> {
    let t = tlv(input)?;
    if t.tag == tag { Ok(t) } else { Err(Malformed) }
}

/// The SubjectPublicKeyInfo of a DER-encoded X.509 certificate: the whole DER element,
/// header included (what a key pin hashes), and its content.
fn spki_element(cert_der: &[u8]) -> Result<(&[u8], Tlv<'_>), Malformed> {
    let cert = expect(cert_der, TAG_SEQUENCE)?;
    let tbs = expect(cert.content, TAG_SEQUENCE)?;
    let mut fields = tbs.content;
    // version [0] EXPLICIT, optional
    let first = tlv(fields)?;
    if first.tag == TAG_EXPLICIT_0 {
        fields = first.rest;
    }
    // serialNumber, signature, issuer, validity, subject
    for _ in 0..5 {
        fields = tlv(fields)?.rest;
    }
    let spki = expect(fields, TAG_SEQUENCE)?;
    let whole = fields
        .get(..fields.len().saturating_sub(spki.rest.len()))
        .ok_or(Malformed)?;
    Ok((whole, spki))
}

/// The DER SubjectPublicKeyInfo of a certificate, with its `SEQUENCE` header: the
/// bytes whose SHA-256 is the certificate's key pin.
pub fn spki(cert_der: &[u8]) -> Result<&[u8], Malformed> {
    spki_element(cert_der).map(|(whole, _)| whole)
}

/// Finds the subject public key of a DER-encoded X.509 certificate.
pub fn public_key(cert_der: &[u8]) -> Result<KeyKind<'_>, Malformed> {
    let (_, spki) = spki_element(cert_der)?;
    let algorithm = expect(spki.content, TAG_SEQUENCE)?;
    let key_bits = expect(algorithm.rest, TAG_BIT_STRING)?;
    let oid = expect(algorithm.content, TAG_OID)?;

    if oid.content == OID_EC_PUBLIC_KEY {
        let curve = tlv(oid.rest)?;
        if curve.tag != TAG_OID || curve.content != OID_P256 {
            return Ok(KeyKind::OtherCurve);
        }
        // BIT STRING: one byte of unused bits (0), then the point.
        match key_bits.content.split_first() {
            Some((0, point)) if point.len() == P256_POINT_LEN => Ok(KeyKind::P256(point)),
            _ => Err(Malformed),
        }
    } else if oid.content.starts_with(OID_PKCS1_ARC) {
        Ok(KeyKind::Rsa)
    } else {
        Ok(KeyKind::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P256_CERT: &[u8] = include_bytes!("../tests/data/server-p256.der");
    const RSA_CERT: &[u8] = include_bytes!("../tests/data/server-rsa.der");

    #[test]
    fn finds_p256_key() {
        match public_key(P256_CERT) {
            Ok(KeyKind::P256(point)) => {
                assert_eq!(point.len(), P256_POINT_LEN);
                assert_eq!(point[0], 4);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_spki_is_the_whole_element() {
        let spki = spki(P256_CERT).unwrap();
        // SEQUENCE of 0x59 bytes: { SEQUENCE { ecPublicKey, prime256v1 }, BIT STRING }.
        assert_eq!(&spki[..4], &[0x30, 0x59, 0x30, 0x13]);
        assert_eq!(spki.len(), 2 + 0x59);
        let pin = seguro_core::invite::KeyPin::of_spki(spki).unwrap();
        assert_eq!(pin.alg, seguro_core::invite::KeyAlg::P256);
        let rsa = seguro_core::invite::KeyPin::of_spki(super::spki(RSA_CERT).unwrap()).unwrap();
        assert_eq!(rsa.alg, seguro_core::invite::KeyAlg::Rsa);
    }

    #[test]
    fn detects_rsa() {
        assert_eq!(public_key(RSA_CERT), Ok(KeyKind::Rsa));
    }

    #[test]
    fn truncated_certificates_are_malformed_not_panics() {
        for len in 0..P256_CERT.len() {
            assert!(
                public_key(&P256_CERT[..len]).is_err(),
                "prefix of {len} bytes"
            );
        }
        assert_eq!(public_key(b"not a certificate"), Err(Malformed));
    }
}
