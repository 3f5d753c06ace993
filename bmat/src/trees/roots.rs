//! The trees one cache spans.
//!
//! A cache always has a main tree (the working directory, or a Rust workspace's build
//! directory). It may also hold entries of trees that live elsewhere and differ from
//! runner to runner: the user's home (`~/…` in `bmat cache save`) and Cargo's home.
//! Entries travel as [`TreePath`]s, a tree and a path in it; how an archive names them
//! is the archive's business (`archive/names.rs`).

use std::path::{Path, PathBuf};

use crate::trees::paths::RelPath;

/// A tree other than the main one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Extra {
    /// `$HOME`.
    Home,
    /// `$CARGO_HOME`, by default `$HOME/.cargo`.
    CargoHome,
}

impl Extra {
    pub const ALL: [Extra; 2] = [Extra::Home, Extra::CargoHome];

    /// How a user would write the tree: in messages.
    pub fn shown(self) -> &'static str {
        match self {
            Extra::Home => "$HOME",
            Extra::CargoHome => "$CARGO_HOME",
        }
    }
}

/// Where an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tree {
    Main,
    Extra(Extra),
}

/// A path inside one of a cache's trees.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TreePath {
    pub tree: Tree,
    pub path: RelPath,
}

impl TreePath {
    /// `path` in the main tree.
    pub fn main(path: RelPath) -> TreePath {
        TreePath {
            tree: Tree::Main,
            path,
        }
    }
}

/// A path alone is one of the main tree.
impl From<&RelPath> for TreePath {
    fn from(path: &RelPath) -> TreePath {
        TreePath::main(path.clone())
    }
}

impl From<&TreePath> for TreePath {
    fn from(entry: &TreePath) -> TreePath {
        entry.clone()
    }
}

/// As a person would write it: `target/x`, `$HOME/.cargo/bin`.
impl std::fmt::Display for TreePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.tree {
            Tree::Main => write!(f, "{}", self.path),
            Tree::Extra(e) if self.path.is_root() => f.write_str(e.shown()),
            Tree::Extra(e) => write!(f, "{}/{}", e.shown(), self.path),
        }
    }
}

/// The trees of this job, resolved once from the environment.
#[derive(Debug, Clone)]
pub struct Roots {
    pub main: PathBuf,
    /// Each extra tree this job has (none when `$HOME` is unset).
    pub extra: Vec<(Extra, PathBuf)>,
}

impl Roots {
    /// A main tree alone (tests, tools).
    pub fn main_only(main: &Path) -> Roots {
        Roots {
            main: main.to_owned(),
            extra: Vec::new(),
        }
    }

    /// The main tree with `$HOME` and `$CARGO_HOME` as set (relative values are
    /// ignored, as Cargo ignores them; Cargo's home defaults to `$HOME/.cargo`).
    pub fn resolve(main: &Path, home: Option<PathBuf>, cargo_home: Option<PathBuf>) -> Roots {
        let home = home.filter(|p| p.is_absolute());
        let cargo_home = cargo_home
            .filter(|p| p.is_absolute())
            .or_else(|| home.as_ref().map(|h| h.join(".cargo")));
        let extra = [(Extra::Home, home), (Extra::CargoHome, cargo_home)]
            .into_iter()
            .filter_map(|(e, p)| Some((e, p?)))
            .collect();
        Roots {
            main: main.to_owned(),
            extra,
        }
    }

    pub fn dir(&self, tree: Tree) -> Option<&Path> {
        match tree {
            Tree::Main => Some(&self.main),
            Tree::Extra(e) => self
                .extra
                .iter()
                .find(|(x, _)| *x == e)
                .map(|(_, p)| p.as_path()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_home_defaults_under_home_and_relative_values_are_ignored() {
        let r = Roots::resolve(Path::new("/w"), Some("/home/ci".into()), Some("rel".into()));
        assert_eq!(
            r.dir(Tree::Extra(Extra::CargoHome)),
            Some(Path::new("/home/ci/.cargo"))
        );
        let none = Roots::resolve(Path::new("/w"), None, None);
        assert_eq!(none.dir(Tree::Extra(Extra::Home)), None);
    }
}
