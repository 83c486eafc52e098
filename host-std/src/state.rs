//! Where the desktop keeps its state, and how it writes it: the state directory, files
//! written atomically with mode 0600, and the contact list (trust store) file.
//!
//! ```text
//! $XDG_DATA_HOME/seguro/            (else ~/.local/share/seguro/, or --state-dir DIR)   mode 0700
//!   users/<user>/                   one directory per user name                         mode 0700
//!     identity                      the identity: X25519 + Ed25519 secret keys          mode 0600
//!     trust                         known contacts (and later per-peer state)           mode 0600
//!     lock                          serialises writers (advisory lock)
//! ```
//!
//! `<user>` is the user name with every byte outside `A-Z a-z 0-9 _ -` (and `.` past
//! the first character) written as `%XX`, so any valid name is one safe file name.
//!
//! Every write goes to a temporary file in the same directory (mode 0600), is flushed
//! to disk (`fsync`), renamed over the old file and the directory is flushed too: a
//! crash or `kill -9` at any moment leaves the old file or the new one, never a torn
//! one. Writers of one user's files hold an advisory lock (`flock`) on `lock`, so two
//! processes never interleave their writes.
//!
//! Reading refuses, with an explanation, a file that is readable or writable by other
//! users, not a regular file, truncated or corrupt (the storage format of
//! `seguro_core::store` has a checksum on every record and an end record), from a newer
//! Seguro, or made for another user name. Nothing is ever replaced silently: a new key
//! looks like an attack to every peer.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use seguro_core::store::{Record, StoreError, Writer, file_type};
use seguro_core::trust::TrustStore;

use crate::exit;

/// Contacts the desktop remembers per user (about 290 KiB of RAM).
pub const DESKTOP_CONTACTS: usize = 1024;

/// The desktop's trust store.
pub type DesktopTrust = TrustStore<DESKTOP_CONTACTS>;

/// Largest state file read, in bytes.
const MAX_FILE: u64 = 16 << 20;

/// Environment variable (tests only): seconds to pause after a new state file is
/// written and flushed, before it is renamed over the old one.
pub const TEST_PAUSE_ENV: &str = "SEGURO_TEST_PAUSE_BEFORE_RENAME";

/// Why state could not be read or written.
#[derive(Debug)]
pub enum StateError {
    /// No `--state-dir`, no usable `XDG_DATA_HOME` and no `HOME`.
    NoHome,
    /// The user name is not a valid Seguro name.
    BadName {
        /// The name.
        user: String,
        /// Why.
        err: seguro_core::msg::NameError,
    },
    /// A system call failed.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done ("read", "create", ...).
        op: &'static str,
        /// What the OS said.
        err: io::Error,
    },
    /// A private file others may read or write.
    Exposed {
        /// The file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// True for the identity (then the key may have to be rotated).
        secret: bool,
        /// The user it belongs to.
        user: String,
    },
    /// Not a regular file (or not a directory where one is expected).
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// Larger than any state file Seguro writes.
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file does not decode.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the decoder found.
        err: StoreError,
        /// The user it belongs to.
        user: String,
        /// True for the identity file.
        identity: bool,
    },
    /// An identity file that was made for another name.
    WrongUser {
        /// The file.
        path: PathBuf,
        /// The name inside.
        found: String,
        /// The name it is stored under.
        expected: String,
    },
    /// The file exists and would be replaced.
    Exists {
        /// The file.
        path: PathBuf,
        /// The user.
        user: String,
    },
    /// There is no identity for the user.
    NoIdentity {
        /// The user.
        user: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Something that is not a state file for this purpose (e.g. `id import` of an
    /// identity file instead of an export bundle).
    Unusable {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

fn mode_text(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoHome => f.write_str(
                "cannot tell where to keep identities: HOME is not set; pass --state-dir DIR",
            ),
            Self::BadName { user, err } => write!(f, "invalid user name {user:?}: {err}"),
            Self::Io { path, op, err } => write!(f, "cannot {op} {}: {err}", path.display()),
            Self::Exposed {
                path,
                mode,
                secret,
                user,
            } => {
                write!(
                    f,
                    "{} is accessible to other users (mode {}): it must be private to you. \
                     Fix it with `chmod {} {}`",
                    path.display(),
                    mode_text(*mode),
                    if path.is_dir() { "700" } else { "600" },
                    path.display()
                )?;
                if *secret {
                    write!(
                        f,
                        "; if someone else may have read it, make a new identity with \
                         `seguro id rotate {user}` (peers will see a key change)"
                    )?;
                }
                Ok(())
            }
            Self::NotAFile { path } => write!(f, "{} is not a regular file", path.display()),
            Self::TooLarge { path } => write!(
                f,
                "{} is larger than any Seguro state file: not a Seguro file",
                path.display()
            ),
            Self::Corrupt {
                path,
                err,
                user,
                identity,
            } => {
                write!(f, "{} is unusable: {err}. ", path.display())?;
                if matches!(err, StoreError::UnsupportedVersion { .. }) {
                    return f.write_str("Use the newer Seguro that wrote it; it was not changed");
                }
                if *identity {
                    write!(
                        f,
                        "Seguro never replaces an identity by itself (a new key looks like an \
                         attack to every peer). Restore it from a backup (`seguro id import \
                         FILE` or a copy of the directory); to start over with a new identity, \
                         move the file away and run again (peers will see KEY CHANGED for \
                         {user})"
                    )
                } else {
                    write!(
                        f,
                        "Restore it from a backup, or move it away to start with an empty \
                         contact list (known keys and verifications of {user}'s contacts are \
                         then forgotten)"
                    )
                }
            }
            Self::WrongUser {
                path,
                found,
                expected,
            } => write!(
                f,
                "{} holds the identity of {found:?}, not of {expected:?}: it was copied to \
                 the wrong place. Move it back, or use `seguro id export`/`import`",
                path.display()
            ),
            Self::Exists { path, user } => write!(
                f,
                "{} already exists: {user} already has an identity here (use --force to \
                 replace it; peers will see KEY CHANGED unless it is the same key)",
                path.display()
            ),
            Self::NoIdentity { user, path } => write!(
                f,
                "no identity for {user} in {} (`seguro chat {user} ...` or `seguro id create \
                 {user}` makes one)",
                path.display()
            ),
            Self::Unusable { path, why } => write!(f, "{}: {why}", path.display()),
        }
    }
}

impl std::error::Error for StateError {}

impl StateError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::BadName { .. } => exit::USAGE,
            Self::Exposed { .. }
            | Self::NotAFile { .. }
            | Self::TooLarge { .. }
            | Self::Corrupt { .. }
            | Self::WrongUser { .. } => exit::STATE,
            _ => exit::ERROR,
        }
    }
}

fn io_err<'p>(path: &'p Path, op: &'static str) -> impl FnOnce(io::Error) -> StateError + 'p {
    move |err| StateError::Io {
        path: path.to_owned(),
        op,
        err,
    }
}

/// A user name as one file name (see the module documentation).
pub fn encode_name(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    for (i, b) in user.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The user name a file name stands for, if it is one [`encode_name`] makes.
pub fn decode_name(file: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(file.len());
    let mut it = file.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let hex = [it.next()?, it.next()?];
            let hex = std::str::from_utf8(&hex).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
        } else {
            bytes.push(b);
        }
    }
    let name = String::from_utf8(bytes).ok()?;
    (encode_name(&name) == file).then_some(name)
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// `explicit` (`--state-dir`), else `$XDG_DATA_HOME/seguro` (if set and absolute),
    /// else `$HOME/.local/share/seguro`. Creates nothing.
    pub fn locate(explicit: Option<&Path>) -> Result<Self, StateError> {
        if let Some(p) = explicit {
            return Ok(Self { root: p.to_owned() });
        }
        let xdg = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute());
        let base = match xdg {
            Some(p) => p,
            None => {
                let home = std::env::var_os("HOME")
                    .filter(|h| !h.is_empty())
                    .ok_or(StateError::NoHome)?;
                PathBuf::from(home).join(".local").join("share")
            }
        };
        Ok(Self {
            root: base.join("seguro"),
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `user`'s files.
    pub fn user_dir(&self, user: &str) -> PathBuf {
        self.root.join("users").join(encode_name(user))
    }

    /// `user`'s identity file.
    pub fn identity_path(&self, user: &str) -> PathBuf {
        self.user_dir(user).join("identity")
    }

    /// `user`'s contact list.
    pub fn trust_path(&self, user: &str) -> PathBuf {
        self.user_dir(user).join("trust")
    }

    /// The users that have a directory here, sorted.
    pub fn users(&self) -> Result<Vec<String>, StateError> {
        let dir = self.root.join("users");
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir, "list")(e)),
        };
        let mut users: Vec<String> = rd
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().and_then(decode_name))
            .filter(|u| seguro_core::msg::validate_name(u).is_ok())
            .collect();
        users.sort();
        Ok(users)
    }

    /// Creates (mode 0700) or checks the directories down to `user`'s.
    pub fn prepare(&self, user: &str) -> Result<PathBuf, StateError> {
        let users = self.root.join("users");
        let dir = self.user_dir(user);
        for d in [&self.root, &users, &dir] {
            make_private_dir(d, user)?;
        }
        Ok(dir)
    }

    /// Takes the advisory lock of `user`'s files (blocks while another process holds
    /// it); released when the returned file is dropped.
    pub fn lock(&self, user: &str) -> Result<File, StateError> {
        let dir = self.prepare(user)?;
        let path = dir.join("lock");
        let mut o = OpenOptions::new();
        o.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let f = o.open(&path).map_err(io_err(&path, "open"))?;
        f.lock().map_err(io_err(&path, "lock"))?;
        Ok(f)
    }
}

fn make_private_dir(d: &Path, user: &str) -> Result<(), StateError> {
    match fs::metadata(d) {
        Ok(m) if !m.is_dir() => Err(StateError::NotAFile { path: d.to_owned() }),
        Ok(m) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = m.permissions().mode();
                // Others must not be able to swap files in it.
                if mode & 0o022 != 0 {
                    return Err(StateError::Exposed {
                        path: d.to_owned(),
                        mode,
                        secret: false,
                        user: user.to_owned(),
                    });
                }
            }
            let _ = (m, user);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut b = fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            b.create(d).map_err(io_err(d, "create directory"))
        }
        Err(e) => Err(io_err(d, "inspect")(e)),
    }
}

/// Reads a private state file: `None` if it does not exist. Refuses a file other
/// users can access, or one that is not a regular file.
pub fn read_private(path: &Path, user: &str, secret: bool) -> Result<Option<Vec<u8>>, StateError> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, "open")(e)),
    };
    let m = f.metadata().map_err(io_err(path, "inspect"))?;
    if !m.is_file() {
        return Err(StateError::NotAFile {
            path: path.to_owned(),
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = m.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(StateError::Exposed {
                path: path.to_owned(),
                mode,
                secret,
                user: user.to_owned(),
            });
        }
    }
    let _ = (secret, user);
    if m.len() > MAX_FILE {
        return Err(StateError::TooLarge {
            path: path.to_owned(),
        });
    }
    let mut data = Vec::with_capacity(usize::try_from(m.len()).unwrap_or(0));
    io::Read::by_ref(&mut f)
        .take(MAX_FILE + 1)
        .read_to_end(&mut data)
        .map_err(io_err(path, "read"))?;
    Ok(Some(data))
}

/// Replaces `path` by `data` atomically: a temporary file (mode 0600) in the same
/// directory, `fsync`, rename, `fsync` of the directory. The caller holds the lock.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut o = OpenOptions::new();
    o.create(true).write(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(&tmp).map_err(io_err(&tmp, "create"))?;
    #[cfg(unix)]
    {
        // A stale temporary file keeps its old mode through `open`: make sure.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io_err(&tmp, "chmod"))?;
    }
    f.write_all(data).map_err(io_err(&tmp, "write"))?;
    f.sync_all().map_err(io_err(&tmp, "flush"))?;
    drop(f);
    test_pause(&tmp, path);
    fs::rename(&tmp, path).map_err(io_err(path, "replace"))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "flush"))?;
    Ok(())
}

fn test_pause(tmp: &Path, path: &Path) {
    let Some(secs) = std::env::var(TEST_PAUSE_ENV)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
    else {
        return;
    };
    eprintln!(
        "seguro: test pause: {} written, {secs} s before it replaces {}",
        tmp.display(),
        path.display()
    );
    std::thread::sleep(std::time::Duration::from_secs_f64(secs.min(3600.0)));
}

/// Encodes with a `seguro_core::store` encoder that reports the size it needs.
pub fn encode_vec(
    mut f: impl FnMut(&mut [u8]) -> Result<usize, StoreError>,
) -> Result<zeroize::Zeroizing<Vec<u8>>, StoreError> {
    let mut buf = zeroize::Zeroizing::new(vec![0u8; 4096]);
    loop {
        match f(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(StoreError::BufferTooSmall { needed }) if needed > buf.len() => {
                buf = zeroize::Zeroizing::new(vec![0u8; needed]);
            }
            Err(e) => return Err(e),
        }
    }
}

/// A record of a kind this build does not know, kept to be written back.
#[derive(Debug, Clone)]
pub struct KeptRecord {
    kind: u8,
    version: u8,
    body: Vec<u8>,
}

impl KeptRecord {
    /// The record's kind.
    pub fn kind(&self) -> u8 {
        self.kind
    }

    fn from(r: Record<'_>) -> Self {
        Self {
            kind: r.kind,
            version: r.version,
            body: r.body.to_vec(),
        }
    }

    /// The record.
    pub fn record(&self) -> Record<'_> {
        Record {
            kind: self.kind,
            version: self.version,
            body: &self.body,
        }
    }
}

/// A user's contact list as loaded from (and saved to) its file.
pub struct TrustFile {
    /// The contacts.
    pub store: Box<DesktopTrust>,
    /// Records of other kinds found in the file, written back unchanged.
    pub other: Vec<KeptRecord>,
    /// Contacts in the file that did not fit.
    pub dropped: usize,
}

impl TrustFile {
    /// An empty list.
    pub fn empty() -> Self {
        Self {
            store: Box::new(DesktopTrust::new()),
            other: Vec::new(),
            dropped: 0,
        }
    }

    /// Parses `data` as a file of type `ftype` (trust file or bundle); records of kinds
    /// it does not handle are kept, except those `skip` names.
    pub fn decode(data: &[u8], ftype: u8, skip: &[u8]) -> Result<Self, StoreError> {
        let mut t = Self::empty();
        let mut other = Vec::new();
        let loaded = t.store.load_file(data, ftype, |r| {
            if !skip.contains(&r.kind) {
                other.push(KeptRecord::from(r));
            }
        })?;
        t.other = other;
        t.dropped = loaded.dropped;
        Ok(t)
    }

    /// Writes the contacts and kept records to `w`.
    pub fn write(&self, w: &mut Writer<'_>) {
        self.store.write(w);
        for r in &self.other {
            w.raw(&r.record());
        }
    }

    /// Loads `user`'s contact list (empty if there is none yet).
    pub fn load(dir: &StateDir, user: &str) -> Result<Self, StateError> {
        let path = dir.trust_path(user);
        match read_private(&path, user, false)? {
            None => Ok(Self::empty()),
            Some(data) => {
                Self::decode(&data, file_type::TRUST, &[]).map_err(|err| StateError::Corrupt {
                    path,
                    err,
                    user: user.to_owned(),
                    identity: false,
                })
            }
        }
    }

    /// Writes `user`'s contact list atomically and marks it clean.
    pub fn save(&mut self, dir: &StateDir, user: &str) -> Result<(), StateError> {
        let _lock = dir.lock(user)?;
        self.save_locked(dir, user)
    }

    /// [`save`](Self::save) for a caller that holds the lock.
    pub fn save_locked(&mut self, dir: &StateDir, user: &str) -> Result<(), StateError> {
        let path = dir.trust_path(user);
        let data = encode_vec(|buf| {
            let mut w = Writer::new(buf, file_type::TRUST);
            self.write(&mut w);
            w.finish()
        })
        .map_err(|err| StateError::Corrupt {
            path: path.clone(),
            err,
            user: user.to_owned(),
            identity: false,
        })?;
        write_atomic(&path, &data)?;
        self.store.mark_clean();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "seguro-state-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn names_encode_to_safe_file_names_and_back() {
        for (name, file) in [
            ("alice", "alice"),
            ("a.b", "a.b"),
            (".hidden", "%2Ehidden"),
            ("..", "%2E."),
            ("a/b", "a%2Fb"),
            ("50%", "50%25"),
            ("ñandú", "%C3%B1and%C3%BA"),
        ] {
            assert_eq!(encode_name(name), file);
            assert_eq!(decode_name(file).as_deref(), Some(name));
        }
        assert_eq!(decode_name("a%2"), None);
        assert_eq!(decode_name("%zz"), None);
        // Not the canonical spelling: not a name this code wrote.
        assert_eq!(decode_name("%61lice"), None);
        assert_eq!(decode_name("%FF"), None);
    }

    #[test]
    fn locate_prefers_explicit_then_xdg_then_home() {
        let d = StateDir::locate(Some(Path::new("/x/y"))).unwrap();
        assert_eq!(d.root(), Path::new("/x/y"));
        assert_eq!(d.identity_path("bob"), Path::new("/x/y/users/bob/identity"));
        assert_eq!(d.trust_path("b/c"), Path::new("/x/y/users/b%2Fc/trust"));
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_is_private_and_replaces() {
        use std::os::unix::fs::PermissionsExt;
        let root = temp("atomic");
        let sd = StateDir::locate(Some(&root)).unwrap();
        let dir = sd.prepare("bob").unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let p = dir.join("f");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!dir.join(".f.tmp").exists());
        assert_eq!(read_private(&p, "bob", false).unwrap().unwrap(), b"two");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        let e = read_private(&p, "bob", true).unwrap_err();
        assert!(matches!(e, StateError::Exposed { mode, .. } if mode & 0o777 == 0o640));
        assert!(e.to_string().contains("chmod 600"), "{e}");
        assert!(e.to_string().contains("seguro id rotate bob"), "{e}");
        assert_eq!(e.exit_code(), exit::STATE);
        assert!(
            read_private(&dir.join("none"), "bob", false)
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            read_private(&dir, "bob", false),
            Err(StateError::NotAFile { .. })
        ));
        // A directory others may write to is refused.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(sd.prepare("bob"), Err(StateError::Exposed { .. })));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn trust_file_round_trip_keeps_unknown_records() {
        let root = temp("trust");
        let sd = StateDir::locate(Some(&root)).unwrap();
        let mut t = TrustFile::load(&sd, "alice").unwrap();
        assert!(t.store.is_empty());
        t.store.observe("bob", &[5; 32], 100).unwrap();
        t.store.verify("bob", &[5; 32]).unwrap();
        t.other.push(KeptRecord {
            kind: 0x70,
            version: 1,
            body: b"later".to_vec(),
        });
        t.save(&sd, "alice").unwrap();
        let u = TrustFile::load(&sd, "alice").unwrap();
        assert_eq!(u.store.get("bob"), t.store.get("bob"));
        assert_eq!(u.other.len(), 1);
        assert_eq!(u.other[0].body, b"later");
        // Corrupt: a clear error, and the file is left as it is.
        let p = sd.trust_path("alice");
        let mut data = fs::read(&p).unwrap();
        let mid = data.len() / 2;
        data[mid] ^= 0x20;
        fs::write(&p, &data).unwrap();
        let e = TrustFile::load(&sd, "alice").err().unwrap();
        assert!(
            matches!(
                e,
                StateError::Corrupt {
                    identity: false,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("corrupt"), "{e}");
        assert_eq!(fs::read(&p).unwrap(), data);
        fs::remove_dir_all(&root).unwrap();
    }
}
