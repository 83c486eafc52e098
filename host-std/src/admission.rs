//! The files of a private server's admission, beside its certificate (the directory of
//! `--cert`: the working directory by default, `/var/lib/seguro` on a Raspberry Pi):
//!
//! ```text
//! join-tokens        the token store (server::admission's text form), mode 0600:
//!                    hashes of the tokens `seguro invite` issued, their limits, and
//!                    the keys they admitted. Written by `seguro invite` and by the
//!                    running server (a use), always atomically under the lock.
//! .join-tokens.lock  serialises those writers (advisory lock)
//! allowed-keys       the allow list, edited by hand: one key or fingerprint a line
//! ```
//!
//! The running server reads both files again for every `hello` it has to decide on
//! (they are small), so tokens issued, revoked or keys allowed take effect at once.
//! The decisions themselves are in [`crate::server::admission`].

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use seguro_core::limits::KEY_LEN;
use tracing::warn;

use crate::server::admission::{Admitted, AllowList, Denied, Tokens};

/// The token store's file name.
pub const TOKENS_FILE: &str = "join-tokens";
/// The allow list's file name.
pub const ALLOW_FILE: &str = "allowed-keys";
/// Largest admission file read, in bytes.
const MAX_FILE: u64 = 4 << 20;

/// The time now, in Unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where a server's admission files are.
#[derive(Debug, Clone)]
pub struct Files {
    dir: PathBuf,
}

impl Files {
    /// The files beside the certificate `cert`.
    pub fn beside(cert: &Path) -> Self {
        let dir = match cert.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        Self { dir }
    }

    /// The token store.
    pub fn tokens_path(&self) -> PathBuf {
        self.dir.join(TOKENS_FILE)
    }

    /// The allow list.
    pub fn allow_path(&self) -> PathBuf {
        self.dir.join(ALLOW_FILE)
    }

    /// Takes the lock of the token store (blocks while another process holds it).
    pub fn lock(&self) -> Result<File, String> {
        let path = self.dir.join(format!(".{TOKENS_FILE}.lock"));
        let mut o = OpenOptions::new();
        o.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let f = o
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        f.lock()
            .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
        Ok(f)
    }

    fn read(path: &Path) -> Result<Option<String>, String> {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        if !meta.is_file() {
            return Err(format!("{} is not a regular file", path.display()));
        }
        if meta.len() > MAX_FILE {
            return Err(format!(
                "{} is larger than {MAX_FILE} bytes: not an admission file",
                path.display()
            ));
        }
        let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| format!("{} is not text (UTF-8)", path.display()))
    }

    /// Reads the token store (none yet: an empty one). Take [`Files::lock`] first when
    /// the store is to be written back.
    pub fn load_tokens(&self) -> Result<Tokens, String> {
        let path = self.tokens_path();
        match Self::read(&path)? {
            None => Ok(Tokens::new()),
            Some(text) => Tokens::parse(&text).map_err(|e| {
                format!(
                    "{} is damaged ({e}); restore it from a backup, or move it away to \
                     start again with no tokens",
                    path.display()
                )
            }),
        }
    }

    /// Writes the token store atomically (mode 0600). Hold [`Files::lock`].
    pub fn save_tokens(&self, tokens: &Tokens) -> Result<(), String> {
        crate::state::write_atomic(&self.tokens_path(), tokens.to_text().as_bytes())
            .map_err(|e| e.to_string())
    }

    /// Reads the allow list (no file: an empty list).
    pub fn load_allow(&self) -> Result<AllowList, String> {
        let path = self.allow_path();
        match Self::read(&path)? {
            None => Ok(AllowList::new()),
            Some(text) => AllowList::parse(&text)
                .map_err(|(line, e)| format!("{} line {line}: {e}", path.display())),
        }
    }
}

/// The admission check of a running private server.
#[derive(Debug)]
pub struct Gate {
    files: Files,
    /// Keys given on the command line (`--allow-key`).
    extra: AllowList,
}

impl Gate {
    /// A gate over `files`, with the keys of `--allow-key` admitted too.
    pub fn new(files: Files, extra: AllowList) -> Self {
        Self { files, extra }
    }

    /// Checks that the files can be read (at start, so a damaged file stops the server
    /// with a clear error instead of refusing everyone); returns what they hold.
    pub fn check_files(&self) -> Result<(AllowList, Tokens), String> {
        Ok((self.files.load_allow()?, self.files.load_tokens()?))
    }

    /// The files.
    pub fn files(&self) -> &Files {
        &self.files
    }

    /// Decides on a `hello` (blocking: it reads, and after a token's first use writes,
    /// the files). A file that cannot be read or written refuses everyone not given
    /// with `--allow-key`, and says so in the log.
    pub fn check(
        &self,
        key: &[u8; KEY_LEN],
        user: &str,
        token: Option<&str>,
        now: u64,
    ) -> Result<Admitted, Denied> {
        if self.extra.allows(key) {
            return Ok(Admitted::AllowList);
        }
        let unavailable = |e: String| {
            warn!("private server: {e}: refusing the newcomers it cannot check");
            Denied::Unavailable
        };
        let allow = self.files.load_allow().map_err(unavailable)?;
        if allow.allows(key) {
            return Ok(Admitted::AllowList);
        }
        let _lock = self.files.lock().map_err(unavailable)?;
        let mut tokens = self.files.load_tokens().map_err(unavailable)?;
        let verdict = tokens.admit(&allow, key, user, token, now)?;
        if let Admitted::Redeemed { .. } = verdict {
            self.files.save_tokens(&tokens).map_err(unavailable)?;
        }
        Ok(verdict)
    }
}
