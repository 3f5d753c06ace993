//! What changed from one manifest to another.

use std::cmp::Ordering;

use serde::Serialize;

use crate::{Entry, Manifest};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub path: String,
    pub old: Entry,
    pub new: Entry,
}

/// Paths added, removed and changed (in content or mode), each sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    pub added: Vec<(String, Entry)>,
    pub removed: Vec<(String, Entry)>,
    pub changed: Vec<Change>,
}

impl Diff {
    /// The difference from `old` to `new`: one merge walk of the two sorted maps.
    pub fn between(old: &Manifest, new: &Manifest) -> Diff {
        let mut diff = Diff::default();
        let mut a = old.entries.iter().peekable();
        let mut b = new.entries.iter().peekable();
        loop {
            let order = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((pa, _)), Some((pb, _))) => pa.cmp(pb),
            };
            match order {
                Ordering::Less => {
                    let (path, entry) = a.next().expect("peeked");
                    diff.removed.push((path.clone(), entry.clone()));
                }
                Ordering::Greater => {
                    let (path, entry) = b.next().expect("peeked");
                    diff.added.push((path.clone(), entry.clone()));
                }
                Ordering::Equal => {
                    let (path, old) = a.next().expect("peeked");
                    let (_, new) = b.next().expect("peeked");
                    if old != new {
                        diff.changed.push(Change {
                            path: path.clone(),
                            old: old.clone(),
                            new: new.clone(),
                        });
                    }
                }
            }
        }
        diff
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// Bytes of content a receiver of `new` lacks when it holds `old`.
    pub fn transfer_size(&self) -> u64 {
        let added = self.added.iter().map(|(_, e)| e.size);
        let changed = self
            .changed
            .iter()
            .filter(|c| c.old.sha256 != c.new.sha256)
            .map(|c| c.new.size);
        added.chain(changed).sum()
    }

    /// The net change of the tree's size, in bytes.
    pub fn size_delta(&self) -> i64 {
        let plus: u64 = self.added.iter().map(|(_, e)| e.size).sum();
        let minus: u64 = self.removed.iter().map(|(_, e)| e.size).sum();
        let changed: i64 = self
            .changed
            .iter()
            .map(|c| c.new.size as i64 - c.old.size as i64)
            .sum();
        plus as i64 - minus as i64 + changed
    }

    /// Removed paths whose content was added at another path.
    pub fn renames(&self) -> Vec<(&str, &str)> {
        self.removed
            .iter()
            .filter_map(|(from, gone)| {
                self.added
                    .iter()
                    .find(|(_, e)| e.sha256 == gone.sha256)
                    .map(|(to, _)| (from.as_str(), to.as_str()))
            })
            .collect()
    }

    /// `old` changed into `new`: applying the diff of the two to `old` gives `new`.
    pub fn apply(&self, old: &Manifest) -> Manifest {
        let mut out = old.clone();
        for (path, _) in &self.removed {
            out.entries.remove(path);
        }
        for (path, entry) in &self.added {
            out.entries.insert(path.clone(), entry.clone());
        }
        for change in &self.changed {
            out.entries.insert(change.path.clone(), change.new.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_and_apply() {
        let mut old = Manifest::default();
        old.add("a", b"1");
        old.add("b", b"22");
        old.add("c", b"333");
        let mut new = Manifest::default();
        new.add("b", b"2222");
        new.add("c", b"333");
        new.add("d", b"1");
        let diff = Diff::between(&old, &new);
        assert_eq!(diff.added.len(), 1);
        assert_eq!(diff.removed.len(), 1);
        assert_eq!(diff.changed.len(), 1);
        assert_eq!(diff.renames(), [("a", "d")]);
        assert_eq!(diff.size_delta(), 2);
        assert_eq!(diff.apply(&old), new);
        assert!(Diff::between(&new, &new).is_empty());
    }
}
