//! The directory: a fixed-capacity map from user name to X25519 public key, and the
//! differences (joins, leaves, key changes) between two directories.

use heapless::{String, Vec};

use crate::limits::{KEY_LEN, MAX_NAME_BYTES};
use crate::msg::UserList;

/// One user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    name: String<MAX_NAME_BYTES>,
    key: [u8; KEY_LEN],
}

impl Entry {
    /// The user's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The user's public key.
    pub fn key(&self) -> &[u8; KEY_LEN] {
        &self.key
    }
}

/// What [`Directory::replace`] could not keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Entries beyond the directory's capacity.
    pub over_capacity: usize,
    /// Entries whose name is longer than [`MAX_NAME_BYTES`].
    pub name_too_long: usize,
}

impl Dropped {
    /// True if nothing was dropped.
    pub fn is_empty(&self) -> bool {
        self.over_capacity == 0 && self.name_too_long == 0
    }
}

/// A name → key map holding at most `N` users, in the order the server listed them.
/// Costs about `N × (MAX_NAME_BYTES + KEY_LEN + 8)` bytes.
#[derive(Debug, Clone, Default)]
pub struct Directory<const N: usize> {
    entries: Vec<Entry, N>,
}

impl<const N: usize> Directory<N> {
    /// An empty directory.
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes everyone.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The key of `name`.
    pub fn get(&self, name: &str) -> Option<&[u8; KEY_LEN]> {
        self.entries.iter().find(|e| e.name == name).map(|e| &e.key)
    }

    /// Every user, in the server's order.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.entries.iter()
    }

    /// Replaces the contents with `users` (a later duplicate name wins) and reports
    /// what did not fit. Never fails: a directory that is too small keeps the first
    /// `N` users.
    pub fn replace(&mut self, users: &UserList<'_>) -> Dropped {
        let mut dropped = Dropped::default();
        self.entries.clear();
        for (name, key) in users.iter() {
            if let Some(e) = self.entries.iter_mut().find(|e| e.name == name) {
                e.key = *key;
                continue;
            }
            let mut n = String::new();
            if n.push_str(name).is_err() {
                dropped.name_too_long += 1;
                continue;
            }
            if self.entries.push(Entry { name: n, key: *key }).is_err() {
                dropped.over_capacity += 1;
            }
        }
        dropped
    }

    /// Sets `name`'s key, adding it in name order if absent (the order of a Seguro
    /// server's directory), for one change at a time (protocol v2 §10). What did not
    /// fit is reported as in [`Directory::replace`].
    pub fn upsert(&mut self, name: &str, key: &[u8; KEY_LEN]) -> Dropped {
        let mut dropped = Dropped::default();
        if let Some(e) = self.entries.iter_mut().find(|e| e.name == name) {
            e.key = *key;
            return dropped;
        }
        let mut n = String::new();
        if n.push_str(name).is_err() {
            dropped.name_too_long = 1;
            return dropped;
        }
        let at = self
            .entries
            .iter()
            .position(|e| e.name.as_str() > name)
            .unwrap_or(self.entries.len());
        if self
            .entries
            .insert(at, Entry { name: n, key: *key })
            .is_err()
        {
            dropped.over_capacity = 1;
        }
        dropped
    }

    /// Removes `name`; false if it was not listed.
    pub fn remove(&mut self, name: &str) -> bool {
        match self.entries.iter().position(|e| e.name == name) {
            Some(i) => {
                self.entries.remove(i);
                true
            }
            None => false,
        }
    }

    /// The changes that turn `old` into `self`, in a stable order: joins and key
    /// changes in `self`'s order, then leaves in `old`'s order.
    pub fn changes_since<'a>(&'a self, old: &'a Directory<N>) -> Changes<'a, N> {
        Changes {
            new: self,
            old,
            cursor: 0,
        }
    }
}

/// One difference between two directories.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// `name` appeared.
    Joined {
        /// Who.
        name: &'a str,
        /// Their key.
        key: &'a [u8; KEY_LEN],
    },
    /// `name` disappeared.
    Left {
        /// Who.
        name: &'a str,
    },
    /// `name` is still there but with another key.
    KeyChanged {
        /// Who.
        name: &'a str,
        /// The key before.
        old: &'a [u8; KEY_LEN],
        /// The key now.
        new: &'a [u8; KEY_LEN],
    },
}

/// Iterator over the [`Change`]s between two directories; its position can be saved
/// with [`Changes::cursor`] and resumed with [`Changes::resume`].
pub struct Changes<'a, const N: usize> {
    new: &'a Directory<N>,
    old: &'a Directory<N>,
    cursor: usize,
}

impl<'a, const N: usize> Changes<'a, N> {
    /// Position to resume from later.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Continues from a saved position.
    pub fn resume(mut self, cursor: usize) -> Self {
        self.cursor = cursor;
        self
    }
}

impl<'a, const N: usize> Iterator for Changes<'a, N> {
    type Item = Change<'a>;

    fn next(&mut self) -> Option<Change<'a>> {
        let n_new = self.new.entries.len();
        while self.cursor < n_new {
            let e = self.new.entries.get(self.cursor)?;
            self.cursor += 1;
            match self.old.get(&e.name) {
                None => {
                    return Some(Change::Joined {
                        name: &e.name,
                        key: &e.key,
                    });
                }
                Some(old) if *old != e.key => {
                    return Some(Change::KeyChanged {
                        name: &e.name,
                        old,
                        new: &e.key,
                    });
                }
                Some(_) => {}
            }
        }
        while let Some(e) = self.old.entries.get(self.cursor - n_new) {
            self.cursor += 1;
            if self.new.get(&e.name).is_none() {
                return Some(Change::Left { name: &e.name });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec as StdVec;

    #[test]
    fn upsert_keeps_name_order_and_remove_says_if_it_removed() {
        let mut d: Directory<3> = Directory::new();
        assert!(d.upsert("m", &[1; KEY_LEN]).is_empty());
        assert!(d.upsert("z", &[2; KEY_LEN]).is_empty());
        assert!(d.upsert("a", &[3; KEY_LEN]).is_empty());
        let names: StdVec<&str> = d.iter().map(Entry::name).collect();
        assert_eq!(names, ["a", "m", "z"]);
        // An existing name changes its key in place, even when full.
        assert!(d.upsert("m", &[9; KEY_LEN]).is_empty());
        assert_eq!(d.get("m"), Some(&[9; KEY_LEN]));
        assert_eq!(d.len(), 3);
        let full = d.upsert("b", &[4; KEY_LEN]);
        assert_eq!(full.over_capacity, 1);
        assert_eq!(full.name_too_long, 0);
        assert_eq!(d.get("b"), None);
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let mut e: Directory<3> = Directory::new();
        let dropped = e.upsert(&long, &[5; KEY_LEN]);
        assert_eq!((dropped.name_too_long, dropped.over_capacity), (1, 0));
        assert!(e.is_empty());
        assert!(d.remove("m"));
        assert!(!d.remove("m"));
        let names: StdVec<&str> = d.iter().map(Entry::name).collect();
        assert_eq!(names, ["a", "z"]);
    }

    #[test]
    fn dropped_is_empty_only_when_nothing_was_dropped() {
        assert!(Dropped::default().is_empty());
        let over = Dropped {
            over_capacity: 1,
            name_too_long: 0,
        };
        let long = Dropped {
            over_capacity: 0,
            name_too_long: 2,
        };
        assert!(!over.is_empty());
        assert!(!long.is_empty());
        let (_, d) = dir::<1>(&[("a", 1), ("b", 2)]);
        assert!(!d.is_empty(), "{d:?}");
        let (_, d) = dir::<2>(&[("a", 1), ("b", 2)]);
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn clear_empties_the_directory() {
        let (mut d, _) = dir::<4>(&[("a", 1), ("b", 2)]);
        assert!(!d.is_empty());
        assert_eq!(d.len(), 2);
        d.clear();
        assert!(d.is_empty());
        assert_eq!(d.len(), 0);
        assert_eq!(d.get("a"), None);
        assert!(Directory::<4>::new().is_empty());
    }

    /// Changes taken one at a time through a saved cursor (as the client does, one event
    /// per call) are exactly the changes of one pass: each once, several leaves included.
    #[test]
    fn changes_resume_from_the_cursor() {
        let (old, _) = dir::<8>(&[("a", 1), ("b", 2), ("c", 3), ("d", 4)]);
        let (new, _) = dir::<8>(&[("b", 2), ("e", 5), ("c", 9)]);
        let all: StdVec<_> = new.changes_since(&old).take(10).collect();
        assert_eq!(
            all,
            [
                Change::Joined {
                    name: "e",
                    key: &[5; 32]
                },
                Change::KeyChanged {
                    name: "c",
                    old: &[3; 32],
                    new: &[9; 32]
                },
                Change::Left { name: "a" },
                Change::Left { name: "d" },
            ]
        );
        let mut cursor = 0;
        let mut one_by_one = StdVec::new();
        loop {
            let mut it = new.changes_since(&old).resume(cursor);
            let Some(c) = it.next() else { break };
            one_by_one.push(c);
            assert!(it.cursor() > cursor, "the cursor moves on");
            cursor = it.cursor();
            assert!(one_by_one.len() <= all.len(), "{one_by_one:?}");
        }
        assert_eq!(one_by_one, all);
        // Only leaves: the cursor counts past the new directory's end.
        let (empty, _) = dir::<8>(&[]);
        let leaves: StdVec<_> = empty.changes_since(&old).take(10).collect();
        assert_eq!(leaves.len(), 4);
        let mut it = empty.changes_since(&old);
        assert_eq!(it.cursor(), 0);
        it.next();
        assert_eq!(it.cursor(), 1);
        it.next();
        assert_eq!(it.cursor(), 2);
    }

    fn dir<const N: usize>(users: &[(&str, u8)]) -> (Directory<N>, Dropped) {
        let keys: StdVec<[u8; 32]> = users.iter().map(|(_, k)| [*k; 32]).collect();
        let mut buf = [0u8; 4096];
        let list =
            UserList::pack(users.iter().zip(&keys).map(|((n, _), k)| (*n, k)), &mut buf).unwrap();
        let mut d = Directory::new();
        let dropped = d.replace(&list);
        (d, dropped)
    }

    #[test]
    fn diff_reports_joins_leaves_and_key_changes() {
        let (old, _) = dir::<8>(&[("alice", 1), ("bob", 2), ("carol", 3)]);
        let (new, _) = dir::<8>(&[("alice", 1), ("bob", 9), ("dave", 4)]);
        let changes: StdVec<_> = new.changes_since(&old).collect();
        assert_eq!(
            changes,
            [
                Change::KeyChanged {
                    name: "bob",
                    old: &[2; 32],
                    new: &[9; 32]
                },
                Change::Joined {
                    name: "dave",
                    key: &[4; 32]
                },
                Change::Left { name: "carol" },
            ]
        );
        assert_eq!(new.changes_since(&new).count(), 0);
    }

    #[test]
    fn resume_continues_where_it_stopped() {
        let (old, _) = dir::<8>(&[("a", 1), ("b", 2)]);
        let (new, _) = dir::<8>(&[("c", 3)]);
        let mut it = new.changes_since(&old);
        assert!(matches!(it.next(), Some(Change::Joined { name: "c", .. })));
        let c = it.cursor();
        let rest: StdVec<_> = new.changes_since(&old).resume(c).collect();
        assert_eq!(
            rest,
            [Change::Left { name: "a" }, Change::Left { name: "b" }]
        );
    }

    #[test]
    fn capacity_and_duplicates() {
        let (d, dropped) = dir::<2>(&[("a", 1), ("b", 2), ("a", 3), ("c", 4)]);
        assert_eq!(d.len(), 2);
        assert_eq!(d.get("a"), Some(&[3; 32]));
        assert_eq!(dropped.over_capacity, 1);
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let (d, dropped) = dir::<4>(&[(&long, 1), ("ok", 2)]);
        assert_eq!(d.len(), 1);
        assert_eq!(dropped.name_too_long, 1);
    }
}
