//! The storage record of the long-term identity ([`crate::identity::Identity`]): both
//! secret keys, both public keys (checked against the secrets when read, so a record
//! whose halves do not belong together is refused) and the creation time.
//!
//! Identity record (kind [`kind::IDENTITY`], version 1), 137 + n bytes of body:
//!
//! ```text
//! offset  size  field
//! 0       1     n, length of the user name in bytes (1..=128)
//! 1       n     user name (UTF-8) the identity was made for
//! 1+n     32    X25519 secret key
//! 33+n    32    X25519 public key (checked against the secret when read)
//! 65+n    32    Ed25519 secret key (the 32-byte seed of RFC 8032)
//! 97+n    32    Ed25519 public key (checked against the secret when read)
//! 129+n   8     created: host timestamp (desktop: Unix seconds; 0 if unknown), u64 LE
//! ```
//!
//! An identity file is a file of type [`file_type::IDENTITY`] holding exactly one
//! identity record.

use heapless::String;
use zeroize::Zeroizing;

use super::{Body, Cursor, Reader, Record, StoreError, Writer, file_type, kind};
use crate::e2ee::KEY_LEN;
use crate::identity::Identity;
use crate::limits::MAX_NAME_BYTES;

/// Largest identity record body (with a 128-byte name).
pub const IDENTITY_BODY_MAX: usize = 1 + MAX_NAME_BYTES + 4 * KEY_LEN + 8;

/// The identity's storage record ([`crate::identity::Identity`] is the type itself).
impl Identity {
    /// Writes the identity record body for `name`.
    fn body(&self, name: &str, b: &mut Body<'_, '_>) {
        b.name(name);
        b.bytes(self.x_secret_bytes().as_ref());
        b.bytes(&self.public());
        b.bytes(self.signing_key().as_bytes());
        b.bytes(&self.ed25519_public());
        b.u64(self.created());
    }

    /// Appends the identity record for `name` to a file being written.
    pub fn write(&self, name: &str, w: &mut Writer<'_>) {
        w.record(kind::IDENTITY, 1, |b| self.body(name, b));
    }

    /// Encodes the identity record alone (for a flash map) into `out`; returns its
    /// length. The buffer holds secret keys afterwards: wipe it.
    pub fn encode_record(&self, name: &str, out: &mut [u8]) -> Result<usize, StoreError> {
        super::encode_record(out, kind::IDENTITY, 1, |b| self.body(name, b))
    }

    /// Encodes an identity file for `name` into `out`; returns its length (or the
    /// length needed). The buffer holds secret keys afterwards: wipe it.
    pub fn encode_file(&self, name: &str, out: &mut [u8]) -> Result<usize, StoreError> {
        let mut w = Writer::new(out, file_type::IDENTITY);
        self.write(name, &mut w);
        w.finish()
    }

    /// Parses an identity record; returns the identity and the name it was made for.
    ///
    /// Refuses a record whose public keys do not match its secret keys.
    pub fn from_record(record: &Record<'_>) -> Result<(Self, String<MAX_NAME_BYTES>), StoreError> {
        if record.kind != kind::IDENTITY {
            return Err(StoreError::Missing {
                kind: kind::IDENTITY,
            });
        }
        record.expect_version(1)?;
        let mut c = Cursor::new(record);
        let name = c.name()?;
        let x_secret = Zeroizing::new(c.array::<KEY_LEN>()?);
        let x_public = c.array::<KEY_LEN>()?;
        let ed_secret = Zeroizing::new(c.array::<KEY_LEN>()?);
        let ed_public = c.array::<KEY_LEN>()?;
        let created = c.u64()?;
        c.end()?;
        let id = Self::from_secrets(&x_secret, &ed_secret, created);
        if id.public() != x_public || id.ed25519_public() != ed_public {
            return Err(StoreError::KeyMismatch);
        }
        Ok((id, name))
    }

    /// Parses an identity file; returns the identity and the name it was made for.
    pub fn decode_file(data: &[u8]) -> Result<(Self, String<MAX_NAME_BYTES>), StoreError> {
        let mut r = Reader::new(data, file_type::IDENTITY)?;
        let mut found = None;
        while let Some(rec) = r.next()? {
            if rec.kind != kind::IDENTITY {
                continue; // a later kind: skipped
            }
            if found.is_some() {
                return Err(StoreError::Duplicate {
                    kind: kind::IDENTITY,
                });
            }
            found = Some(Self::from_record(&rec)?);
        }
        found.ok_or(StoreError::Missing {
            kind: kind::IDENTITY,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Reader, read_record};

    fn id() -> Identity {
        Identity::from_secrets(&[1; 32], &[2; 32], 1_700_000_000)
    }

    #[test]
    fn file_round_trip() {
        let a = id();
        let mut buf = [0u8; 256];
        let n = a.encode_file("alice", &mut buf).unwrap();
        assert_eq!(
            n,
            crate::store::HEADER_LEN + 8 + 137 + 5 + crate::store::END_LEN
        );
        let (b, name) = Identity::decode_file(&buf[..n]).unwrap();
        assert_eq!(name.as_str(), "alice");
        assert_eq!(b.public(), a.public());
        assert_eq!(b.ed25519_public(), a.ed25519_public());
        assert_eq!(b.created(), 1_700_000_000);
        assert_eq!(b.x25519().secret_bytes(), [1; 32]);
        // RFC 8032 test 1 is seed 9d61...; here just check the seed is what was stored.
        assert_eq!(b.signing_key().as_bytes(), &[2; 32]);
        assert_eq!(
            a.encode_file("alice", &mut [0u8; 10]),
            Err(StoreError::BufferTooSmall { needed: n })
        );
    }

    #[test]
    fn rfc8032_public_key() {
        // RFC 8032 §7.1 TEST 1.
        let seed: [u8; 32] = [
            0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec,
            0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03,
            0x1c, 0xae, 0x7f, 0x60,
        ];
        let id = Identity::from_secrets(&[0; 32], &seed, 0);
        assert_eq!(
            id.ed25519_public()[..4],
            [0xd7, 0x5a, 0x98, 0x01],
            "d75a980182b10ab7..."
        );
    }

    #[test]
    fn mismatched_public_key_is_refused() {
        let a = id();
        let mut buf = [0u8; 256];
        let n = a.encode_file("alice", &mut buf).unwrap();
        // Rewrite the record with a wrong public key and a correct CRC.
        let mut r = Reader::new(&buf[..n], file_type::IDENTITY).unwrap();
        let rec = r.next().unwrap().unwrap();
        let mut body = [0u8; 256];
        let len = rec.body.len();
        body[..len].copy_from_slice(rec.body);
        body[1 + 5 + 32] ^= 1;
        let mut out = [0u8; 256];
        let mut w = Writer::new(&mut out, file_type::IDENTITY);
        w.record(kind::IDENTITY, 1, |b| b.bytes(&body[..len]));
        let m = w.finish().unwrap();
        assert_eq!(
            Identity::decode_file(&out[..m]).unwrap_err(),
            StoreError::KeyMismatch
        );
    }

    #[test]
    fn duplicates_missing_and_newer_versions_are_refused() {
        let a = id();
        let mut out = [0u8; 512];
        let mut w = Writer::new(&mut out, file_type::IDENTITY);
        a.write("alice", &mut w);
        a.write("alice", &mut w);
        let m = w.finish().unwrap();
        assert_eq!(
            Identity::decode_file(&out[..m]).unwrap_err(),
            StoreError::Duplicate {
                kind: kind::IDENTITY
            }
        );
        let w = Writer::new(&mut out, file_type::IDENTITY);
        let m = w.finish().unwrap();
        assert_eq!(
            Identity::decode_file(&out[..m]).unwrap_err(),
            StoreError::Missing {
                kind: kind::IDENTITY
            }
        );
        let mut w = Writer::new(&mut out, file_type::IDENTITY);
        w.record(kind::IDENTITY, 2, |b| b.bytes(b"future"));
        let m = w.finish().unwrap();
        assert_eq!(
            Identity::decode_file(&out[..m]).unwrap_err(),
            StoreError::UnsupportedVersion {
                kind: kind::IDENTITY,
                version: 2
            }
        );
        // A later kind beside the identity is skipped.
        let mut w = Writer::new(&mut out, file_type::IDENTITY);
        w.record(0x60, 1, |b| b.bytes(b"later"));
        a.write("alice", &mut w);
        let m = w.finish().unwrap();
        assert!(Identity::decode_file(&out[..m]).is_ok());
        // The record alone.
        let n = a.encode_record("bob", &mut out).unwrap();
        let (rec, rest) = read_record(&out[..n]).unwrap();
        assert!(rest.is_empty());
        let (b, name) = Identity::from_record(&rec).unwrap();
        assert_eq!((b.public(), name.as_str()), (a.public(), "bob"));
    }
}
