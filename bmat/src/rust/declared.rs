//! Key inputs the user declares because Cargo does not see them: files a macro reads
//! at compile time (sqlx's `.sqlx/`, a schema an `include!` generator reads through a
//! build script without `rerun-if-changed`), variables a build reads without telling
//! Cargo. Each goes into the key by content, never by path, so the same files in
//! another checkout give the same key.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use walkdir::WalkDir;

use crate::trees::manifest::file_sha256;

/// A declared file or directory, hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredPath {
    /// As the user wrote it.
    pub shown: String,
    /// Regular files and symlinks under it (1 for a file).
    pub files: u64,
    /// SHA-256 over every entry's relative path, kind and content (or link target).
    pub digest: String,
}

/// A declared variable: its value's SHA-256 (values may be secrets: the key and
/// `rust key` show only the digest), or unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredVar {
    pub name: String,
    pub digest: Option<String>,
}

/// Why a declared input cannot go into the key: the job script is wrong.
#[derive(Debug, thiserror::Error)]
pub enum DeclaredError {
    #[error("key input {shown}: {source}")]
    Unreadable {
        shown: String,
        #[source]
        source: std::io::Error,
    },
    #[error("key input {shown}: {source}")]
    Walk {
        shown: String,
        #[source]
        source: walkdir::Error,
    },
    #[error(
        "key variable {0:?}: not a variable name (letters, digits and _, not starting with a digit)"
    )]
    BadName(String),
}

/// Hashes `path` (relative to `dir` unless absolute).
pub fn hash_path(dir: &Path, path: &Path) -> Result<DeclaredPath, DeclaredError> {
    let shown = path.display().to_string();
    let root: PathBuf = dir.join(path);
    let unreadable = |source| DeclaredError::Unreadable {
        shown: shown.clone(),
        source,
    };
    // The top itself must exist: a typo must not silently key on nothing.
    fs::symlink_metadata(&root).map_err(unreadable)?;
    let mut hasher = Sha256::new();
    let mut files = 0u64;
    for entry in WalkDir::new(&root).sort_by_file_name() {
        let entry = entry.map_err(|source| DeclaredError::Walk {
            shown: shown.clone(),
            source,
        })?;
        let rel = entry.path().strip_prefix(&root).unwrap_or(entry.path());
        let kind = entry.file_type();
        let line = if kind.is_symlink() {
            files += 1;
            let target = fs::read_link(entry.path()).map_err(unreadable)?;
            format!("link {} {}", rel.display(), target.display())
        } else if kind.is_file() {
            files += 1;
            let sha256 = file_sha256(entry.path()).map_err(unreadable)?;
            format!("file {} {sha256}", rel.display())
        } else {
            format!("dir {}", rel.display())
        };
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    Ok(DeclaredPath {
        shown,
        files,
        digest: hex::encode(hasher.finalize()),
    })
}

/// `name`'s value in `lookup`, hashed.
pub fn hash_var(
    name: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<DeclaredVar, DeclaredError> {
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(DeclaredError::BadName(name.to_owned()));
    }
    Ok(DeclaredVar {
        name: name.to_owned(),
        digest: lookup(name).map(|v| hex::encode(Sha256::digest(v.as_bytes()))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path) {
        fs::create_dir_all(root.join("queries")).unwrap();
        fs::write(root.join("queries/a.json"), "{\"a\": 1}").unwrap();
        fs::write(root.join("schema.sql"), "create table t (x int);").unwrap();
    }

    #[test]
    fn a_directory_is_keyed_by_content_not_by_where_it_is() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        tree(&one.path().join(".sqlx"));
        tree(&two.path().join("elsewhere/.sqlx"));
        let a = hash_path(one.path(), Path::new(".sqlx")).unwrap();
        let b = hash_path(&two.path().join("elsewhere"), Path::new(".sqlx")).unwrap();
        assert_eq!((a.files, &a.digest), (2, &b.digest));
        fs::write(
            two.path().join("elsewhere/.sqlx/queries/a.json"),
            "{\"a\": 2}",
        )
        .unwrap();
        let changed = hash_path(&two.path().join("elsewhere"), Path::new(".sqlx")).unwrap();
        assert_ne!(changed.digest, a.digest);
        fs::rename(
            two.path().join("elsewhere/.sqlx/queries/a.json"),
            two.path().join("elsewhere/.sqlx/queries/b.json"),
        )
        .unwrap();
        let renamed = hash_path(&two.path().join("elsewhere"), Path::new(".sqlx")).unwrap();
        assert_ne!(renamed.digest, changed.digest);
    }

    #[test]
    fn a_missing_input_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = hash_path(dir.path(), Path::new(".sqlx")).unwrap_err();
        assert!(e.to_string().starts_with("key input .sqlx: "), "{e}");
    }

    #[test]
    fn variables_are_keyed_by_a_digest_and_unset_is_its_own_value() {
        let set = hash_var("DATABASE_URL", |_| Some("postgres://secret".into())).unwrap();
        let empty = hash_var("DATABASE_URL", |_| Some(String::new())).unwrap();
        let unset = hash_var("DATABASE_URL", |_| None).unwrap();
        assert!(set.digest.as_deref().is_some_and(|d| !d.contains("secret")));
        assert_ne!(set, empty);
        assert_ne!(empty, unset);
        for bad in ["", "1X", "A=B", "A B"] {
            assert!(hash_var(bad, |_| None).is_err(), "{bad:?}");
        }
    }
}
