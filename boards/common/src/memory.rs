//! What a board keeps in flash, and the boot sequence that reads it: the RNG seed and
//! boot counter, the identity, the trust store and the v1 nonce memories, in a
//! [`FlashStore`] over the board's flash driver (see `seguro_embassy::store`).
//!
//! [`boot`] runs once, before anything is drawn from the generator:
//!
//! 1. [`FlashStore::boot_rng`]: the fresh entropy the board gathered is mixed with the
//!    stored seed and the boot counter, and the next boot's seed is written to flash
//!    before the generator is handed out;
//! 2. [`FlashStore::identity`]: the stored identity, or a new one, written before it is
//!    used;
//! 3. [`FlashMemory::load`]: the contacts and nonce memories.
//!
//! When the store fails, the generator runs on the fresh entropy alone (the network
//! stack needs one) and the chat task refuses to chat, saying why: a board that went
//! on with a new identity would look like an impostor to every peer.
//!
//! While the chat runs, [`BoardMemory`] writes every change as it happens; what the
//! user must know (a write that failed, a contact forgotten to make room) goes to the
//! console as a `[WARN]` line through [`notices_task`].

use core::cell::RefCell;
use core::ops::Range;

use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::signal::Signal;
use embedded_storage_async::nor_flash::NorFlash;
use heapless::String;
use rand_core::RngCore;
use seguro_embassy::output::Output;
use seguro_embassy::rng::{SeededRng, Seeder};
use seguro_embassy::seguro_core::chat::{KeyMemory, Status, Verdict};
use seguro_embassy::seguro_core::e2ee::KeyPair;
use seguro_embassy::seguro_core::limits::{KEY_LEN, MAX_NAME_BYTES, NONCE_LEN};
use seguro_embassy::seguro_core::msg;
use seguro_embassy::seguro_core::replay::Seen;
use seguro_embassy::seguro_core::trust::{Kept, TrustError};
use seguro_embassy::store::{FlashMemory, FlashStore, StoreError};
use static_cell::StaticCell;
use zeroize::Zeroize;

use crate::{Settings, say};

/// Contacts a board's trust store holds unless the board picks another number: each
/// costs about 280 bytes of RAM and up to 340 bytes of flash. When all are taken, a
/// new contact replaces the unverified one seen longest ago (and the console says so).
pub const BOARD_CONTACTS: usize = 16;

/// A board's key memory: [`FlashMemory`] with `N` contacts, reporting on the console
/// what it could not keep.
pub struct BoardMemory<F: NorFlash, const N: usize = BOARD_CONTACTS> {
    inner: FlashMemory<F, N>,
    boots: u64,
}

/// Bits of a contact's time given to the seconds since boot; the boot counter above
/// them makes the time grow across reboots (boards have no wall clock), so the contact
/// "seen longest ago" is the one of the oldest boot.
const UPTIME_BITS: u32 = 24;

impl<F: NorFlash, const N: usize> BoardMemory<F, N> {
    fn clock(&self, uptime: u64) -> u64 {
        let uptime = uptime.min((1 << UPTIME_BITS) - 1);
        self.boots
            .saturating_mul(1 << UPTIME_BITS)
            .saturating_add(uptime)
    }

    /// Passes a failed write on to the console.
    fn report(&mut self) {
        if let Some(e) = self.inner.take_error() {
            notice(|p| {
                p.error = Some(e);
                p.failures = p.failures.saturating_add(1);
            });
        }
    }
}

impl<F: NorFlash, const N: usize> KeyMemory for BoardMemory<F, N> {
    fn observe(&mut self, name: &str, key: &[u8; KEY_LEN], now: u64) -> Verdict {
        let now = self.clock(now);
        let (verdict, kept) = self.inner.observe_kept(name, key, now);
        match kept {
            Kept::Yes => {}
            Kept::Evicted { name: gone } => notice(|p| {
                p.forgotten = p.forgotten.saturating_add(1);
                p.forgot = gone;
                p.capacity = N;
            }),
            Kept::No => notice(|p| {
                p.unkept = p.unkept.saturating_add(1);
                p.not_kept.clear();
                let _ = p.not_kept.push_str(name);
            }),
        }
        self.report();
        verdict
    }

    fn last_key(&self, name: &str) -> Option<[u8; KEY_LEN]> {
        self.inner.last_key(name)
    }

    fn status(&self, name: &str) -> Option<Status> {
        self.inner.status(name)
    }

    fn verify(&mut self, name: &str, key: &[u8; KEY_LEN]) -> Result<(), TrustError> {
        let r = self.inner.verify(name, key);
        self.report();
        r
    }

    fn accept(&mut self, name: &str) -> Result<[u8; KEY_LEN], TrustError> {
        let r = self.inner.accept(name);
        self.report();
        r
    }

    fn slots(&self) -> usize {
        self.inner.slots()
    }

    fn contact(&self, i: usize) -> Option<(&str, Status)> {
        self.inner.contact(i)
    }

    fn sent_nonce(&mut self, peer: &str, nonce: &[u8; NONCE_LEN]) {
        self.inner.sent_nonce(peer, nonce);
        self.report();
    }

    fn received_nonce(&mut self, peer: &str, nonce: &[u8; NONCE_LEN]) -> Seen {
        let seen = self.inner.received_nonce(peer, nonce);
        self.report();
        seen
    }
}

/// What the console has yet to be told; counts, so that nothing is lost when several
/// events come before the console task runs.
struct Pending {
    error: Option<StoreError>,
    failures: u32,
    forgot: String<MAX_NAME_BYTES>,
    forgotten: u32,
    capacity: usize,
    not_kept: String<MAX_NAME_BYTES>,
    unkept: u32,
}

impl Pending {
    const fn new() -> Self {
        Self {
            error: None,
            failures: 0,
            forgot: String::new(),
            forgotten: 0,
            capacity: 0,
            not_kept: String::new(),
            unkept: 0,
        }
    }
}

static PENDING: Mutex<CriticalSectionRawMutex, RefCell<Pending>> =
    Mutex::new(RefCell::new(Pending::new()));
static WAKE: Signal<CriticalSectionRawMutex, ()> = Signal::new();

fn notice(f: impl FnOnce(&mut Pending)) {
    PENDING.lock(|p| f(&mut p.borrow_mut()));
    WAKE.signal(());
}

/// " (and N more)" after the first of `n` events.
struct More(u32);

impl core::fmt::Display for More {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            0 | 1 => Ok(()),
            n => write!(f, " (and {} more since the last warning)", n - 1),
        }
    }
}

/// Tells the console what the key memory could not keep (spawned by
/// [`crate::start_chat`]).
#[embassy_executor::task]
pub async fn notices_task() -> ! {
    loop {
        WAKE.wait().await;
        let p = PENDING.lock(|p| core::mem::replace(&mut *p.borrow_mut(), Pending::new()));
        if let Some(e) = p.error {
            say(Output::warn(format_args!(
                "flash write failed: {e}{}. The latest contacts and message memory are in \
                 RAM only, written again with the next change; a reset before then forgets them",
                More(p.failures)
            )))
            .await;
        }
        if p.forgotten > 0 {
            say(Output::warn(format_args!(
                "trust store full ({} contacts): forgot {}, the contact seen longest ago{}; \
                 a new key of theirs will look like a first contact",
                p.capacity,
                p.forgot,
                More(p.forgotten)
            )))
            .await;
        }
        if p.unkept > 0 {
            say(Output::warn(format_args!(
                "trust store full of verified contacts: {}'s key is not remembered{}; a \
                 change of it will not be noticed (verified contacts are never forgotten)",
                p.not_kept,
                More(p.unkept)
            )))
            .await;
        }
    }
}

/// What [`boot`] found, for the chat task to say (and act on).
#[derive(Debug, Clone, Copy)]
pub enum Found {
    /// The store works.
    Ready {
        /// This boot's number (1 on the first boot with this flash).
        boots: u64,
        /// The identity was made at this boot (else it was read from flash).
        created: bool,
        /// Contacts loaded.
        contacts: usize,
        /// A stored seed was found but did not decode (this boot ran on fresh entropy
        /// alone; the counter restarted).
        seed_lost: bool,
    },
    /// The settings are incomplete or the user name is invalid: no identity was read
    /// or made (the chat task says what is wrong).
    NoUser,
    /// The store failed: the chat must not start.
    Failed(StoreError),
}

/// The state kept across reboots, as [`boot`] found it: for [`crate::start_chat`].
pub struct State {
    /// The key pair, when [`Found::Ready`].
    pub(crate) keys: Option<KeyPair>,
    /// The key memory (in RAM only unless [`Found::Ready`]).
    pub(crate) memory: &'static mut dyn KeyMemory,
    /// What was found.
    pub(crate) found: Found,
}

/// Boots from the flash store in `range` of `flash` (see the module documentation):
/// returns the generator (in static memory) and the state for [`crate::start_chat`].
/// `seeder` holds the fresh entropy the board gathered; `cell` is the board's static
/// for its memory. Call once.
///
/// The flash operations run to completion here (`embassy_futures::block_on`, as
/// [`FlashMemory`]'s writes do): `flash` must complete by itself, as internal flash
/// and blocking drivers behind `BlockingAsync` do. So the store's buffers and the
/// trust store being loaded live on the stack for the call, not in the static future
/// of the board's main task.
pub fn boot<F: NorFlash + 'static, const N: usize>(
    cell: &'static StaticCell<BoardMemory<F, N>>,
    flash: F,
    range: Range<u32>,
    seeder: Seeder,
    settings: &Settings,
) -> (&'static mut SeededRng, State) {
    static RNG: StaticCell<SeededRng> = StaticCell::new();
    // The fresh entropy condensed into 32 bytes, for the store to mix with its seed.
    let mut fresh_rng = seeder.finish();
    let mut fresh = [0u8; 32];
    fresh_rng.fill_bytes(&mut fresh);
    let r = embassy_futures::block_on(boot_store(flash, range, &fresh, settings));
    fresh.zeroize();
    let (rng, keys, inner, found) = match r {
        // The store's generator; the one of fresh entropy alone is dropped unused.
        Ok((rng, keys, memory, found)) => (rng, keys, memory, found),
        // Only the network stack draws from this one: the chat does not start.
        Err(e) => (fresh_rng, None, FlashMemory::ram(), Found::Failed(e)),
    };
    let boots = match found {
        Found::Ready { boots, .. } => boots,
        _ => 0,
    };
    let memory = cell.init(BoardMemory { inner, boots });
    (
        RNG.init(rng),
        State {
            keys,
            memory,
            found,
        },
    )
}

type Booted<F, const N: usize> = (SeededRng, Option<KeyPair>, FlashMemory<F, N>, Found);

async fn boot_store<F: NorFlash, const N: usize>(
    flash: F,
    range: Range<u32>,
    fresh: &[u8],
    settings: &Settings,
) -> Result<Booted<F, N>, StoreError> {
    let mut store = FlashStore::new(flash, range)?;
    let mut boot = store.boot_rng(fresh).await?;
    // No identity for a firmware that cannot chat: one made for a mistyped name would
    // have to be wiped before the right name could be used.
    let user_ok = settings.missing.is_empty() && msg::validate_name(settings.user).is_ok();
    let identity = if user_ok {
        Some(
            store
                .identity(settings.user, &mut boot.rng, boot.boots)
                .await?,
        )
    } else {
        None
    };
    let (memory, contacts) = FlashMemory::load(store).await?;
    let (keys, found) = match identity {
        Some((id, created)) => (
            Some(id.into_x25519()),
            Found::Ready {
                boots: boot.boots,
                created,
                contacts,
                seed_lost: boot.seed_lost,
            },
        ),
        None => (None, Found::NoUser),
    };
    Ok((boot.rng, keys, memory, found))
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::cell::RefCell;
    use std::rc::Rc;
    use std::vec;
    use std::vec::Vec;

    use embassy_futures::block_on;
    use embedded_storage_async::nor_flash::{ErrorType, NorFlashErrorKind, ReadNorFlash};

    use super::*;

    const PAGE: usize = 4096;
    const PAGES: usize = 8;

    /// NOR flash in RAM, shared between "boots"; `fail` makes writes fail.
    #[derive(Clone)]
    struct RamFlash {
        mem: Rc<RefCell<Vec<u8>>>,
        fail: Rc<RefCell<bool>>,
    }

    impl RamFlash {
        fn new() -> Self {
            Self {
                mem: Rc::new(RefCell::new(vec![0xff; PAGE * PAGES])),
                fail: Rc::new(RefCell::new(false)),
            }
        }
    }

    impl ErrorType for RamFlash {
        type Error = NorFlashErrorKind;
    }

    impl ReadNorFlash for RamFlash {
        const READ_SIZE: usize = 1;

        async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
            let o = offset as usize;
            let mem = self.mem.borrow();
            let src = mem
                .get(o..o + bytes.len())
                .ok_or(NorFlashErrorKind::OutOfBounds)?;
            bytes.copy_from_slice(src);
            Ok(())
        }

        fn capacity(&self) -> usize {
            PAGE * PAGES
        }
    }

    impl NorFlash for RamFlash {
        const WRITE_SIZE: usize = 4;
        const ERASE_SIZE: usize = PAGE;

        async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
            let mut mem = self.mem.borrow_mut();
            let dst = mem
                .get_mut(from as usize..to as usize)
                .ok_or(NorFlashErrorKind::OutOfBounds)?;
            dst.fill(0xff);
            Ok(())
        }

        async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
            if *self.fail.borrow() {
                return Err(NorFlashErrorKind::Other);
            }
            let o = offset as usize;
            let mut mem = self.mem.borrow_mut();
            let dst = mem
                .get_mut(o..o + bytes.len())
                .ok_or(NorFlashErrorKind::OutOfBounds)?;
            // NOR: programming only clears bits.
            for (d, s) in dst.iter_mut().zip(bytes) {
                *d &= *s;
            }
            Ok(())
        }
    }

    fn settings(user: &'static str, missing: &'static [&'static str]) -> Settings {
        Settings {
            missing,
            wifi_ssid: "",
            wifi_password: "",
            server_host: "192.0.2.1",
            server_port: 5000,
            user,
            cert_der: &[],
            invite: "",
        }
    }

    fn boot_on<const N: usize>(
        flash: &RamFlash,
        user: &'static str,
    ) -> Result<Booted<RamFlash, N>, StoreError> {
        let settings = settings(user, &[]);
        block_on(boot_store(
            flash.clone(),
            0..(PAGE * PAGES) as u32,
            b"the same fresh entropy at every boot",
            &settings,
        ))
    }

    fn ready(found: Found) -> (u64, bool, usize) {
        match found {
            Found::Ready {
                boots,
                created,
                contacts,
                seed_lost,
            } => {
                assert!(!seed_lost);
                (boots, created, contacts)
            }
            other => panic!("not ready: {other:?}"),
        }
    }

    #[test]
    fn the_identity_is_made_once_and_the_boot_counter_grows() {
        let flash = RamFlash::new();
        let (mut rng1, keys, _, found) = boot_on::<4>(&flash, "alice").unwrap();
        assert_eq!(ready(found), (1, true, 0));
        let first = keys.unwrap().public();
        let (mut rng2, keys, _, found) = boot_on::<4>(&flash, "alice").unwrap();
        assert_eq!(ready(found), (2, false, 0));
        assert_eq!(keys.unwrap().public(), first);
        // Same fresh entropy, other stream: the stored seed moved on.
        assert_ne!(rng1.next_u64(), rng2.next_u64());
    }

    #[test]
    fn another_users_identity_is_refused_not_replaced() {
        let flash = RamFlash::new();
        let (_, keys, _, _) = boot_on::<4>(&flash, "alice").unwrap();
        let alice = keys.unwrap().public();
        assert_eq!(
            boot_on::<4>(&flash, "bob").err(),
            Some(StoreError::NameMismatch)
        );
        let (_, keys, _, found) = boot_on::<4>(&flash, "alice").unwrap();
        assert_eq!(keys.unwrap().public(), alice);
        assert!(!ready(found).1);
    }

    #[test]
    fn no_identity_without_a_valid_user_name() {
        let flash = RamFlash::new();
        for (user, missing) in [("", &["SEGURO_USER"][..]), ("two words", &[][..])] {
            let settings = settings(user, missing);
            let (_, keys, _, found) = block_on(boot_store::<_, 4>(
                flash.clone(),
                0..(PAGE * PAGES) as u32,
                b"fresh",
                &settings,
            ))
            .unwrap();
            assert!(keys.is_none());
            assert!(matches!(found, Found::NoUser));
        }
        // Nothing was stored for those names: the right one gets a new identity.
        let (_, _, _, found) = boot_on::<4>(&flash, "alice").unwrap();
        let (boots, created, _) = ready(found);
        assert!(created);
        assert_eq!(boots, 3);
    }

    #[test]
    fn a_failing_flash_stops_the_boot() {
        let flash = RamFlash::new();
        *flash.fail.borrow_mut() = true;
        assert!(matches!(
            boot_on::<4>(&flash, "alice").err(),
            Some(StoreError::Flash(NorFlashErrorKind::Other))
        ));
    }

    /// The one test that looks at the console notices (they are global).
    #[test]
    fn forgotten_contacts_and_failed_writes_reach_the_console_queue() {
        let flash = RamFlash::new();
        let (_, _, inner, found) = boot_on::<2>(&flash, "alice").unwrap();
        let mut m = BoardMemory {
            inner,
            boots: ready(found).0,
        };
        m.observe("bob", &[2; 32], 10);
        m.observe("carol", &[3; 32], 20);
        drop(m);
        // Next boot: bob is seen again early in it; carol, seen later in the previous
        // boot's uptime, is still the one seen longest ago.
        let (_, _, inner, found) = boot_on::<2>(&flash, "alice").unwrap();
        let mut m = BoardMemory {
            inner,
            boots: ready(found).0,
        };
        assert_eq!(m.observe("bob", &[2; 32], 5), Verdict::Unchanged);
        assert_eq!(m.observe("dave", &[4; 32], 6), Verdict::FirstContact);
        let p = PENDING.lock(|p| core::mem::replace(&mut *p.borrow_mut(), Pending::new()));
        assert_eq!(
            (p.forgotten, p.forgot.as_str(), p.capacity),
            (1, "carol", 2)
        );
        assert_eq!((p.unkept, p.failures), (0, 0));
        assert!(m.last_key("carol").is_none());

        m.verify("bob", &[2; 32]).unwrap();
        m.verify("dave", &[4; 32]).unwrap();
        m.observe("erin", &[5; 32], 7);
        *flash.fail.borrow_mut() = true;
        m.sent_nonce("bob", &[9; 12]);
        m.sent_nonce("bob", &[8; 12]);
        let p = PENDING.lock(|p| core::mem::replace(&mut *p.borrow_mut(), Pending::new()));
        assert_eq!((p.unkept, p.not_kept.as_str()), (1, "erin"));
        assert_eq!(p.failures, 2);
        assert_eq!(p.error, Some(StoreError::Flash(NorFlashErrorKind::Other)));
    }
}
