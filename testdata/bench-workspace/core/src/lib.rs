//! Manifests of files: what a tree holds, by path, size and SHA-256.

use std::collections::BTreeMap;

use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid pattern {pattern:?}: {source}")]
    Pattern {
        pattern: String,
        source: regex::Error,
    },
    #[error("invalid manifest: {0}")]
    Json(#[from] serde_json::Error),
}

/// One file of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub size: u64,
    pub sha256: String,
}

/// Files by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub entries: BTreeMap<String, Entry>,
}

impl Manifest {
    pub fn add(&mut self, path: &str, data: &[u8]) -> &Entry {
        let entry = Entry {
            size: data.len() as u64,
            sha256: digest(data),
        };
        self.entries.insert(path.to_owned(), entry);
        &self.entries[path]
    }

    /// The entries whose path matches `pattern`.
    pub fn select(&self, pattern: &str) -> Result<Manifest, Error> {
        let re = Regex::new(pattern).map_err(|source| Error::Pattern {
            pattern: pattern.to_owned(),
            source,
        })?;
        let entries = self
            .entries
            .iter()
            .filter(|(path, _)| re.is_match(path))
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect();
        Ok(Manifest { entries })
    }

    pub fn total_size(&self) -> u64 {
        self.entries.values().map(|e| e.size).sum()
    }

    pub fn to_json(&self) -> Result<String, Error> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    pub fn from_json(text: &str) -> Result<Manifest, Error> {
        Ok(serde_json::from_str(text)?)
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
}
