//! Relative paths inside a tree: the rules for the paths `save` reads from stdin and
//! for the entry names `restore` finds in an archive.
//!
//! Both are checked lexically, before anything touches the disk: a path is relative
//! and stays inside the tree. Stdin paths may use `..` as long as they stay inside
//! (`a/../b` is `b`); archive entries may not use `..` at all.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// A normalised path relative to a tree: no `.`, no `..`, no empty component, no
/// trailing slash. The empty path is the tree itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(PathBuf);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error(
        "{0} is an absolute path; paths must be relative to the working directory, or written ~/… for $HOME"
    )]
    Absolute(String),
    #[error("{0} leads outside the working directory")]
    Escapes(String),
    #[error("{0} leads outside $HOME")]
    EscapesHome(String),
    #[error("{0} uses the name .bmat-root, which bmat reserves")]
    Reserved(String),
    #[error("{0} contains a `..` component")]
    DotDot(String),
    #[error("{0} names the tree itself")]
    Empty(String),
    #[error(
        "{0} names all of $HOME; list the directories under ~ to cache, e.g. ~/.cargo/registry"
    )]
    WholeHome(String),
}

pub(crate) fn shown(raw: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(raw))
}

impl RelPath {
    /// A path given on stdin: relative, and inside the tree once `.` and `..` are
    /// resolved lexically (`.` alone is the tree itself).
    pub fn from_input(raw: &[u8]) -> Result<RelPath, PathError> {
        let path = Path::new(OsStr::from_bytes(raw));
        let mut out: Vec<&OsStr> = Vec::new();
        for component in path.components() {
            match component {
                Component::Normal(c) => out.push(c),
                Component::CurDir => {}
                Component::ParentDir => {
                    if out.pop().is_none() {
                        return Err(PathError::Escapes(shown(raw)));
                    }
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(PathError::Absolute(shown(raw)));
                }
            }
        }
        Ok(RelPath(out.iter().collect()))
    }

    /// An archive entry name: relative, no `..` anywhere, not empty. `./a/./b/` is `a/b`.
    pub fn from_entry(raw: &[u8]) -> Result<RelPath, PathError> {
        let path = Path::new(OsStr::from_bytes(raw));
        let mut out = PathBuf::new();
        for component in path.components() {
            match component {
                Component::Normal(c) => out.push(c),
                Component::CurDir => {}
                Component::ParentDir => return Err(PathError::DotDot(shown(raw))),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(PathError::Absolute(shown(raw)));
                }
            }
        }
        if out.as_os_str().is_empty() {
            return Err(PathError::Empty(shown(raw)));
        }
        Ok(RelPath(out))
    }

    /// For paths already known to be normal (joined from a directory walk).
    pub(crate) fn from_normal(path: PathBuf) -> RelPath {
        RelPath(path)
    }

    pub fn as_path(&self) -> &Path {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.as_os_str().is_empty()
    }

    pub fn join(&self, name: &OsStr) -> RelPath {
        RelPath(self.0.join(name))
    }

    /// The proper ancestors, outermost first: `a/b/c` → `a`, `a/b`.
    pub fn ancestors(&self) -> impl Iterator<Item = &Path> {
        let mut all: Vec<&Path> = self
            .0
            .ancestors()
            .skip(1)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        all.reverse();
        all.into_iter()
    }

    pub fn depth(&self) -> usize {
        self.0.components().count()
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            f.write_str(".")
        } else {
            write!(f, "{}", self.0.display())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(s: &str) -> Result<String, PathError> {
        RelPath::from_input(s.as_bytes()).map(|p| p.to_string())
    }

    fn entry(s: &str) -> Result<String, PathError> {
        RelPath::from_entry(s.as_bytes()).map(|p| p.to_string())
    }

    #[test]
    fn stdin_paths_are_normalised() {
        assert_eq!(input("a/b"), Ok("a/b".into()));
        assert_eq!(input("./a//b/"), Ok("a/b".into()));
        assert_eq!(input("a/../b"), Ok("b".into()));
        assert_eq!(input("a/b/../../c"), Ok("c".into()));
        assert_eq!(input("."), Ok(".".into()));
        assert_eq!(input("a/.."), Ok(".".into()));
    }

    #[test]
    fn stdin_paths_outside_the_tree_are_refused_by_name() {
        assert_eq!(
            input("/etc/passwd"),
            Err(PathError::Absolute("\"/etc/passwd\"".into()))
        );
        assert_eq!(input(".."), Err(PathError::Escapes("\"..\"".into())));
        assert_eq!(
            input("a/../../b"),
            Err(PathError::Escapes("\"a/../../b\"".into()))
        );
        assert_eq!(
            input("./../x"),
            Err(PathError::Escapes("\"./../x\"".into()))
        );
        let msg = input("../secret")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("../secret") && msg.contains("outside"),
            "{msg}"
        );
    }

    #[test]
    fn archive_entries_allow_no_dotdot_at_all() {
        assert_eq!(entry("./a/./b/"), Ok("a/b".into()));
        assert!(matches!(
            RelPath::from_entry(b"../escape"),
            Err(PathError::DotDot(_))
        ));
        assert!(matches!(
            RelPath::from_entry(b"a/../b"),
            Err(PathError::DotDot(_))
        ));
        assert!(matches!(
            RelPath::from_entry(b"/tmp/x"),
            Err(PathError::Absolute(_))
        ));
        assert!(matches!(
            RelPath::from_entry(b"./"),
            Err(PathError::Empty(_))
        ));
        assert!(matches!(RelPath::from_entry(b""), Err(PathError::Empty(_))));
    }

    #[test]
    fn ancestors_are_listed_outermost_first() {
        let p = RelPath::from_input(b"a/b/c").ok();
        let got: Vec<String> = p
            .iter()
            .flat_map(|p| p.ancestors().map(|a| a.display().to_string()))
            .collect();
        assert_eq!(got, ["a", "a/b"]);
    }
}
