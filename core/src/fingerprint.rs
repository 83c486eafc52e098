//! Public-key fingerprints for comparing keys out of band (PROTOCOL.md §5): the v1
//! short fingerprint and a longer safety code.
//!
//! Both are computed from `SHA-256(pub)`, the digest of the 32-byte X25519 public key.
//!
//! - **Short fingerprint** (v1, what the reference client prints): the first 16 lowercase
//!   hex digits of the digest as `xxxxxxxx-xxxxxxxx`, e.g. `e7398d9a-f4be0538`. It
//!   carries 64 bits, enough to catch a careless key substitution but within reach of a
//!   determined attacker searching for a colliding key.
//! - **Safety code** (Seguro's addition, shown beside it): all 256 bits of the digest as
//!   80 decimal digits in 16 groups of 5, separated by single spaces, e.g.
//!   `38793 08698 41060 93880 24252 …`. The digest is read as eight big-endian 32-bit words; each
//!   word is written as 10 zero-padded decimal digits and split into two groups of 5.
//!   Digits read aloud unambiguously in any language, and the groups can be compared
//!   a row of four at a time. The mapping is one-to-one, so two codes match exactly
//!   when the digests do.
//!
//! Each code describes one public key; to check a conversation, both users compare the
//! code of each of the two keys, or the **pair code** ([`pair_code`], what `/verify`
//! shows): 60 digits in 12 groups of 5, the first 6 groups of each key's safety code,
//! the key whose `SHA-256` digest is smaller first. Both users see the same 60 digits
//! (like Signal's safety numbers), and each half is the start of one user's own
//! safety code, so a mismatch tells who was substituted. Each half carries 96 bits.

use sha2::{Digest, Sha256};

/// Length of a short fingerprint in bytes: 16 hex digits and one `-`.
pub const SHORT_LEN: usize = 17;
/// Number of 5-digit groups in a safety code.
pub const SAFETY_GROUPS: usize = 16;
/// Length of a safety code in bytes: 16 groups of 5 digits and 15 spaces.
pub const SAFETY_LEN: usize = SAFETY_GROUPS * 5 + (SAFETY_GROUPS - 1);

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The v1 short fingerprint of a public key, `xxxxxxxx-xxxxxxxx` (lowercase hex).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShortFingerprint([u8; SHORT_LEN]);

impl ShortFingerprint {
    /// The fingerprint as text, e.g. `e7398d9a-f4be0538`.
    pub fn as_str(&self) -> &str {
        // Always ASCII by construction; the fallback is never taken.
        core::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl core::fmt::Display for ShortFingerprint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::fmt::Debug for ShortFingerprint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("ShortFingerprint")
            .field(&self.as_str())
            .finish()
    }
}

impl AsRef<str> for ShortFingerprint {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// Computes the v1 short fingerprint of a 32-byte public key.
pub fn short(key: &[u8; 32]) -> ShortFingerprint {
    let digest = Sha256::digest(key);
    let mut hex_digits = digest
        .iter()
        .take(8)
        .flat_map(|b| [hex(b >> 4), hex(b & 0x0f)]);
    let mut out = [b'-'; SHORT_LEN];
    for (i, slot) in out.iter_mut().enumerate() {
        if i != 8 {
            *slot = hex_digits.next().unwrap_or(b'0');
        }
    }
    ShortFingerprint(out)
}

/// The lowercase hex digit of a nibble (`0..=15`).
fn hex(nibble: u8) -> u8 {
    HEX.get(usize::from(nibble)).copied().unwrap_or(b'0')
}

/// The safety code of a public key: all 256 bits of `SHA-256(pub)` as 16 groups of 5
/// decimal digits (see the module documentation for the exact encoding).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SafetyCode([u8; SAFETY_LEN]);

impl SafetyCode {
    /// The code as one line of text: 16 groups of 5 digits separated by spaces.
    pub fn as_str(&self) -> &str {
        // Always ASCII by construction; the fallback is never taken.
        core::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The 16 groups of 5 digits, in reading order (e.g. to lay them out in rows of 4).
    pub fn groups(&self) -> impl Iterator<Item = &str> + '_ {
        self.as_str().split(' ')
    }
}

impl core::fmt::Display for SafetyCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::fmt::Debug for SafetyCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("SafetyCode").field(&self.as_str()).finish()
    }
}

impl AsRef<str> for SafetyCode {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// Computes the safety code of a 32-byte public key.
pub fn safety_code(key: &[u8; 32]) -> SafetyCode {
    let digest = Sha256::digest(key);
    let mut digits = digest.chunks_exact(4).flat_map(|word| {
        let mut word = u32::from_be_bytes(word.try_into().unwrap_or_default());
        let mut ten = [b'0'; 10];
        for d in ten.iter_mut().rev() {
            *d = b'0' + u8::try_from(word % 10).unwrap_or(0);
            word /= 10;
        }
        ten
    });
    let mut out = [b' '; SAFETY_LEN];
    // Every sixth byte is a separating space; the others take the digits in order.
    for (i, slot) in out.iter_mut().enumerate() {
        if i % 6 != 5 {
            *slot = digits.next().unwrap_or(b'0');
        }
    }
    SafetyCode(out)
}

/// Number of 5-digit groups in a pair code.
pub const PAIR_GROUPS: usize = 12;
/// Length of a pair code in bytes: 12 groups of 5 digits and 11 spaces.
pub const PAIR_LEN: usize = PAIR_GROUPS * 5 + (PAIR_GROUPS - 1);

/// The safety code of a pair of keys, the same whichever key is `a`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PairCode([u8; PAIR_LEN]);

impl PairCode {
    /// The code as one line of text: 12 groups of 5 digits separated by spaces.
    pub fn as_str(&self) -> &str {
        // Always ASCII by construction; the fallback is never taken.
        core::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl core::fmt::Display for PairCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::fmt::Debug for PairCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("PairCode").field(&self.as_str()).finish()
    }
}

/// The pair code of two public keys (see the module documentation).
pub fn pair_code(a: &[u8; 32], b: &[u8; 32]) -> PairCode {
    let (ca, cb) = (safety_code(a), safety_code(b));
    let (first, second) = if ca.as_str() <= cb.as_str() {
        (ca, cb)
    } else {
        (cb, ca)
    };
    let half = PAIR_LEN / 2;
    let mut out = [b' '; PAIR_LEN];
    let src = first
        .0
        .iter()
        .take(half)
        .chain(core::iter::once(&b' '))
        .chain(second.0.iter().take(half));
    for (dst, s) in out.iter_mut().zip(src) {
        *dst = *s;
    }
    PairCode(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `alice_pub` of vector `v1-1-0` in `vectors/e2ee-v1.json`.
    const ALICE: [u8; 32] = [
        0x74, 0xf1, 0xc0, 0x8a, 0x94, 0x00, 0x5d, 0x95, 0x30, 0xbe, 0xb2, 0xb5, 0x36, 0xc3, 0x8a,
        0x55, 0x05, 0x72, 0x3c, 0x6b, 0x7c, 0x78, 0xb3, 0xdf, 0x8b, 0x4b, 0x65, 0x78, 0x0a, 0x04,
        0x04, 0x6d,
    ];

    #[test]
    fn short_matches_reference() {
        let fp = short(&ALICE);
        assert_eq!(fp.as_str(), "e7398d9a-f4be0538");
        // SHA-256 of 32 zero bytes starts 66687aadf862bd77.
        assert_eq!(short(&[0; 32]).as_str(), "66687aad-f862bd77");
    }

    #[test]
    fn short_display_debug_eq() {
        let fp = short(&ALICE);
        let mut s = heapless::String::<64>::new();
        core::fmt::write(&mut s, format_args!("{fp} {fp:?}")).unwrap();
        assert_eq!(
            s.as_str(),
            "e7398d9a-f4be0538 ShortFingerprint(\"e7398d9a-f4be0538\")"
        );
        assert_eq!(fp, short(&ALICE));
        assert_ne!(fp, short(&[0; 32]));
    }

    #[test]
    fn safety_code_matches_independent_computation() {
        // Computed with Python: the digest as eight big-endian u32, each as %010d,
        // split into groups of five.
        assert_eq!(
            safety_code(&ALICE).as_str(),
            "38793 08698 41060 93880 24252 49607 00325 95728 \
             34888 60939 05155 47210 40628 14236 35872 42766"
        );
        assert_eq!(
            safety_code(&[0; 32]).as_str(),
            "17181 23181 41672 20599 18213 60523 23928 21280 \
             01441 18917 18603 18131 24186 94429 02243 40261"
        );
    }

    #[test]
    fn pair_code_is_symmetric_and_made_of_both_halves() {
        let z = [0u8; 32];
        let p = pair_code(&ALICE, &z);
        assert_eq!(p, pair_code(&z, &ALICE));
        // The zero key's code starts with 17181, ALICE's with 38793: zero first.
        assert_eq!(
            p.as_str(),
            "17181 23181 41672 20599 18213 60523 38793 08698 41060 93880 24252 49607"
        );
        assert_eq!(p.as_str().len(), PAIR_LEN);
        assert_ne!(p, pair_code(&ALICE, &ALICE));
        assert_ne!(p, pair_code(&z, &[1; 32]));
        let mut s = heapless::String::<128>::new();
        core::fmt::write(&mut s, format_args!("{p:?}")).unwrap();
        assert!(s.starts_with("PairCode(\"17181 "));
    }

    #[test]
    fn safety_code_shape() {
        let code = safety_code(&ALICE);
        assert_eq!(code.as_str().len(), SAFETY_LEN);
        assert_eq!(code.groups().count(), SAFETY_GROUPS);
        assert!(
            code.groups()
                .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
        );
        assert_ne!(code, safety_code(&[0; 32]));
    }
}
