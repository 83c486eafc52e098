//! The client's CSPRNG: ChaCha20 seeded from a SHA-256 over everything the board can
//! offer as entropy.
//!
//! TLS key shares, AES-GCM nonces and the X25519 identity key all come from here, so
//! the seed must be unpredictable. Feed [`Seeder`] generously:
//!
//! - **A true RNG peripheral** (STM32 `RNG`, nRF `RNG`, ESP32 with its RF subsystem on,
//!   RP2350 `TRNG`): 32 bytes are enough in principle; absorb 64 or more anyway.
//! - **RP2040: there is no true RNG.** The only source is the ring oscillator's
//!   `RANDOMBIT`, which is biased and correlated between consecutive reads (embassy-rp's
//!   `RoscRng`). Absorb at least 256 bytes from it (more is better), plus the flash
//!   unique ID (not secret, but makes seeds differ between boards) and timer jitter,
//!   e.g. the low bits of a µs timer sampled around each ROSC read. The SHA-256
//!   condenses that weak material into a 32-byte seed.
//! - **ESP32 without RF running**: the RNG output is only pseudo-random until Wi-Fi or
//!   Bluetooth is enabled (or the bootloader's entropy source is on): start the radio
//!   before seeding, or mix in ADC noise.
//!
//! Extra material (a device secret from flash, a saved seed file updated at each boot)
//! can only help: absorbing predictable bytes never weakens the seed.
//!
//! # A seed kept in flash
//!
//! A board with a flash store ([`crate::store`]) keeps a 32-byte seed there. At every
//! boot, [`crate::store::FlashStore::boot_rng`] absorbs the stored seed and the boot
//! counter together with the fresh entropy, and [`Seeder::finish_with_next`] derives
//! two independent values from everything absorbed: the seed of this boot's generator
//! and the seed to store for the next boot. The next seed is written to flash before
//! the generator is handed out, so even a board whose fresh entropy repeats exactly
//! (a weak ring oscillator, a cold start) never runs the same stream twice, and reading
//! the flash later reveals nothing of the stream this boot used.

use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};
use sha2::{Digest, Sha256};

/// Domain separation for the seed hash.
const SEED_LABEL: &[u8] = b"seguro-embassy rng seed v1";

/// Collects entropy and turns it into a [`SeededRng`].
pub struct Seeder {
    hash: Sha256,
    absorbed: usize,
}

impl Default for Seeder {
    fn default() -> Self {
        Self::new()
    }
}

impl Seeder {
    /// An empty seeder.
    pub fn new() -> Self {
        let mut hash = Sha256::new();
        hash.update(SEED_LABEL);
        Self { hash, absorbed: 0 }
    }

    /// Absorbs raw entropy material (RNG output, jitter samples, IDs).
    pub fn absorb(&mut self, material: &[u8]) -> &mut Self {
        // Length-prefix each piece so that different splits hash differently.
        self.hash.update((material.len() as u64).to_le_bytes());
        self.hash.update(material);
        self.absorbed = self.absorbed.saturating_add(material.len());
        self
    }

    /// Absorbs `bytes` bytes drawn from a board RNG, 64 at a time.
    pub fn absorb_rng(&mut self, rng: &mut impl RngCore, bytes: usize) -> &mut Self {
        let mut block = [0u8; 64];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(block.len());
            let chunk = block.get_mut(..n).unwrap_or(&mut []);
            rng.fill_bytes(chunk);
            self.absorb(chunk);
            left -= n;
        }
        block.fill(0);
        self
    }

    /// How many bytes were absorbed so far.
    pub fn absorbed(&self) -> usize {
        self.absorbed
    }

    /// The CSPRNG seeded with SHA-256 of everything absorbed.
    pub fn finish(self) -> SeededRng {
        let seed: [u8; 32] = self.hash.finalize().into();
        SeededRng(ChaCha20Rng::from_seed(seed))
    }

    /// The CSPRNG and, independent of it, a seed to keep for the next boot: with `d`
    /// the SHA-256 of everything absorbed, the generator is seeded with
    /// `SHA-256(label ‖ "rng" ‖ d)` and the next seed is `SHA-256(label ‖ "next" ‖ d)`.
    /// Knowing the next seed tells nothing about this generator's stream.
    pub fn finish_with_next(self) -> (SeededRng, [u8; 32]) {
        let mut digest: [u8; 32] = self.hash.finalize().into();
        let derive = |what: &[u8]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update(SEED_LABEL);
            h.update(what);
            h.update(digest);
            h.finalize().into()
        };
        let rng = derive(b"rng");
        let next = derive(b"next");
        digest.fill(0);
        (SeededRng(ChaCha20Rng::from_seed(rng)), next)
    }
}

/// ChaCha20 seeded by a [`Seeder`]: rand_core 0.6 `RngCore + CryptoRng`, as
/// embedded-tls and seguro-core want.
pub struct SeededRng(ChaCha20Rng);

impl SeededRng {
    /// Seeds from a whole 32-byte seed the caller already trusts.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(ChaCha20Rng::from_seed(seed))
    }

    /// Convenience: seeds from `bytes` bytes of a board RNG (see the module docs for
    /// how many a weak RNG needs).
    pub fn from_board_rng(rng: &mut impl RngCore, bytes: usize) -> Self {
        let mut seeder = Seeder::new();
        seeder.absorb_rng(rng, bytes);
        seeder.finish()
    }

    /// Mixes more entropy into the running state (e.g. timing of network events):
    /// the new seed is SHA-256 of 32 bytes of current output and `material`.
    pub fn mix(&mut self, material: &[u8]) {
        let mut current = [0u8; 32];
        self.0.fill_bytes(&mut current);
        let mut seeder = Seeder::new();
        seeder.absorb(&current).absorb(material);
        current.fill(0);
        *self = seeder.finish();
    }
}

impl RngCore for SeededRng {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.try_fill_bytes(dest)
    }
}

impl CryptoRng for SeededRng {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_with_material_and_split() {
        let mut a = Seeder::new();
        a.absorb(b"ab").absorb(b"c");
        let mut b = Seeder::new();
        b.absorb(b"a").absorb(b"bc");
        let (mut ra, mut rb) = (a.finish(), b.finish());
        assert_ne!(ra.next_u64(), rb.next_u64());
    }

    #[test]
    fn same_material_same_stream_and_mix_changes_it() {
        let mut a = SeededRng::from_seed([7; 32]);
        let mut b = SeededRng::from_seed([7; 32]);
        assert_eq!(a.next_u64(), b.next_u64());
        b.mix(b"jitter");
        assert_ne!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn finish_with_next_splits_the_stream_from_the_next_seed() {
        let mut a = Seeder::new();
        a.absorb(b"entropy");
        let (mut rng, next) = a.finish_with_next();
        let mut b = Seeder::new();
        b.absorb(b"entropy");
        let (mut rng2, next2) = b.finish_with_next();
        assert_eq!(next, next2);
        let mut out = [0u8; 32];
        rng.fill_bytes(&mut out);
        let mut out2 = [0u8; 32];
        rng2.fill_bytes(&mut out2);
        assert_eq!(out, out2);
        // The next seed is neither the stream nor what `finish` would have seeded.
        assert_ne!(out, next);
        let mut c = Seeder::new();
        c.absorb(b"entropy");
        let mut plain = c.finish();
        let mut out3 = [0u8; 32];
        plain.fill_bytes(&mut out3);
        assert_ne!(out3, out);
        let mut d = SeededRng::from_seed(next);
        let mut out4 = [0u8; 32];
        d.fill_bytes(&mut out4);
        assert_ne!(out4, out);
    }

    #[test]
    fn absorb_rng_counts_bytes() {
        let mut board = SeededRng::from_seed([1; 32]);
        let mut s = Seeder::new();
        s.absorb_rng(&mut board, 300);
        assert_eq!(s.absorbed(), 300);
    }
}
