//! The full-screen interface's input history, kept per user beside the identity
//! (`<state dir>/users/<user>/history`): the last [`crate::tui::HISTORY`] lines typed,
//! oldest first, for Up/Down in the next session.
//!
//! It is the plain text of what the user typed (messages included), so it is written
//! like the other state files (a temporary file, fsync, rename; mode 0600 in a 0700
//! directory) and can be turned off: `history = false` in the config file, or
//! `seguro chat --no-history` (nothing is read or written then; an existing file stays
//! until removed).
//!
//! Format: a first line `# seguro input history 1`, then one entry per line, with `\`
//! written `\\` and a line break inside an entry (a multi-line paste) written `\n`.

use std::path::{Path, PathBuf};

use crate::state::{self, StateDir};

/// The first line of the file.
const HEADER: &str = "# seguro input history 1";

/// `user`'s history file in `dir`.
pub fn path(dir: &StateDir, user: &str) -> PathBuf {
    dir.user_dir(user).join("history")
}

/// The file's text for `entries` (the last [`crate::tui::HISTORY`] of them).
pub fn encode(entries: &[String]) -> String {
    let skip = entries.len().saturating_sub(crate::tui::HISTORY);
    let mut out = String::from(HEADER);
    out.push('\n');
    for e in &entries[skip..] {
        for c in e.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c => out.push(c),
            }
        }
        out.push('\n');
    }
    out
}

/// The entries of a history file's text (the last [`crate::tui::HISTORY`]).
pub fn decode(text: &str) -> Result<Vec<String>, String> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(format!("it does not start with {HEADER:?}"));
    }
    let mut v: Vec<String> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut e = String::with_capacity(l.len());
            let mut chars = l.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    e.push(c);
                    continue;
                }
                match chars.next() {
                    Some('n') => e.push('\n'),
                    Some('r') => e.push('\r'),
                    Some(other) => e.push(other),
                    None => e.push('\\'),
                }
            }
            e
        })
        .collect();
    let skip = v.len().saturating_sub(crate::tui::HISTORY);
    v.drain(..skip);
    Ok(v)
}

/// Where one user's history is read and written.
#[derive(Debug, Clone)]
pub struct HistoryFile {
    dir: StateDir,
    user: String,
}

impl HistoryFile {
    /// `user`'s history in `dir`.
    pub fn new(dir: StateDir, user: &str) -> Self {
        Self {
            dir,
            user: user.to_owned(),
        }
    }

    /// The file.
    pub fn path(&self) -> PathBuf {
        path(&self.dir, &self.user)
    }

    /// The entries saved; none if there is no file yet. An unreadable file is an
    /// error naming it (the caller says so and starts empty; the next save replaces
    /// it).
    pub fn load(&self) -> Result<Vec<String>, String> {
        let p = self.path();
        let bytes = match state::read_private(&p, &self.user, false) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(Vec::new()),
            Err(e) => return Err(e.to_string()),
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("input history {}: not UTF-8 text", p.display()))?;
        decode(&text).map_err(|e| format!("input history {}: {e}", p.display()))
    }

    /// Writes `entries` (atomically, mode 0600).
    pub fn save(&self, entries: &[String]) -> Result<(), String> {
        let _lock = self.dir.lock(&self.user).map_err(|e| e.to_string())?;
        write(&self.path(), &encode(entries))
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    state::write_atomic(path, text.as_bytes()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_with_breaks_and_backslashes() {
        let v: Vec<String> = ["/q bob", "two\nlines", "a \\n b\\", "é ✓ \r x"]
            .map(str::to_owned)
            .to_vec();
        let text = encode(&v);
        assert_eq!(text.lines().count(), 5, "{text}");
        assert_eq!(decode(&text).unwrap(), v);
    }

    #[test]
    fn bounded_to_the_last_entries() {
        let n = crate::tui::HISTORY + 7;
        let v: Vec<String> = (0..n).map(|i| format!("line {i}")).collect();
        let back = decode(&encode(&v)).unwrap();
        assert_eq!(back.len(), crate::tui::HISTORY);
        assert_eq!(back[0], "line 7");
        assert_eq!(back.last().unwrap(), &format!("line {}", n - 1));
        // A longer file (written by hand) is cut the same way.
        let mut text = String::from(HEADER);
        for e in &v {
            text.push('\n');
            text.push_str(e);
        }
        assert_eq!(decode(&text).unwrap(), back);
    }

    #[test]
    fn a_file_that_is_not_a_history_is_refused() {
        assert!(decode("").is_err());
        assert!(decode("hello\n").unwrap_err().contains("does not start"));
        assert_eq!(
            decode(&format!("{HEADER}\n")).unwrap(),
            Vec::<String>::new()
        );
    }
}
