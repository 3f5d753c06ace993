use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Filter};

/// One file of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub size: u64,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub executable: bool,
}

/// Files by path ('/'-separated, relative to the tree's root).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub entries: BTreeMap<String, Entry>,
}

impl Manifest {
    pub fn add(&mut self, path: &str, data: &[u8]) -> &Entry {
        let entry = Entry {
            size: data.len() as u64,
            sha256: digest(data),
            executable: false,
        };
        self.insert(path, entry)
    }

    pub fn insert(&mut self, path: &str, entry: Entry) -> &Entry {
        self.entries.insert(path.to_owned(), entry);
        &self.entries[path]
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries whose path matches the regular expression `pattern`.
    pub fn select(&self, pattern: &str) -> Result<Manifest, Error> {
        let re = regex::Regex::new(pattern).map_err(|source| Error::Pattern {
            pattern: pattern.to_owned(),
            source,
        })?;
        Ok(self.retain(|path| re.is_match(path)))
    }

    /// The entries `filter` accepts.
    pub fn filter(&self, filter: &Filter) -> Manifest {
        self.retain(|path| filter.accepts(path))
    }

    fn retain(&self, keep: impl Fn(&str) -> bool) -> Manifest {
        let entries = self
            .entries
            .iter()
            .filter(|(path, _)| keep(path))
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect();
        Manifest { entries }
    }

    /// The entries under directory `dir`, with paths relative to it.
    pub fn subtree(&self, dir: &str) -> Manifest {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let entries = self
            .entries
            .range(prefix.clone()..)
            .take_while(|(path, _)| path.starts_with(&prefix))
            .map(|(p, e)| (p[prefix.len()..].to_owned(), e.clone()))
            .collect();
        Manifest { entries }
    }

    pub fn total_size(&self) -> u64 {
        self.entries.values().map(|e| e.size).sum()
    }

    /// Distinct contents: hash to the paths that hold it, for content stored once.
    pub fn by_hash(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (path, entry) in &self.entries {
            out.entry(entry.sha256.as_str()).or_default().push(path);
        }
        out
    }

    /// Bytes a content-addressed store holds for this manifest (each content once).
    pub fn unique_size(&self) -> u64 {
        let mut seen = std::collections::BTreeSet::new();
        self.entries
            .values()
            .filter(|e| seen.insert(e.sha256.as_str()))
            .map(|e| e.size)
            .sum()
    }

    /// Checks every hash is 64 lowercase hex digits (a manifest read from JSON may not).
    pub fn validate(&self) -> Result<(), Error> {
        for (path, entry) in &self.entries {
            let ok = entry.sha256.len() == 64
                && entry
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !ok {
                return Err(Error::Hash {
                    path: path.clone(),
                    hash: entry.sha256.clone(),
                });
            }
        }
        Ok(())
    }

    pub fn to_json(&self) -> Result<String, Error> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    pub fn from_json(text: &str) -> Result<Manifest, Error> {
        let manifest: Manifest = serde_json::from_str(text)?;
        manifest.validate()?;
        Ok(manifest)
    }
}

/// Hex SHA-256 of `data`.
pub fn digest(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_and_round_trip() {
        let mut m = Manifest::default();
        m.add("src/lib.rs", b"fn main() {}");
        m.add("README.md", b"# hello");
        let rust = m.select(r"\.rs$").expect("pattern");
        assert_eq!(rust.entries.len(), 1);
        let back = Manifest::from_json(&m.to_json().expect("json")).expect("parse");
        assert_eq!(back, m);
        assert!(m.select("(").is_err());
    }

    #[test]
    fn subtree_and_unique_size() {
        let mut m = Manifest::default();
        m.add("src/a.rs", b"same");
        m.add("src/b/c.rs", b"same");
        m.add("srcx", b"other");
        let sub = m.subtree("src/");
        assert_eq!(sub.entries.keys().collect::<Vec<_>>(), ["a.rs", "b/c.rs"]);
        assert_eq!(m.unique_size(), 9);
        assert_eq!(m.by_hash().len(), 2);
    }
}
