//! The chat's key memory on a board: the trust store and the nonce memories, written
//! to the flash store as they change.

use embedded_storage_async::nor_flash::NorFlash;
use seguro_core::chat::{KeyMemory, Status, Verdict};
use seguro_core::limits::{KEY_LEN, NONCE_LEN};
use seguro_core::replay::{NonceMemory, Seen};
use seguro_core::trust::{Kept, Save, TrustError, TrustStore};

use super::{FlashStore, StoreError};

/// Peers whose v1 nonces a board remembers.
pub const BOARD_REPLAY_PEERS: usize = 4;
/// Nonces a board remembers per peer and direction: a message replayed after 16 newer
/// ones from that peer is shown again. 4 peers × (2 × 16 × 8 + about 150 bytes) ≈ 1.6
/// KiB of RAM, and as many bytes of flash.
pub const BOARD_REPLAY_WINDOW: usize = 16;

/// A board's nonce memories.
pub type BoardNonces = NonceMemory<BOARD_REPLAY_PEERS, BOARD_REPLAY_WINDOW>;

/// The trust store (`N` contacts) and the nonce memories, kept in a [`FlashStore`]
/// (or in RAM only, without one).
///
/// Every change of a judgement (a new contact, a changed key, `/verify`, `/accept`)
/// and every nonce of a message sent or received is written before the call returns:
/// the writes run to completion inside the (synchronous) [`KeyMemory`] calls with
/// `embassy_futures::block_on`, which suits flash drivers that complete by themselves
/// (internal flash, blocking drivers through `BlockingAsync`, the runner's file). Only
/// the changed slots are written; "last seen" times alone wait for the next change.
/// A write that fails is counted ([`FlashMemory::take_error`]) and retried with the
/// next change; what is in RAM stays right.
///
/// Flash wear: one item of about 400 bytes per message received or sent;
/// sequential-storage spreads the writes over the whole range, so a 32 KiB range of
/// 100 000-cycle flash takes some 8 million messages.
pub struct FlashMemory<F: NorFlash, const N: usize> {
    store: Option<FlashStore<F>>,
    trust: TrustStore<N>,
    nonces: BoardNonces,
    error: Option<StoreError>,
}

impl<F: NorFlash, const N: usize> FlashMemory<F, N> {
    /// Nothing known, nothing kept beyond RAM.
    pub const fn ram() -> Self {
        Self {
            store: None,
            trust: TrustStore::new(),
            nonces: BoardNonces::new(),
            error: None,
        }
    }

    /// Loads the contacts and nonce memories from `store`, and keeps them there.
    /// Returns the memory and how many contacts were loaded; values that do not decode
    /// are left out (and overwritten at their next save).
    pub async fn load(mut store: FlashStore<F>) -> Result<(Self, usize), StoreError> {
        let mut trust = TrustStore::new();
        let loaded = store.load_trust(&mut trust).await?;
        let mut nonces = BoardNonces::new();
        store.load_nonces(&mut nonces).await?;
        Ok((
            Self {
                store: Some(store),
                trust,
                nonces,
                error: None,
            },
            loaded.contacts,
        ))
    }

    /// The contacts.
    pub fn trust(&self) -> &TrustStore<N> {
        &self.trust
    }

    /// The last write that failed since the previous call.
    pub fn take_error(&mut self) -> Option<StoreError> {
        self.error.take()
    }

    /// Writes every change, "last seen" times included (before a planned reset).
    pub async fn flush(&mut self) -> Result<(), StoreError> {
        let Some(store) = &mut self.store else {
            return Ok(());
        };
        store.save_trust(&mut self.trust, Save::LastSeen).await?;
        store.save_nonces(&mut self.nonces).await?;
        Ok(())
    }

    /// [`KeyMemory::observe`], also saying whether the contact is remembered: a full
    /// store forgets the unverified contact seen longest ago ([`Kept::Evicted`]), and
    /// one full of verified contacts keeps no new one ([`Kept::No`]). The host should
    /// tell the user: a forgotten contact's next key is a first contact again.
    pub fn observe_kept(&mut self, name: &str, key: &[u8; KEY_LEN], now: u64) -> (Verdict, Kept) {
        // Directory names are never empty nor longer than a stored name, the only
        // refusals: such a name could not be remembered anyway.
        let r = match self.trust.observe(name, key, now) {
            Ok(o) => (o.verdict, o.kept),
            Err(_) => (Verdict::FirstContact, Kept::No),
        };
        self.save_if_needed();
        r
    }

    fn save(&mut self) {
        let Some(store) = &mut self.store else {
            self.trust.mark_clean();
            self.nonces.mark_clean();
            return;
        };
        let r = embassy_futures::block_on(async {
            store.save_trust(&mut self.trust, Save::Now).await?;
            store.save_nonces(&mut self.nonces).await
        });
        if let Err(e) = r {
            self.error = Some(e);
        }
    }

    fn save_if_needed(&mut self) {
        if self.trust.needs_save() == Save::Now || self.nonces.needs_save() {
            self.save();
        }
    }
}

impl<F: NorFlash, const N: usize> KeyMemory for FlashMemory<F, N> {
    fn observe(&mut self, name: &str, key: &[u8; KEY_LEN], now: u64) -> Verdict {
        self.observe_kept(name, key, now).0
    }

    fn last_key(&self, name: &str) -> Option<[u8; KEY_LEN]> {
        KeyMemory::last_key(&self.trust, name)
    }

    fn status(&self, name: &str) -> Option<Status> {
        KeyMemory::status(&self.trust, name)
    }

    fn verify(&mut self, name: &str, key: &[u8; KEY_LEN]) -> Result<(), TrustError> {
        let r = self.trust.verify(name, key);
        self.save_if_needed();
        r
    }

    fn accept(&mut self, name: &str) -> Result<[u8; KEY_LEN], TrustError> {
        let r = self.trust.accept(name);
        self.save_if_needed();
        r
    }

    fn slots(&self) -> usize {
        N
    }

    fn contact(&self, i: usize) -> Option<(&str, Status)> {
        KeyMemory::contact(&self.trust, i)
    }

    fn sent_nonce(&mut self, peer: &str, nonce: &[u8; NONCE_LEN]) {
        self.nonces.sent(peer, nonce);
        self.save_if_needed();
    }

    fn received_nonce(&mut self, peer: &str, nonce: &[u8; NONCE_LEN]) -> Seen {
        let seen = self.nonces.received(peer, nonce);
        self.save_if_needed();
        seen
    }
}
