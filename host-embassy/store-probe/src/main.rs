//! A do-nothing firmware that boots the flash store: seed, identity, an 8-contact
//! trust store loaded, changed and saved. `--features baseline` does the same work
//! without the store (seeder and identity only), so the difference is the store's cost.
#![no_std]
#![no_main]

use core::hint::black_box;

use embedded_storage_async::nor_flash::{ErrorType, NorFlash, NorFlashErrorKind, ReadNorFlash};
#[cfg(feature = "baseline")]
use seguro_embassy::rng::Seeder;
#[cfg(feature = "baseline")]
use seguro_embassy::seguro_core::identity::Identity;
#[cfg(not(feature = "baseline"))]
use seguro_embassy::seguro_core::trust::Save;
use seguro_embassy::seguro_core::trust::TrustStore;
use seguro_embassy::store::FlashStore;

/// Contacts of the probe's trust store.
const CONTACTS: usize = 8;

/// A flash driver that does nothing (its code is not the store's cost).
struct NullFlash;

#[derive(Debug)]
struct NullError;

impl embedded_storage_async::nor_flash::NorFlashError for NullError {
    fn kind(&self) -> NorFlashErrorKind {
        NorFlashErrorKind::Other
    }
}

impl ErrorType for NullFlash {
    type Error = NullError;
}

impl ReadNorFlash for NullFlash {
    const READ_SIZE: usize = 1;
    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), NullError> {
        bytes.fill(black_box(offset) as u8);
        Ok(())
    }
    fn capacity(&self) -> usize {
        8 * 4096
    }
}

impl NorFlash for NullFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 4096;
    async fn erase(&mut self, from: u32, to: u32) -> Result<(), NullError> {
        black_box((from, to));
        Ok(())
    }
    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), NullError> {
        black_box((offset, bytes));
        Ok(())
    }
}

/// RAM sizes, readable with `llvm-nm -S` (the size of each symbol).
#[used]
#[unsafe(no_mangle)]
static SIZE_OF_FLASH_STORE: [u8; core::mem::size_of::<FlashStore<NullFlash>>()] =
    [0; core::mem::size_of::<FlashStore<NullFlash>>()];
#[used]
#[unsafe(no_mangle)]
static SIZE_OF_TRUST_STORE_8: [u8; core::mem::size_of::<TrustStore<CONTACTS>>()] =
    [0; core::mem::size_of::<TrustStore<CONTACTS>>()];

#[cfg(not(feature = "baseline"))]
fn work(entropy: &[u8]) {
    embassy_futures::block_on(async {
        let Ok(mut store) = FlashStore::new(NullFlash, 0..8 * 4096) else {
            return;
        };
        let Ok(mut boot) = store.boot_rng(entropy).await else {
            return;
        };
        let Ok((id, _)) = store.identity("board", &mut boot.rng, boot.boots).await else {
            return;
        };
        let mut trust = TrustStore::<CONTACTS>::new();
        let _ = store.load_trust(&mut trust).await;
        let _ = trust.observe("peer", &id.public(), boot.boots);
        let _ = store.save_trust(&mut trust, Save::Now).await;
        black_box(&trust);
    });
}

#[cfg(feature = "baseline")]
fn work(entropy: &[u8]) {
    let mut s = Seeder::new();
    s.absorb(entropy);
    let (mut rng, next) = s.finish_with_next();
    let id = Identity::generate(&mut rng, 0);
    black_box((id.public(), next));
}

#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    loop {
        work(black_box(b"entropy"));
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
