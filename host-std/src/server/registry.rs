//! Name ownership for protocol v2 (`docs/protocol-v2.md` §4.3): which name belongs to
//! which identity (X25519 and Ed25519 keys), registered by a v2 `hello` proof and kept
//! across restarts.
//!
//! [`Registry`] is the pure part (decisions, text form; the caller passes the time in
//! Unix seconds); [`RegistryFile`] keeps it in a file beside the server's certificate,
//! written atomically (temporary file, fsync, rename, mode 0600). A file that cannot be
//! read or parsed is an error when the server starts: it is never silently replaced by
//! an empty registry (that would hand every name to the first comer).
//!
//! The text form (one record a line, fields separated by one space; times in Unix
//! seconds, the name percent-encoded like the token store's labels):
//!
//! ```text
//! seguro-names 1
//! name NAME BASE64-X25519 BASE64-ED25519 REGISTERED LAST-SEEN
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use base64ct::{Base64, Encoding};
use seguro_core::limits::KEY_LEN;

use super::admission::{pct_decode, pct_encode};

/// The first line of a registry file.
pub const HEADER: &str = "seguro-names 1";
/// The registry's file name, beside the server's certificate.
pub const FILE: &str = "name-registry";
/// Default of `seguro serve --name-expiry`, in days.
pub const DEFAULT_EXPIRY_DAYS: u64 = 90;
/// Largest registry file read, in bytes.
const MAX_FILE: u64 = 64 << 20;
/// The most names the registry reserves: about 140 bytes each in the file (1.4 MB at
/// the limit, rewritten whole on each save). Beyond it, when no entry has expired, a new
/// name is not reserved (it connects under v1's rule, and the server logs it), so a
/// client registering names in a loop cannot grow the file, or the cost of each
/// save, without bound.
pub const MAX_NAMES: usize = 10_000;
/// How stale the saved `last_seen` of an owner may get, in seconds: an owner's
/// connection or leave is written at once only when the saved time is older than this.
/// The expiry counts in days, so an hour changes nothing there, and an owner who
/// reconnects in a loop causes one write an hour rather than one per connection.
pub const LAST_SEEN_SLACK: u64 = 3_600;

/// What [`Registry::register`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// The name is now reserved to the keys (new, or taken over after the expiry): save.
    New,
    /// The owner again; `last_seen` moved by more than [`LAST_SEEN_SLACK`]: save.
    Refreshed,
    /// The owner again, seen within [`LAST_SEEN_SLACK`]: nothing worth a write.
    Unchanged,
    /// The registry holds [`MAX_NAMES`] names none of which has expired: not reserved.
    Full,
}

/// Who owns a registered name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// The X25519 identity key (the v1 key).
    pub x: [u8; KEY_LEN],
    /// The Ed25519 identity key.
    pub ed: [u8; KEY_LEN],
    /// When the name was registered.
    pub registered: u64,
    /// The owner's last connection (start or end).
    pub last_seen: u64,
}

/// What the registry says about a `hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Never registered (or released after the expiry): v1 rules; a v2 proof registers it.
    Free,
    /// Registered to these keys: a v2 proof gets it back.
    Owner,
    /// Registered to another key: `name_taken`.
    Taken,
    /// A v1 `hello` for a registered name (with the owner's key or not, it cannot
    /// prove possession): `proof_required`.
    ProofRequired,
}

/// Why a registry's text is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// The first line is not [`HEADER`] (a newer format names its version).
    Header(String),
    /// Line `.0` (1-based) is not a valid record.
    Record(usize, &'static str),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header(h) if h.starts_with("seguro-names ") => write!(
                f,
                "format {:?} is not the one this version reads ({HEADER:?}): a newer Seguro wrote it",
                h
            ),
            Self::Header(h) => write!(f, "first line {h:?} is not {HEADER:?}"),
            Self::Record(line, why) => write!(f, "line {line}: {why}"),
        }
    }
}

/// The names registered through v2, and for how long an unused one stays reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    names: BTreeMap<String, Owner>,
    expiry: u64,
    max: usize,
    /// `last_seen` of each name as last written (what [`LAST_SEEN_SLACK`] is measured
    /// from); not part of the text form.
    saved_seen: BTreeMap<String, u64>,
}

impl Registry {
    /// An empty registry; a name unused for more than `expiry_secs` is released.
    pub fn new(expiry_secs: u64) -> Self {
        Self {
            names: BTreeMap::new(),
            expiry: expiry_secs,
            max: MAX_NAMES,
            saved_seen: BTreeMap::new(),
        }
    }

    /// The same registry holding at most `max` names (instead of [`MAX_NAMES`]).
    pub fn with_max_names(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// Notes that the current state was written (the base of [`LAST_SEEN_SLACK`]).
    fn mark_saved(&mut self) {
        self.saved_seen = self
            .names
            .iter()
            .map(|(n, o)| (n.clone(), o.last_seen))
            .collect();
    }

    /// True if `name`'s `last_seen` moved far enough from the saved one to be written.
    fn seen_is_due(&self, name: &str) -> bool {
        match (self.names.get(name), self.saved_seen.get(name)) {
            (Some(o), Some(saved)) => o.last_seen.saturating_sub(*saved) > LAST_SEEN_SLACK,
            (Some(_), None) => true,
            _ => false,
        }
    }

    /// The expiry, in whole days (rounded up), for messages.
    pub fn expiry_days(&self) -> u64 {
        self.expiry.div_ceil(86_400)
    }

    /// Number of registered names.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no name is registered.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The owner of `name`, if registered.
    pub fn get(&self, name: &str) -> Option<&Owner> {
        self.names.get(name)
    }

    /// The owner of `name` at `now` if the name is reserved: registered, not unused for
    /// longer than the expiry, and the expiry not zero (where [`Registry::check`] would
    /// say [`Verdict::Owner`] to the owner's keys).
    pub fn current(&self, name: &str, now: u64) -> Option<&Owner> {
        if self.expiry == 0 {
            return None;
        }
        self.names
            .get(name)
            .filter(|o| now.saturating_sub(o.last_seen) <= self.expiry)
    }

    /// Decides on a `hello` for `name` with X25519 key `x` and, for a v2 `hello`,
    /// Ed25519 key `ed`. An entry unused for longer than the expiry is dropped here
    /// (the name is free again). With an expiry of zero no name is reserved.
    pub fn check(
        &mut self,
        name: &str,
        x: &[u8; KEY_LEN],
        ed: Option<&[u8; KEY_LEN]>,
        now: u64,
    ) -> Verdict {
        if self.expiry == 0 {
            // `--name-expiry 0`: names are not reserved (v1's rule for everyone).
            return Verdict::Free;
        }
        let Some(owner) = self.names.get(name) else {
            return Verdict::Free;
        };
        if now.saturating_sub(owner.last_seen) > self.expiry {
            self.names.remove(name);
            return Verdict::Free;
        }
        let same = owner.x == *x;
        match ed {
            Some(ed) if same && owner.ed == *ed => Verdict::Owner,
            None if same => Verdict::ProofRequired,
            _ => Verdict::Taken,
        }
    }

    /// Records a successful v2 proof: registers `name` to the keys, or updates
    /// `last_seen` of its owner. Replaces another owner (the caller checked the
    /// expiry with [`Registry::check`]). A new name when the registry is full first
    /// drops the expired entries; if none has expired it is not registered.
    pub fn register(
        &mut self,
        name: &str,
        x: &[u8; KEY_LEN],
        ed: &[u8; KEY_LEN],
        now: u64,
    ) -> Registered {
        match self.names.get_mut(name) {
            Some(o) if o.x == *x && o.ed == *ed => {
                o.last_seen = now.max(o.last_seen);
                if self.seen_is_due(name) {
                    Registered::Refreshed
                } else {
                    Registered::Unchanged
                }
            }
            found => {
                if found.is_none() && self.names.len() >= self.max {
                    let expiry = self.expiry;
                    self.names
                        .retain(|_, o| now.saturating_sub(o.last_seen) <= expiry);
                    if self.names.len() >= self.max {
                        return Registered::Full;
                    }
                }
                self.names.insert(
                    name.to_owned(),
                    Owner {
                        x: *x,
                        ed: *ed,
                        registered: now,
                        last_seen: now,
                    },
                );
                Registered::New
            }
        }
    }

    /// Updates `last_seen` of `name` if `x` owns it; true if that is worth a write
    /// (it moved by more than [`LAST_SEEN_SLACK`] since the last save).
    pub fn touch(&mut self, name: &str, x: &[u8; KEY_LEN], now: u64) -> bool {
        match self.names.get_mut(name) {
            Some(o) if o.x == *x => {
                o.last_seen = now.max(o.last_seen);
                self.seen_is_due(name)
            }
            _ => false,
        }
    }

    /// The text form.
    pub fn to_text(&self) -> String {
        let mut out = String::from(HEADER);
        out.push('\n');
        for (name, o) in &self.names {
            out.push_str(&format!(
                "name {} {} {} {} {}\n",
                pct_encode(name),
                Base64::encode_string(&o.x),
                Base64::encode_string(&o.ed),
                o.registered,
                o.last_seen
            ));
        }
        out
    }

    /// Reads the text form; every error names its line.
    pub fn parse(text: &str, expiry_secs: u64) -> Result<Self, FormatError> {
        let mut lines = text.lines();
        let header = lines.next().unwrap_or("");
        if header != HEADER {
            return Err(FormatError::Header(header.chars().take(40).collect()));
        }
        let mut reg = Self::new(expiry_secs);
        for (i, line) in lines.enumerate() {
            let n = i + 2;
            if line.is_empty() {
                continue;
            }
            let bad = |why| FormatError::Record(n, why);
            let f: Vec<&str> = line.split(' ').collect();
            let [kind, name, x, ed, registered, last_seen] = f[..] else {
                return Err(bad("expected 6 fields"));
            };
            if kind != "name" {
                return Err(bad("unknown record type"));
            }
            let name = pct_decode(name)
                .filter(|s| seguro_core::msg::validate_name(s).is_ok())
                .ok_or(bad("bad name"))?;
            let key = |s: &str| {
                let mut k = [0u8; KEY_LEN];
                match Base64::decode(s, &mut k) {
                    Ok(d) if d.len() == KEY_LEN => Some(k),
                    _ => None,
                }
            };
            let x = key(x).ok_or(bad("bad X25519 key"))?;
            let ed = key(ed).ok_or(bad("bad Ed25519 key"))?;
            let time = |s: &str| s.parse::<u64>().ok().filter(|_| !s.starts_with('+'));
            let registered = time(registered).ok_or(bad("bad registration time"))?;
            let last_seen = time(last_seen).ok_or(bad("bad last-seen time"))?;
            let owner = Owner {
                x,
                ed,
                registered,
                last_seen,
            };
            if reg.names.insert(name, owner).is_some() {
                return Err(bad("name listed twice"));
            }
        }
        Ok(reg)
    }
}

/// A [`Registry`] kept in a file.
#[derive(Debug)]
pub struct RegistryFile {
    path: PathBuf,
    reg: Mutex<Registry>,
    /// Held while the file is written: two writers would share the temporary file.
    writing: Mutex<()>,
}

impl RegistryFile {
    /// The registry beside the certificate `cert` ([`FILE`] in its directory).
    pub fn path_beside(cert: &Path) -> PathBuf {
        match cert.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.join(FILE),
            _ => Path::new(".").join(FILE),
        }
    }

    /// Reads the registry at `path` (none yet: empty). An unreadable or corrupt file
    /// is an error saying which file and what is wrong.
    pub fn open(path: &Path, expiry_secs: u64) -> Result<Self, String> {
        let reg = match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Registry::new(expiry_secs),
            Err(e) => {
                return Err(format!(
                    "cannot read the name registry {}: {e}",
                    path.display()
                ));
            }
            Ok(m) if m.len() > MAX_FILE => {
                return Err(format!(
                    "the name registry {} is larger than {} MiB: not a registry",
                    path.display(),
                    MAX_FILE >> 20
                ));
            }
            Ok(_) => {
                let data = std::fs::read(path).map_err(|e| {
                    format!("cannot read the name registry {}: {e}", path.display())
                })?;
                let text = std::str::from_utf8(&data).map_err(|_| {
                    format!(
                        "the name registry {} is corrupt (not text); move it away to start \
                         with no registered names",
                        path.display()
                    )
                })?;
                Registry::parse(text, expiry_secs).map_err(|e| {
                    format!(
                        "the name registry {} is corrupt ({e}); move it away to start with \
                         no registered names",
                        path.display()
                    )
                })?
            }
        };
        let mut reg = reg;
        // What the file holds is saved.
        reg.mark_saved();
        Ok(Self {
            path: path.to_owned(),
            reg: Mutex::new(reg),
            writing: Mutex::new(()),
        })
    }

    /// Where it is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The registry, locked.
    pub fn lock(&self) -> MutexGuard<'_, Registry> {
        self.reg
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes the registry's current state (blocking: call it off the async threads).
    pub fn save(&self) -> Result<(), String> {
        let _writing = self
            .writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Taken under the write lock, so the last writer writes the newest state.
        let text = {
            let mut reg = self.lock();
            reg.mark_saved();
            reg.to_text()
        };
        crate::state::write_atomic(&self.path, text.as_bytes())
            .map_err(|e| format!("cannot save the name registry: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const X1: [u8; 32] = [0x11; 32];
    const X2: [u8; 32] = [0x22; 32];
    const E1: [u8; 32] = [0x33; 32];
    const E2: [u8; 32] = [0x44; 32];
    const DAY: u64 = 86_400;

    #[test]
    fn owner_taken_proof_required_and_expiry() {
        let mut r = Registry::new(90 * DAY);
        assert_eq!(r.check("alice", &X1, Some(&E1), 1000), Verdict::Free);
        assert_eq!(r.check("alice", &X1, None, 1000), Verdict::Free);
        r.register("alice", &X1, &E1, 1000);
        assert_eq!(r.check("alice", &X1, Some(&E1), 2000), Verdict::Owner);
        assert_eq!(r.check("alice", &X1, Some(&E2), 2000), Verdict::Taken);
        assert_eq!(r.check("alice", &X2, Some(&E1), 2000), Verdict::Taken);
        assert_eq!(r.check("alice", &X1, None, 2000), Verdict::ProofRequired);
        assert_eq!(r.check("alice", &X2, None, 2000), Verdict::Taken);
        // Exactly the expiry unused: still reserved; one second more: released.
        assert_eq!(
            r.check("alice", &X2, Some(&E2), 1000 + 90 * DAY),
            Verdict::Taken
        );
        assert_eq!(r.current("alice", 1000 + 90 * DAY).map(|o| o.ed), Some(E1));
        assert!(r.current("alice", 1001 + 90 * DAY).is_none());
        assert!(r.current("bob", 1000).is_none());
        assert!(r.touch("alice", &X1, 5000));
        assert!(!r.touch("alice", &X2, 6000));
        assert_eq!(
            r.check("alice", &X2, Some(&E2), 5001 + 90 * DAY),
            Verdict::Free
        );
        assert!(r.is_empty());
        assert_eq!(r.check("bob", &X1, None, 0), Verdict::Free);
        // Expiry zero: nothing is reserved, not even within the same second.
        let mut r = Registry::new(0);
        r.register("alice", &X1, &E1, 1000);
        assert!(r.current("alice", 1000).is_none());
        assert_eq!(r.check("alice", &X2, Some(&E2), 1000), Verdict::Free);
        assert_eq!(r.check("alice", &X1, None, 1000), Verdict::Free);
    }

    #[test]
    fn register_keeps_the_first_time_and_another_key_replaces() {
        let mut r = Registry::new(DAY);
        r.register("alice", &X1, &E1, 10);
        r.register("alice", &X1, &E1, 20);
        assert_eq!(
            r.get("alice"),
            Some(&Owner {
                x: X1,
                ed: E1,
                registered: 10,
                last_seen: 20
            })
        );
        r.register("alice", &X2, &E2, 30);
        assert_eq!(
            r.get("alice"),
            Some(&Owner {
                x: X2,
                ed: E2,
                registered: 30,
                last_seen: 30
            })
        );
    }

    /// A client registering names in a loop: the registry stops at its limit (no entry
    /// added, the file's size bounded), makes room only from expired entries, and an
    /// owner keeps their name all the while.
    #[test]
    fn registering_names_in_a_loop_stops_at_the_limit() {
        let mut r = Registry::new(DAY).with_max_names(3);
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            assert_eq!(r.register(name, &X1, &E1, 100 + i as u64), Registered::New);
        }
        r.mark_saved();
        assert_eq!(r.register("d", &X2, &E2, 200), Registered::Full);
        assert_eq!(r.len(), 3);
        assert_eq!(r.get("d"), None);
        assert_eq!(r.check("d", &X1, Some(&E1), 201), Verdict::Free);
        // An owner coming back, and a name taken over by another key, need no room.
        assert_eq!(r.register("a", &X1, &E1, 300), Registered::Unchanged);
        assert_eq!(r.register("b", &X2, &E2, 300), Registered::New);
        assert_eq!(r.len(), 3);
        // `c` (last seen at 102) expires after a day: its room goes to `d`; `a` and `b`,
        // seen at 300, stay.
        assert_eq!(r.register("d", &X2, &E2, 103 + DAY), Registered::New);
        assert_eq!(r.len(), 3);
        assert_eq!(r.get("c"), None);
        assert!(r.get("a").is_some() && r.get("b").is_some() && r.get("d").is_some());
        assert_eq!(Registry::new(DAY).max, MAX_NAMES);
    }

    /// An owner reconnecting in a loop causes one write per LAST_SEEN_SLACK, not one per
    /// connection; the time in memory is always the latest.
    #[test]
    fn last_seen_is_written_once_per_slack() {
        let mut r = Registry::new(90 * DAY);
        assert_eq!(r.register("alice", &X1, &E1, 1000), Registered::New);
        r.mark_saved();
        assert_eq!(r.register("alice", &X1, &E1, 1010), Registered::Unchanged);
        assert!(!r.touch("alice", &X1, 1000 + LAST_SEEN_SLACK));
        assert_eq!(
            r.get("alice").map(|o| o.last_seen),
            Some(1000 + LAST_SEEN_SLACK)
        );
        assert!(r.touch("alice", &X1, 1001 + LAST_SEEN_SLACK));
        assert_eq!(
            r.register("alice", &X1, &E1, 1002 + LAST_SEEN_SLACK),
            Registered::Refreshed
        );
        r.mark_saved();
        assert!(!r.touch("alice", &X1, 1003 + LAST_SEEN_SLACK));
        assert_eq!(
            r.register("alice", &X1, &E1, 1004 + LAST_SEEN_SLACK),
            Registered::Unchanged
        );
        // Not the owner's key: nothing to write.
        assert!(!r.touch("alice", &X2, 10 * LAST_SEEN_SLACK));
    }

    /// What a registry file holds counts as written: a reconnect right after a restart
    /// causes no write.
    #[test]
    fn a_reopened_file_counts_as_saved() {
        let dir = std::env::temp_dir().join(format!(
            "seguro-registry-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(FILE);
        let _ = std::fs::remove_file(&path);
        let f = RegistryFile::open(&path, 90 * DAY).unwrap();
        assert_eq!(f.lock().register("alice", &X1, &E1, 1000), Registered::New);
        f.save().unwrap();
        assert!(!f.lock().touch("alice", &X1, 1100));
        let g = RegistryFile::open(&path, 90 * DAY).unwrap();
        assert_eq!(g.lock().get("alice").map(|o| o.last_seen), Some(1000));
        assert!(!g.lock().touch("alice", &X1, 1200));
        assert!(g.lock().touch("alice", &X1, 1001 + LAST_SEEN_SLACK));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn text_round_trip_and_corruption_named_by_line() {
        let mut r = Registry::new(DAY);
        r.register("alice", &X1, &E1, 10);
        r.register("böb-2", &X2, &E2, 20);
        let text = r.to_text();
        assert!(text.starts_with("seguro-names 1\nname alice "), "{text}");
        assert_eq!(Registry::parse(&text, DAY), Ok(r.clone()));
        assert_eq!(
            Registry::parse("", DAY),
            Err(FormatError::Header(String::new()))
        );
        let newer = Registry::parse("seguro-names 2\n", DAY).unwrap_err();
        assert!(newer.to_string().contains("newer Seguro"), "{newer}");
        let bad_time = text.replace(" 20 20\n", " 20 2x\n");
        assert_eq!(
            Registry::parse(&bad_time, DAY),
            Err(FormatError::Record(3, "bad last-seen time"))
        );
        let cut = &text[..text.len() - 5];
        assert_eq!(
            Registry::parse(cut, DAY),
            Err(FormatError::Record(3, "expected 6 fields"))
        );
        let twice = format!("{text}{}", text.lines().nth(1).unwrap());
        assert_eq!(
            Registry::parse(&twice, DAY),
            Err(FormatError::Record(4, "name listed twice"))
        );
        let bad_key = text.replacen("ERER", "!!!!", 1);
        assert_eq!(
            Registry::parse(&bad_key, DAY),
            Err(FormatError::Record(2, "bad X25519 key"))
        );
    }
}
