//! What a board keeps in flash: its identity, an RNG seed with a boot counter, and a
//! bounded trust store, in a [`sequential-storage`] map over any
//! `embedded-storage-async` NOR flash.
//!
//! # Layout
//!
//! The map's keys are `u16`; every value is one record of `seguro_core::store` (kind,
//! version, length, body, CRC-32), so the format is the desktop's, and a value that
//! does not decode is detected on top of sequential-storage's own item CRCs.
//!
//! | key | value |
//! |---|---|
//! | `0x0001` | the identity record (X25519 + Ed25519 secret keys, the user name, creation boot) |
//! | `0x0002` | the seed record (32-byte seed, boot counter) |
//! | `0x0100 + i` | slot `i` of the trust store: a contact record, or empty (slot free) |
//! | `0x0200 + i` | slot `i` of the nonce memories (`seguro_core::replay`, kind 0x11): one peer's sent and received v1 nonces, or empty |
//! | `0x0300 + i` | reserved: v2 session state |
//!
//! # Boot
//!
//! 1. [`FlashStore::boot_rng`]: the stored seed and boot counter are mixed with fresh
//!    entropy ([`crate::rng::Seeder::finish_with_next`]); the next seed and the counter
//!    plus one are written; only then is the generator returned. So the seed is
//!    replaced before anything (a TLS key share, a nonce, a message) is drawn from it,
//!    and no two boots share a stream even when the fresh entropy repeats.
//! 2. [`FlashStore::identity`]: the stored identity, or a new one, written before it is
//!    returned (a power cut before that leaves no identity and the next boot makes
//!    another one, never having used the first).
//! 3. [`FlashStore::load_trust`], then [`FlashStore::save_trust`] after changes (and
//!    [`FlashStore::load_nonces`] / [`FlashStore::save_nonces`]); or, simpler,
//!    [`FlashMemory`], the chat's key memory that does all of it.
//!
//! The boot counter only grows: boards without a clock pass it as "now" to the trust
//! store.
//!
//! # Power cuts
//!
//! sequential-storage appends items and erases a page only after copying what it still
//! needs; an item whose write was cut is ignored by its CRC, and the next operation
//! repairs the map. So a cut leaves each value either old or new (tested on the file
//! flash of the Linux runner with a cut at every flash operation, including ones that
//! leave a word half programmed or a page half erased). The store needs no
//! `MultiwriteNorFlash`: every word is written once between erases.
//!
//! # Sizes
//!
//! The flash range must be at least two erase pages and hold the live data with room
//! to spare: about 200 bytes of identity, 56 of seed and up to 340 per contact (each
//! value plus sequential-storage's item header, rounded to the write size). With 4 KiB
//! pages, 4 pages suit 8 contacts and 8 pages 16; more pages mean fewer erases.
//! `FlashStore` itself holds a [`BUF_LEN`]-byte buffer.
//!
//! Board drivers that are blocking (esp-storage, embassy-stm32's blocking flash) are
//! used through `embassy_embedded_hal::adapter::BlockingAsync`.
//!
//! [`sequential-storage`]: https://docs.rs/sequential-storage

#[cfg(feature = "std")]
pub mod file;
mod memory;

pub use memory::{BOARD_REPLAY_PEERS, BOARD_REPLAY_WINDOW, BoardNonces, FlashMemory};

use core::ops::Range;

use embedded_storage_async::nor_flash::{NorFlash, NorFlashError, NorFlashErrorKind};
use seguro_core::identity::Identity;
use seguro_core::replay::NonceMemory;
use seguro_core::store::{
    self as fmt_store, IDENTITY_BODY_MAX, RECORD_OVERHEAD, SEED_BODY_LEN, Seed,
};
use seguro_core::trust::{CONTACT_RECORD_MAX, Contact, Save, TrustStore};
use sequential_storage::cache::{Cache, Uncached};
use sequential_storage::map::{MapConfig, MapStorage};
use zeroize::Zeroize;

use crate::rng::{SeededRng, Seeder};

/// Map key of the identity.
pub const KEY_IDENTITY: u16 = 0x0001;
/// Map key of the seed.
pub const KEY_SEED: u16 = 0x0002;
/// Map key of trust store slot 0 (slot `i` is this plus `i`).
pub const KEY_CONTACT: u16 = 0x0100;
/// Map key of nonce memory slot 0 (slot `i` is this plus `i`).
pub const KEY_NONCES: u16 = 0x0200;
/// Most trust store slots a flash store addresses.
pub const MAX_SLOTS: usize = 0x100;
/// Largest nonce record a board stores.
pub const NONCE_RECORD_MAX: usize = BoardNonces::RECORD_MAX;

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// Size of the store's work buffer: the largest value plus its key, rounded up to 32
/// bytes (any flash word size up to 32).
pub const BUF_LEN: usize = (2 + max(
    max(RECORD_OVERHEAD + IDENTITY_BODY_MAX, CONTACT_RECORD_MAX),
    NONCE_RECORD_MAX,
))
.div_ceil(32)
    * 32;

/// Some internal flashes want the write buffer word-aligned in RAM too.
#[repr(align(8))]
struct Buf([u8; BUF_LEN]);

/// What went wrong with the flash store.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The flash range is not usable (not page aligned, fewer than two pages).
    BadRange,
    /// The flash driver failed.
    Flash(NorFlashErrorKind),
    /// The flash range is full: more live data than it can hold. What was stored
    /// before is intact.
    Full,
    /// The flash map is corrupt beyond sequential-storage's repair.
    Corrupt,
    /// A stored value does not decode (a checksum, a version, a length).
    Format(fmt_store::StoreError),
    /// The stored identity was made for another user name.
    NameMismatch,
    /// The trust store has more slots than the flash store addresses.
    TooManySlots,
    /// The flash range is too small to hold the identity, the seed and this many
    /// contacts at their largest with the room sequential-storage needs to move data.
    TooSmall {
        /// The most contacts the range holds.
        max_contacts: usize,
    },
    /// An error sequential-storage reports as a bug of its own.
    Internal,
}

impl core::fmt::Display for StoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadRange => f.write_str("flash range not usable (page aligned, 2+ pages)"),
            Self::Flash(k) => write!(f, "flash error: {k:?}"),
            Self::Full => f.write_str("flash store full"),
            Self::Corrupt => f.write_str("flash store corrupt"),
            Self::Format(e) => write!(f, "stored value unusable: {e}"),
            Self::NameMismatch => f.write_str("the identity in flash belongs to another user name"),
            Self::TooManySlots => f.write_str("trust store larger than the flash store"),
            Self::TooSmall { max_contacts } => write!(
                f,
                "flash range too small for this trust store (it holds {max_contacts} contacts)"
            ),
            Self::Internal => f.write_str("flash store internal error"),
        }
    }
}

impl core::error::Error for StoreError {}

impl From<fmt_store::StoreError> for StoreError {
    fn from(e: fmt_store::StoreError) -> Self {
        Self::Format(e)
    }
}

fn map_err<E: NorFlashError>(e: sequential_storage::Error<E>) -> StoreError {
    match e {
        sequential_storage::Error::Storage { value, .. } => StoreError::Flash(value.kind()),
        sequential_storage::Error::FullStorage => StoreError::Full,
        sequential_storage::Error::Corrupted { .. } => StoreError::Corrupt,
        _ => StoreError::Internal,
    }
}

/// The generator of this boot and what the store knew.
pub struct Boot {
    /// The generator; the seed for the next boot is already in flash.
    pub rng: SeededRng,
    /// This boot's number (1 on the first boot with this flash).
    pub boots: u64,
    /// True if a stored seed was found but did not decode (this boot then ran on fresh
    /// entropy alone and the counter restarted).
    pub seed_lost: bool,
}

/// What [`FlashStore::load_trust`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrustLoad {
    /// Contacts loaded.
    pub contacts: usize,
    /// Slots whose value did not decode, or repeated a name (left empty; they are
    /// overwritten at the next save of that slot).
    pub unreadable: usize,
}

/// A flash map holding the identity, the seed and the trust store.
pub struct FlashStore<F: NorFlash> {
    map: MapStorage<u16, F, Cache<Uncached, Uncached, Uncached, u16>>,
    buf: Buf,
    pages: usize,
}

/// Bytes one map item of a `value`-byte value takes (header and data, each rounded up
/// to the flash word).
const fn item_len(word: usize, value: usize) -> usize {
    8usize.div_ceil(word) * word + (2 + value).div_ceil(word) * word
}

/// The most contacts a range of `pages` pages of `erase` bytes with `word`-byte words
/// holds, with every value at its largest: the live data (the identity, the seed,
/// [`BOARD_REPLAY_PEERS`] nonce records and the contacts) plus one largest item of slack
/// per page must fit in all pages but one (sequential-storage needs a free page to move
/// data to).
pub const fn max_contacts(pages: usize, erase: usize, word: usize) -> usize {
    let usable = erase.saturating_sub(2 * word);
    let contact = item_len(word, CONTACT_RECORD_MAX);
    let identity = item_len(word, RECORD_OVERHEAD + IDENTITY_BODY_MAX);
    let seed = item_len(word, RECORD_OVERHEAD + SEED_BODY_LEN);
    let nonces = item_len(word, NONCE_RECORD_MAX);
    let largest = max(max(contact, identity), nonces);
    let room = pages.saturating_sub(1).saturating_mul(usable);
    let fixed = identity + seed + BOARD_REPLAY_PEERS * nonces + pages.saturating_mul(largest);
    if room < fixed {
        return 0;
    }
    let n = (room - fixed) / contact;
    if n > MAX_SLOTS { MAX_SLOTS } else { n }
}

impl<F: NorFlash> FlashStore<F> {
    /// A store in `range` of `flash` (page aligned, at least two pages).
    pub fn new(flash: F, range: Range<u32>) -> Result<Self, StoreError> {
        let pages = (range.end.saturating_sub(range.start) as usize) / F::ERASE_SIZE;
        let config = MapConfig::try_new(range).map_err(|_| StoreError::BadRange)?;
        Ok(Self {
            map: MapStorage::new(flash, config, Cache::new_uncached()),
            buf: Buf([0; BUF_LEN]),
            pages,
        })
    }

    /// The most contacts this store's range holds ([`max_contacts`]).
    pub fn capacity(&self) -> usize {
        max_contacts(self.pages, F::ERASE_SIZE, max(F::WRITE_SIZE, F::READ_SIZE))
    }

    fn check_slots(&self, n: usize) -> Result<(), StoreError> {
        if n > MAX_SLOTS {
            return Err(StoreError::TooManySlots);
        }
        let max_contacts = self.capacity();
        if n > max_contacts {
            return Err(StoreError::TooSmall { max_contacts });
        }
        Ok(())
    }

    /// Gives the flash back.
    pub fn into_flash(self) -> F {
        self.map.destroy().0
    }

    /// Erases the whole range (forgets identity, seed and contacts).
    pub async fn erase_all(&mut self) -> Result<(), StoreError> {
        self.map.erase_all().await.map_err(map_err)
    }

    /// The value stored under `key`, copied into `out`; its length, or `None`.
    pub async fn fetch_raw(
        &mut self,
        key: u16,
        out: &mut [u8],
    ) -> Result<Option<usize>, StoreError> {
        let r = self
            .map
            .fetch_item::<&[u8]>(&mut self.buf.0, &key)
            .await
            .map_err(map_err)?;
        let Some(v) = r else { return Ok(None) };
        let dst = out.get_mut(..v.len()).ok_or(StoreError::Internal)?;
        dst.copy_from_slice(v);
        Ok(Some(v.len()))
    }

    async fn store_raw(
        &mut self,
        key: u16,
        value_len: usize,
        value: &[u8; BUF_LEN],
    ) -> Result<(), StoreError> {
        let v = value.get(..value_len).ok_or(StoreError::Internal)?;
        self.map
            .store_item(&mut self.buf.0, &key, &v)
            .await
            .map_err(map_err)
    }

    /// Seeds this boot's generator from the stored seed, the boot counter and `fresh`
    /// entropy, and replaces the stored seed before returning it (see the module
    /// documentation). On error nothing may be drawn: the board should not go on
    /// without a working store, or only with a generator of its own fresh entropy.
    pub async fn boot_rng(&mut self, fresh: &[u8]) -> Result<Boot, StoreError> {
        let mut tmp = [0u8; BUF_LEN];
        let stored = match self.fetch_raw(KEY_SEED, &mut tmp).await? {
            None => Ok(None),
            Some(n) => fmt_store::read_record(tmp.get(..n).unwrap_or_default())
                .and_then(|(rec, _)| Seed::from_record(&rec))
                .map(Some),
        };
        tmp.zeroize();
        let seed_lost = stored.is_err();
        let stored = stored.ok().flatten();
        let mut seeder = Seeder::new();
        seeder.absorb(b"seguro flash seed");
        let boots = match &stored {
            Some(s) => {
                seeder.absorb(&s.seed).absorb(&s.boots.to_le_bytes());
                s.boots.saturating_add(1)
            }
            None => 1,
        };
        drop(stored);
        seeder.absorb(fresh);
        let (rng, next) = seeder.finish_with_next();
        let next = Seed { seed: next, boots };
        let mut value = [0u8; BUF_LEN];
        let n = next.encode_record(&mut value)?;
        let r = self.store_raw(KEY_SEED, n, &value).await;
        value.zeroize();
        r?;
        Ok(Boot {
            rng,
            boots,
            seed_lost,
        })
    }

    /// The identity of `name`: the stored one, or a new one made from `rng` (with
    /// `now` as its creation time) and written before it is returned. The flag says
    /// whether it was made now.
    pub async fn identity(
        &mut self,
        name: &str,
        rng: &mut SeededRng,
        now: u64,
    ) -> Result<(Identity, bool), StoreError> {
        let mut value = [0u8; BUF_LEN];
        let found = self.fetch_raw(KEY_IDENTITY, &mut value).await;
        let parsed = match found {
            Ok(Some(n)) => Some(
                fmt_store::read_record(value.get(..n).unwrap_or_default())
                    .and_then(|(rec, _)| Identity::from_record(&rec)),
            ),
            Ok(None) => None,
            Err(e) => {
                value.zeroize();
                return Err(e);
            }
        };
        value.zeroize();
        match parsed {
            Some(Ok((id, stored_name))) => {
                if stored_name.as_str() == name {
                    Ok((id, false))
                } else {
                    Err(StoreError::NameMismatch)
                }
            }
            // Never replaced silently: a new key looks like an attack to every peer.
            Some(Err(e)) => Err(StoreError::Format(e)),
            None => {
                let id = Identity::generate(rng, now);
                let n = id.encode_record(name, &mut value)?;
                let r = self.store_raw(KEY_IDENTITY, n, &value).await;
                value.zeroize();
                r?;
                Ok((id, true))
            }
        }
    }

    /// Replaces the trust store's contents with the contacts in flash.
    pub async fn load_trust<const N: usize>(
        &mut self,
        store: &mut TrustStore<N>,
    ) -> Result<TrustLoad, StoreError> {
        self.check_slots(N)?;
        store.clear();
        let mut report = TrustLoad::default();
        let mut value = [0u8; BUF_LEN];
        for i in 0..N {
            let key = KEY_CONTACT + i as u16;
            let contact = match self.fetch_raw(key, &mut value).await? {
                None | Some(0) => None,
                Some(n) => match fmt_store::read_record(value.get(..n).unwrap_or_default())
                    .and_then(|(rec, _)| Contact::from_record(&rec))
                {
                    Ok(c) => Some(c),
                    Err(_) => {
                        report.unreadable += 1;
                        None
                    }
                },
            };
            let some = contact.is_some();
            match store.set_slot(i, contact) {
                Ok(()) if some => report.contacts += 1,
                Ok(()) => {}
                Err(_) => report.unreadable += 1,
            }
        }
        store.mark_clean();
        Ok(report)
    }

    /// Writes the slots changed since the last save whose urgency is at least `min`
    /// (pass [`Save::Now`] to spare the flash from "last seen" updates, which are then
    /// written with the next judgement change or a [`Save::LastSeen`] save); returns
    /// how many were written. A slot is marked clean only once its write succeeded.
    pub async fn save_trust<const N: usize>(
        &mut self,
        store: &mut TrustStore<N>,
        min: Save,
    ) -> Result<usize, StoreError> {
        self.check_slots(N)?;
        let mut written = 0;
        for i in 0..N {
            let Some((_, contact, level)) = store.dirty_slots().find(|(j, _, _)| *j == i) else {
                continue;
            };
            if level < min {
                continue;
            }
            let mut value = [0u8; BUF_LEN];
            let n = match contact {
                Some(c) => c.encode_record(&mut value)?,
                None => 0,
            };
            self.store_raw(KEY_CONTACT + i as u16, n, &value).await?;
            store.mark_slot_clean(i);
            written += 1;
        }
        Ok(written)
    }

    /// Replaces the nonce memories with those in flash (slot `i` from key
    /// `KEY_NONCES + i`); returns how many peers were loaded and how many values did
    /// not decode (left empty, overwritten at the next save of that slot).
    pub async fn load_nonces<const P: usize, const W: usize>(
        &mut self,
        nonces: &mut NonceMemory<P, W>,
    ) -> Result<(usize, usize), StoreError> {
        if P > MAX_SLOTS || NonceMemory::<P, W>::RECORD_MAX > BUF_LEN {
            return Err(StoreError::TooManySlots);
        }
        nonces.clear();
        let (mut loaded, mut unreadable) = (0, 0);
        let mut value = [0u8; BUF_LEN];
        for i in 0..P {
            let key = KEY_NONCES + i as u16;
            let Some(n) = self.fetch_raw(key, &mut value).await? else {
                continue;
            };
            if n == 0 {
                continue;
            }
            match fmt_store::read_record(value.get(..n).unwrap_or_default())
                .and_then(|(rec, _)| nonces.load_record(&rec, Some(i)))
            {
                Ok(()) => loaded += 1,
                Err(_) => unreadable += 1,
            }
        }
        nonces.mark_clean();
        Ok((loaded, unreadable))
    }

    /// Writes the nonce memory slots changed since the last save; returns how many.
    pub async fn save_nonces<const P: usize, const W: usize>(
        &mut self,
        nonces: &mut NonceMemory<P, W>,
    ) -> Result<usize, StoreError> {
        if P > MAX_SLOTS || NonceMemory::<P, W>::RECORD_MAX > BUF_LEN {
            return Err(StoreError::TooManySlots);
        }
        let mut written = 0;
        for i in 0..P {
            if !nonces.dirty_slots().any(|j| j == i) {
                continue;
            }
            let mut value = [0u8; BUF_LEN];
            let n = nonces.encode_slot(i, &mut value)?;
            self.store_raw(KEY_NONCES + i as u16, n, &value).await?;
            nonces.mark_slot_clean(i);
            written += 1;
        }
        Ok(written)
    }
}
