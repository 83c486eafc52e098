//! The desktop's memory of its contacts, saved beside the identity: the trust store
//! (name → key, first and last seen, verified, a changed key waiting) and the v1 nonce
//! memories (`seguro_core::replay`), both in the user's `trust` file (see
//! [`crate::state`]), written atomically.
//!
//! [`DesktopMemory`] is the chat session's `KeyMemory`: every judgement that changes
//! (a new contact, a changed key, `/verify`, `/accept`) and every message sent or
//! received (its nonce) is written at once, so a `kill -9` loses nothing a restart
//! would need to catch a substituted key or a replayed message. Changes of "last seen"
//! alone are written with the next judgement change, or at exit.

use seguro_core::chat::{KeyMemory, Status, Verdict};
use seguro_core::limits::{KEY_LEN, NONCE_LEN};
use seguro_core::replay::{NonceMemory, Seen};
use seguro_core::store::{StoreError, Writer, file_type, kind};
use seguro_core::trust::{Save, TrustError};

use crate::state::{self, StateDir, StateError, TrustFile};

/// Peers whose v1 nonces the desktop remembers.
pub const DESKTOP_REPLAY_PEERS: usize = 128;
/// Nonces remembered per peer and direction: a message replayed after 128 newer ones
/// from that peer is shown again. 128 peers × (2 × 128 × 8 + about 150 bytes) ≈ 275
/// KiB of RAM.
pub const DESKTOP_REPLAY_WINDOW: usize = 128;

/// The desktop's nonce memories.
pub type DesktopNonces = NonceMemory<DESKTOP_REPLAY_PEERS, DESKTOP_REPLAY_WINDOW>;

/// What `seguro chat` starts with: the memory (loaded), strict mode (flag or config
/// file), and a note to show.
pub fn for_chat(
    args: &crate::cli::ChatArgs,
) -> Result<(DesktopMemory, bool, Option<String>), (String, i32)> {
    let config = crate::config::load().map_err(|e| (e.to_string(), crate::exit::USAGE))?;
    let dir = StateDir::locate(args.state_dir.as_deref()).map_err(|e| {
        let code = e.exit_code();
        (e.to_string(), code)
    })?;
    let memory = DesktopMemory::load(&dir, &args.user).map_err(|e| {
        let code = e.exit_code();
        (e.to_string(), code)
    })?;
    let note = (memory.dropped() > 0).then(|| {
        format!(
            "the contact list holds {} contacts more than this client keeps; the unverified \
             ones seen longest ago were left out",
            memory.dropped()
        )
    });
    Ok((memory, args.strict || config.strict, note))
}

/// A user's contacts and nonce memories, saved to their `trust` file.
pub struct DesktopMemory {
    file: TrustFile,
    nonces: Box<DesktopNonces>,
    /// Where to save; `None` keeps everything in RAM (tests).
    place: Option<(StateDir, String)>,
    /// Errors to show (a failed save), taken by the host.
    errors: Vec<String>,
    /// A save failed and was reported: report again only after a success.
    failing: bool,
}

impl DesktopMemory {
    /// Nothing known, nothing saved.
    pub fn in_memory() -> Self {
        Self {
            file: TrustFile::empty(),
            nonces: Box::new(DesktopNonces::new()),
            place: None,
            errors: Vec::new(),
            failing: false,
        }
    }

    /// Loads `user`'s contacts from `dir` (none yet: empty), and saves there.
    pub fn load(dir: &StateDir, user: &str) -> Result<Self, StateError> {
        let mut file = TrustFile::load(dir, user)?;
        let mut nonces = Box::new(DesktopNonces::new());
        let corrupt = |err: StoreError| StateError::Corrupt {
            path: dir.trust_path(user),
            err,
            user: user.to_owned(),
            identity: false,
        };
        let mut other = Vec::new();
        for r in std::mem::take(&mut file.other) {
            if r.kind() == kind::NONCES {
                nonces.load_record(&r.record(), None).map_err(corrupt)?;
            } else {
                other.push(r);
            }
        }
        file.other = other;
        nonces.mark_clean();
        Ok(Self {
            file,
            nonces,
            place: Some((dir.clone(), user.to_owned())),
            errors: Vec::new(),
            failing: false,
        })
    }

    /// Contacts in the file that did not fit in memory.
    pub fn dropped(&self) -> usize {
        self.file.dropped
    }

    /// Number of contacts.
    pub fn len(&self) -> usize {
        self.file.store.len()
    }

    /// True if no contact is known.
    pub fn is_empty(&self) -> bool {
        self.file.store.is_empty()
    }

    /// The trust store.
    pub fn store(&self) -> &state::DesktopTrust {
        &self.file.store
    }

    /// True if `name` spoke protocol v2 with us (§2.4: no silent fall-back to v1).
    pub fn v2_seen(&self, name: &str) -> bool {
        self.file.store.get(name).is_some_and(|c| c.v2_seen())
    }

    /// Remembers that `name` spoke protocol v2 with the Ed25519 key `ed25519`; written
    /// at once. A name the store does not hold (not kept: a full store of verified
    /// contacts) is not remembered; the stored session still protects it.
    pub fn mark_v2(&mut self, name: &str, ed25519: &[u8; KEY_LEN]) {
        if self.file.store.mark_v2(name, Some(ed25519)).is_ok() {
            self.save_if_needed();
        }
    }

    /// Forgets that `name` spoke protocol v2 (`/accept-v1`); written at once.
    pub fn clear_v2(&mut self, name: &str) -> bool {
        let was = self.file.store.clear_v2(name).unwrap_or(false);
        self.save_if_needed();
        was
    }

    /// Errors since the last call (a save that failed), for the host to show.
    pub fn take_errors(&mut self) -> Vec<String> {
        std::mem::take(&mut self.errors)
    }

    /// Writes everything not yet written (at exit).
    pub fn flush(&mut self) {
        if self.file.store.needs_save() != Save::Clean || self.nonces.needs_save() {
            self.save();
        }
    }

    /// Writes now if a judgement or a nonce changed.
    fn save_if_needed(&mut self) {
        if self.file.store.needs_save() == Save::Now || self.nonces.needs_save() {
            self.save();
        }
    }

    fn encode(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, StoreError> {
        state::encode_vec(|buf| {
            let mut w = Writer::new(buf, file_type::TRUST);
            self.file.store.write(&mut w);
            self.nonces.write(&mut w);
            for r in &self.file.other {
                w.raw(&r.record());
            }
            w.finish()
        })
    }

    fn save(&mut self) {
        let Some((dir, user)) = &self.place else {
            self.file.store.mark_clean();
            self.nonces.mark_clean();
            return;
        };
        let path = dir.trust_path(user);
        let r = self
            .encode()
            .map_err(|err| StateError::Corrupt {
                path: path.clone(),
                err,
                user: user.clone(),
                identity: false,
            })
            .and_then(|data| {
                let _lock = dir.lock(user)?;
                state::write_atomic(&path, &data)
            });
        match r {
            Ok(()) => {
                self.file.store.mark_clean();
                self.nonces.mark_clean();
                self.failing = false;
            }
            Err(e) => {
                tracing::error!("cannot save the contact list: {e}");
                if !self.failing {
                    self.errors.push(format!(
                        "cannot save the contact list (kept in memory, retried at the next \
                         change): {e}"
                    ));
                }
                self.failing = true;
            }
        }
    }
}

impl Drop for DesktopMemory {
    fn drop(&mut self) {
        self.flush();
    }
}

impl KeyMemory for DesktopMemory {
    fn observe(&mut self, name: &str, key: &[u8; KEY_LEN], now: u64) -> Verdict {
        let v = KeyMemory::observe(&mut *self.file.store, name, key, now);
        self.save_if_needed();
        v
    }

    fn last_key(&self, name: &str) -> Option<[u8; KEY_LEN]> {
        KeyMemory::last_key(&*self.file.store, name)
    }

    fn status(&self, name: &str) -> Option<Status> {
        KeyMemory::status(&*self.file.store, name)
    }

    fn verify(&mut self, name: &str, key: &[u8; KEY_LEN]) -> Result<(), TrustError> {
        let r = self.file.store.verify(name, key);
        self.save_if_needed();
        r
    }

    fn accept(&mut self, name: &str) -> Result<[u8; KEY_LEN], TrustError> {
        let r = self.file.store.accept(name);
        self.save_if_needed();
        r
    }

    fn slots(&self) -> usize {
        self.file.store.capacity()
    }

    fn contact(&self, i: usize) -> Option<(&str, Status)> {
        KeyMemory::contact(&*self.file.store, i)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("seguro-trust-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn contacts_and_nonces_survive_a_reload() {
        let root = temp("reload");
        let dir = StateDir::locate(Some(&root)).unwrap();
        let mut m = DesktopMemory::load(&dir, "alice").unwrap();
        assert_eq!(m.observe("bob", &[1; 32], 10), Verdict::FirstContact);
        m.verify("bob", &[1; 32]).unwrap();
        assert_eq!(m.received_nonce("bob", &[7; 12]), Seen::New);
        m.sent_nonce("bob", &[8; 12]);
        assert!(m.take_errors().is_empty());
        drop(m);
        let mut back = DesktopMemory::load(&dir, "alice").unwrap();
        assert!(back.store().get("bob").unwrap().verified());
        assert_eq!(back.received_nonce("bob", &[7; 12]), Seen::Replayed);
        assert_eq!(back.received_nonce("bob", &[8; 12]), Seen::Reflected);
        assert_eq!(
            back.observe("bob", &[2; 32], 11),
            Verdict::ChangedVerified { old: [1; 32] }
        );
        drop(back);
        let again = DesktopMemory::load(&dir, "alice").unwrap();
        assert!(again.status("bob").unwrap().pending.is_some());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_failed_save_is_reported_once() {
        let root = temp("fail");
        let dir = StateDir::locate(Some(&root)).unwrap();
        let mut m = DesktopMemory::load(&dir, "alice").unwrap();
        // The state directory becomes a file: every save fails.
        std::fs::create_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::write(&root, b"not a directory").unwrap();
        m.observe("bob", &[1; 32], 1);
        m.observe("carol", &[2; 32], 1);
        let e = m.take_errors();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("cannot save the contact list"), "{e:?}");
        std::fs::remove_file(&root).unwrap();
        m.observe("dave", &[3; 32], 1);
        assert!(m.take_errors().is_empty());
        drop(m);
        let back = DesktopMemory::load(&dir, "alice").unwrap();
        assert_eq!(
            back.len(),
            3,
            "everything was kept and written once possible"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
