//! A board's stored RNG seed and boot counter.
//!
//! Seed record (kind [`kind::SEED`], version 1), 40 bytes of body:
//!
//! ```text
//! offset  size  field
//! 0       32    seed: mixed with fresh entropy at the next boot, then replaced
//! 32      8     boots: number of boots that replaced the seed so far, u64 LE
//! ```
//!
//! The boot counter doubles as a clock for boards without one: it only grows, so it
//! orders "last seen" times in the trust store across reboots.

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{Cursor, Record, StoreError, kind};

/// Length of a seed record body.
pub const SEED_BODY_LEN: usize = 40;

/// A stored RNG seed and the boot counter. The seed is wiped when dropped.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Seed {
    /// The seed.
    pub seed: [u8; 32],
    /// Boots so far.
    pub boots: u64,
}

impl Seed {
    /// Encodes the seed record into `out`; returns its length (48).
    pub fn encode_record(&self, out: &mut [u8]) -> Result<usize, StoreError> {
        super::encode_record(out, kind::SEED, 1, |b| {
            b.bytes(&self.seed);
            b.u64(self.boots);
        })
    }

    /// Parses a seed record.
    pub fn from_record(record: &Record<'_>) -> Result<Self, StoreError> {
        if record.kind != kind::SEED {
            return Err(StoreError::Missing { kind: kind::SEED });
        }
        record.expect_version(1)?;
        let mut c = Cursor::new(record);
        let seed = c.array::<32>()?;
        let boots = c.u64()?;
        c.end()?;
        Ok(Self { seed, boots })
    }
}

impl core::fmt::Debug for Seed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Seed")
            .field("boots", &self.boots)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::read_record;

    #[test]
    fn round_trip() {
        let s = Seed {
            seed: [9; 32],
            boots: 7,
        };
        let mut out = [0u8; 64];
        let n = s.encode_record(&mut out).unwrap();
        assert_eq!(n, 8 + SEED_BODY_LEN);
        let (rec, _) = read_record(&out[..n]).unwrap();
        assert_eq!(Seed::from_record(&rec).unwrap(), s);
        out[5] ^= 1;
        assert_eq!(read_record(&out[..n]).unwrap_err(), StoreError::Checksum);
    }
}
